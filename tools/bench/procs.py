"""The processes of the stack and their CPU, for `complaints bench --rate R --duration S`.

`complaints up` records no pids (its children's logs only), so each member of the stack is
found the way the archive stage finds the archive: by the TCP port it listens on (the services'
HTTP ports, the broker's, Redis's, PostgreSQL's), else by its command line
(``services run NAME``, tansu, ``kafka.Kafka``, valkey-server / redis-server, postgres) when
exactly one process of this machine matches. A member's CPU is that of its process and every
descendant (PostgreSQL's backends), read from ``/proc/<pid>/stat``: utime + stime, plus
cutime + cstime (children already reaped), in clock ticks. Linux only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

SERVICES = ("intake", "router", "sla-monitor", "notifier", "archive", "desk")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", ""})  # noqa: S104 - a name, not a bind


@dataclass(frozen=True)
class ProcStat:
    """The fields of one ``/proc/<pid>/stat`` line the bench uses (times in clock ticks)."""

    pid: int
    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        """CPU of the process and of its children already reaped."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(line: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line; the command name may hold spaces and parentheses."""
    head, sep, rest = line.partition(" (")
    comm, sep2, tail = rest.rpartition(") ")
    if not sep or not sep2:
        raise ValueError(f"not a /proc stat line: {line[:80]!r}")
    f = tail.split()  # f[0] is field 3 (state): field n is f[n - 3]
    if len(f) < 15:
        raise ValueError(f"a /proc stat line with {len(f) + 2} fields: {line[:80]!r}")
    return ProcStat(pid=int(head), comm=comm, ppid=int(f[1]), utime=int(f[11]), stime=int(f[12]),
                    cutime=int(f[13]), cstime=int(f[14]))


def role_of(cmdline: Sequence[str]) -> str | None:
    """What a process of the stack is by its command line: a service's name, "broker",
    "redis" or "postgres"; None for anything else."""
    if not cmdline:
        return None
    args = list(cmdline)
    for i in range(len(args) - 2):
        if args[i].endswith("services") and args[i + 1] == "run" and args[i + 2] in SERVICES:
            return args[i + 2]
    exe = os.path.basename(args[0].split(" ", 1)[0])  # redis and postgres rewrite their title
    if "kafka.Kafka" in args or exe == "tansu" or (
            len(args) > 1 and args[1] == "broker" and "--listener-url" in args):
        return "broker"
    if exe in ("valkey-server", "redis-server"):
        return "redis"
    if exe in ("postgres", "postmaster") or args[0].startswith("postgres:"):
        return "postgres"
    return None


def kind_of(cmdline: Sequence[str]) -> str:
    """What is running, for the report: "tansu", "Apache Kafka", "valkey", ... or the program."""
    if not cmdline:
        return "?"
    exe = os.path.basename(cmdline[0].split(" ", 1)[0])
    if "kafka.Kafka" in cmdline:
        return "Apache Kafka"
    if len(cmdline) > 1 and cmdline[1] == "broker" and "--listener-url" in cmdline:
        return "tansu"
    return {"valkey-server": "valkey", "redis-server": "redis", "postmaster": "postgres"}.get(exe, exe)


def listening_inodes(table: str, port: int) -> set[str]:
    """Socket inodes listening on ``port`` in one ``/proc/net/tcp`` (or tcp6) text."""
    out = set()
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
            out.add(cols[9])
    return out


def tree(pid: int, stats: Mapping[int, ProcStat]) -> list[int]:
    """The process and all its descendants among ``stats``."""
    children: dict[int, list[int]] = {}
    for s in stats.values():
        children.setdefault(s.ppid, []).append(s.pid)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in stats and p not in out:
            out.append(p)
            todo.extend(children.get(p, ()))
    return out


def tree_ticks(roots: Iterable[int], stats: Mapping[int, ProcStat]) -> int:
    """CPU ticks of the roots and their descendants (each process once)."""
    pids: set[int] = set()
    for root in roots:
        pids.update(tree(root, stats))
    return sum(stats[p].ticks for p in pids)


def outermost(pids: Iterable[int], stats: Mapping[int, ProcStat]) -> list[int]:
    """The pids without an ancestor among them (forked workers sharing a socket fold into it)."""
    chosen = set(pids)
    out = []
    for pid in sorted(chosen):
        p, seen = stats[pid].ppid if pid in stats else 0, 0
        while p and p not in chosen and p in stats and seen < 64:
            p, seen = stats[p].ppid, seen + 1
        if not (p and p in chosen):
            out.append(pid)
    return out


def env_value(raw: bytes, name: str) -> str | None:
    """``name``'s value in a ``/proc/<pid>/environ`` (NUL-separated NAME=value)."""
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key.decode(errors="replace") == name:
            return value.decode(errors="replace")
    return None


def local_port(address: str, default: int) -> int | None:
    """The port of host:port, a URL or a bare host when the host is this machine; else None."""
    if "://" in address:
        parts = urlsplit(address)
        host, port = parts.hostname or "", parts.port or default
    else:
        host, sep, raw = address.rpartition(":")
        if not sep:
            host, raw = address, str(default)
        port = int(raw) if raw.isdigit() else default
    return port if host.strip("[]") in LOOPBACK else None


@dataclass(frozen=True)
class Member:
    """One member of the stack: its name, its processes (roots of their trees), how found."""

    name: str
    pids: tuple[int, ...]
    kind: str = ""  # what runs: tansu, Apache Kafka, valkey, python ...
    note: str = ""  # how it was found, or why not


@dataclass
class Sample:
    """CPU ticks by member name at one instant (perf_counter)."""

    at: float
    ticks: dict[str, int] = field(default_factory=dict)


def pick(name: str, role: str, by_port: Sequence[int], stats: Mapping[int, ProcStat],
         cmdlines: Mapping[int, Sequence[str]]) -> Member:
    """The member from its listeners (if any), else the one process whose command line says so."""
    if by_port:
        roots = outermost(by_port, stats)
        kinds = sorted({kind_of(cmdlines.get(p, ())) for p in roots})
        wrong = [p for p in roots if role_of(cmdlines.get(p, ())) not in (role, None)]
        note = "by port" + (f" (listener is {role_of(cmdlines.get(wrong[0], ()))}?)" if wrong else "")
        return Member(name, tuple(roots), "/".join(kinds), note)
    candidates = outermost([p for p, cmd in cmdlines.items() if role_of(cmd) == role], stats)
    if len(candidates) == 1:
        return Member(name, tuple(candidates), kind_of(cmdlines.get(candidates[0], ())),
                      "by command line")
    why = "not found" if not candidates else f"{len(candidates)} processes match: ambiguous"
    return Member(name, (), "", why)


# ---- I/O: /proc -----------------------------------------------------------------------------


def read_stats() -> dict[int, ProcStat]:
    """Every readable process of this machine."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                    s = parse_stat(fh.read())
            except (OSError, ValueError):
                continue
            out[s.pid] = s
    return out


def read_cmdlines(pids: Iterable[int]) -> dict[int, list[str]]:
    """The command line of each pid still there (kernel threads: none)."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        if raw:
            out[pid] = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
    return out


def read_environ(pid: int) -> bytes:
    """The environment a process started with (b"" when not ours)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def listeners(port: int, pids: Iterable[int]) -> list[int]:
    """The pids (of ``pids``) holding a socket listening on ``port``."""
    inodes: set[str] = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as fh:
                inodes |= listening_inodes(fh.read(), port)
        except OSError:
            continue
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    out = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in fds):
                out.append(pid)
        except OSError:  # gone, or not ours
            continue
    return out


def find_stack(ports: Mapping[str, int | None], *, broker: str, redis_url: str,
               database_url: str | None) -> list[Member]:
    """The six services (by ``ports``), the broker, Redis and, when the archive's database is
    a local PostgreSQL, its server. The archive's own environment names its database when
    `complaints up --postgres` gave it one; else ``database_url``."""
    stats = read_stats()
    cmdlines = read_cmdlines(stats)
    members = []
    for name, port in ports.items():
        found = listeners(port, stats) if port else []
        members.append(pick(name, name, found, stats, cmdlines))
    archive = next((m for m in members if m.name == "archive" and m.pids), None)
    if archive is not None:
        database_url = env_value(read_environ(archive.pids[0]), "ARCHIVE_DATABASE_URL") or database_url
    wants = [("broker", "broker", local_port(broker.split(",")[0], 9092)),
             ("redis", "redis", local_port(redis_url, 6379))]
    if database_url and database_url.startswith("postgresql"):
        wants.append(("postgres", "postgres", local_port(database_url, 5432)))
    for name, role, port in wants:
        if port is None:
            members.append(Member(name, (), "", "not on this machine"))
            continue
        members.append(pick(name, role, listeners(port, stats), stats, cmdlines))
    return members


def sample(members: Sequence[Member], at: float) -> Sample:
    """CPU ticks of every member's process trees now."""
    stats = read_stats()
    out = Sample(at)
    for m in members:
        if m.pids:
            out.ticks[m.name] = tree_ticks(m.pids, stats)
    me = stats.get(os.getpid())
    if me is not None:
        out.ticks[BENCH] = me.ticks
    return out


BENCH = "bench (this process)"


def clock_ticks() -> int:
    """Clock ticks per second of /proc's times."""
    return int(os.sysconf("SC_CLK_TCK"))
