"""Explainable keyword classifier over the taxonomy: code, confidence, the terms that decided it.

Score of a code = sum of the weights of its distinct keywords found in the text.
Confidence = best / (best + second + prior), where ``prior`` is the taxonomy's
``confidence_prior``: 0 when nothing matched, rising towards 1 as the winning evidence
grows, falling as the runner-up closes in (a tie of two single hits gives 1/3). It is
monotone: more weight for the winner never lowers it, more for the runner-up never raises it.
Pure and deterministic: no I/O, no clock; ties go to the code listed first in the file.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from services.router.taxonomy import Taxonomy

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


@lru_cache(maxsize=8192)
def _literal(term: str) -> str:
    """What a text must contain for ``term`` to match: a cheap test before the regex."""
    return " ".join(normalise(term).rstrip("*").split())


def normalise(text: str) -> str:
    """Fold full-width forms (ＡＰＰ -> app), case and curly apostrophes, for matching."""
    return unicodedata.normalize("NFKC", text).replace("\u2019", "'").lower()


def fold(text: str) -> str:
    """``normalise`` with every run of white space made one space: the text terms search."""
    return " ".join(normalise(text).split())


def found(term: str, folded: str) -> bool:
    """Whether ``term`` occurs in ``folded`` (from ``fold``): substring test, then the regex."""
    return _literal(term) in folded and pattern(term).search(folded) is not None


def confidence(best: float, second: float, *, prior: float) -> float:
    """best / (best + second + prior); 0.0 when best is 0."""
    return 0.0 if best <= 0 else round(best / (best + second + prior), 4)


def classify(text: str, *, taxonomy: Taxonomy) -> Classification:
    """Classify ``text`` into a taxonomy code with a confidence and the matched terms."""
    folded = fold(text)
    scored: list[tuple[float, int, str, list[str]]] = []
    for order, ctype in enumerate(taxonomy.types):
        hits = [(term, weight) for term, weight in ctype.weighted_terms if found(term, folded)]
        if hits:
            scored.append((sum(w for _, w in hits), order, ctype.code, [t for t, _ in hits]))
    scored.sort(key=lambda s: (-s[0], s[1]))
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
