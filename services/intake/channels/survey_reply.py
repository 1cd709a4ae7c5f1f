"""`survey_reply`: a customer's answer to a satisfaction revisit (回访).

    {"complaint_id": "261123-G8DDZ53RCF", "score": 4, "comment": "...", "survey_id": "S-1",
     "answered_at": "2026-11-26T09:30:00+08:00"}

It becomes a `satisfaction` case event on that complaint, never a new complaint.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from services.intake.channels._json import JsonPayload
from services.intake.channels.base import ChannelMessage, Payload, as_object


class SurveyReply(JsonPayload):
    complaint_id: str = Field(min_length=1, max_length=100)
    score: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=5000)
    survey_id: str | None = Field(default=None, max_length=200)
    answered_at: AwareDatetime | None = None


def parse(payload: Payload) -> ChannelMessage:
    """Parse a satisfaction-survey answer."""
    r = SurveyReply.model_validate(as_object(payload, "survey_reply"))
    return ChannelMessage(
        text=r.comment or f"satisfaction {r.score}/5", complaint_ref=r.complaint_id, score=r.score,
        message_id=f"{r.survey_id}:{r.complaint_id}" if r.survey_id else None,
        occurred_at=r.answered_at,
    )
