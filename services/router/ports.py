"""What the router needs from outside."""

from __future__ import annotations

from typing import Protocol

from schemas.envelope import Model
from services.common.ports import Clock, Publisher

__all__ = ["Clock", "FirstContacts", "Publisher", "PriorComplaint"]


class PriorComplaint(Model):
    """A customer's earlier complaint and who owns it."""

    complaint_id: str
    owner: str


class FirstContacts(Protocol):
    """Remembers each customer's anchor complaint for a window (首接负责制).

    ``claim`` is atomic: of two router instances routing the same customer's
    complaints at once, one becomes the anchor and the other sees it.
    """

    async def claim(self, customer_key: str, prior: PriorComplaint, *,
                    window_seconds: int) -> PriorComplaint | None:
        """Make ``prior`` the anchor if the customer has none; else return the anchor."""
        ...
