"""`social`: a public post, comment or mention (Weibo, WeChat Moments, forums ...).

    {"platform": "weibo", "post_id": "4962...", "kind": "post", "author_handle": "@someone",
     "url": "https://...", "text": "...", "audience": 15230, "public": true,
     "posted_at": "2026-11-23T09:30:00+08:00"}

``audience`` (followers or views) and ``public`` feed the router's exposure rules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from services.intake.channels._json import JsonPayload
from services.intake.channels.base import ChannelMessage, Payload, as_object


class SocialPost(JsonPayload):
    platform: str = Field(min_length=1, max_length=100)
    post_id: str | None = Field(default=None, max_length=200)
    kind: Literal["post", "comment", "mention"] = "post"
    author_handle: str | None = Field(default=None, max_length=200)
    url: str | None = Field(default=None, max_length=2000)
    text: str = Field(min_length=1, max_length=100_000)
    audience: int = Field(default=0, ge=0)
    public: bool = True
    posted_at: AwareDatetime | None = None


def parse(payload: Payload) -> ChannelMessage:
    """Parse a social-media post."""
    post = SocialPost.model_validate(as_object(payload, "social"))
    details: dict[str, str | int | float | bool] = {
        "platform": post.platform, "kind": post.kind, "audience": post.audience, "public": post.public}
    if post.url:
        details["url"] = post.url
    return ChannelMessage(
        text=post.text, message_id=f"{post.platform}:{post.post_id}" if post.post_id else None,
        occurred_at=post.posted_at, account=f"{post.platform}:{post.author_handle}"
        if post.author_handle else None, details=details,
    )
