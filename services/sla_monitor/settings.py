"""SLA monitor settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import CommonSettings


class SlaMonitorSettings(CommonSettings):
    """SLA monitor settings: the shared ones (see CommonSettings) plus

    SLA_MONITOR_HTTP_PORT      port of /metrics and /healthz (default 8082)
    SLA_MONITOR_CALENDAR_FILE  business calendar for business-time milestones (default: the
                               shipped Chinese calendar, Asia/Shanghai, 2026-2027)
    SLA_MONITOR_TICK_INTERVAL  seconds between scans for due alerts (default 0.1)
    SLA_MONITOR_TICK_TIMEOUT   seconds a scan may run before it is cancelled (its stuck call
                               logged) and the next one starts (default 30)
    SLA_MONITOR_CLAIM_LEASE    seconds a claimed complaint or alert stays with one instance
                               before another may take it over (default 30)
    SLA_MONITOR_BATCH          most complaints claimed per scan (default 500)
    SLA_MONITOR_PARALLEL       complaints evaluated at once within a scan (default 32)
    SLA_MONITOR_TTL_DAYS       days a complaint's clock facts stay in Redis after the last
                               change (default 120; they can be rebuilt from the topics)
    SLA_MONITOR_REBUILD_TIMEOUT  seconds one rebuild from the topics may run before it is
                               cancelled and started over (default 600)
    """

    http_port: int = Field(default=8082, ge=1, le=65535, validation_alias="SLA_MONITOR_HTTP_PORT")
    calendar_file: Path | None = Field(default=None, validation_alias="SLA_MONITOR_CALENDAR_FILE")
    tick_interval: float = Field(default=0.1, gt=0, le=60, validation_alias="SLA_MONITOR_TICK_INTERVAL")
    tick_timeout: float = Field(default=30.0, gt=0, le=3600, validation_alias="SLA_MONITOR_TICK_TIMEOUT")
    claim_lease: float = Field(default=30.0, ge=1, le=3600, validation_alias="SLA_MONITOR_CLAIM_LEASE")
    batch: int = Field(default=500, ge=1, le=100_000, validation_alias="SLA_MONITOR_BATCH")
    parallel: int = Field(default=32, ge=1, le=1024, validation_alias="SLA_MONITOR_PARALLEL")
    ttl_days: int = Field(default=120, ge=1, le=3650, validation_alias="SLA_MONITOR_TTL_DAYS")
    rebuild_timeout: int = Field(default=600, ge=10, le=86400,
                                 validation_alias="SLA_MONITOR_REBUILD_TIMEOUT")
