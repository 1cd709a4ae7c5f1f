"""Faust wiring shared by every service: app factory, publisher, web (health, metrics), start-up."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import faust
import faust.transport.drivers as faust_transports
import redis.asyncio as aioredis
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers import aiokafka as aiokafka_driver
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from schemas.envelope import Envelope
from schemas.topics import PARTITIONS, TopicSpec
from services.common.autopipe import AutoPipelineRedis
from services.common.boundary import raw_topic
from services.common.settings import CommonSettings
from services.common.transport import faust_credentials, redis_kwargs

log = logging.getLogger(__name__)
# the METRICS_PORT of each app make_app built (add_web reads it)
_METRICS_PORTS: weakref.WeakKeyDictionary[faust.App, int] = weakref.WeakKeyDictionary()
# the KAFKA_FETCH_MAX_WAIT (ms) of each app make_app built (its consumer thread reads it)
_FETCH_WAITS: weakref.WeakKeyDictionary[faust.App, int] = weakref.WeakKeyDictionary()


class TunedConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's aiokafka consumer thread with the fetch wait of KAFKA_FETCH_MAX_WAIT instead of
    faust's fixed 1.5 s, which on a broker that answers a fetch only when its wait ends (tansu)
    delays every record by up to that much at every hop."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = _FETCH_WAITS.get(cast(faust.App, self.app))
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms  # read when start() builds the fetcher
        return consumer


class TunedConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer on TunedConsumerThread."""

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TunedTransport(aiokafka_driver.Transport):
    """The aiokafka transport with TunedConsumer; URL scheme ``kafka-tuned://``."""

    Consumer = TunedConsumer


class IdempotentProducer(aiokafka_driver.Producer):
    """faust's aiokafka producer with ``enable_idempotence``: the broker drops a batch a retry
    sends twice (KAFKA_IDEMPOTENT_PRODUCER; Apache Kafka, not tansu)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class IdempotentTransport(TunedTransport):
    """TunedTransport with IdempotentProducer; URL scheme ``kafka-idempotent://``."""

    Producer = IdempotentProducer


faust_transports.TRANSPORTS.aliases.setdefault(
    "kafka-tuned", f"{__name__}:{TunedTransport.__name__}")
faust_transports.TRANSPORTS.aliases.setdefault(
    "kafka-idempotent", f"{__name__}:{IdempotentTransport.__name__}")


def broker_urls(settings: CommonSettings) -> list[str]:
    """The broker URLs for faust: ``kafka-tuned://`` (the fetch wait of KAFKA_FETCH_MAX_WAIT), or
    ``kafka-idempotent://`` (the same with idempotent producers) when KAFKA_IDEMPOTENT_PRODUCER
    is on."""
    scheme = "kafka-idempotent://" if settings.kafka_idempotent_producer else "kafka-tuned://"
    return [url.replace("kafka://", scheme, 1) for url in settings.kafka_urls()]


def make_app(service: str, settings: CommonSettings, *, web_port: int) -> faust.App:
    """Build the service's faust app; one consumer group per service."""
    timeout = settings.kafka_rebalance_timeout
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"complaints-{service}",
        broker=broker_urls(settings),
        broker_credentials=faust_credentials(settings),  # TLS / SASL (services/common/transport.py)
        store="memory://",
        autodiscover=False,
        topic_partitions=PARTITIONS,
        topic_disable_leader=True,
        processing_guarantee=settings.kafka_processing_guarantee,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_rebalance_timeout=timeout,
        broker_session_timeout=timeout,
        broker_heartbeat_interval=max(timeout / 10, 0.3),
        # Separate from the rebalance timeout: a burst that fills faust's buffers may
        # keep the fetcher from polling for a while, and must not evict the member.
        broker_max_poll_interval=settings.kafka_max_poll_interval,
        web_port=web_port,
        web_bind="0.0.0.0",  # noqa: S104 - metrics and health must be reachable by scrapers
        web_host="127.0.0.1",
        datadir=str(settings.data_dir / f"{service}-{web_port}"),
        web_cors_options=None,
    )
    if settings.metrics_port is not None:
        _METRICS_PORTS[app] = settings.metrics_port
    _FETCH_WAITS[app] = max(1, round(settings.kafka_fetch_max_wait * 1000))
    return app


class FaustPublisher:
    """Publisher over the faust producer; waits for the broker's acknowledgement."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._topics: dict[str, faust.TopicT] = {}

    async def publish(self, topic: TopicSpec, event: Envelope) -> None:
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: TopicSpec, events: Sequence[Envelope]) -> None:
        t = self._topics.get(topic.name)
        if t is None:
            t = self._topics[topic.name] = raw_topic(self._app, topic)
        # force=True: send now, not when the consumed event is acked, so the
        # effect is on the broker before the input offset can be committed.
        # All sends go out before any is awaited: the producer batches them.
        futures = [await t.send(key=e.key(), value=e.to_bytes(), force=True) for e in events]
        await asyncio.gather(*futures)


LAG_INTERVAL = 5.0  # seconds between consumer-lag readings


def add_web(app: faust.App, *, service: str, registry: CollectorRegistry,
            check: Callable[[], Awaitable[object]],
            lag: Callable[[], dict[str, int]] | None = None) -> None:
    """Serve /healthz (200 when dependencies answer) and /metrics (Prometheus); ``lag``: the
    consumer lag by topic of a consumer of the service's own (default: faust's consumer).

    With METRICS_PORT set, /metrics is served on that port only, not on the service's HTTP
    port (the public API's, for intake and the desk); /healthz stays on the HTTP port.
    """

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        try:
            await asyncio.wait_for(check(), timeout=2.0)
        except Exception as exc:  # health reports every failure, whatever its kind
            return web.json({"status": "unavailable", "service": service,
                             "error": type(exc).__name__}, status=503)
        return web.json({"status": "ok", "service": service})

    metrics_port = _METRICS_PORTS.get(app)
    if metrics_port is None:
        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])
    else:
        @app.task  # type: ignore[untyped-decorator]
        async def metrics_server() -> None:
            await serve_metrics(registry, metrics_port)

    # the scrape adds the service label (deploy/prometheus/prometheus.yml)
    lag_gauge = Gauge("complaints_consumer_lag", "Records of an input topic not yet committed by "
                      "this instance's consumer (its assigned partitions).", ["topic"],
                      registry=registry)

    @app.timer(interval=LAG_INTERVAL)  # type: ignore[untyped-decorator]
    async def consumer_lag() -> None:
        try:
            if lag is not None:  # a consumer of the service's own (the archive's batch consumer)
                for topic, behind in lag().items():
                    lag_gauge.labels(topic).set(behind)
                return
            for topic, behind in lag_of(app.consumer).items():
                lag_gauge.labels(topic).set(behind)
        except Exception:  # a metric must never stop the service
            log.exception("consumer lag reading failed")


def lag_of(consumer: Any) -> dict[str, int]:
    """Records behind per input topic of a faust consumer's assigned partitions; none while its
    consumer has not started (the desk, which reads no topic, never starts one)."""
    try:
        assigned = consumer.assignment()
    except ConsumerNotStarted:
        return {}
    per_topic: dict[str, int] = {}
    commits = getattr(consumer, "_committed_offset", {})  # faust's own record of commits
    for tp in assigned:
        high = consumer.highwater(tp)  # None until the first fetch after an assignment
        if high is None:
            continue
        per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(0, high - (commits.get(tp) or 0))
    return per_topic


async def serve_metrics(registry: CollectorRegistry, port: int) -> None:
    """Serve GET /metrics of ``registry`` on ``port`` (all interfaces) until cancelled."""
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    server = web.Application()
    server.router.add_get("/metrics", metrics)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - for the scraper
        log.info("metrics on port %d", port)
        await asyncio.Event().wait()  # until the app stops and cancels this task
    finally:
        await runner.cleanup()


async def always_ready() -> bool:
    """The health check of a service given every port (tests): nothing to ping."""
    return True


def redis_client(settings: CommonSettings) -> aioredis.Redis:
    """An asyncio Redis client (connections are made lazily, on first use); TLS and the ACL
    user as the settings say; pipelining the commands of one loop turn (REDIS_AUTO_PIPELINE)."""
    cls = AutoPipelineRedis if settings.redis_auto_pipeline else aioredis.Redis
    return cls.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5,
                        **redis_kwargs(settings))


def run_worker(app: faust.App, *, log_level: str) -> None:
    """Run the faust worker until SIGINT / SIGTERM."""
    from faust.worker import Worker

    Worker(app, loglevel=log_level, quiet=True).execute_from_commandline()


def use_event_loop(name: str) -> None:
    """Make ``name`` (uvloop or asyncio) the event loop of the loops made from now on: the worker's
    and faust's consumer thread's; before the app is built. uvloop (opt-in, not a dependency)
    falls back to asyncio, with a warning, where it is not installed."""
    if name != "uvloop":
        return
    try:
        import mode.loop

        mode.loop.use("uvloop")
    except ImportError:
        log.warning("EVENT_LOOP=uvloop, but uvloop is not installed: running on asyncio's loop")


def serve(build: Callable[..., faust.App], settings_cls: type[CommonSettings]) -> None:
    """A service's start-up: read settings and policy (validated), build, run."""
    from services.common.policy import load_policy
    from services.common.settings import load_settings

    settings = load_settings(settings_cls)
    logging.basicConfig(level=settings.log_level.upper())
    use_event_loop(settings.event_loop)
    run_worker(build(settings, load_policy(settings.policy_file)), log_level=settings.log_level)
