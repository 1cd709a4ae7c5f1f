"""Synchronous Kafka tooling (kafka-python): topic administration, reading a topic whole."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas.topics import ALL_TOPICS, TopicSpec
from services.common.transport import kafka_python_kwargs

log = logging.getLogger(__name__)


def ensure_topics(
    bootstrap: list[str], specs: tuple[TopicSpec, ...] = ALL_TOPICS, *, replication: int = 1,
    security: dict[str, Any] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    ``security``: TLS / SASL keyword arguments (transport.kafka_python_kwargs); by default
    those of the environment's settings, as the services run with.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="complaints-topics",
                             **(security if security is not None else kafka_python_kwargs()))
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics(
                    [NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=replication,
                              topic_configs=dict(spec.config))]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                log.info("topic %s created concurrently", spec.name)
        return created
    finally:
        admin.close()


def read_records(bootstrap: list[str], topic: str, *, idle: float = 5.0,
                 security: dict[str, Any] | None = None, strict: bool = False,
                 committed_only: bool = False) -> Iterator[Any]:
    """Every record of ``topic`` from the start to the end offsets taken now (no group);
    ``security`` as for ``ensure_topics``; ``committed_only``: records of committed
    transactions only (read_committed), as a consumer under exactly-once sees them.

    When no partition has advanced for ``idle`` seconds (a broker may report an end offset it
    never delivers up to, e.g. after a transaction marker): ``strict`` raises TimeoutError,
    otherwise it stops early, saying so.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             isolation_level="read_committed" if committed_only else "read_uncommitted",
                             **(security if security is not None else kafka_python_kwargs()))
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        left = {tp for tp in parts if ends[tp] > 0}
        last = time.monotonic()
        while left:
            batches = consumer.poll(timeout_ms=500, max_records=5000)
            if batches:
                last = time.monotonic()
            elif time.monotonic() - last > idle:
                if strict:
                    raise TimeoutError(f"reading {topic}: no progress for {idle:.0f} s")
                behind = {f"{tp.partition}": f"{consumer.position(tp)}/{ends[tp]}" for tp in left}
                log.warning("reading %s: no progress for %.0f s at %s (position/end); stopping",
                            topic, idle, behind)
                return
            for records in batches.values():
                yield from records
            for tp in list(left):
                if consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        consumer.close()


def read_topic(bootstrap: list[str], topic: str, *, idle: float = 5.0,
               security: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every JSON event of ``topic`` from the start to the end offsets taken now (no group);
    records that are no event are skipped (the services dead-lettered them). See read_records."""
    for rec in read_records(bootstrap, topic, idle=idle, security=security):
        try:
            event = json.loads(rec.value)
        except (TypeError, ValueError):
            continue
        if isinstance(event, dict) and isinstance(event.get("data"), dict):
            yield event
