"""What a complaint says: its code (a keyword classifier over the taxonomy) and its severity signals.

Score of a code = sum of the weights of its distinct keywords found in the text.
Confidence = best / (best + second + prior), where ``prior`` is the taxonomy's
``confidence_prior``: 0 when nothing matched, rising towards 1 as the winning evidence
grows, falling as the runner-up closes in (a tie of two single hits gives 1/3). It is
monotone: more weight for the winner never lowers it, more for the runner-up never raises it.
Pure and deterministic: no I/O, no clock; ties go to the code listed first in the file.

``assess`` reads the severity signals of REQUIREMENTS §5 from the text and the channel's
details (keywords, audience, customers affected, amounts, VIP tier, a repeat); the phrase
families, negations, and the audiences, counts and amounts written in words are read by
``services.router.severity`` (numbers by ``services.router.numerals``). Beside the rules, a
learned severity model (``textmodel.SeverityModel``) may raise the level when it reads a
paraphrase the phrase families miss; it never lowers what a rule found.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Complaint, Severity
from services.common.policy import SeverityPolicy
from services.router.severity import phrase_findings, stated_figures, word_amounts
from services.router.taxonomy import Taxonomy, normalise
from services.router.textmodel import Prediction, SeverityModel, TextModel, softmax

ALTERNATIVES = 3
_WORD = r"[a-z0-9_]"  # Latin word characters: "app" matches in "app闪退", not in "happy"


class Alternative(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    score: float


class Classification(BaseModel):
    """The chosen code, how sure, and why."""

    model_config = ConfigDict(frozen=True)

    code: str
    confidence: float = Field(ge=0, le=1)
    score: float = Field(ge=0, description="Summed weight of the winning code's matched keywords.")
    matched: list[str] = Field(description="The keywords of the chosen code found in the text.")
    alternatives: list[Alternative] = Field(description="Next best codes with a score, best first.")
    model: str | None = Field(default=None, description="The text model's version when it took part.")
    weighed: list[str] = Field(default_factory=list,
                               description="The model's terms that raised the chosen code most.")

    def needs_review(self, threshold: float) -> bool:
        """True when the confidence is below ``threshold`` (the case goes to human review)."""
        return self.confidence < threshold


@lru_cache(maxsize=8192)
def pattern(term: str) -> re.Pattern[str]:
    """Chinese terms match anywhere; Latin ones as whole words, ``word*`` with any ending."""
    folded = normalise(term)
    if not folded.isascii():
        return re.compile(re.escape(folded))
    stem, open_end = folded.rstrip("*"), folded.endswith("*")
    words = r"\s+".join(re.escape(w) for w in stem.split())
    return re.compile(rf"(?<!{_WORD}){words}" + (rf"{_WORD}*" if open_end else rf"(?!{_WORD})"))


def fold(text: str) -> str:
    """``normalise`` with every run of white space made one space: the text terms search."""
    return " ".join(normalise(text).split())


def confidence(best: float, second: float, *, prior: float) -> float:
    """best / (best + second + prior); 0.0 when best is 0."""
    return 0.0 if best <= 0 else round(best / (best + second + prior), 4)


def classify(text: str, *, taxonomy: Taxonomy, model: TextModel | None = None) -> Classification:
    """Classify ``text`` into a taxonomy code with a confidence and the terms that decided.

    Without ``model``, or when it abstains (it knows too few of the text's features, see
    ``services.router.textmodel``), the keywords alone decide (module docstring).
    With it, each code's logit is the model's plus ``model.keyword_weight`` times the code's
    keyword score, and the confidence is the winner's softmax probability; the alternatives'
    scores are then their probabilities. Keywords sure enough for no review, and at least as
    sure as that, keep their decision: a precise phrase ("闪退", "refund") outranks a model
    that learned from other kinds of text.
    """
    scored = keyword_scores(text, taxonomy=taxonomy)
    prediction = model.predict(text) if model is not None else None
    by_keywords = _by_keywords(scored, taxonomy)
    if model is None or prediction is None or prediction.abstains:
        return by_keywords
    combined = _with_model(scored, prediction, model, taxonomy)
    keywords_sure = not by_keywords.needs_review(taxonomy.review_threshold)
    return by_keywords if keywords_sure and by_keywords.confidence >= combined.confidence else combined


def _by_keywords(scored: list[tuple[float, int, str, list[str]]], taxonomy: Taxonomy) -> Classification:
    """The keywords' decision: the best score, the confidence formula of the module docstring."""
    scored = sorted(scored, key=lambda s: (-s[0], s[1]))
    if not scored:
        return Classification(code=taxonomy.fallback, confidence=0.0, score=0.0, matched=[],
                              alternatives=[])
    best, *rest = scored
    second = rest[0][0] if rest else 0.0
    return Classification(
        code=best[2], confidence=confidence(best[0], second, prior=taxonomy.confidence_prior),
        score=best[0], matched=best[3],
        alternatives=[Alternative(code=code, score=score) for score, _, code, _ in rest[:ALTERNATIVES]],
    )


def keyword_scores(text: str, *, taxonomy: Taxonomy) -> list[tuple[float, int, str, list[str]]]:
    """(score, order in the taxonomy, code, matched keywords) of each code with a keyword hit: a
    term occurs in the folded text when its literal does (a cheap test) and then its pattern."""
    folded = fold(text)
    scored: list[tuple[float, int, str, list[str]]] = []
    for order, ctype in enumerate(taxonomy.types):
        hits = [(term, weight) for literal, term, weight in ctype.weighted_terms
                if literal in folded and pattern(term).search(folded) is not None]
        if hits:
            scored.append((sum(w for _, w in hits), order, ctype.code, [t for t, _ in hits]))
    return scored


def combined_logits(scored: list[tuple[float, int, str, list[str]]], prediction: Prediction,
                    model: TextModel, taxonomy: Taxonomy) -> dict[str, float]:
    """The model's logit per code plus ``keyword_weight`` times the code's keyword score."""
    neutral = sum(prediction.logits.values()) / len(prediction.logits)  # a code the model lacks
    codes = {t.code for t in taxonomy.types}
    logits = {c: v for c, v in prediction.logits.items() if c in codes}
    for score, _, code, _ in scored:
        logits[code] = logits.get(code, neutral) + model.keyword_weight * score
    return logits


def _with_model(scored: list[tuple[float, int, str, list[str]]], prediction: Prediction,
                model: TextModel, taxonomy: Taxonomy) -> Classification:
    """Softmax over ``combined_logits``; ties go to the taxonomy's order."""
    order = {t.code: i for i, t in enumerate(taxonomy.types)}
    hits = {code: (score, terms) for score, _, code, terms in scored}
    probs = softmax(combined_logits(scored, prediction, model, taxonomy))
    ranked = sorted(probs, key=lambda c: (-round(probs[c], 6), order[c]))
    best = ranked[0]
    score, matched = hits.get(best, (0.0, []))
    return Classification(
        code=best, confidence=round(probs[best], 4), score=score, matched=matched,
        alternatives=[Alternative(code=c, score=round(probs[c], 4)) for c in ranked[1:ALTERNATIVES + 1]],
        model=model.version, weighed=model.weighed(prediction, best),
    )


def code_reasons(result: Classification, taxonomy: Taxonomy, *, review: bool,
                 review_department: str) -> list[str]:
    """The decision's reasons for its code, and for the review queue when ``review``."""
    ctype = taxonomy.get(result.code)
    why = (f"matched {', '.join(result.matched[:6])}" if result.matched
           else "no keyword matched" if result.model else "no keyword matched (fallback)")
    if result.model:
        weighed = ", ".join(result.weighed) or "no term for this code"
        why = f"model {result.model} weighed {weighed}; {why}"
    reasons = [f"code {ctype.code} {ctype.name_en} / {ctype.name_zh}: confidence "
               f"{result.confidence:.2f}, {why}"]
    if review:
        reasons.append(f"review: confidence {result.confidence:.2f} below "
                       f"{taxonomy.review_threshold}; queued to {review_department} "
                       f"(the code's department would be {ctype.department})")
    return reasons


# ---- severity -------------------------------------------------------------------------

_ORDER = {Severity.general: 0, Severity.urgent: 1, Severity.major: 2}

# Amounts are read in linear time: each currency sign or code ("¥", "rmb") is followed to the
# number after it, and each unit ("元", "万元", "usd") back to the number before it. A pattern
# such as "\\d+\\s*元" searched over the text retries from every digit of a long run: quadratic
# (10,000 digits took 32 s). What is read is what those patterns read: after a sign, the
# leftmost number; before a unit, the longest tail of the numeral (a run of digit groups joined
# by single "," or ".") that is one number ("1,2345元" reads 2345, "85.1,000元" 1000).
_SIGN = re.compile(r"[¥￥$€£]|(?<![a-z])(?:rmb|cny|usd|eur|gbp)")  # 被骗了rmb 53,000
_SIGNS = {"¥": "CNY", "￥": "CNY", "rmb": "CNY", "cny": "CNY", "$": "USD", "usd": "USD", "€": "EUR",
          "eur": "EUR", "£": "GBP", "gbp": "GBP"}
_LEADING = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_UNIT = re.compile(r"(万\s*(?:元|块|人民币))|(元|块钱|人民币|(?:rmb|cny|yuan)\b)|((?:usd|dollars)\b)"
                   r"|((?:eur|euros?)\b)")
_UNITS = {1: ("CNY", 10_000.0), 2: ("CNY", 1.0), 3: ("USD", 1.0), 4: ("EUR", 1.0)}  # by _UNIT's group


def _trailing(numeral: str) -> float:
    """The number a unit after ``numeral`` reads: its longest tail that is one number.

    The tail holds at most one ".", followed by the last digits; before it, the groups back
    to the previous "." are read as thousands groups when they end in groups of three
    ("12,345"), else only the last of them counts ("1,2345" -> 2345).
    """
    if numeral.isdecimal():
        return float(numeral)
    parts = re.split(r"([.,])", numeral)  # digits, separator, digits, ...
    groups, separators = parts[0::2], parts[1::2]
    decimals = ""
    if separators and separators[-1] == ".":
        decimals = "." + groups.pop()
        separators.pop()
    after = next((i for i in range(len(separators) - 1, -1, -1) if separators[i] == "."), -1)
    stretch = groups[after + 1:]  # the groups joined by "," back to the previous "."
    first = len(stretch)  # where the trailing groups of exactly three digits begin
    while first > 0 and len(stretch[first - 1]) == 3:
        first -= 1
    if first == len(stretch) or len(stretch) == 1:
        digits = stretch[-1]
    else:
        head = max(first - 1, 0)
        digits = stretch[head][-3:] + "".join(stretch[head + 1:])
    return float(digits + decimals)


def _numeral_before(text: str, end: int) -> str | None:
    """The numeral ending at ``end`` (digit groups joined by single "," or "."), if one does."""
    start = end
    while start > 0 and (text[start - 1].isdecimal() or (
            text[start - 1] in ".," and start >= 2 and text[start - 2].isdecimal() and start < end)):
        start -= 1
    while start < end and not text[start].isdecimal():  # a separator cannot start it
        start += 1
    return text[start:end] if start < end else None


def amounts_in(text: str) -> dict[str, float]:
    """The largest amount per currency written in ``text`` (already folded by ``fold``).

    Linear in the length of ``text``: a numeral has one sign before it and one unit after it
    at most, and only the white space between them is crossed.
    """
    best: dict[str, float] = {}
    for m in _SIGN.finditer(text):
        at = m.end()
        while at < len(text) and text[at].isspace():
            at += 1
        if number := _LEADING.match(text, at):
            currency = _SIGNS[m.group(0)]
            best[currency] = max(best.get(currency, 0.0), float(number.group(0).replace(",", "")))
    for m in _UNIT.finditer(text):
        end = m.start()
        while end > 0 and text[end - 1].isspace():
            end -= 1
        numeral = _numeral_before(text, end) if end and text[end - 1].isdecimal() else None
        if numeral:
            currency, factor = _UNITS[m.lastindex or 2]
            best[currency] = max(best.get(currency, 0.0), _trailing(numeral) * factor)
    return best


def _number(value: Any) -> float | None:
    """A detail as a finite number, else None (an int of 400 digits, "nan" and "inf" are none)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def assess(complaint: Complaint, rules: SeverityPolicy, *, repeat: bool,
           model: SeverityModel | None = None) -> tuple[Severity, list[str]]:
    """Severity from every signal found (REQUIREMENTS §5), with one reason per signal.

    ``model``: the learned severity model, one more signal when it reads the text as urgent or
    major with enough probability (its reason names the terms that weighed most).
    """
    raw = f"{complaint.subject}\n{complaint.description}"
    text = fold(raw)
    signals: list[tuple[Severity, str]] = [
        (finding.severity, finding.reason()) for finding in phrase_findings(text, rules)]
    if model is not None and (reading := model.read(raw)) is not None:
        weighed = ", ".join(reading.weighed) or "no single term"
        signals.append((Severity(reading.level), f"model {model.version} read it as {reading.level} "
                        f"({reading.probability:.0%}; weighed {weighed})"))
    for figure in stated_figures(text, rules.stated, rules.qualifiers):  # "几十万粉丝", "dozens of residents"
        limit = rules.public_audience if figure.kind == "audience" else rules.affected_customers
        if sev := limit.severity(figure.value):
            what = "public exposure" if figure.kind == "audience" else "many customers affected"
            signals.append((sev, f"{what} (stated: {figure.phrase!r} = {figure.value:,.0f})"))
    details = complaint.details
    audience = _number(details.get("audience"))
    if audience is not None and details.get("public", True) is not False:
        if sev := rules.public_audience.severity(audience):
            signals.append((sev, f"public exposure (audience {int(audience)})"))
    affected = _number(details.get("affected"))
    if affected is not None and (sev := rules.affected_customers.severity(affected)):
        signals.append((sev, f"many customers affected ({int(affected)})"))
    amounts = amounts_in(text)
    for currency, value in word_amounts(text, default_currency=rules.default_currency,
                                            latin_currency=rules.latin_currency).items():
        amounts[currency] = max(amounts.get(currency, 0.0), value)
    if (amount := _number(details.get("amount"))) is not None:
        currency = str(details.get("currency") or rules.default_currency).upper()
        amounts[currency] = max(amounts.get(currency, 0.0), amount)
    for currency, value in sorted(amounts.items()):
        threshold = rules.amounts.get(currency)
        if threshold and (sev := threshold.severity(value)):
            signals.append((sev, f"amount {value:,.0f} {currency}"))
    tier = details.get("tier")
    if isinstance(tier, str) and tier.lower() in {t.lower() for t in rules.vip_tiers}:
        signals.append((rules.vip_severity, f"VIP customer (tier {tier.lower()})"))
    if repeat:
        signals.append((rules.repeat_severity, "repeat complaint within the window"))
    if not signals:
        return Severity.general, ["severity general: no severity signal"]
    severity = max((s for s, _ in signals), key=_ORDER.__getitem__)
    reasons = [f"severity {severity.value}: " + "; ".join(
        f"{why} -> {s.value}" for s, why in sorted(signals, key=lambda f: -_ORDER[f[0]]))]
    return severity, reasons
