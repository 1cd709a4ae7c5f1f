"""Settings every service shares, read from the environment and validated at start-up."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from services.common.errors import ConfigError

TRANSPORT_ERROR = "transport_settings"  # the error type of a check across fields: names, no values
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


class TransportSettings(BaseSettings):
    """How the services reach Kafka and Redis: TLS, SASL, Redis ACL users (docs/operations.md,
    "Transport security"). Environment variables:

    KAFKA_SECURITY_PROTOCOL     PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL (default PLAINTEXT)
    KAFKA_SASL_MECHANISM        SCRAM-SHA-256 | SCRAM-SHA-512 | PLAIN; required with SASL_*
    KAFKA_SASL_USERNAME         the SASL user; required with SASL_*
    KAFKA_SASL_PASSWORD         its password (secret; never printed); required with SASL_*
    KAFKA_SSL_CAFILE            PEM file of the CA(s) the broker's certificate is checked
                                against (default: the system's); SSL and SASL_SSL only
    KAFKA_SSL_CERTFILE          PEM client certificate, for mTLS (with KAFKA_SSL_KEYFILE)
    KAFKA_SSL_KEYFILE           PEM private key of the client certificate
    KAFKA_SSL_KEY_PASSWORD      the key file's password, when it is encrypted (secret)
    REDIS_USERNAME              Redis ACL user (default: none, or the one in REDIS_URL)
    REDIS_PASSWORD              its password (secret; default: none, or the one in REDIS_URL)
    REDIS_SSL_CA_CERTS          PEM file of the CA(s) Redis's certificate is checked against
                                (default: the system's); needs a rediss:// REDIS_URL
    REDIS_SSL_CERTFILE          PEM client certificate, when Redis asks for one
                                (tls-auth-clients yes), with REDIS_SSL_KEYFILE
    REDIS_SSL_KEYFILE           PEM private key of the client certificate
    Every combination is checked at start-up: a SASL protocol needs mechanism, user and
    password; certificate files must exist; a client certificate needs its key and TLS.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL")
    # the services' producers and the tools' (kafka-python) alike: see CommonSettings
    kafka_idempotent_producer: bool = Field(default=False, validation_alias="KAFKA_IDEMPOTENT_PRODUCER")
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        default=None, validation_alias="KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(
        default=None, min_length=1, max_length=256, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, min_length=1, max_length=1024, validation_alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_cafile: Path | None = Field(default=None, validation_alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: Path | None = Field(default=None, validation_alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: Path | None = Field(default=None, validation_alias="KAFKA_SSL_KEYFILE")
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, min_length=1, max_length=1024, validation_alias="KAFKA_SSL_KEY_PASSWORD")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    redis_username: str | None = Field(
        default=None, min_length=1, max_length=256, validation_alias="REDIS_USERNAME")
    redis_password: SecretStr | None = Field(
        default=None, min_length=1, max_length=1024, validation_alias="REDIS_PASSWORD")
    redis_ssl_ca_certs: Path | None = Field(default=None, validation_alias="REDIS_SSL_CA_CERTS")
    redis_ssl_certfile: Path | None = Field(default=None, validation_alias="REDIS_SSL_CERTFILE")
    redis_ssl_keyfile: Path | None = Field(default=None, validation_alias="REDIS_SSL_KEYFILE")

    @model_validator(mode="after")
    def _consistent(self) -> TransportSettings:
        problems = transport_problems(self)
        if problems:  # a type of its own: the messages hold names only, nothing to redact
            raise PydanticCustomError(TRANSPORT_ERROR, "; ".join(problems))
        return self


def transport_problems(s: TransportSettings) -> list[str]:
    """What is inconsistent in ``s``, each naming its variables (never a value)."""
    problems = []
    protocol = s.kafka_security_protocol
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    if sasl:
        problems += [f"{name} is required with KAFKA_SECURITY_PROTOCOL={protocol}"
                     for name, value in (("KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
                                         ("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
                                         ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password))
                     if value is None]
    else:
        problems += [f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL "
                     f"(SASL_PLAINTEXT or SASL_SSL)"
                     for name, value in (("KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
                                         ("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
                                         ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password))
                     if value is not None]
    kafka_files = (("KAFKA_SSL_CAFILE", s.kafka_ssl_cafile), ("KAFKA_SSL_CERTFILE", s.kafka_ssl_certfile),
                   ("KAFKA_SSL_KEYFILE", s.kafka_ssl_keyfile))
    if not tls:
        problems += [f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS "
                     f"(SSL or SASL_SSL)" for name, value in kafka_files if value is not None]
    if (s.kafka_ssl_certfile is None) != (s.kafka_ssl_keyfile is None):
        problems.append("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (the client "
                        "certificate and its key)")
    if s.kafka_ssl_key_password is not None and s.kafka_ssl_keyfile is None:
        problems.append("KAFKA_SSL_KEY_PASSWORD is set without KAFKA_SSL_KEYFILE")
    scheme = s.redis_url.split("://", 1)[0].lower() if "://" in s.redis_url else ""
    if scheme not in ("redis", "rediss", "unix"):
        problems.append("REDIS_URL must start with redis://, rediss:// (TLS) or unix://")
    redis_files = (("REDIS_SSL_CA_CERTS", s.redis_ssl_ca_certs),
                   ("REDIS_SSL_CERTFILE", s.redis_ssl_certfile), ("REDIS_SSL_KEYFILE", s.redis_ssl_keyfile))
    if scheme != "rediss":
        problems += [f"{name} is set but REDIS_URL is not rediss:// (TLS)"
                     for name, value in redis_files if value is not None]
    if (s.redis_ssl_certfile is None) != (s.redis_ssl_keyfile is None):
        problems.append("REDIS_SSL_CERTFILE and REDIS_SSL_KEYFILE go together (the client "
                        "certificate and its key)")
    if s.redis_username is not None and s.redis_password is None:
        problems.append("REDIS_USERNAME is set without REDIS_PASSWORD")
    for name, path in (*kafka_files, *redis_files):
        if path is not None and not path.is_file():
            problems.append(f"{name}: no such file (or not a file)")
    return problems


class CommonSettings(TransportSettings):
    """Shared settings; the transport's (TLS, SASL, Redis ACL) in TransportSettings. Environment
    variables:

    KAFKA_BOOTSTRAP_SERVERS     comma-separated host:port list (default 127.0.0.1:9092)
    KAFKA_REBALANCE_TIMEOUT     seconds; keep at a few seconds on tansu (default 60)
    KAFKA_MAX_POLL_INTERVAL     seconds a member may go without polling before it is evicted
                                (default 300)
    KAFKA_PROCESSING_GUARANTEE  at_least_once | exactly_once (exactly_once needs real Kafka)
    KAFKA_FETCH_MAX_WAIT        seconds a fetch may wait on the broker for records to arrive
                                (0.001-10, default 0.5). Apache Kafka answers a waiting fetch as
                                soon as a record arrives, so this only paces an idle consumer;
                                tansu answers when the wait ends, so there it is the delay a record
                                waits at each hop (`complaints up` with tansu sets 0.1)
    KAFKA_IDEMPOTENT_PRODUCER   true: the services' and the tools' producers are idempotent (no
                                duplicate from a retried send; needs Apache Kafka, not tansu)
                                (default false)
    REDIS_URL                   redis://host:port/db, rediss:// for TLS; a user and password in
                                it are never printed (default redis://127.0.0.1:6379/0)
    REDIS_PREFIX                key prefix for every key this deployment writes (default complaints:)
    REDIS_AUTO_PIPELINE         true: the commands a service issues in one turn of its event loop
                                (a batch's records at once) go to Redis as one pipeline, each caller
                                getting its own reply (services/common/autopipe.py); false: one
                                round trip per command (default true)
    COMPLAINTS_POLICY_FILE      YAML policy file; the shipped default when unset
    COMPLAINTS_SLA_SCALE        divide every time limit by this, for demos and tests (default 1)
    COMPLAINTS_DATA_DIR         working directory for stream-processor files (default .complaints)
    KAFKA_CONSUMER              batch | faust (default batch): how the router, the SLA monitor and
                                the notifier read their topics. batch: one aiokafka consumer
                                hands each batch fetched to the handlers, a complaint's records
                                in order, different complaints at once, and commits a batch's
                                offsets once it is handled (services/common/consumer.py);
                                faust: faust's agents, a record at a time (the former way; it
                                cost 43-66 % of each service's CPU, docs/performance.md)
    CONSUMER_BATCH_SIZE         KAFKA_CONSUMER=batch: most records in one batch (default 500,
                                1 to 100000)
    CONSUMER_BATCH_WITHIN       KAFKA_CONSUMER=batch: seconds a batch waits after its first record
                                for more (default 0.005, 0 to 10; a hop's added latency at most)
    CONSUMER_BATCHES_IN_FLIGHT  KAFKA_CONSUMER=batch: batches the router, SLA monitor and notifier
                                handle at once (default 8, 1 to 64): a record waits for no batch
                                but the ones before it on its own complaint; offsets commit in order
    AGENT_CONCURRENCY           records each consumer handles at once per input topic (default
                                8); safe because every effect is idempotent, a batch consumer
                                keeps a complaint's records in order, and offsets commit only
                                past records handled
    REBUILD_LOCK_LEASE          seconds the lock of a rebuild from the topics is leased for; the
                                rebuilder renews it, so one that dies holds the other instances
                                up this long at most (default 10)
    OUTAGE_PAUSE_AFTER          seconds a dependency (Redis, the broker, the database) may keep
                                failing before the service pauses consumption: no new record is
                                started, offsets stay uncommitted, complaints_consumer_paused reads
                                1 until it answers (default 30)
    OUTAGE_MAX_BACKOFF          longest wait in seconds between retries of a record while a
                                dependency does not answer (default 10)
    DEADLETTER_MAX_BYTES        largest dead letter in bytes; a larger one keeps the original's first
                                bytes with its size and SHA-256; keep it under the broker's message
                                limit (default 900000; Kafka's default limit is 1048588)
    METRICS_PORT                serve /metrics on this port of its own instead of the service's
                                HTTP port, so that the public API's port carries no metrics and a
                                network policy can open each to its own clients (default: unset,
                                /metrics on the HTTP port)
    HTTP_RETRY_AFTER            seconds a 503 answer (a dependency does not answer) asks the client
                                to wait, in its Retry-After header (default 5)
    LOG_LEVEL                   debug | info | warning | error (default info)
    EVENT_LOOP                  asyncio | uvloop: the service's event loop (default asyncio). uvloop
                                (`pip install uvloop`) is opt-in: with it, faust's consumer thread
                                of two services once hung in an offset commit after the broker was
                                killed (test_chaos_broker, 2026-12-04), see docs/performance.md
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS", min_length=3
    )
    kafka_rebalance_timeout: float = Field(
        default=60.0, gt=0, le=600, validation_alias="KAFKA_REBALANCE_TIMEOUT"
    )
    kafka_max_poll_interval: float = Field(
        default=300.0, gt=0, le=3600, validation_alias="KAFKA_MAX_POLL_INTERVAL"
    )
    kafka_processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once", validation_alias="KAFKA_PROCESSING_GUARANTEE"
    )
    kafka_fetch_max_wait: float = Field(
        default=0.5, ge=0.001, le=10, validation_alias="KAFKA_FETCH_MAX_WAIT"
    )
    redis_auto_pipeline: bool = Field(default=True, validation_alias="REDIS_AUTO_PIPELINE")
    redis_prefix: str = Field(
        default="complaints:", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$",
        validation_alias="REDIS_PREFIX",
    )
    policy_file: Path | None = Field(default=None, validation_alias="COMPLAINTS_POLICY_FILE")
    sla_scale: float = Field(default=1.0, gt=0, le=1_000_000, validation_alias="COMPLAINTS_SLA_SCALE")
    data_dir: Path = Field(default=Path(".complaints"), validation_alias="COMPLAINTS_DATA_DIR")
    agent_concurrency: int = Field(default=8, ge=1, le=256, validation_alias="AGENT_CONCURRENCY")
    consumer: Literal["batch", "faust"] = Field(default="batch", validation_alias="KAFKA_CONSUMER")
    consumer_batch_size: int = Field(default=500, ge=1, le=100_000, validation_alias="CONSUMER_BATCH_SIZE")
    consumer_batch_within: float = Field(default=0.005, ge=0, le=10,
                                         validation_alias="CONSUMER_BATCH_WITHIN")
    consumer_in_flight: int = Field(default=8, ge=1, le=64, validation_alias="CONSUMER_BATCHES_IN_FLIGHT")
    rebuild_lock_lease: float = Field(default=10.0, ge=1, le=600, validation_alias="REBUILD_LOCK_LEASE")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", validation_alias="LOG_LEVEL"
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(default="asyncio", validation_alias="EVENT_LOOP")
    outage_pause_after: float = Field(default=30.0, ge=0, le=3600, validation_alias="OUTAGE_PAUSE_AFTER")
    outage_max_backoff: float = Field(default=10.0, gt=0, le=300, validation_alias="OUTAGE_MAX_BACKOFF")
    deadletter_max_bytes: int = Field(
        default=900_000, ge=10_000, le=100_000_000, validation_alias="DEADLETTER_MAX_BYTES"
    )
    http_retry_after: int = Field(default=5, ge=1, le=3600, validation_alias="HTTP_RETRY_AFTER")
    metrics_port: int | None = Field(default=None, ge=1, le=65535, validation_alias="METRICS_PORT")

    @model_validator(mode="after")
    def _own_metrics_port(self) -> CommonSettings:
        http_port = getattr(self, "http_port", None)  # each service's settings class has one
        if self.metrics_port is not None and self.metrics_port == http_port:
            raise PydanticCustomError(TRANSPORT_ERROR, "METRICS_PORT must differ from the service's "
                                                       "HTTP port (or be unset)")
        return self

    def kafka_urls(self) -> list[str]:
        """Broker URLs in faust's spelling."""
        return [f"kafka://{h.strip()}" for h in self.kafka_bootstrap_servers.split(",") if h.strip()]

    def bootstrap_list(self) -> list[str]:
        """Broker host:port list in kafka-python's spelling."""
        return [h.strip() for h in self.kafka_bootstrap_servers.split(",") if h.strip()]


S = TypeVar("S", bound=BaseSettings)


def _strings(value: Any) -> Iterator[str]:
    """Every string value inside a rejected input (mapping keys are names, not values)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _strings(item)
    elif hasattr(value, "get_secret_value"):
        yield from _strings(value.get_secret_value())


def redact(message: str, rejected: Any, *, shortest: int = 4) -> str:
    """``message`` with every string of the rejected input (``shortest`` characters or more)
    blanked out: a configuration error names the field and the problem, never the value."""
    for text in sorted(set(_strings(rejected)), key=len, reverse=True):
        if len(text) >= shortest and text in message:
            message = message.replace(text, "***")
    return message


def _variable(cls: type[BaseSettings], field: str) -> str:
    info = cls.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    return alias if isinstance(alias, str) else field.upper()


def load_settings(cls: type[S]) -> S:
    """Read ``cls`` from the environment; on error name every bad variable and why.

    The messages name the variable, the field inside it and the problem, never the value:
    a bad INTAKE_SIGNING_SECRETS or NOTIFIER_SMTP must not print its secrets.
    """
    try:
        return cls()
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors():
            if err["type"] == TRANSPORT_ERROR:  # written here: names the variables, no value
                problems.extend(f"environment: {p}" for p in err["msg"].split("; "))
                continue
            field = ".".join(str(p) for p in err["loc"]) or "?"
            problems.append(f"environment: {field.upper()}: {redact(err['msg'], err.get('input'))}")
        raise ConfigError("\n".join(problems)) from None
    except SettingsError as exc:  # a complex field (dict, model) whose JSON does not parse
        found = re.search(r'field "([^"]+)"', str(exc))
        variable = _variable(cls, found.group(1)) if found else "?"
        cause = exc.__cause__
        where = (f" (line {cause.lineno} column {cause.colno}: {cause.msg})"
                 if isinstance(cause, json.JSONDecodeError) else "")
        raise ConfigError(f"environment: {variable}: not valid JSON{where}") from None
