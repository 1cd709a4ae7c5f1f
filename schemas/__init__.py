"""Message contracts: one envelope, one model per event, one declaration per topic."""

from schemas.envelope import Envelope, derived_id
from schemas.events import *  # noqa: F403
from schemas.topics import ALL_TOPICS, TopicSpec

__all__ = ["ALL_TOPICS", "Envelope", "TopicSpec", "derived_id"]
