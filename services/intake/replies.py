"""Replies to a satisfaction revisit (回访): read a score from free text, match it to a revisit. No I/O.

The notifier's revisit asks the customer to "reply with a score from 1 to 5"; the answer comes
back as an SMS, an e-mail or (to a revisit sent on WeChat) a WeChat message. ``read_score``
reads such an answer ("4", "4分", "★★★★", "非常满意", "very satisfied", "4 out of 5", with a
short comment before or after it) and nothing else: a new grievance, or a score followed by a
long complaint, is not a score. ``match_reply`` decides what intake does with it, given the
customer's open revisits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

MAX_COMMENT = 60
"""Width of comment a score may carry (a Chinese character counts two, so 30 of them or 60 Latin
characters); past that the message is a complaint with a score, which is registered."""
MAX_TEXT = 400  # longer texts are never read as a score (and the regexes run on short input only)

_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_EN_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
# (matched longest first: "很不满意" before "不满意" before "满意")
_ZH_WORDS = {
    "非常不满意": 1, "很不满意": 1, "极不满意": 1, "十分不满意": 1, "特别不满意": 1,
    "非常满意": 5, "很满意": 5, "十分满意": 5, "特别满意": 5, "超级满意": 5,
    "不太满意": 2, "不满意": 2, "比较满意": 4, "基本满意": 3, "一般般": 3, "一般": 3,
    "挺满意": 4, "还算满意": 4, "还满意": 4, "满意": 4,
}
_EN_WORDS = {
    "very dissatisfied": 1, "very unsatisfied": 1, "extremely dissatisfied": 1,
    "very satisfied": 5, "extremely satisfied": 5, "completely satisfied": 5,
    "not satisfied": 2, "dissatisfied": 2, "unsatisfied": 2,
    "somewhat satisfied": 4, "satisfied": 4, "neutral": 3,
}
_OUT_OF = r"(?:\s*/\s*5|\s*out\s+of\s+(?:5|five))"  # not "of 5": "one of five things broke"
_UNIT = r"(?:\s*(?:分|颗星|星|stars?|points?))"
_WORDS = "|".join(re.escape(w) for w in sorted([*_ZH_WORDS, *_EN_WORDS], key=len, reverse=True))
_PREFIX = r"(?:(?:我?(?:打|给|评)个?)|(?:score|rating|rate|评分|打分)\s*[:：]?\s*)?"


def _explicit(tag: str) -> str:
    """A score token that stands on its own: a number with a unit or "/5", stars, a word."""
    number = rf"(?P<d{tag}>[1-5])|(?P<z{tag}>[一二两三四五])|(?P<e{tag}>one|two|three|four|five)"
    return (rf"{_PREFIX}(?:{number})(?:{_OUT_OF}{_UNIT}?|{_UNIT}{_OUT_OF}?)"
            rf"|(?P<s{tag}>★{{1,5}})☆{{0,4}}|(?P<m{tag}>(?:⭐\ufe0f?){{1,5}})"
            rf"|(?:我|本人)?(?P<w{tag}>{_WORDS})")


# A bare digit (or 一..五) counts only at the start and followed by a separator or nothing: "4",
# "4，谢谢"; not one..five ("one more thing" is no score).
_BARE = rf"{_PREFIX}(?:(?P<db>[1-5])|(?P<zb>[一二两三四五]))"
# What may stand between the score and its comment. Not "." "、" ")" "-" "/" ":": "4.5", "1、屏幕",
# "3-5天", "4/10" are not scores.
_SEP = r"[\s,，。!！~～;；]"
# A Chinese score word directly followed by one of these is part of another word: 分钟, 星期, 满意度 ...
_GLUED = "钟之以多半左右后前内天的度级期球座号个元块"
# A bare digit that counts something is no score: "5 days", "3 times", "2 weeks", "4 天".
_COUNTED = (r"(?!\s*(?:(?:days?|hours?|hrs?|minutes?|mins?|weeks?|months?|years?|times?|more|other"
            r"|of|x|pcs|pieces?|items?|units?|people|persons?|calls?|visits?)\b"
            r"|[天日周月年次个小时分钟遍回趟位台件号楼]))")
_LEADING = re.compile(
    rf"(?:(?:{_explicit('l')})(?![0-9A-Za-z{_GLUED}])|(?:{_BARE})(?=$|{_SEP}){_COUNTED})(?P<rest>.*)",
    re.IGNORECASE | re.DOTALL)
_TRAILING = re.compile(rf"(?P<rest>.*?)(?:^|(?<={_SEP})|(?<=[:：]))(?:{_explicit('t')})",
                       re.IGNORECASE | re.DOTALL)
_TRIM = " \t\r\n,，。.!！~～;；:：、-"
COMPLAINT_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6}-[0-9A-HJKMNP-TV-Z]{10})(?![0-9A-Za-z])",
                              re.IGNORECASE)
# Quoted text of an e-mail reply: "> ..." lines, and everything from the client's attribution on.
_QUOTE_START = re.compile(
    r"^(?:On .{1,300} wrote:|在 ?.{1,300}写道[:：]|-{2,} ?(?:Original Message|原始邮件) ?-{2,}"
    r"|From: .{1,300}|发件人[:：].{0,300})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Score:
    """A satisfaction score read from a reply, and the customer's comment beside it."""

    score: int
    comment: str | None


def read_score(text: str, *, max_comment: int = MAX_COMMENT) -> Score | None:
    """The score a reply gives (1-5) and its comment, or None when the text is not a score."""
    text = " ".join(unicodedata.normalize("NFKC", text).split()).strip(_TRIM)
    if not text or len(text) > MAX_TEXT:
        return None
    for pattern in (_LEADING, _TRAILING):
        m = pattern.fullmatch(text)
        if m is None:
            continue
        comment = m.group("rest").strip().strip(_TRIM)
        if _width(comment) > max_comment or (comment and _LEADING.fullmatch(comment)):
            return None  # a long complaint after the score, or two scores: not a plain answer
        return Score(_value(m), comment or None)
    return None


def _width(text: str) -> int:
    return len(text) + sum(1 for c in text if unicodedata.east_asian_width(c) in "WF")


def _value(m: re.Match[str]) -> int:
    kind, value = next((k[0], v) for k, v in m.groupdict().items() if v and k != "rest")
    if kind == "d":
        return int(value)
    if kind == "z":
        return _ZH_DIGITS[value]
    if kind == "e":
        return _EN_NUMBERS[value.lower()]
    if kind in "sm":
        return value.count("★") + value.count("⭐")
    word = value.lower()
    return _ZH_WORDS.get(word) or _EN_WORDS[word]


def reply_text(text: str) -> str:
    """The new part of an e-mail reply: quoted lines and the quoted original after it dropped."""
    kept: list[str] = []
    for line in text.splitlines():
        if _QUOTE_START.match(line.strip()):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return "\n".join(kept).strip()


def complaint_numbers(text: str) -> list[str]:
    """The complaint numbers (YYMMDD-XXXXXXXXXX) a text names, upper-cased, in order."""
    return [n.upper() for n in COMPLAINT_NUMBER.findall(text)]


# ---- matching a reply to the customer's open revisits ---------------------------------------


@dataclass(frozen=True)
class OpenRevisit:
    """A complaint of the customer whose revisit was sent (and not answered yet)."""

    complaint_id: str
    sent_at: datetime


class ReplyOutcome(StrEnum):
    """What intake does with a customer's message."""

    satisfaction = "satisfaction"  # the answer to one revisit: a satisfaction event on it
    ambiguous = "ambiguous"        # a score, but for which complaint? a person decides
    not_a_score = "not_a_score"    # the customer has an open revisit, but this is no score
    no_revisit = "no_revisit"      # no open revisit in the window: an ordinary message


@dataclass(frozen=True)
class ReplyDecision:
    outcome: ReplyOutcome
    complaint_id: str | None = None  # satisfaction: the one answered; ambiguous: the latest revisited
    score: Score | None = None
    candidates: tuple[str, ...] = ()  # ambiguous: every open revisit, latest first


def match_reply(text: str, *, revisits: Sequence[OpenRevisit], now: datetime, window: timedelta,
                thread: str | None = None, max_comment: int = MAX_COMMENT) -> ReplyDecision:
    """Decide whether a customer's message answers one of their open revisits.

    A score goes to the one revisit open within ``window`` before ``now``, or to the one the
    e-mail thread (``thread``) or a complaint number in the text names; a score with several
    revisits open and none named is ambiguous; anything else is an ordinary message.
    """
    open_ = sorted((r for r in revisits if now - window <= r.sent_at),
                   key=lambda r: (r.sent_at, r.complaint_id), reverse=True)
    if not open_:
        return ReplyDecision(ReplyOutcome.no_revisit)
    ids = [r.complaint_id for r in open_]
    named = [n for n in dict.fromkeys(complaint_numbers(text)) if n in ids]
    score = read_score(COMPLAINT_NUMBER.sub(" ", text), max_comment=max_comment)
    if score is None:
        return ReplyDecision(ReplyOutcome.not_a_score)
    if thread in ids:
        return ReplyDecision(ReplyOutcome.satisfaction, thread, score)
    if len(named) == 1:
        return ReplyDecision(ReplyOutcome.satisfaction, named[0], score)
    if len(ids) == 1:
        return ReplyDecision(ReplyOutcome.satisfaction, ids[0], score)
    return ReplyDecision(ReplyOutcome.ambiguous, ids[0], score, tuple(ids))


# ---- which revisit is open: folded from the complaint's timeline ----------------------------

_ANSWERED = frozenset({"satisfaction", "reopened"})


def touches_revisit(event_type: str, data: Any) -> bool:
    """Whether an event opens a revisit (one sent to the customer) or may close it (answered,
    reopened): the events after which intake looks at the complaint's revisit again."""
    if not isinstance(data, dict):
        return False
    if event_type == "notification.recorded":
        return data.get("kind") == "revisit" and data.get("status") == "sent"
    return event_type == "case.updated" and data.get("action") in _ANSWERED


def revisit_open_since(events: Iterable[Mapping[str, Any]]) -> datetime | None:
    """When the complaint's latest revisit was sent to its customer, if nothing answered it
    since (a satisfaction score, or a reopening); None when no revisit is open."""
    sent: datetime | None = None
    answered: datetime | None = None
    for e in events:
        data, at = e.get("data") or {}, datetime.fromisoformat(e["time"])
        if (e.get("type") == "notification.recorded" and data.get("kind") == "revisit"
                and data.get("status") == "sent" and data.get("role", "customer") == "customer"):
            sent = at if sent is None else max(sent, at)
        elif e.get("type") == "case.updated" and data.get("action") in _ANSWERED:
            answered = at if answered is None else max(answered, at)
    return sent if sent is not None and (answered is None or answered < sent) else None
