"""Small exceptions that steer the consumer boundary, and the one rule that tells an outage
from bad input (``is_transient``)."""

from __future__ import annotations

import aiokafka.errors as aiokafka_errors
import kafka.errors as kafka_errors
import redis.exceptions as redis_errors
from faust.exceptions import ProducerSendError


class ConfigError(Exception):
    """Configuration is invalid; the message names file, field and problem."""


class Rejected(Exception):
    """Input is permanently bad: dead-letter it with this reason and go on."""


class Retry(Exception):
    """The effect cannot be done yet (missing state, busy dependency); try again later."""

    def __init__(self, reason: str, *, delay: float = 0.5) -> None:
        super().__init__(reason)
        self.delay = delay


# Redis replies that mean "not now": out of memory (maxmemory), a replica after a failover
# (READONLY), a server loading its data set (LOADING), a cluster moving or missing slots.
REDIS_TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError,
    redis_errors.OutOfMemoryError, redis_errors.ReadOnlyError, redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
)
# the error codes of such replies, for a ResponseError redis-py did not map to a class
# (an error raised by a script, a proxy, a newer server)
REDIS_TRANSIENT_CODES = ("OOM", "READONLY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN",
                         "MISCONF", "BUSY", "NOREPLICAS")
# Broker errors the client library does not mark retriable but that mean the broker (or
# our producer) is not there now: a send that expired waiting, no broker, a closed producer.
KAFKA_TRANSIENT: tuple[type[BaseException], ...] = (
    aiokafka_errors.KafkaTimeoutError, aiokafka_errors.KafkaConnectionError,
    aiokafka_errors.KafkaUnavailableError, aiokafka_errors.BrokerNotAvailableError,
    aiokafka_errors.ProducerClosed, kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaConnectionError,
)
_KAFKA_RETRIABLE: tuple[type[BaseException], ...] = tuple(
    cls for module in (aiokafka_errors, kafka_errors) for cls in vars(module).values()
    if isinstance(cls, type) and issubclass(cls, Exception) and getattr(cls, "retriable", False) is True
)
TRANSIENT: tuple[type[BaseException], ...] = (
    Retry, *REDIS_TRANSIENT, *KAFKA_TRANSIENT, *_KAFKA_RETRIABLE, ConnectionError, TimeoutError, OSError,
)
"""The transient classes, for ``except`` clauses; ``is_transient`` is the full rule."""


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` means a dependency does not answer now: wait and retry, never dead-letter.

    Redis: no connection, a timeout, OOM, READONLY (a failover), LOADING, TRYAGAIN, CLUSTERDOWN
    (by class or by the reply's error code). Kafka: every error its client marks ``retriable``
    (not leader, request timed out, no node ready, ...) and a send that timed out or found no
    broker; faust's ``ProducerSendError`` is judged by its cause. Also ``Retry`` and the
    operating system's connection errors and timeouts.
    """
    if isinstance(exc, ProducerSendError) and exc.__cause__ is not None:
        return is_transient(exc.__cause__)
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, aiokafka_errors.KafkaError | kafka_errors.KafkaError):
        return getattr(exc, "retriable", False) is True
    if isinstance(exc, redis_errors.ResponseError):
        code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
        return code in REDIS_TRANSIENT_CODES
    return False
