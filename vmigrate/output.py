"""Printing for people (tables) and programs (JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def emit(
    rows: list[dict[str, Any]], as_json: bool, table: Callable[[list[dict[str, Any]]], str]
) -> None:
    if as_json:
        print_json(rows)
    else:
        print(table(rows))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [
        [("-" if c is None else str(c)) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def hosts_table(hosts: list[dict[str, Any]]) -> str:
    rows = [
        [
            h["name"],
            ",".join(str(v) for v in h["protocols"]),
            h["driver"],
            "alive" if h["alive"] else "DEAD",
            h["memory_mib"],
            h["version"],
        ]
        for h in hosts
    ]
    return table(["HOST", "PROTOCOLS", "DRIVER", "STATUS", "MEMORY_MIB", "VERSION"], rows)


def domains_table(domains: list[dict[str, Any]]) -> str:
    rows = [
        [d["name"], d["uuid"], d["state"], d["memory_kib"] // 1024, d["vcpus"]] for d in domains
    ]
    return table(["NAME", "UUID", "STATE", "MEMORY_MIB", "VCPUS"], rows)


def migrations_table(records: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["id"][:8],
            r["domain"],
            f"{r['source']} -> {r['destination']}",
            f"v{r['protocol']}" if r["protocol"] else None,
            r["state"],
            (r["error"] or {}).get("code"),
        ]
        for r in records
    ]
    return table(["ID", "DOMAIN", "ROUTE", "PROTOCOL", "STATE", "ERROR"], rows)


def progress_line(record: Any) -> str:
    percent = record.progress.get("percent")
    suffix = f" {percent:5.1f}%" if percent is not None and record.state == "perform" else ""
    return f"[{record.id[:8]}] {record.state}{suffix}"


def record_text(record: Any) -> str:
    data = record.public()
    lines = [
        f"Migration {data['id']}",
        f"  domain:      {data['domain']}" + (f" -> {data['dname']}" if data["dname"] else ""),
        f"  route:       {data['source']} -> {data['destination']}",
        f"  protocol:    {'v' + str(data['protocol']) if data['protocol'] else '-'}",
        f"  flags:       {', '.join(data['flags']) or '-'}",
        f"  state:       {data['state']}",
        f"  VM now on:   {data['vm_host']}",
    ]
    if data["error"]:
        lines.append(f"  error:       {data['error']['message']} [{data['error']['code']}]")
    lines.extend(f"  warning:     {w}" for w in data["warnings"])
    lines.append("  phases:")
    for p in data["phases"]:
        tag = " (cancelled)" if p["cancelled"] else ""
        lines.append(f"    v{p['version']} {p['name']}{tag} on {p['host']}: {p['outcome']}")
    return "\n".join(lines)


def evacuation_table(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            i["domain"],
            i["destination"],
            i["state"],
            (i["id"] or "")[:8],
            (i["error"] or {}).get("message"),
        ]
        for i in items
    ]
    return table(["DOMAIN", "DESTINATION", "STATE", "ID", "ERROR"], rows)


def print_event(event_id: str, fields: dict[str, str], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"event": event_id, **fields}), flush=True)
    else:
        previous = fields.get("previous") or "new"
        change = f"{previous} -> {fields['state']}"
        print(f"{fields['at']} {fields['id'][:8]} {fields['domain']}: {change}", flush=True)
