"""Client configuration for TLS, SASL and Redis ACL users, one function per client library.

Every Kafka and Redis client of the services and tools takes its security settings from here,
so that a deployment sets them once (TransportSettings, docs/operations.md "Transport
security") and the faust app, the archive's aiokafka consumer, the kafka-python tooling and the
Redis clients all follow. None of these functions logs or returns a secret in a printable form
other than the keyword arguments the client libraries themselves need.
"""

from __future__ import annotations

import ssl
from typing import Any

from services.common.settings import TransportSettings, load_settings


def from_environment() -> TransportSettings:
    """The transport settings of this process's environment (validated, as at start-up)."""
    return load_settings(TransportSettings)


def kafka_ssl_context(s: TransportSettings) -> ssl.SSLContext | None:
    """The TLS context of a Kafka connection (None unless the protocol is SSL or SASL_SSL):
    the broker's certificate checked against KAFKA_SSL_CAFILE (or the system's CAs) and its
    host name, the client certificate of mTLS loaded when one is configured."""
    if not s.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile else None)
    if s.kafka_ssl_certfile is not None and s.kafka_ssl_keyfile is not None:
        password = s.kafka_ssl_key_password.get_secret_value() if s.kafka_ssl_key_password else None
        context.load_cert_chain(str(s.kafka_ssl_certfile), str(s.kafka_ssl_keyfile), password=password)
    return context


def _sasl(s: TransportSettings) -> tuple[str, str, str] | None:
    """(mechanism, user, password) of a SASL protocol (the settings made sure all are set)."""
    if not s.kafka_security_protocol.startswith("SASL_"):
        return None
    assert s.kafka_sasl_mechanism and s.kafka_sasl_username and s.kafka_sasl_password  # noqa: S101 - validated
    return s.kafka_sasl_mechanism, s.kafka_sasl_username, s.kafka_sasl_password.get_secret_value()


def faust_credentials(s: TransportSettings) -> Any:
    """The faust app's ``broker_credentials``: None (PLAINTEXT), ``SSLCredentials`` or
    ``SASLCredentials`` (with the TLS context for SASL_SSL)."""
    from faust.auth import SASLCredentials, SSLCredentials

    context, sasl = kafka_ssl_context(s), _sasl(s)
    if sasl is not None:
        mechanism, username, password = sasl
        # SASLCredentials: the protocol is SASL_SSL when a context is given, SASL_PLAINTEXT if not
        return SASLCredentials(username=username, password=password, mechanism=mechanism,
                               ssl_context=context)
    if context is not None:
        return SSLCredentials(context)
    return None


def aiokafka_kwargs(s: TransportSettings) -> dict[str, Any]:
    """Keyword arguments of an ``AIOKafkaConsumer`` / ``AIOKafkaProducer``."""
    kwargs: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    context, sasl = kafka_ssl_context(s), _sasl(s)
    if context is not None:
        kwargs["ssl_context"] = context
    if sasl is not None:
        kwargs["sasl_mechanism"], kwargs["sasl_plain_username"], kwargs["sasl_plain_password"] = sasl
    return kwargs


def kafka_python_kwargs(s: TransportSettings | None = None) -> dict[str, Any]:
    """Keyword arguments of a kafka-python ``KafkaConsumer``, ``KafkaProducer`` or
    ``KafkaAdminClient``; ``s`` defaults to the environment's settings (the tools)."""
    # the same names as aiokafka's (kafka-python takes an SSLContext too)
    return aiokafka_kwargs(s if s is not None else from_environment())


def kafka_python_producer_kwargs(s: TransportSettings | None = None) -> dict[str, Any]:
    """``kafka_python_kwargs`` of a ``KafkaProducer``, idempotent (``enable_idempotence``: the
    broker drops a batch a retry sends twice) when KAFKA_IDEMPOTENT_PRODUCER is on."""
    s = s if s is not None else from_environment()
    kwargs = kafka_python_kwargs(s)
    if s.kafka_idempotent_producer:
        kwargs["enable_idempotence"] = True
    return kwargs


def redis_kwargs(s: TransportSettings) -> dict[str, Any]:
    """Keyword arguments of ``redis.Redis.from_url`` / ``redis.asyncio.from_url`` beyond the URL:
    the ACL user and password (when set apart from the URL) and the TLS files of rediss://."""
    kwargs: dict[str, Any] = {}
    if s.redis_username is not None:
        kwargs["username"] = s.redis_username
    if s.redis_password is not None:
        kwargs["password"] = s.redis_password.get_secret_value()
    if s.redis_url.lower().startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "required"
        kwargs["ssl_check_hostname"] = True
        if s.redis_ssl_ca_certs is not None:
            kwargs["ssl_ca_certs"] = str(s.redis_ssl_ca_certs)
        if s.redis_ssl_certfile is not None and s.redis_ssl_keyfile is not None:
            kwargs["ssl_certfile"] = str(s.redis_ssl_certfile)
            kwargs["ssl_keyfile"] = str(s.redis_ssl_keyfile)
    return kwargs


def sync_redis(s: TransportSettings, **options: Any) -> Any:
    """A synchronous ``redis.Redis`` for ``s`` (the rebuild commands, the tools)."""
    import redis

    return redis.Redis.from_url(s.redis_url, **redis_kwargs(s), **options)
