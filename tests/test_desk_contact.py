"""GET /v1/desk/cases/{id}/contact over real HTTP against a real archive database (SQLite): the
sealed contact opened for a person who may record a contact on the case, audited first; "erased"
once the customer's key is gone; 403 for others; 501 when no master key is configured."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine

from schemas.events import Contact
from services.common import sealing
from services.common.policy import load_policy
from services.desk.adapters import ArchiveReader
from services.desk.app import build
from services.desk.settings import DeskSettings
from tests.fakes import FixedClock, RecordingPublisher
from tests.test_desk_http import IDENTITY_KEY, NOW, SECRET, archive, archive_url, token  # noqa: F401

PHONE, EMAIL, NAME = "+8613800138000", "li.lei@example.com", "李雷"


class MemoryContacts:
    """``Contacts`` over one sealed contact per case and a dict of data keys (erase: drop one)."""

    def __init__(self) -> None:
        m = sealing.MasterKeys.parse(sealing.generate_master_keys("k1"))
        self.record, dek = sealing.new_data_key(m, "cust-1", now=NOW)
        self.deks = {self.record.kid: dek}
        self.sealed = {"A1": sealing.seal_contact(Contact(name=NAME, phone=PHONE, email=EMAIL),
                                                  subject="cust-1", kid=self.record.kid, dek=dek),
                       "A2": Contact()}

    async def contact(self, complaint_id: str) -> Contact | None:
        return self.sealed.get(complaint_id)

    async def open(self, contact: Contact) -> Contact:
        return sealing.open_contact(contact, self.deks)


def run(tmp_path: Path, archive: Engine, contacts: MemoryContacts | None, env: dict[str, str],  # noqa: F811
        scenario: Callable[[Callable[..., Awaitable[tuple[int, Any]]]], Awaitable[None]]) -> RecordingPublisher:
    settings = DeskSettings(**{"COMPLAINTS_DATA_DIR": str(tmp_path), "DESK_JWT_SECRET": SECRET,
                               "ARCHIVE_DATABASE_URL": archive.url.render_as_string(hide_password=False),
                               "INTAKE_IDENTITY_KEY": IDENTITY_KEY, **env})
    publisher = RecordingPublisher()
    app = build(settings, load_policy(), publisher=publisher, clock=FixedClock(NOW),
                reader=ArchiveReader(archive), contacts=contacts)

    async def go() -> None:
        async with TestClient(TestServer(app.web.web_app)) as client:
            async def call(path: str, tok: str) -> tuple[int, Any]:
                r = await client.get(path, headers={"Authorization": f"Bearer {tok}"})
                return r.status, json.loads(await r.text())
            await scenario(call)

    asyncio.run(go())
    return publisher


def test_a_permitted_person_opens_the_contact_audited_and_an_erased_one_reads_erased(
        tmp_path: Path, archive: Engine) -> None:  # noqa: F811
    contacts = MemoryContacts()
    answers: list[tuple[int, Any]] = []

    async def scenario(call: Callable[..., Awaitable[tuple[int, Any]]]) -> None:
        answers.append(await call("/v1/desk/cases/A1/contact", token("ann", "handler")))     # booked to ann
        answers.append(await call("/v1/desk/cases/A1/contact", token("aud", "auditor")))     # reads, may not act
        answers.append(await call("/v1/desk/cases/A2/contact", token("ann", "handler")))     # no details given
        contacts.deks.clear()  # complaints erase-customer
        answers.append(await call("/v1/desk/cases/A1/contact", token("ann", "handler")))

    published = run(tmp_path, archive, contacts, {}, scenario)
    (ok, opened), (refused, problem), (none, nothing), (gone, erased) = answers
    assert ok == 200 and opened["state"] == "open"
    assert (opened["name"], opened["phone"], opened["email"]) == (NAME, PHONE, EMAIL)
    assert refused == 403 and problem["rule"] == "read_only"
    assert none == 200 and nothing["state"] == "none" and "phone" not in nothing
    assert gone == 200 and erased["state"] == "erased" and "phone" not in erased
    # And each permitted read was recorded on complaints.audit, naming the contact fields
    audits = [e for topic, e in published.published if topic == "complaints.audit"]
    assert len(audits) == 3
    assert all(a.data.fields == ["name", "phone", "email"] and a.data.actor == "ann" for a in audits)  # type: ignore[attr-defined]


def test_without_a_master_key_opening_a_contact_is_not_configured(tmp_path: Path, archive: Engine,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PII_MASTER_KEYS", raising=False)
    answers: list[tuple[int, Any]] = []

    async def scenario(call: Callable[..., Awaitable[tuple[int, Any]]]) -> None:
        answers.append(await call("/v1/desk/cases/A1/contact", token("ann", "handler")))

    run(tmp_path, archive, None, {"PII_MASTER_KEYS": ""}, scenario)
    ((status, problem),) = answers
    assert status == 501 and "PII_MASTER_KEYS" in problem["detail"]
