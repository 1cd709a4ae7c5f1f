"""A PostgreSQL server for the archive's tests: ARCHIVE_TEST_POSTGRES_URL when set, else a private one.

The private server is initialised in a temporary directory (``initdb``), listens on a free
port of 127.0.0.1 and on a socket directory of its own, runs with fsync off, and is stopped
and deleted when the session ends; nothing outside its directory is touched. PostgreSQL
refuses to run as root, so under root it runs as the ``postgres`` user (``runuser``).
Binaries: ARCHIVE_TEST_PG_BINDIR, else Debian's /usr/lib/postgresql/<version>/bin, else
``pg_ctl`` on the PATH; the tests that need a server fail, naming the install step, when there is none.

``fresh_database(url)`` makes a database of its own for one test on that server and drops it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.harness import free_port
from tools.devstack.postgres import bindir

ENV_URL = "ARCHIVE_TEST_POSTGRES_URL"
RUN_AS = "postgres"


_bindir = bindir  # the machine's server binaries, found as `complaints up --postgres` finds them


def _run(cmd: list[str], *, as_user: list[str]) -> None:
    done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def private_server(bindir: Path) -> Iterator[str]:
    """Start a throw-away server; yield the URL of its ``postgres`` database; stop and delete it."""
    base = Path(tempfile.mkdtemp(prefix="archive-pg-"))
    data, sock, logfile = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        for path in (base, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", RUN_AS, "--"]
    port = free_port()
    started = False
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
              "--locale=C", "--no-sync"], as_user=as_user)
        options = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-o", options, "-w",
              "-t", "60", "start"], as_user=as_user)
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"],
                 as_user=as_user)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards; yields its URL."""
    name = f"archive_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL (postgresql+psycopg://...): ARCHIVE_TEST_POSTGRES_URL, else a private server
    started for this session (with a database of the tests' own)."""
    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    bindir = _bindir()
    if bindir is None:
        # a missing server is a missing install step, never a skipped test
        pytest.fail(f"no PostgreSQL server binaries: run scripts/test-deps.sh (Debian's postgresql), "
                    f"or set {ENV_URL} or ARCHIVE_TEST_PG_BINDIR", pytrace=False)
    with private_server(bindir) as server, fresh_database(server) as url:
        yield url
