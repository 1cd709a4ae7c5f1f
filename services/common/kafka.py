"""Synchronous Kafka tooling (kafka-python): topic administration."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)


def ensure_topics(
    bootstrap: list[str], specs: tuple[TopicSpec, ...] = ALL_TOPICS, *, replication: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="complaints-topics")
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics(
                    [NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=replication)]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                log.info("topic %s created concurrently", spec.name)
        return created
    finally:
        admin.close()
