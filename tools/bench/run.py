"""`complaints bench`: drive complaints through the running stack and print figures.

Every run first takes a raw broker baseline with kafka-python: N records of the same size
produced and flushed to ``complaints.bench-baseline``, then consumed back; then the same with
aiokafka (faust's client, as the services run it: acks=all, idempotent under
KAFKA_IDEMPOTENT_PRODUCER). The ratios divide by each (kafka-python's as in the earlier
figures). Then one stage (``--stage``):

* ``pipeline`` (Kafka only): N ``inbound.received`` events to ``complaints.inbound`` while a
  watcher thread reads ``complaints.routed`` and ``complaints.notifications`` and matches them
  by ``correlationid``; figures up to the acknowledgement sent.
* ``pipeline`` with ``--rate R --duration S`` (Kafka or HTTP): the steady mode, an open-loop
  load of R complaints/s, figures per hop, the backlog left, the CPU of every process of the
  stack (tools/bench/steady_run.py).
* ``intake --via kafka``: the same N inbound events; the watcher reads
  ``complaints.registered`` (and ``complaints.deadletter``, to stop early on failures);
  registrations/s = N / (last registration seen - first inbound sent).
* ``router``: N ``complaint.registered`` events straight to ``complaints.registered``
  (synthetic complaints, each of its own customer, rotating texts); the watcher reads
  ``complaints.routed``; decisions/s = N / (last decision seen - first registration sent).
  Run it with the router alone, or say which other services share the cores.
* ``notifier``: the same N registered events, each with an e-mail contact; the watcher
  reads ``complaints.notifications`` until every acknowledgement is recorded sent;
  notifications/s = N / (last sent - first registration produced). Run it with the
  notifier alone (its transports as configured: the file outbox by default).
* ``sla``: N routed complaints straight to ``complaints.routed``, received an hour ago give
  or take, so that their acknowledge and respond deadlines (1 h, general) fall due over
  the next ``SLA_SPREAD`` seconds, after ``SLA_LEAD`` seconds in which the monitor takes
  the burst of started and warning alerts. The watcher reads ``complaints.sla``; lateness
  is each breach's emission time (``observed_at``) and its arrival here, minus its
  deadline. Needs the monitor at scale 1 (``complaints up`` without ``--sla-scale``).
* ``intake --via http``: N signed ``web_form`` POSTs over ``--concurrency`` keep-alive
  connections (one per thread). A 202 means the registration is on the broker (intake waits
  for the ack), so registrations/s = 202 answers / wall time of the POST phase.

Watchers read all partitions from the end offsets taken before producing (no group).
Latencies are ``perf_counter`` spans in this process. Nothing personal is printed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from schemas.topics import DEADLETTER, INBOUND, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings, load_settings
from services.common.transport import (
    from_environment,
    kafka_python_kwargs,
    kafka_python_producer_kwargs,
)
from services.intake import auth
from services.intake.signing import load_secrets
from tools.bench import BenchError
from tools.bench import report as rpt
from tools.bench.kafka import (
    BASELINE,
    WATCH_FETCH_WAIT_MS,
    aio_baseline,
    baseline,
    partitions,
    produce,
    start_at_end,
    watch,
)
from tools.bench.load import (
    SLA_LEAD,
    SLA_SPREAD,
    inbound_records,
    registered_records,
    routed_records,
    web_form_bodies,
)
from tools.bench.steady import check_flags, steady_senders
from tools.bench.web import Answer, check_healthy, post_all

log = logging.getLogger(__name__)

SLA_BREACHED = ("acknowledge", "respond")  # the milestones that breach within the run
DEFAULT_COUNT = 2000  # the burst's N (and the baselines')
DEFAULT_CONCURRENCY = 16  # the burst's HTTP connections


def bench(*, count: int | None = None, timeout: float, stage: str = "pipeline", via: str = "kafka",
          concurrency: int | None = None, intake_url: str | None = None, intake_processes: int = 1,
          redis_footprint: bool = False, archive: ArchiveOptions | None = None,
          rate: float | None = None, duration: float | None = None, steady: float | None = None
          ) -> int:
    """Run the baseline, then the stage; print the figures. 0 complete, 1 incomplete, 2 error.

    ``count`` (default DEFAULT_COUNT) is the burst; ``rate`` with ``duration`` the pipeline's
    steady mode (tools/bench/steady_run.py); ``rate`` with ``steady`` the archive stage's
    steady phase (they override ``archive``'s). Contradictory ones are refused."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    problem = check_flags(stage=stage, count=count, rate=rate, duration=duration, steady=steady)
    if problem is not None:
        print(f"complaints bench: {problem}")
        return 2
    n = DEFAULT_COUNT if count is None else count
    if concurrency is None:
        concurrency = (steady_senders(rate) if rate is not None and duration is not None
                       else DEFAULT_CONCURRENCY)
    if n < 1 or concurrency < 1 or intake_processes < 1:
        print("complaints bench: --count, --concurrency and --intake-processes must be at least 1")
        return 2
    if stage == "archive":
        opts = archive or ArchiveOptions()
        opts = replace(opts, rate=opts.rate if rate is None else rate,
                       steady=opts.steady if steady is None else steady)
        return _archive(count=n, timeout=timeout, archive=opts)
    if rate is not None and duration is not None:
        return _steady(rate=rate, duration=duration, via=via, timeout=timeout,
                       concurrency=concurrency, intake_url=intake_url,
                       redis_footprint=redis_footprint)
    count = n
    if stage in ("pipeline", "router", "sla", "notifier") and via != "kafka":
        print(f"complaints bench: --stage {stage} runs over Kafka only; over HTTP, measure "
              "`--stage intake --via http` (its 202 is the registration)")
        return 2
    try:
        settings = load_settings(CommonSettings)
        url = rpt.intake_base_url(intake_url, os.environ) + "/v1/inbound/web_form"
        secret = auth.current_key("web_form", load_secrets(settings.data_dir))  # v2: key id, secret
    except ValueError as exc:
        print(f"complaints bench: {exc}")
        return 2
    try:
        code = _run(settings.bootstrap_list(), count, timeout, stage, via, concurrency, url,
                    secret, intake_processes)
        if redis_footprint and code == 0:
            print(rpt.format_footprint(footprint(settings.redis_url, settings.redis_prefix), count,
                                       settings.redis_prefix))
        return code
    except (KafkaError, BenchError) as exc:
        print(f"complaints bench: {exc}")
        return 2


def _steady(*, rate: float, duration: float, via: str, timeout: float, concurrency: int,
            intake_url: str | None, redis_footprint: bool) -> int:
    from tools.bench.steady_run import steady_bench
    from tools.devstack.up import UpSettings

    try:
        settings = load_settings(UpSettings)
        url = rpt.intake_base_url(intake_url, os.environ) + "/v1/inbound/web_form"
        secret = auth.current_key("web_form", load_secrets(settings.data_dir)) if via == "http" else None
    except ValueError as exc:
        print(f"complaints bench: {exc}")
        return 2
    if via == "http" and secret is None:
        log.warning("no signing secret for web_form (INTAKE_SIGNING_SECRETS or the file "
                    "`complaints up` writes): posting unsigned")
    ports: dict[str, int | None] = dict(settings.ports())
    if intake_url is not None:  # intake elsewhere: its port says nothing of this machine
        ports["intake"] = urlsplit(intake_url).port if urlsplit(intake_url).hostname in (
            "127.0.0.1", "localhost") else None
    try:
        code = steady_bench(bootstrap=settings.bootstrap_list(), rate=rate, duration=duration,
                            via=via, url=url, secret=secret, concurrency=concurrency,
                            timeout=timeout, ports=ports, redis_url=settings.redis_url,
                            database_url=os.environ.get("ARCHIVE_DATABASE_URL"))
        if redis_footprint:
            print(rpt.format_footprint(footprint(settings.redis_url, settings.redis_prefix),
                                       max(1, math.ceil(rate * duration)), settings.redis_prefix))
        return code
    except (KafkaError, BenchError) as exc:
        print(f"complaints bench: {exc}")
        return 2


@dataclass(frozen=True)
class ArchiveOptions:
    """Options of the archive stage (see tools.bench.archive)."""

    url: str | None = None  # the archive's base URL (default http://127.0.0.1:$ARCHIVE_HTTP_PORT)
    rate: float | None = None  # steady events/s (default half the burst rate)
    steady: float = 20.0  # seconds of the steady phase
    report_cases: int = 1_000_000  # archived cases of the report figure (0: not measured)
    pid: int | None = None  # the archive's process, stopped for the drain (default: by its port)


def _archive(*, count: int, timeout: float, archive: ArchiveOptions | None) -> int:
    from services.archive.settings import ArchiveSettings
    from tools.bench.archive import archive_bench

    opts = archive or ArchiveOptions()
    if opts.steady <= 0 or opts.report_cases < 0 or (opts.rate is not None and opts.rate <= 0):
        print("complaints bench: --steady and --rate must be positive, --report-cases at least 0")
        return 2
    try:
        settings = load_settings(ArchiveSettings)
    except ValueError as exc:
        print(f"complaints bench: {exc}")
        return 2
    url = (opts.url or f"http://127.0.0.1:{settings.http_port}").rstrip("/")
    try:
        return archive_bench(bootstrap=settings.bootstrap_list(), count=count, timeout=timeout,
                             archive_url=url, database_url=settings.database(), rate=opts.rate,
                             steady=opts.steady, report_cases=opts.report_cases,
                             archive_pid=opts.pid)
    except (KafkaError, BenchError) as exc:
        print(f"complaints bench: {exc}")
        return 2


def footprint(url: str, prefix: str) -> dict[str, tuple[int, int]]:
    """Keys and bytes (Redis MEMORY USAGE, all samples) under ``prefix``, by the key's first part."""
    import redis

    client = redis.Redis.from_url(url)
    out: dict[str, tuple[int, int]] = {}
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.memory_usage(key, samples=0)
            for key, size in zip(chunk, pipe.execute(), strict=True):
                family = key.decode()[len(prefix):].split(":", 1)[0]
                n, total = out.get(family, (0, 0))
                out[family] = (n + 1, total + int(size or 0))
    finally:
        client.close()
    return out


def _run(bootstrap: list[str], count: int, timeout: float, stage: str, via: str, concurrency: int,
         url: str, secret: tuple[str, bytes] | None, processes: int) -> int:
    run_id = uuid.uuid4().hex[:8]
    ensure_topics(bootstrap, (BASELINE,))
    transport = from_environment()
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             acks="all", linger_ms=5, **kafka_python_producer_kwargs(transport))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             group_id=None, enable_auto_commit=False, fetch_max_wait_ms=WATCH_FETCH_WAIT_MS,
                             **kafka_python_kwargs(transport))
    try:
        watched = {"pipeline": (ROUTED.name, NOTIFICATIONS.name), "router": (ROUTED.name,),
                   "intake": (REGISTERED.name, DEADLETTER.name), "sla": (SLA.name,),
                   "notifier": (NOTIFICATIONS.name,)}[stage]
        if not partitions(consumer, INBOUND.name) or not partitions(consumer, *watched):
            raise BenchError("complaint topics missing; run `complaints topics`, start the services")
        if via == "http":
            check_healthy(url.rsplit("/v1/", 1)[0])
            if secret is None:
                log.warning("no signing secret for web_form (INTAKE_SIGNING_SECRETS or the file "
                            "`complaints up` writes): posting unsigned")
        log.info("bench %s: baseline with kafka-python, %d records", run_id, count)
        base = baseline(producer, consumer, inbound_records(f"{run_id}-base", count), timeout)
        log.info("bench %s: baseline with aiokafka, %d records", run_id, count)
        # keys of their own ("-aiok": the same length, so the same record size)
        aio = aio_baseline(bootstrap, inbound_records(f"{run_id}-aiok", count), timeout,
                           transport=transport, linger_ms=5)
        log.info("bench %s: %s via %s, %d complaints", run_id, stage, via, count)
        if stage == "sla":
            return _sla_run(bootstrap, count, timeout, base, aio, run_id, producer, consumer)
        if via == "http":
            answers = post_all(url, web_form_bodies(run_id, count), secret, concurrency)
            return _http_report(run_id, count, base, aio, answers, concurrency, processes)
        # an SMS acknowledgement in the quiet hours is deferred: settled, not timed
        final = {"pipeline": ("acked", "ack_deferred"), "router": ("routed",),
                 "notifier": ("acked", "ack_failed"),
                 "intake": ("registered", "dead")}[stage]
        load, into = ((registered_records(run_id, count, contact=stage == "notifier"), REGISTERED)
                      if stage in ("router", "notifier") else (inbound_records(run_id, count), INBOUND))
        watcher, sent, produce_s = watch(consumer, producer, watched, final, load, timeout, into)
    finally:
        producer.close()
        consumer.close()
    seen = watcher.seen
    if watcher.settled() < count:
        print(f"complaints bench: stage={stage} via=kafka N={count} (run id {run_id}) INCOMPLETE "
              f"after {timeout:g} s: " + ", ".join(f"{k} {len(v)}/{count}" for k, v in seen.items()
                                                   if v or k in final))
        return 1
    done = seen[{"pipeline": "acked", "router": "routed", "intake": "registered",
                 "notifier": "acked"}[stage]]
    seconds = max(done.values(), default=math.nan) - min(sent.values())
    if stage == "pipeline":
        print(rpt.format_report(rpt.Figures(
            count=count, run_id=run_id, partitions=base[2], base_produce=base[0],
            base_consume=base[1], inbound_produce=rpt.rate(count, produce_s),
            end_to_end=rpt.rate(count, seconds), seconds=seconds,
            routed_ms=rpt.latencies_ms(sent, seen["routed"]), acked_ms=rpt.latencies_ms(sent, done),
            aio_produce=aio[0], aio_consume=aio[1])))
        return 0
    print(rpt.format_intake_report(rpt.IntakeFigures(
        count=count, run_id=run_id, via="kafka", partitions=base[2], base_produce=base[0],
        base_consume=base[1], input_rate=rpt.rate(count, produce_s), registered=len(done),
        seconds=seconds, latency_ms=rpt.latencies_ms(sent, done), failed=len(seen["dead"]),
        failure_note="dead-lettered" if seen["dead"] else "", processes=processes, stage=stage,
        aio_produce=aio[0], aio_consume=aio[1])))
    return 1 if seen["dead"] else 0


def _http_report(run_id: str, count: int, base: tuple[float, float, int],
                 aio: tuple[float, float, int], answers: list[Answer], concurrency: int,
                 processes: int) -> int:
    ok = [a for a in answers if a.status == 202 and not a.detail]
    failures = [(a.status, a.detail) for a in answers if a.status != 202 or a.detail]
    seconds = max(a.ended for a in answers) - min(a.started for a in answers)
    print(rpt.format_intake_report(rpt.IntakeFigures(
        count=count, run_id=run_id, via="http", partitions=base[2], base_produce=base[0],
        base_consume=base[1], input_rate=rpt.rate(len(answers), seconds), registered=len(ok),
        seconds=seconds, latency_ms=[(a.ended - a.started) * 1000 for a in ok],
        failed=len(failures), failure_note=rpt.failure_kinds(failures), concurrency=concurrency,
        processes=processes, aio_produce=aio[0], aio_consume=aio[1])))
    return 1 if failures else 0


def _sla_run(bootstrap: list[str], count: int, timeout: float, base: tuple[float, float, int],
             aio: tuple[float, float, int], run_id: str, producer: KafkaProducer,
             consumer: KafkaConsumer) -> int:
    start_at_end(consumer, partitions(consumer, SLA.name))
    now = datetime.now(UTC)
    records = routed_records(run_id, count, now)
    prefix = f"L{run_id}-"
    _, _produce_s = produce(producer, ROUTED.name, records)
    start = time.perf_counter()
    alerts: set[str] = set()
    emitted: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}
    expected = count * len(SLA_BREACHED)
    deadline = start + timeout + SLA_LEAD + SLA_SPREAD
    last = start
    while len(seen) < expected and time.perf_counter() < deadline:
        for batch in consumer.poll(timeout_ms=100).values():
            arrived = time.time()
            for rec in batch:
                event = json.loads(rec.value)
                if not str(event.get("subject", "")).startswith(prefix):
                    continue
                alerts.add(event["id"])
                data = event["data"]
                if data["outcome"] == "breached" and data["milestone"] in SLA_BREACHED:
                    key = (event["subject"], data["milestone"])
                    due_at = datetime.fromisoformat(data["due_at"]).timestamp()
                    emitted.setdefault(key, (datetime.fromisoformat(data["observed_at"]).timestamp()
                                             - due_at) * 1000)
                    seen.setdefault(key, (arrived - due_at) * 1000)
                    last = time.perf_counter()
    print(rpt.format_sla_report(rpt.SlaFigures(
        count=count, run_id=run_id, partitions=base[2], base_produce=base[0], base_consume=base[1],
        alerts=len(alerts), breaches=len(seen), expected=expected, seconds=last - start,
        emitted_ms=list(emitted.values()), seen_ms=list(seen.values()), spread=SLA_SPREAD,
        aio_produce=aio[0], aio_consume=aio[1])))
    return 0 if len(seen) == expected else 1

