"""`review_platform`: a review on a third-party platform (Dianping, Tmall, Trustpilot ...).

    {"platform": "dianping", "review_id": "r-9", "rating": 1, "title": "...", "text": "...",
     "url": "https://...", "merchant": "store-sh-01", "author": "someone",
     "posted_at": "2026-11-23T09:30:00+08:00"}

Ratings 4-5 are praise, 3 a suggestion, 1-2 a complaint, unless the text says otherwise.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from schemas.events import Nature
from services.intake.channels._json import JsonPayload
from services.intake.channels.base import ChannelMessage, Payload, as_object


class Review(JsonPayload):
    platform: str = Field(min_length=1, max_length=100)
    review_id: str | None = Field(default=None, max_length=200)
    rating: int = Field(ge=1, le=5)
    title: str | None = Field(default=None, max_length=2000)
    text: str = Field(min_length=1, max_length=100_000)
    url: str | None = Field(default=None, max_length=2000)
    merchant: str | None = Field(default=None, max_length=200)
    author: str | None = Field(default=None, max_length=200)
    posted_at: AwareDatetime | None = None


def parse(payload: Payload) -> ChannelMessage:
    """Parse a third-party review."""
    r = Review.model_validate(as_object(payload, "review_platform"))
    nature = Nature.praise if r.rating >= 4 else Nature.suggestion if r.rating == 3 else Nature.complaint
    details: dict[str, str | int | float | bool] = {"platform": r.platform, "rating": r.rating}
    if r.url:
        details["url"] = r.url
    return ChannelMessage(
        text=r.text, subject=r.title, message_id=f"{r.platform}:{r.review_id}" if r.review_id else None,
        occurred_at=r.posted_at, account=f"{r.platform}:{r.author}" if r.author else None,
        store_id=r.merchant, nature=nature, details=details,
    )
