"""Router's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class RouterMetrics:
    routed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RouterMetrics:
        return cls(routed=Counter(
            "complaints_router_routed_total", "Routing decisions published.",
            ["severity", "level", "department"], registry=registry))
