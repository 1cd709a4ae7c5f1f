"""`complaints bench --stage archive`: the archive's ingest rate and the monthly report's time.

Against a running stack (the archive at ``--archive-url``, its database at ARCHIVE_DATABASE_URL,
default the SQLite file `complaints up` uses):

1. Baselines, same run: the raw broker (N records produced, then consumed, with kafka-python,
   then the same with aiokafka: faust's client and the batch consumer's) and the raw database
   (the same N events inserted into a temporary table of the events' shape, 500 per
   transaction, nothing folded).
2. Burst: N events of N/16 whole case lifecycles (registered, routed, clocks, notifications,
   the handler's steps) produced to the five topics as a live stream brings them (the k-th
   event of every case before the (k+1)-th of any, so each batch touches many cases that
   already hold events). Done when the archive's ``complaints_archive_events_total`` has grown
   by N; events/s = N / (last event's ``ingested_at`` - first send).
3. Drain: N more events of new lifecycles produced while the archive's process is stopped
   (SIGSTOP; the process listening on ``--archive-url``'s port, or ``--archive-pid``), then
   continued (SIGCONT); events/s = N / (last event's ``ingested_at`` - the SIGCONT). The
   burst counts from the first send, so the producer (one client) caps it; the drain is the
   rate at which the archive empties a backlog, the figure to judge its ingest by.
4. Steady rate: new lifecycles at ``--rate`` events/s (default half the burst rate) for
   ``--steady`` seconds; latency = ``ingested_at`` - send time of each event (p50/p95/p99).
5. Report (PostgreSQL only): a scratch database on the same server is filled by the server
   itself with ``--report-cases`` archived cases over a year (default 1,000,000), and the
   November report (by handler) is timed; baseline: one count of the month's cases. The
   scratch database is dropped afterwards.

Clocks: ``ingested_at`` is the archive's wall clock; send times are this process's wall clock
(same machine). Nothing personal is produced or printed.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime

from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import Engine, MetaData, Table, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from services.archive.database import make_engine, upgrade
from services.archive.records import parse, summarise
from services.archive.tables import cases
from services.archive.tables import events as events_table
from services.common.kafka import ensure_topics
from services.common.transport import (
    from_environment,
    kafka_python_kwargs,
    kafka_python_producer_kwargs,
)
from tools.bench import BenchError
from tools.bench import report as rpt
from tools.bench.archive_load import EVENTS_PER_CASE, Produced, cases_sql, interleaved
from tools.bench.kafka import BASELINE, aio_baseline, baseline
from tools.bench.load import inbound_records

log = logging.getLogger(__name__)
METRIC = "complaints_archive_events_total"
POLL = 0.1
DB_BATCH = 500


def archive_bench(*, bootstrap: list[str], count: int, timeout: float, archive_url: str,
                  database_url: str, rate: float | None, steady: float, report_cases: int,
                  archive_pid: int | None = None) -> int:
    """Run the baselines, the burst, the steady rate and the report; print the figures."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    run_id = uuid.uuid4().hex[:8]
    cases_n = max(1, math.ceil(count / EVENTS_PER_CASE))
    count = cases_n * EVENTS_PER_CASE
    engine = make_engine(database_url)
    ensure_topics(bootstrap, (BASELINE,))
    transport = from_environment()
    # large batches and a short linger: the burst must reach the broker faster than the
    # archive can take it (with 16 KiB batches the client sent ~4,000 records/s here)
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             acks="all", linger_ms=20, batch_size=256 * 1024,
                             **kafka_python_producer_kwargs(transport))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100,
                             **kafka_python_kwargs(transport))
    lines = [f"complaints bench: stage=archive N={count} events ({cases_n} cases x {EVENTS_PER_CASE}) "
             f"run {run_id}, database {engine.dialect.name}"]
    try:
        archived_total(archive_url)  # the archive answers before anything is produced
        log.info("bench %s: broker baseline with kafka-python, %d records", run_id, count)
        produce_s, consume_s, parts = baseline(producer, consumer,
                                               inbound_records(f"{run_id}-base", count), timeout)
        log.info("bench %s: broker baseline with aiokafka, %d records", run_id, count)
        # the same producer settings; keys of their own of the same length (the same record size)
        aio = aio_baseline(bootstrap, inbound_records(f"{run_id}-aiok", count), timeout,
                           transport=transport, linger_ms=20, max_batch_size=256 * 1024)
        burst = interleaved(f"{run_id}b", cases_n)
        log.info("bench %s: database baseline, %d rows", run_id, count)
        db_rate = database_baseline(engine, burst)
        lines += [rpt.format_broker_baseline((produce_s, consume_s), aio[:2], parts),
                  f"  baseline  database: {db_rate:,.0f} event rows/s inserted raw"]
        log.info("bench %s: burst, %d events", run_id, count)
        sent = produce_all(producer, burst)
        wait_archived(archive_url, engine, sent, timeout)
        ingested = ingest_times(engine, list(sent))
        seconds = max(ingested.values()) - min(sent.values())
        burst_rate = rpt.rate(count, seconds)
        lines.append(f"  burst     {burst_rate:,.0f} events/s archived ({count} in {seconds:.1f} s); "
                     f"{rpt.ratio(burst_rate, db_rate):.2f} of the raw database rate")
        lines.append(drain_figure(producer, archive_url, engine, f"{run_id}d", cases_n, timeout,
                                  db_rate=db_rate, pid=archive_pid))
        steady_rate = rate or max(50.0, burst_rate / 2)
        n_steady = max(1, math.ceil(steady_rate * steady / EVENTS_PER_CASE))
        log.info("bench %s: steady %.0f events/s for %.0f s", run_id, steady_rate, steady)
        sent = produce_paced(producer, interleaved(f"{run_id}s", n_steady), steady_rate)
        wait_archived(archive_url, engine, sent, timeout)
        ingested = ingest_times(engine, list(sent))
        lat = [(ingested[k] - sent[k]) * 1000 for k in sent]
        lines.append(f"  steady    {steady_rate:,.0f} events/s for {len(sent) / steady_rate:.0f} s: "
                     f"send->archived p50 {rpt.percentile(lat, 50):.0f} ms, p95 "
                     f"{rpt.percentile(lat, 95):.0f} ms, p99 {rpt.percentile(lat, 99):.0f} ms")
        if report_cases > 0:
            lines.append(report_figure(engine, report_cases))
    finally:
        producer.close()
        consumer.close()
        engine.dispose()
    print("\n".join(lines))
    return 0


def drain_figure(producer: KafkaProducer, url: str, engine: Engine, prefix: str, cases_n: int,
                 timeout: float, *, db_rate: float, pid: int | None) -> str:
    """The rate at which the archive empties a backlog produced while its process was stopped."""
    pid = pid or listener_pid(url)
    if pid is None:
        return ("  drain     not measured: no process of this machine listens on the archive's "
                "port (give --archive-pid)")
    items = interleaved(prefix, cases_n)
    log.info("bench: drain, %d events produced with the archive (pid %d) stopped", len(items), pid)
    os.kill(pid, signal.SIGSTOP)
    try:
        sent = produce_all(producer, items)
    finally:
        resumed = time.time()
        os.kill(pid, signal.SIGCONT)
    wait_archived(url, engine, sent, timeout)
    ingested = ingest_times(engine, list(sent))
    seconds = max(ingested.values()) - resumed
    drain = rpt.rate(len(sent), seconds)
    return (f"  drain     {drain:,.0f} events/s archived ({len(sent)} produced with the archive "
            f"stopped, emptied in {seconds:.1f} s after it continued); "
            f"{rpt.ratio(drain, db_rate):.2f} of the raw database rate")


def listener_pid(url: str) -> int | None:
    """The process of this machine listening on ``url``'s TCP port (Linux /proc), if any."""
    port = urllib.parse.urlsplit(url).port or 80
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as lines:
                next(lines)
                for line in lines:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                        inodes.add(f"socket:[{cols[9]}]")
        except OSError:
            return None
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                return int(pid)
        except OSError:  # gone, or not ours
            continue
    return None


def archived_total(url: str) -> float:
    """The archive's events archived so far (its /metrics, every topic)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:  # noqa: S310 - our own URL
            body = reply.read().decode()
    except OSError as exc:
        raise BenchError(f"the archive does not answer at {url} ({exc}); start the stack") from None
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(METRIC + "{"))


def produce_all(producer: KafkaProducer, items: Sequence[Produced]) -> dict[str, float]:
    """Send every event (as fast as the client goes) and flush; wall-clock send times by id."""
    sent: dict[str, float] = {}
    for topic, event_id, key, value in items:
        sent[event_id] = time.time()
        producer.send(topic, key=key, value=value)
    producer.flush()
    return sent


def produce_paced(producer: KafkaProducer, items: Sequence[Produced], rate: float) -> dict[str, float]:
    """Send the events at ``rate`` per second (in 10 ms steps); wall-clock send times by id."""
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i, (topic, event_id, key, value) in enumerate(items):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0.01:
            producer.flush()
            time.sleep(pause)  # pacing the load, not waiting on a result
        sent[event_id] = time.time()
        producer.send(topic, key=key, value=value)
    producer.flush()
    return sent


def wait_archived(url: str, engine: Engine, sent: dict[str, float], timeout: float) -> None:
    """Until every sent event is in the archive's events table (polled by count)."""
    ids = list(sent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if archived_count(engine, ids) >= len(ids):
            return
        archived_total(url)  # still answering?
        time.sleep(POLL * 10)
    raise BenchError(f"the archive holds {archived_count(engine, ids)} of {len(ids)} events after "
                     f"{timeout:g} s")


def archived_count(engine: Engine, ids: Sequence[str]) -> int:
    """How many of the event ids the archive holds."""
    with engine.connect() as conn:
        return sum(int(conn.execute(select(func.count()).select_from(events_table)
                                    .where(events_table.c.event_id.in_(ids[i:i + 5000]))).scalar_one())
                   for i in range(0, len(ids), 5000))


def ingest_times(engine: Engine, ids: Sequence[str]) -> dict[str, float]:
    """Each event's ``ingested_at`` (Unix seconds)."""
    out: dict[str, float] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 5000):
            query = (select(events_table.c.event_id, events_table.c.ingested_at)
                     .where(events_table.c.event_id.in_(ids[i:i + 5000])))
            out.update((eid, at.timestamp()) for eid, at in conn.execute(query))
    return out


def database_baseline(engine: Engine, items: Sequence[Produced]) -> float:
    """Rows/s of the same events inserted raw (no fold, no conflict check) into a temporary table."""
    now = datetime.now(UTC)
    rows = [{**summarise(parse(value, topic=topic)).__dict__, "ingested_at": now}
            for topic, _, _, value in items]
    scratch = Table(f"bench_events_{uuid.uuid4().hex[:8]}", MetaData(),
                    *(c._copy() for c in events_table.c), prefixes=["TEMPORARY"])
    with engine.connect() as conn:
        scratch.create(conn)
        conn.commit()
        started = time.perf_counter()
        for i in range(0, len(rows), DB_BATCH):
            with conn.begin():
                conn.execute(insert(scratch), rows[i:i + DB_BATCH])
        took = time.perf_counter() - started
        scratch.drop(conn)
        conn.commit()
    return rpt.rate(len(rows), took)


def report_figure(engine: Engine, n: int) -> str:
    """Time the November report over ``n`` archived cases in a scratch database (PostgreSQL)."""
    if engine.dialect.name != "postgresql":
        return ("  report    not measured: the scratch database of the million-case report needs "
                "PostgreSQL (ARCHIVE_DATABASE_URL)")
    from services.archive.reports.model import Period
    from services.archive.reports.period import parse_period, utc_bounds
    from services.archive.reports.service import build_report
    from services.common.policy import load_policy
    from services.sla_monitor.calendar import load_calendar

    policy, calendar = load_policy(None), load_calendar(None)
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    with scratch_database(engine) as url:
        pg = make_engine(url)
        try:
            upgrade(pg)
            started = time.perf_counter()
            with pg.begin() as conn:
                conn.execute(text(cases_sql(n)))
            fill = time.perf_counter() - started
            period, _ = parse_period(month="2026-11", timezone="Asia/Shanghai", today=now.date())
            build_report(pg, period=Period(date(2020, 1, 1), date(2020, 1, 2), "Asia/Shanghai", "warm-up"),
                         by=None, policy=policy, calendar=calendar, now=now)
            start, end = utc_bounds(period)
            started = time.perf_counter()
            with pg.connect() as conn:
                month = int(conn.execute(select(func.count()).select_from(cases).where(
                    cases.c.received_at >= start, cases.c.received_at < end)).scalar_one())
            counted = time.perf_counter() - started
            started = time.perf_counter()
            report = build_report(pg, period=period, by="handler", policy=policy, calendar=calendar, now=now)
            took = time.perf_counter() - started
        finally:
            pg.dispose()
    return (f"  report    November over {n:,} archived cases ({month:,} in the month, "
            f"{report.figure('complaints').value or 0:,.0f} complaints): {took:.1f} s (by handler); "
            f"baseline: counting the month's cases {counted * 1000:.0f} ms; filling took {fill:.0f} s")


@contextmanager
def scratch_database(engine: Engine) -> Iterator[str]:
    """A new database on the archive's server, dropped afterwards; yields its URL."""
    name = f"complaints_bench_{uuid.uuid4().hex[:8]}"
    url = engine.url.render_as_string(hide_password=False)
    admin = make_engine(url)
    try:
        try:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except SQLAlchemyError as exc:
            first = str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines()[0][:200]
            raise BenchError(f"cannot create a scratch database for the report figure: {first}") from None
        try:
            yield make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
