"""Notifier settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator

from services.common.settings import CommonSettings
from services.notifier.messages import PLATFORM_NAME
from services.notifier.replies import PlatformConfig, WeChatConfig
from services.notifier.transports import ChatKind, HttpConfig, SmtpConfig


class ChatConfig(HttpConfig):
    kind: ChatKind


def _json(value: Any) -> Any:
    """JSON text from the environment, parsed; anything else as it is."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else None
    return value


class NotifierSettings(CommonSettings):
    """Notifier settings: the shared ones (see CommonSettings) plus

    NOTIFIER_HTTP_PORT        port of /metrics and /healthz (default 8083)
    NOTIFIER_OUTBOX_DIR       directory of the file outbox, the transport of every channel that
                              has none configured (default .complaints/outbox)
    NOTIFIER_OUTBOX_ENABLED   true to let the file outbox stand in for channels without a
                              transport (development, tests; default false: the notifier refuses
                              to start while e-mail, SMS or a staff role's chat has none). What it
                              writes reaches nobody: it is recorded ``outboxed``, never ``sent``,
                              and stops no SLA clock
    NOTIFIER_SMTP             JSON: e-mail over SMTP {"host", "port", "security": starttls|ssl|none,
                              "username", "password", "sender", "sender_name", "domain", "ca_file"}
    NOTIFIER_SMS_GATEWAY      JSON: {"url", "token"} of a JSON SMS gateway
    NOTIFIER_CHAT             JSON: role -> {"kind": wecom|dingtalk|slack, "url", "token"} for
                              internal notices (roles: handler, first_contact_owner,
                              department_head, executives)
    NOTIFIER_WECHAT           JSON: the WeChat official account whose followers are answered by
                              customer-service message when they left no e-mail or phone: {"appid",
                              "secret", "base_url" (default https://api.weixin.qq.com), "token_api":
                              token|stable_token (default token; stable_token for more than one
                              instance), "timeout", "token_margin"}. Unset, such a customer's
                              messages become call-back tasks (see below)
    NOTIFIER_PLATFORMS        JSON: platform (as intake's social / review_platform payloads name it,
                              lower case: weibo, dianping ...) -> {"url", "token", "timeout", "kinds"}:
                              the webhook that replies to the original post or review. A platform
                              not listed: its customers' messages become call-back tasks
                              A customer message no transport can reach (no contact and no reply
                              route, its channel not configured: the ``callback`` queue; or the
                              channel refusing it for good: WeChat's 48-hour window) is recorded
                              ``callback_required`` and the first_contact_owner role's chat is told
                              to reach the customer and record the contact at the desk
    NOTIFIER_STAFF_LANGUAGE   language of internal notices and call-back tasks (zh or en, default zh)
    NOTIFIER_CONTACT_TTL_DAYS how long contacts and queued notifications are kept (default 120)
    NOTIFIER_MISSING_CONTACT_RETRIES
                              times a customer notice waits for its complaint's registration to
                              arrive before it is dead-lettered (default 20, 0.5 s apart)
    NOTIFIER_DISPATCH_INTERVAL  seconds between scans of each transport's queue when nothing woke
                              it (default 1): a message this instance queues due now is sent at
                              once; the scan finds what became due since (quiet hours, a retry)
                              and what another instance queued or left behind
    NOTIFIER_DISPATCH_BATCH   most notifications a scan takes per transport (default 200)
    NOTIFIER_TRANSPORT_CONCURRENCY  sends in flight per transport (default 8)
    NOTIFIER_OUTBOX_CONCURRENCY  sends in flight to the file outbox (default 64, 1 to 1024): a local
                              file, no server's limit, so not NOTIFIER_TRANSPORT_CONCURRENCY
    NOTIFIER_SEND_LEASE       seconds a taken notification stays with one instance (default 60);
                              must exceed every transport's timeout, or a slow send would be
                              taken for a dead one
    NOTIFIER_IN_DOUBT         what to do with a send whose sender died mid-send (the transport
                              may or may not have it): resend (default; at least once, same
                              Message-ID / Idempotency-Key) or hold (at most once: recorded as
                              in_doubt and dead-lettered for a person to check)
    NOTIFIER_RECIPIENT_LIMIT  most customer messages one recipient (phone number, e-mail address)
                              is sent per window (default 10): over it a message is not sent but
                              recorded rate_limited, so the web form cannot send the company's SMS
                              to any number at will. Counted per notification id (a retry counts
                              once) in Redis under a hash of the address, never the address
    NOTIFIER_RECIPIENT_WINDOW seconds of that window, fixed windows (default 86400)
    NOTIFIER_MAX_ATTEMPTS     attempts before a transient failure counts as permanent (default 8)
    NOTIFIER_RETRY_BASE, NOTIFIER_RETRY_CAP  back-off of retries in seconds: base * 2^(n-1),
                              jittered, at most cap (defaults 1 and 300)
    NOTIFIER_STORE_CHECK_INTERVAL  seconds between checks that Redis still holds the queues
                              (default 2); when it lost them they are rebuilt from the topics
    NOTIFIER_REBUILD_TIMEOUT  seconds one rebuild from the topics may run before it is cancelled
                              and started over (default 600)
    PII_MASTER_KEYS           the master key(s) that wrap the customers' data keys, as intake's
                              (docs/privacy.md): sealed addresses are opened only to send; unset,
                              the file pii-master-keys under COMPLAINTS_DATA_DIR
    PII_KEY_CACHE_TTL         seconds an unwrapped data key stays in memory (default 60)
    """

    http_port: int = Field(default=8083, ge=1, le=65535, validation_alias="NOTIFIER_HTTP_PORT")
    pii_master_keys: SecretStr | None = Field(default=None, validation_alias="PII_MASTER_KEYS")
    pii_key_cache_ttl: float = Field(default=60.0, gt=0, le=3600, validation_alias="PII_KEY_CACHE_TTL")
    outbox_dir: Path = Field(default=Path(".complaints/outbox"), validation_alias="NOTIFIER_OUTBOX_DIR")
    outbox_enabled: bool = Field(default=False, validation_alias="NOTIFIER_OUTBOX_ENABLED")
    smtp: SmtpConfig | None = Field(default=None, validation_alias="NOTIFIER_SMTP")
    sms_gateway: HttpConfig | None = Field(default=None, validation_alias="NOTIFIER_SMS_GATEWAY")
    chat: dict[str, ChatConfig] = Field(default_factory=dict, validation_alias="NOTIFIER_CHAT")
    wechat: WeChatConfig | None = Field(default=None, validation_alias="NOTIFIER_WECHAT")
    platforms: dict[Annotated[str, StringConstraints(pattern=PLATFORM_NAME)],
                    PlatformConfig] = Field(default_factory=dict, validation_alias="NOTIFIER_PLATFORMS")
    staff_language: Literal["zh", "en"] = Field(default="zh", validation_alias="NOTIFIER_STAFF_LANGUAGE")
    contact_ttl_days: int = Field(default=120, ge=1, le=3650,
                                  validation_alias="NOTIFIER_CONTACT_TTL_DAYS")
    missing_contact_retries: int = Field(default=20, ge=0, le=1000,
                                         validation_alias="NOTIFIER_MISSING_CONTACT_RETRIES")
    dispatch_interval: float = Field(default=1.0, gt=0, le=60, validation_alias="NOTIFIER_DISPATCH_INTERVAL")
    dispatch_batch: int = Field(default=200, ge=1, le=10_000, validation_alias="NOTIFIER_DISPATCH_BATCH")
    transport_concurrency: int = Field(default=8, ge=1, le=256,
                                       validation_alias="NOTIFIER_TRANSPORT_CONCURRENCY")
    outbox_concurrency: int = Field(default=64, ge=1, le=1024, validation_alias="NOTIFIER_OUTBOX_CONCURRENCY")
    send_lease: float = Field(default=60.0, ge=1, le=3600, validation_alias="NOTIFIER_SEND_LEASE")
    in_doubt: Literal["resend", "hold"] = Field(default="resend", validation_alias="NOTIFIER_IN_DOUBT")
    recipient_limit: int = Field(default=10, ge=1, le=10_000, validation_alias="NOTIFIER_RECIPIENT_LIMIT")
    recipient_window: int = Field(default=86_400, ge=60, le=30 * 86_400,
                                  validation_alias="NOTIFIER_RECIPIENT_WINDOW")
    max_attempts: int = Field(default=8, ge=1, le=100, validation_alias="NOTIFIER_MAX_ATTEMPTS")
    retry_base: float = Field(default=1.0, gt=0, le=3600, validation_alias="NOTIFIER_RETRY_BASE")
    retry_cap: float = Field(default=300.0, gt=0, le=86400, validation_alias="NOTIFIER_RETRY_CAP")
    store_check_interval: float = Field(default=2.0, gt=0, le=3600,
                                        validation_alias="NOTIFIER_STORE_CHECK_INTERVAL")
    rebuild_timeout: int = Field(default=600, ge=10, le=86400, validation_alias="NOTIFIER_REBUILD_TIMEOUT")

    @field_validator("smtp", "sms_gateway", "wechat", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        return _json(value)

    @field_validator("chat", "platforms", mode="before")
    @classmethod
    def _parse_chat(cls, value: Any) -> Any:
        return _json(value) or {}

    @model_validator(mode="after")
    def _lease_outlasts_sends(self) -> NotifierSettings:
        timeouts = {"NOTIFIER_SMTP.timeout": self.smtp.timeout if self.smtp else None,
                    "NOTIFIER_SMS_GATEWAY.timeout": self.sms_gateway.timeout if self.sms_gateway else None,
                    # a send may fetch a token and post, twice (a refused token is fetched anew)
                    "4 x NOTIFIER_WECHAT.timeout": 4 * self.wechat.timeout if self.wechat else None,
                    **{f"NOTIFIER_CHAT.{role}.timeout": c.timeout for role, c in self.chat.items()},
                    **{f"NOTIFIER_PLATFORMS.{p}.timeout": c.timeout for p, c in self.platforms.items()}}
        for field, timeout in timeouts.items():
            if timeout is not None and timeout >= self.send_lease:
                raise ValueError(f"NOTIFIER_SEND_LEASE ({self.send_lease:g} s) must exceed {field} "
                                 f"({timeout:g} s): a slow send would be taken for a dead sender's")
        return self


__all__ = ["ChatConfig", "NotifierSettings"]
