"""Options shared by the long-running commands (worker, dispatcher, api)."""

from __future__ import annotations

import argparse


def add_service_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loglevel", default="WARNING")
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per line, with the migration id",
    )
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
