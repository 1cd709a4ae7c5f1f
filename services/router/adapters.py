"""Router adapters: the shared FaustPublisher is all it needs so far."""

from __future__ import annotations

from services.common.runtime import FaustPublisher

__all__ = ["FaustPublisher"]
