"""Staff access to personal data, recorded (complaints.audit): who read which case, when."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from schemas.envelope import Envelope, Model


class StaffAccess(Model):
    """One read of personal data by a staff member, with the identity from their token.

    ``complaint_id`` is the case read; a customer search names the cases it returned in
    ``complaint_ids`` (the searched phone or e-mail is never recorded, not even hashed).
    """

    actor: str = Field(min_length=1, max_length=200, description="The token's subject (staff id).")
    roles: list[str] = Field(description="The token's roles.")
    department: str | None = None
    kind: Literal["case_viewed", "customer_searched"]
    complaint_id: str | None = Field(default=None, description="The case viewed.")
    complaint_ids: list[str] = Field(default_factory=list, description="Cases a customer search returned.")
    fields: list[str] = Field(description="Personal-data fields shown, e.g. contact_masked, customer_key.")
    granted_by: str = Field(description="role:scope that let the person read, e.g. handler:booked.")


class StaffAccessed(Envelope):
    EVENT_TYPE: ClassVar[str] = "staff.accessed"
    type: Literal["staff.accessed"] = "staff.accessed"
    data: StaffAccess
