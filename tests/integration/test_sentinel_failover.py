"""Redis behind Sentinel loses its master mid-stream, twice: the fleet follows the failover by
itself, and every acknowledged migration ends with its VM on exactly one host.

Real processes on loopback: a master, a replica and three sentinels (redis-server, on ports of
this test's own), four sim hosts and two dispatchers on a ``sentinel://`` broker URL, and the
CLI submitting a stream of migrations, some queued for a few seconds later.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from broker import keys
from broker.connection import redis_client
from tasks.record import epoch
from tasks.registry import read_inventory
from tasks.store import RecordStore
from tests.conftest import FAST_RECOVERY, require_redis
from tests.helpers import cli, max_in_flight, vm_xml
from tests.redis_server import launch_redis, on_free_port

HOSTS = ["sa", "sb", "sc", "sd"]
VMS = [f"svm{i}" for i in range(8)]
MASTER = "vmigrate"


@dataclass(frozen=True)
class Security:
    """Passwords and TLS of the bed; none by default."""

    password: str = ""  # the master's and replica's (requirepass, masterauth)
    sentinel_password: str = ""  # the sentinels' own (requirepass)
    certificates: tuple[Path, Path, Path] | None = None  # CA, certificate, key (all servers)

    def client_options(self, sentinel: bool) -> dict[str, object]:
        options: dict[str, object] = {"decode_responses": True, "socket_connect_timeout": 0.5}
        password = self.sentinel_password if sentinel else self.password
        if password:
            options["password"] = password
        if self.certificates:
            ca = str(self.certificates[0])
            options.update(ssl=True, ssl_ca_certs=ca, ssl_cert_reqs="required")
        return options

    def server_lines(self) -> list[str]:
        """Configuration lines every server of the bed shares (TLS)."""
        if not self.certificates:
            return []
        ca, cert, key = self.certificates
        return [
            f"tls-cert-file {cert}",
            f"tls-key-file {key}",
            f"tls-ca-cert-file {ca}",
            "tls-auth-clients no",
            "tls-replication yes",
        ]


def plain(port: int, security: Security = Security(), sentinel: bool = False) -> redis.Redis:
    return redis.Redis(port=port, **security.client_options(sentinel))  # type: ignore[arg-type]


@dataclass
class Bed:
    """The Redis servers and sentinels, each ended by its pid."""

    directory: Path
    security: Security = Security()
    servers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    sentinels: list[int] = field(default_factory=list)

    def _listen(self, port: int) -> list[str]:
        if self.security.certificates:
            return ["port 0", f"tls-port {port}"]
        return [f"port {port}"]

    def start_server(self, port: int, *lines: str) -> None:
        data = self.directory / f"redis-{port}"
        data.mkdir(exist_ok=True)
        conf = data / "redis.conf"
        password = self.security.password
        auth = [f"requirepass {password}", f"masterauth {password}"] if password else []
        base = [*self._listen(port), "bind 127.0.0.1", 'save ""', "appendonly no", f"dir {data}"]
        settings = [*base, *self.security.server_lines(), *auth, *lines]
        conf.write_text("\n".join(settings) + "\n")
        self.servers[port] = launch_redis([str(conf)], plain(port, self.security))

    def start_sentinel(self, port: int, master_port: int) -> None:
        conf = self.directory / f"sentinel-{port}.conf"
        lines = [
            *self._listen(port),
            "bind 127.0.0.1",
            f"dir {self.directory}",
            f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {MASTER} 1000",
            f"sentinel failover-timeout {MASTER} 6000",
            f"sentinel parallel-syncs {MASTER} 1",
            *self.security.server_lines(),
        ]
        if self.security.password:
            lines.append(f"sentinel auth-pass {MASTER} {self.security.password}")
        if self.security.sentinel_password:
            lines += [
                f"requirepass {self.security.sentinel_password}",
                f"sentinel sentinel-pass {self.security.sentinel_password}",
            ]
        conf.write_text("\n".join(lines) + "\n")
        self.servers[port] = launch_redis(
            [str(conf), "--sentinel"], plain(port, self.security, sentinel=True)
        )
        self.sentinels.append(port)

    def kill(self, port: int) -> None:
        proc = self.servers.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def sentinel(self, port: int) -> redis.Redis:
        return plain(port, self.security, sentinel=True)

    def server(self, port: int) -> redis.Redis:
        return plain(port, self.security)

    def master_port(self) -> int:
        _host, port = self.sentinel(self.sentinels[0]).sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def url(self) -> str:
        auth = f":{self.security.password}@" if self.security.password else ""
        parts = [f"sentinel://127.0.0.1:{p}" for p in self.sentinels]
        parts[0] = parts[0].replace("sentinel://", f"sentinel://{auth}")
        tls = ""
        if self.security.certificates:
            tls = f"?ssl_cert_reqs=required&ssl_ca_certs={self.security.certificates[0]}"
        return ";".join(parts) + "/0" + tls

    def stop(self) -> None:
        for port in list(self.servers):
            self.kill(port)


def until(check, what: str, timeout: float = 60.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def watching(bed: Bed, replicas: int) -> bool:
    """Every sentinel knows the master, its replicas and the two other sentinels."""
    for port in bed.sentinels:
        s = bed.sentinel(port)
        if len(s.sentinel_sentinels(MASTER)) < 2 or len(s.sentinel_slaves(MASTER)) < replicas:
            return False
        ok = [r for r in s.sentinel_slaves(MASTER) if "s_down" not in r["flags"]]
        if len(ok) < replicas:
            return False
    return True


def start_bed(directory: Path, security: Security = Security()) -> Bed:
    """A master, its replica and three sentinels watching them."""
    from tests.redis_server import free_port

    bed = Bed(directory, security)
    try:
        master, replica = free_port(), free_port()
        bed.start_server(master)
        bed.start_server(replica, f"replicaof 127.0.0.1 {master}")
        for _ in range(3):
            on_free_port(lambda port: bed.start_sentinel(port, master))
        until(lambda: watching(bed, 1), "the sentinels watching the master and replica")
    except BaseException:
        bed.stop()
        raise
    return bed


@pytest.fixture
def bed(tmp_path):
    require_redis()
    bed = start_bed(tmp_path)
    try:
        yield bed
    finally:
        bed.stop()


@dataclass
class Stream:
    """The CLI submitting migrations as an operator's tool would, and what it was told."""

    env: dict[str, str]
    home: Path
    store: RecordStore
    acknowledged: list[str] = field(default_factory=list)
    calls: list[tuple[float, float, bool]] = field(default_factory=list)  # start, end, accepted
    errors: list[str] = field(default_factory=list)  # what the CLI said when it failed
    tracebacks: list[str] = field(default_factory=list)  # with VMIGRATE_DEBUG=1
    stop: threading.Event = field(default_factory=threading.Event)

    def submit(self, vm: str, source: str, destination: str, *extra: str) -> None:
        start = time.time()
        done = cli(
            self.env, self.home, "migrate", vm, "--from", source, "--to", destination,
            "--live", *extra, timeout=120,
        )  # fmt: skip
        accepted = done.returncode == 0
        self.calls.append((start, time.time(), accepted))
        if accepted:
            self.acknowledged.append(done.stdout.strip())
        else:
            self.errors.append(done.stderr.strip().splitlines()[-1][-300:])
            self.tracebacks.append(done.stderr)

    def run(self, location: dict[str, str]) -> None:
        """Move each VM on, one migration in flight per VM, until told to stop."""
        latest: dict[str, str] = {}
        turn = 0
        while not self.stop.is_set():
            vm = VMS[turn % len(VMS)]
            turn += 1
            record = self.store.get(latest[vm]) if vm in latest else None
            if record is not None and not record.terminal:
                time.sleep(0.05)
                continue
            if record is not None:
                location[vm] = record.vm_host or location[vm]
            source = location[vm]
            destination = HOSTS[(HOSTS.index(source) + 1 + turn % 3) % len(HOSTS)]
            before = len(self.acknowledged)
            extra = ()
            if turn % 5 == 0:  # queued: due a few seconds from now
                due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
                extra = ("--not-before", due.isoformat())
            self.submit(vm, source, destination, *extra)
            if len(self.acknowledged) > before:
                latest[vm] = self.acknowledged[-1]
            else:  # refused, or its answer lost: look where the VM is now
                location[vm] = self.host_of(vm) or location[vm]

    def host_of(self, vm: str) -> str | None:
        for host in HOSTS:
            for dom in read_inventory(self.store.redis, host) or []:
                if dom["name"] == vm and dom["state"] == "running":
                    return host
        return None


def wait_all_ended(store: RecordStore, ids: list[str], timeout: float = 180.0) -> list:
    if not ids:
        return []

    def ended():
        records = [store.get(i) for i in ids]
        return records if all(r is not None and r.terminal for r in records) else None

    try:
        return until(ended, "every acknowledged migration ending", timeout, every=0.5)
    except AssertionError:
        left = [store.get(i) for i in ids]
        raise AssertionError(
            [
                (i, r and (r.state, r.step, r.updated))
                for i, r in zip(ids, left, strict=True)
                if not (r and r.terminal)
            ]
        ) from None


def one_host_each(client, records_by_vm) -> dict[str, str]:
    """Where each VM runs: exactly one host, the one its last migration left it on."""
    where: dict[str, list[str]] = {vm: [] for vm in VMS}
    for host in HOSTS:
        for dom in read_inventory(client, host) or []:
            if dom["name"] in where and dom["state"] in ("running", "paused"):
                where[dom["name"]].append(host)
    assert all(len(hosts) == 1 for hosts in where.values()), where
    return {vm: hosts[0] for vm, hosts in where.items()}


def longest_outage(calls, killed: float) -> float:
    """From the kill to the first submission started after it that was accepted."""
    after = [end for start, end, ok in calls if ok and start >= killed]
    return (min(after) - killed) if after else float("inf")


def fail_over(bed: Bed, stream: Stream, after: int) -> tuple[float, float]:
    """Once ``after`` migrations were acknowledged, SIGKILL the master; the sentinels promote the
    replica; the old master comes back, as a replica. Returns when it was killed, and how long
    the fleet accepted no submission after."""
    until(lambda: len(stream.acknowledged) >= after, "a stream under way")
    old = bed.master_port()
    killed = time.time()
    bed.kill(old)  # SIGKILL, mid-stream
    until(lambda: bed.master_port() != old, "the sentinels promoting the replica", 30)
    until(lambda: longest_outage(stream.calls, killed) < float("inf"), "a submission", 60)
    outage = longest_outage(stream.calls, killed)
    time.sleep(3)  # the subject: migrations run on the new master for a while
    bed.start_server(old)
    replication = lambda: bed.server(old).info("replication")  # noqa: E731
    until(lambda: replication()["role"] == "slave", "the old master a replica again")
    until(lambda: replication().get("master_link_status") == "up", "the old master in sync")
    until(lambda: watching(bed, 1), "the sentinels watching the new pair")
    return killed, outage


def standstill(client, killed: float) -> float:
    """How long no migration changed state across the kill (the events' own times)."""
    times = sorted(epoch(fields["at"]) for _, fields in client.xrange(keys.events()))
    before = max((t for t in times if t <= killed), default=killed)
    after = min((t for t in times if t > killed), default=float("inf"))
    return after - before


def test_the_fleet_rides_out_two_sentinel_failovers(bed, tmp_path, record_property):
    url = bed.url()
    env = {
        "VMIGRATE_BROKER_URL": url,
        "VMIGRATE_SENTINEL_MASTER": MASTER,
        **FAST_RECOVERY,
        "VMIGRATE_CONFIG": "",
        "VMIGRATE_DEBUG": "1",  # a command that loses the broker says where
    }
    home = tmp_path / "home"
    client = redis_client(url, MASTER)
    store = RecordStore(client, 3600)
    from vmigrate.fleet import LocalFleet

    fleet = LocalFleet(env, home)
    stream = Stream(env, home, store)
    try:
        for host in HOSTS:
            fleet.start_host(host, "--link-mibps", "128")
        fleet.start_dispatcher("dispatcher-1")
        fleet.start_dispatcher("dispatcher-2")
        fleet.wait_ready(client, HOSTS)
        pids = {name: p.pid for name, p in fleet.processes.items()}
        location = {}
        for i, vm in enumerate(VMS):
            path = tmp_path / f"{vm}.xml"
            path.write_text(vm_xml(vm, memory_mib=256))
            host = HOSTS[i % len(HOSTS)]
            defined = cli(env, home, "define", host, str(path), "--start", timeout=60)
            assert defined.returncode == 0, defined.stderr
            location[vm] = host

        submitter = threading.Thread(target=stream.run, args=(location,), daemon=True)
        submitter.start()
        kills = [fail_over(bed, stream, 6 * n) for n in (1, 2)]
        stream.stop.set()
        submitter.join(150)

        records = wait_all_ended(store, list(stream.acknowledged))
        assert len(set(stream.acknowledged)) == len(stream.acknowledged) >= 12
        # None lost. A record nobody was told of may exist only for a call that failed (its
        # answer lost in the failover): it must end like the others.
        recorded = client.zrange(keys.migrations(), 0, -1)
        assert set(stream.acknowledged) <= set(recorded)
        untold = [i for i in recorded if i not in set(stream.acknowledged)]
        assert len(untold) <= len(stream.errors), (untold, stream.errors)
        records += wait_all_ended(store, untold)
        for r in records:
            assert r.state in ("completed", "failed"), (r.id, r.state, r.error)
            if r.state == "failed":
                assert r.vm_host == r.source, (r.id, r.error)  # rolled back
        last = {}
        for r in sorted(records, key=lambda r: epoch(r.created)):
            last[r.domain] = r
        where = one_host_each(client, last)
        assert all(where[vm] == last[vm].vm_host for vm in last), (where, last)
        ran = [r for r in records if r.phases and all(p.ended for p in r.phases)]
        fleet_peak, out_peak, in_peak = max_in_flight(ran)
        assert fleet_peak <= 5 and max(out_peak.values()) <= 2 and max(in_peak.values()) <= 2
        assert {n: p.pid for n, p in fleet.processes.items()} == pids  # nobody was restarted
        assert all(p.poll() is None for p in fleet.processes.values())
        completed = sum(r.state == "completed" for r in records)
        refused = [outage for _, outage in kills]
        still = [standstill(client, killed) for killed, _ in kills]
        record_property("failover_no_submission_seconds", [round(o, 2) for o in refused])
        record_property("failover_no_state_change_seconds", [round(s, 2) for s in still])
        for told in stream.tracebacks:
            print("\n" + told[-3000:])
        print(
            f"\n{len(records)} migrations ({completed} completed) across two failovers; "
            f"submissions accepted again {refused[0]:.1f} s and {refused[1]:.1f} s after the "
            f"kill; no state changed for {still[0]:.1f} s and {still[1]:.1f} s; "
            f"{len(stream.errors)} submissions refused or unanswered: {stream.errors}"
        )
    finally:
        stream.stop.set()
        fleet.stop_all()


def test_passwords_and_tls_hold_for_redis_and_the_sentinels_across_a_failover(tmp_path):
    require_redis()
    from tests.integration.test_redis_tls import make_certificates
    from vmigrate.fleet import LocalFleet

    security = Security("redis-secret", "sentinel-secret", make_certificates(tmp_path))
    bed = start_bed(tmp_path, security)
    home = tmp_path / "home"
    env = {
        "VMIGRATE_BROKER_URL": bed.url(),
        "VMIGRATE_SENTINEL_PASSWORD": security.sentinel_password,
        **FAST_RECOVERY,
        "VMIGRATE_CONFIG": "",
    }
    fleet = LocalFleet(env, home)
    try:
        master = bed.master_port()
        with pytest.raises(redis.AuthenticationError):
            plain(master, Security(certificates=security.certificates)).ping()  # no password
        with pytest.raises(redis.ConnectionError):
            plain(master, Security(password=security.password)).ping()  # no TLS
        client = redis_client(bed.url(), MASTER, security.sentinel_password)
        fleet.start_host("ta")
        fleet.start_host("tb")
        fleet.start_dispatcher()
        fleet.wait_ready(client, ["ta", "tb"])
        path = tmp_path / "tvm.xml"
        path.write_text(vm_xml("tvm"))
        assert cli(env, home, "define", "ta", str(path), "--start").returncode == 0
        there = cli(env, home, "migrate", "tvm", "--from", "ta", "--to", "tb", "--live", "--wait")
        assert there.returncode == 0, there.stderr

        bed.kill(master)
        until(lambda: bed.master_port() != master, "the sentinels promoting the replica", 30)
        back = cli(env, home, "migrate", "tvm", "--from", "tb", "--to", "ta", "--live", "--wait")
        assert back.returncode == 0, back.stderr
        running = [
            host
            for host in ("ta", "tb")
            for dom in read_inventory(client, host) or []
            if dom["name"] == "tvm" and dom["state"] == "running"
        ]
        assert running == ["ta"]
    finally:
        fleet.stop_all()
        bed.stop()
