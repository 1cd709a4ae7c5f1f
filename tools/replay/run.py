"""`complaints replay`: feed a CSV or JSONL export through intake, the way live traffic comes.

Every row becomes one ``inbound.received`` event on ``complaints.inbound`` (key: the
message id), produced with kafka-python. Then, unless ``--no-wait``, the run reads
``complaints.registered``, ``complaints.lifecycle`` and ``complaints.deadletter`` (all
partitions, from the end offsets taken before producing, no consumer group) until every
row of this run is registered, recorded (a survey reply) or dead-lettered (see
``tools.replay.tally``), or the timeout passes. Rows that cannot be read (not JSON, no
usable date ...) are skipped and counted, never sent.

Rows come in a channel's own format (``--channel C``: a CSV with a header row, values as
strings, empty cells dropped; or JSONL/NDJSON, one JSON object per line, or a JSON string
for text channels such as e-mail) or as the CFPB complaint export (``--format cfpb``, see
``tools.replay.cfpb``). A row's message id is its own id field (message_id, id, call_id,
form_id, feedback_id, entry_id, review_id), else "<file name>:<line>". Only counts, ids and
intake's reasons are printed, never payloads.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError
from tqdm import tqdm

from schemas.events import Channel, InboundMessage, InboundReceived
from schemas.topics import DEADLETTER, INBOUND, LIFECYCLE, REGISTERED
from services.common.transport import kafka_python_kwargs, kafka_python_producer_kwargs
from tools.replay import cfpb
from tools.replay.tally import Payload, Row, Skip, Summary, Tally, format_summary, summarise

log = logging.getLogger(__name__)

ID_FIELDS = ("message_id", "id", "call_id", "form_id", "feedback_id", "entry_id", "review_id")
ALIAS_FIELDS = (*ID_FIELDS, "reference", "post_id", "survey_id")  # ids adapters may key by
JSONL = (".jsonl", ".ndjson")
WATCHED = (REGISTERED, LIFECYCLE, DEADLETTER)
_MESSAGE_ID = re.compile(r"^message-id:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
__all__ = ["ReplayError", "Row", "Skip", "Summary", "format_summary", "replay", "rows"]


class ReplayError(RuntimeError):
    """The replay cannot run: unknown file type, topics missing."""


# ---- reading rows (pure but for the file) ------------------------------------------


def own_ids(payload: Payload) -> frozenset[str]:
    """The ids a payload carries itself (id fields; an e-mail's Message-ID with and without <>)."""
    if isinstance(payload, str):
        m = _MESSAGE_ID.search(payload.split("\n\n", 1)[0])
        return frozenset({m.group(1), m.group(1)[1:-1]}) if m else frozenset()
    return frozenset(str(v).strip() for k in ALIAS_FIELDS if isinstance(v := payload.get(k), str | int)
                     and not isinstance(v, bool) and str(v).strip())


def channel_row(channel: Channel, line: int, value: object, file_name: str) -> Row | Skip:
    """One record of a channel-format file as a row, its message id its own or file:line."""
    if isinstance(value, dict):
        payload: Payload = value
        own = next((str(value[k]).strip() for k in ID_FIELDS if isinstance(value.get(k), str | int)
                    and not isinstance(value.get(k), bool) and str(value[k]).strip()), None)
    elif isinstance(value, str) and value.strip():
        payload, own = value, None
    else:
        return Skip(line, "not a JSON object or string")
    return Row(line, channel, own or f"{file_name}:{line}", payload, own_ids(payload))


def records(path: Path) -> Iterator[tuple[int, object]]:
    """(line, value): a CSV row as its non-empty cells, a JSONL line parsed, or a Skip."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        for line, row in cfpb.read_records(path, fold=str.strip):
            yield line, {k: v for k, v in row.items() if k and v.strip()}
    elif suffix in JSONL:
        with path.open(encoding="utf-8-sig") as f:
            for line, text in enumerate(f, 1):
                if text.strip():
                    try:
                        yield line, json.loads(text)
                    except ValueError as exc:
                        yield line, Skip(line, f"not JSON: {getattr(exc, 'msg', exc)}")
    else:
        raise ReplayError(f"{path.name}: expected .csv, .jsonl or .ndjson")


def rows(path: Path | str, *, channel: Channel | str | None = None, fmt: str | None = None
         ) -> Iterator[Row | Skip]:
    """Every row of ``path``: in ``channel``'s own format, or in the ``cfpb`` export format.

    The arguments and the file's presence and type are checked at once (ReplayError).
    """
    path = Path(path)
    if (channel is None) == (fmt is None) or fmt not in (None, "cfpb"):
        raise ReplayError("give either a channel or --format cfpb")
    if channel is not None and channel not in Channel.__members__:
        raise ReplayError(f"unknown channel {channel!r}; one of: {', '.join(Channel.__members__)}")
    if fmt is None and path.suffix.lower() not in (".csv", *JSONL):
        raise ReplayError(f"{path.name}: expected .csv, .jsonl or .ndjson")
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    return _cfpb_rows(path) if fmt else _channel_rows(path, Channel(str(channel)))


def _cfpb_rows(path: Path) -> Iterator[Row | Skip]:
    for line, rec in cfpb.read_records(path):
        try:
            ch, mid, payload = cfpb.cfpb_row(rec)
        except ValueError as exc:
            yield Skip(line, f"cfpb: {exc}")
            continue
        yield Row(line, ch, mid, payload, own_ids(payload))


def _channel_rows(path: Path, channel: Channel) -> Iterator[Row | Skip]:
    for line, value in records(path):
        yield value if isinstance(value, Skip) else channel_row(channel, line, value, path.name)


# ---- the run ------------------------------------------------------------------------


def _count(path: Path, fmt: str | None) -> int | None:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            if fmt == "cfpb" or path.suffix.lower() == ".csv":
                return max(sum(1 for _ in csv.reader(f)) - 1, 0)
            return sum(1 for text in f if text.strip())
    except (OSError, ValueError, csv.Error):
        return None


def replay(path: Path | str, *, channel: Channel | str | None = None, fmt: str | None = None,
           limit: int | None = None, timeout: float = 120.0, wait: bool = True,
           bootstrap: list[str] | None = None, progress: bool = True) -> Summary:
    """Produce every row as an inbound event; unless ``wait`` is false, account for each."""
    from services.common.settings import CommonSettings, load_settings

    path, started = Path(path), time.monotonic()
    if limit is not None and limit < 0:
        raise ReplayError("--limit must not be negative")
    items: Iterator[Row | Skip] = rows(path, channel=channel, fmt=fmt)
    items = islice(items, limit) if limit is not None else items
    total = limit if limit is not None else _count(path, fmt)
    bootstrap = bootstrap or load_settings(CommonSettings).bootstrap_list()
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="complaints-replay",
                             acks="all", linger_ms=5, **kafka_python_producer_kwargs())
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="complaints-replay",
                             group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100,
                             **kafka_python_kwargs())
    try:
        if not consumer.partitions_for_topic(INBOUND.name) or not all(
                consumer.partitions_for_topic(t.name) for t in WATCHED):
            raise ReplayError("pipeline topics missing; run `complaints topics`")
        tps = [TopicPartition(t.name, p) for t in WATCHED
               for p in sorted(consumer.partitions_for_topic(t.name))]
        consumer.assign(tps)
        for tp, offset in consumer.end_offsets(tps).items():
            consumer.seek(tp, offset)
        read, skipped, unsent, tally = _produce(producer, items, total, progress)
        log.info("replay %s: sent %d of %d rows", path.name, len(tally.rows), read)
        if wait:
            deadline = time.monotonic() + timeout
            with tqdm(total=len(tally.rows), desc="accounted", unit="row", file=sys.stderr,
                      disable=not progress) as bar:
                while tally.pending() and time.monotonic() < deadline:
                    for tp, batch in consumer.poll(timeout_ms=200).items():
                        for record in batch:
                            tally.see(tp.topic, record.value)
                    bar.update(len(tally.outcome) - bar.n)
    finally:
        producer.close()
        consumer.close()
    return summarise(path.name, read, skipped, unsent, tally, waited=wait,
                     seconds=time.monotonic() - started)


def _produce(producer: KafkaProducer, items: Iterator[Row | Skip], total: int | None,
             progress: bool) -> tuple[int, Counter[str], Counter[str], Tally]:
    read, skipped, unsent = 0, Counter[str](), Counter[str]()
    pending: list[tuple[Row, str, Any]] = []
    with tqdm(total=total, desc="sent", unit="row", file=sys.stderr, disable=not progress) as bar:
        for item in items:
            read += 1
            bar.update()
            if isinstance(item, Skip):
                skipped[item.reason] += 1
                continue
            try:
                event = InboundReceived.new(
                    InboundMessage(channel=item.channel, message_id=item.message_id,
                                   payload=item.payload),
                    source="replay", time=datetime.now(UTC), subject=None)
                pending.append((item, event.id, producer.send(
                    INBOUND.name, key=item.message_id.encode(), value=event.to_bytes())))
            except ValidationError as exc:
                skipped["envelope: " + "; ".join(e["msg"] for e in exc.errors())] += 1
            except KafkaError as exc:
                unsent[type(exc).__name__] += 1
        producer.flush()
    sent = [(row, eid) for row, eid, fut in pending if not fut.failed()]
    unsent.update(type(fut.exception).__name__ for _, _, fut in pending if fut.failed())
    return read, skipped, unsent, Tally([r for r, _ in sent], [e for _, e in sent])


def main(path: str, *, channel: str | None, fmt: str | None, limit: int | None, timeout: float,
         wait: bool) -> int:
    """The command: 0 every row accounted for, 1 rows missing or not sent, 2 cannot run."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        summary = replay(path, channel=channel, fmt=fmt, limit=limit, timeout=timeout, wait=wait)
    except (OSError, ValueError, csv.Error, KafkaError, ReplayError) as exc:
        print(f"complaints replay: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0 if summary.complete else 1
