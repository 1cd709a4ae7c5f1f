"""Router settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import CommonSettings


class RouterSettings(CommonSettings):
    """Router settings: the shared ones (see CommonSettings) plus

    ROUTER_HTTP_PORT       port of /metrics and /healthz (default 8081)
    ROUTER_TAXONOMY_FILE   complaint-type taxonomy (default: the shipped taxonomy.yaml)
    ROUTER_ROSTER_FILE     handler roster (default: the shipped roster.yaml)
    ROUTER_TEXT_MODEL      classify with the learned text model beside the keywords (default
                           true; false: keywords only)
    ROUTER_TEXT_MODEL_FILE the text model (default: the shipped model/classifier-v5.json.gz);
                           missing or corrupt, the router does not start
    ROUTER_SEVERITY_MODEL  read severity with the learned severity model beside the rules (default
                           true; it only raises a level; false: the rules alone)
    ROUTER_SEVERITY_MODEL_FILE the severity model (default: the shipped
                           model/severity-v9.json.gz); missing or corrupt, the router does not start
    ROUTER_CASE_TTL_DAYS   how long a case's routing state stays in Redis after its last
                           decision (default 400 days; it can be rebuilt from the topics)
    ROUTER_LOAD_INTERVAL   seconds between refreshes of the handler-load gauge (default 10)
    ROUTER_QUEUE_INTERVAL  seconds between sweeps of the waiting queues (offers to handlers
                           who came on shift) and refreshes of the queue gauges (default 30)
    """

    http_port: int = Field(default=8081, ge=1, le=65535, validation_alias="ROUTER_HTTP_PORT")
    taxonomy_file: Path | None = Field(default=None, validation_alias="ROUTER_TAXONOMY_FILE")
    roster_file: Path | None = Field(default=None, validation_alias="ROUTER_ROSTER_FILE")
    text_model: bool = Field(default=True, validation_alias="ROUTER_TEXT_MODEL")
    text_model_file: Path | None = Field(default=None, validation_alias="ROUTER_TEXT_MODEL_FILE")
    severity_model: bool = Field(default=True, validation_alias="ROUTER_SEVERITY_MODEL")
    severity_model_file: Path | None = Field(default=None, validation_alias="ROUTER_SEVERITY_MODEL_FILE")
    case_ttl_days: int = Field(default=400, ge=1, le=3650, validation_alias="ROUTER_CASE_TTL_DAYS")
    load_interval: float = Field(default=10.0, gt=0, le=3600, validation_alias="ROUTER_LOAD_INTERVAL")
    queue_interval: float = Field(default=30.0, gt=0, le=3600, validation_alias="ROUTER_QUEUE_INTERVAL")
