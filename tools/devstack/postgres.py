"""A PostgreSQL server for `complaints up --postgres`, from the machine's server binaries.

Debian's ``postgresql`` package installs them under /usr/lib/postgresql/<version>/bin (the
newest is taken; ARCHIVE_TEST_PG_BINDIR names another directory). The cluster lives under
``$COMPLAINTS_DATA_DIR/postgres`` (made by ``initdb`` on the first run, kept across runs: the
archive's records survive a restart), listens on 127.0.0.1 only with trust authentication for
the local ``postgres`` user, and runs in the foreground under the supervisor, which stops it
after the services. PostgreSQL refuses to run as root, so under root it runs as the
``postgres`` user (``runuser``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from functools import partial
from pathlib import Path

from tools.devstack.supervisor import Supervisor, UpError

RUN_AS = "postgres"
START_TIMEOUT = 60.0


def bindir() -> Path | None:
    """The directory of ``initdb`` and ``postgres``, or None when the machine has none."""
    given = os.environ.get("ARCHIVE_TEST_PG_BINDIR")
    candidates = [Path(given)] if given else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    return next((c for c in candidates if (c / "initdb").exists() and (c / "postgres").exists()), None)


def run_as() -> list[str]:
    """The prefix that runs a server binary as the ``postgres`` user under root (else none)."""
    return ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []


def own(*paths: Path) -> None:
    """Under root: give the paths to the ``postgres`` user (the server writes there)."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)


def initdb(binaries: Path, data: Path) -> None:
    """Make a cluster in ``data`` (UTF-8, C locale, trust for local connections)."""
    done = subprocess.run(  # noqa: S603 - the machine's own initdb
        [*run_as(), str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "-E", "UTF8", "--locale=C"], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise UpError(f"initdb failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def ensure_postgres(sup: Supervisor, data_dir: Path, port: int) -> str:
    """Start the data dir's PostgreSQL on ``port`` under the supervisor; return its URL."""
    from tools.devstack.infra import tcp_open

    binaries = bindir()
    if binaries is None:
        raise UpError("--postgres: no PostgreSQL server binaries (install Debian's postgresql "
                      "package, or set ARCHIVE_TEST_PG_BINDIR)")
    if tcp_open("127.0.0.1", port):
        raise UpError(f"--postgres: port {port} is already in use (set ARCHIVE_POSTGRES_PORT)")
    base = (data_dir / "postgres").resolve()
    data, sock = base / "data", base / "sock"
    sock.mkdir(parents=True, exist_ok=True)
    own(base, sock)
    if not (data / "PG_VERSION").exists():
        data.mkdir(exist_ok=True)
        own(data)
        initdb(binaries, data)
    argv = [*run_as(), str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
            "-c", "listen_addresses=127.0.0.1"]
    sup.infra.append(sup.spawn("postgres", argv, dict(os.environ)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    sup.wait_for(f"PostgreSQL on 127.0.0.1:{port}", partial(answers, url), timeout=START_TIMEOUT)
    return url


def answers(url: str) -> bool:
    """True when the server at ``url`` accepts a connection."""
    import psycopg

    try:
        with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False
