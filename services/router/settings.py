"""Router settings."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class RouterSettings(CommonSettings):
    """Router settings: the shared ones (see CommonSettings) plus

    ROUTER_HTTP_PORT   port of /metrics and /healthz (default 8081)
    """

    http_port: int = Field(default=8081, ge=1, le=65535, validation_alias="ROUTER_HTTP_PORT")
