"""The sender's channel account (a WeChat openid) sealed into a contact (``SealedContact.account``):
pure, no broker, no Redis (docs/privacy.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.events import Contact
from services.common import sealing

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
NAME = "李雷"


def key(subject: str = "cust-wx") -> tuple[str, bytes]:
    masters = sealing.MasterKeys.parse(sealing.generate_master_keys("k1"))
    record, dek = sealing.new_data_key(masters, subject, now=NOW)
    return record.kid, dek


def test_an_openid_alone_is_sealed_as_the_account_and_opens_only_as_that_field() -> None:
    # Given a contact with nothing but a language (a WeChat sender) and their openid
    kid, dek = key()
    # When it is sealed with the account
    sealed = sealing.seal_contact(Contact(language="zh"), subject="cust-wx", kid=kid, dek=dek, account=OPENID)
    # Then the account is sealed under the customer's key, nothing else is, and no clear openid shows
    assert sealed.sealed is not None and sealed.sealed.account is not None
    assert (sealed.sealed.name, sealed.sealed.phone, sealed.sealed.email) == (None, None, None)
    assert sealed.sealed.subject == "cust-wx" and sealed.sealed.account.kid == kid
    assert OPENID not in sealed.model_dump_json()
    # (masked, it is only a marker that the customer is reachable by WeChat)
    assert sealed.masked() == {"wechat": "wechat:***"} and sealed.reachable_by == "none" and not sealed.named
    # And it opens as the field "account" of that customer, not as another field or customer
    assert sealing.open_field(dek, "cust-wx", "account", sealed.sealed.account) == OPENID
    with pytest.raises(sealing.Unreadable):
        sealing.open_field(dek, "cust-wx", "phone", sealed.sealed.account)
    with pytest.raises(sealing.Unreadable):
        sealing.open_field(dek, "cust-other", "account", sealed.sealed.account)


def test_the_account_is_sealed_beside_a_name_and_its_key_counts_like_theirs() -> None:
    # Given a WeChat sender who also gave a name, sealed with the account
    kid, dek = key()
    sealed = sealing.seal_contact(Contact(name=NAME, language="zh"), subject="cust-wx", kid=kid, dek=dek,
                                  account=OPENID)
    assert sealed.sealed is not None and sealed.sealed.name is not None and sealed.sealed.account is not None
    # Then the account's key is among the contact's keys
    assert sealing.kids_of(sealed) == {kid}
    # And opening the contact gives the name in clear and leaves the account out (it has no clear
    # field: only the notifier's transport opens it)
    opened = sealing.open_contact(sealed, {kid: dek})
    assert (opened.name, opened.sealed) == (NAME, None)
    assert OPENID not in opened.model_dump_json()
    # And without the key (erased), the contact is erased
    with pytest.raises(sealing.Erased):
        sealing.open_contact(sealed, {})


def test_an_erased_account_only_contact_is_erased_not_empty() -> None:
    # Given a contact that holds only a sealed openid, and its customer's key gone
    kid, dek = key()
    sealed = sealing.seal_contact(Contact(), subject="cust-wx", kid=kid, dek=dek, account=OPENID)
    # When it is opened, Then it is erased (the desk says "erased", not "no contact given")
    with pytest.raises(sealing.Erased):
        sealing.open_contact(sealed, {})
    # And with the key it opens to a contact with nothing in clear
    opened = sealing.open_contact(sealed, {kid: dek})
    assert (opened.name, opened.phone, opened.email, opened.sealed) == (None, None, None, None)


@pytest.mark.parametrize("account", [None, ""])
def test_no_account_and_no_contact_is_left_as_it_is(account: str | None) -> None:
    kid, dek = key()
    contact = Contact(language="en")
    assert sealing.seal_contact(contact, subject="cust-wx", kid=kid, dek=dek, account=account) is contact


def test_a_contact_sealed_already_is_not_sealed_again_with_an_account() -> None:
    # Given a contact sealed before (a redelivered registration)
    kid, dek = key()
    first = sealing.seal_contact(Contact(name=NAME), subject="cust-wx", kid=kid, dek=dek)
    # When it is sealed again with an account, Then it is left as it is
    assert sealing.seal_contact(first, subject="cust-wx", kid=kid, dek=dek, account=OPENID) is first
