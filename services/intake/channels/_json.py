"""Shared pieces of the JSON-object channel formats."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import Demand, Evidence


class JsonPayload(BaseModel):
    """Base of a JSON channel format: unknown fields are ignored, known ones validated."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class Purchase(JsonPayload):
    """Order facts many channels carry, and the severity signals an integration knows.

    ``amount`` (with ``currency``, ISO 4217, default the policy's), ``customer_tier``
    (e.g. vip) and ``affected_customers`` become the complaint's details, which the
    router's severity rules read.
    """

    product: str | None = Field(default=None, max_length=300)
    order_id: str | None = Field(default=None, max_length=200)
    purchase_time: AwareDatetime | None = None
    demand: Demand | None = None
    amount: float | None = Field(default=None, ge=0, le=1e12, description="Amount at stake.")
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    customer_tier: str | None = Field(default=None, max_length=50)
    affected_customers: int | None = Field(default=None, ge=0, le=10**9)

    def signals(self) -> dict[str, str | int | float | bool]:
        """The severity signals present, as complaint details."""
        out: dict[str, str | int | float | bool] = {}
        if self.amount is not None:
            out["amount"] = self.amount
        if self.currency:
            out["currency"] = self.currency.upper()
        if self.customer_tier:
            out["tier"] = self.customer_tier.lower()
        if self.affected_customers is not None:
            out["affected"] = self.affected_customers
        return out


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
