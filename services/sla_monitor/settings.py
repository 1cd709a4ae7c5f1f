"""SLA monitor settings."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class SlaMonitorSettings(CommonSettings):
    """SLA monitor settings: the shared ones (see CommonSettings) plus

    SLA_MONITOR_HTTP_PORT      port of /metrics and /healthz (default 8082)
    SLA_MONITOR_TICK_INTERVAL  seconds between scans for due deadlines (default 0.25)
    SLA_MONITOR_CLAIM_LEASE    seconds a claimed deadline stays with one instance before
                               another may take it over (default 30)
    SLA_MONITOR_BATCH          most deadlines claimed per scan (default 500)
    """

    http_port: int = Field(default=8082, ge=1, le=65535, validation_alias="SLA_MONITOR_HTTP_PORT")
    tick_interval: float = Field(default=0.25, gt=0, le=60, validation_alias="SLA_MONITOR_TICK_INTERVAL")
    claim_lease: float = Field(default=30.0, ge=1, le=3600, validation_alias="SLA_MONITOR_CLAIM_LEASE")
    batch: int = Field(default=500, ge=1, le=100_000, validation_alias="SLA_MONITOR_BATCH")
