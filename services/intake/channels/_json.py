"""Shared pieces of the JSON-object channel formats."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import Demand, Evidence


class JsonPayload(BaseModel):
    """Base of a JSON channel format: unknown fields are ignored, known ones validated."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class Purchase(JsonPayload):
    """Order facts many channels carry."""

    product: str | None = Field(default=None, max_length=300)
    order_id: str | None = Field(default=None, max_length=200)
    purchase_time: AwareDatetime | None = None
    demand: Demand | None = None


class Attachment(JsonPayload):
    """An evidence reference as integrations send it."""

    name: str = Field(max_length=300)
    media_type: str | None = Field(default=None, max_length=200)
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    url: str | None = Field(default=None, max_length=2000)

    def evidence(self) -> Evidence:
        return Evidence(name=self.name, media_type=self.media_type, size=self.size,
                        sha256=self.sha256.lower() if self.sha256 else None, url=self.url)
