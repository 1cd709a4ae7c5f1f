"""The complaint-type taxonomy (REQUIREMENTS §4): unique codes, names, departments, keywords.

The shipped file is ``taxonomy.yaml`` next to this module; its header explains the
matching rules and the confidence formula used by ``services.router.classify``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.policy import load_yaml_model

DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.yaml")
CODE = r"^[A-Z]{2}-\d{2}$"
_CJK = re.compile(r"[\u3400-\u9fff]")


def normalise(text: str) -> str:
    """Fold full-width forms (ＡＰＰ -> app), case and curly apostrophes, for matching."""
    return unicodedata.normalize("NFKC", text).replace("\u2019", "'").lower()


def literal(term: str) -> str:
    """What a (folded) text must contain for ``term`` to match: a cheap test before its pattern."""
    return " ".join(normalise(term).rstrip("*").split())


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Keywords(_Frozen):
    """Chinese terms match as substrings; English ones as whole words (``word*``: any ending)."""

    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    @field_validator("zh", "en")
    @classmethod
    def _clean(cls, terms: list[str]) -> list[str]:
        if any(not t.strip() for t in terms):
            raise ValueError("keywords must not be empty strings")
        if len({t.strip().lower() for t in terms}) != len(terms):
            raise ValueError("keywords are listed twice")
        return [t.strip() for t in terms]

    @field_validator("zh")
    @classmethod
    def _chinese(cls, terms: list[str]) -> list[str]:
        bad = [t for t in terms if not _CJK.search(t) and not t.isdigit()]
        if bad:
            raise ValueError(f"zh keywords without Chinese characters: {bad}")
        return terms

    @field_validator("en")
    @classmethod
    def _latin(cls, terms: list[str]) -> list[str]:
        bad = [t for t in terms if _CJK.search(t) or "*" in t.rstrip("*")]
        if bad:
            raise ValueError(f"en keywords must be Latin text, * only at the end: {bad}")
        return terms


class ComplaintType(_Frozen):
    code: str = Field(pattern=CODE, description="Family letters and a number, e.g. PQ-01.")
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    department: str = Field(min_length=1, pattern=r"\S")
    keywords: Keywords
    weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_name_keywords(self) -> ComplaintType:
        known = set(self.keywords.zh) | set(self.keywords.en)
        unknown = sorted(set(self.weights) - known)
        if unknown:
            raise ValueError(f"weights name terms that are not keywords: {unknown}")
        bad = sorted(t for t, w in self.weights.items() if w <= 0)
        if bad:
            raise ValueError(f"weights must be positive: {bad}")
        return self

    def terms(self) -> list[tuple[str, float]]:
        """Every keyword (zh first, then en) with its weight."""
        return [(t, self.weights.get(t, 1.0)) for t in [*self.keywords.zh, *self.keywords.en]]

    @cached_property
    def weighted_terms(self) -> tuple[tuple[str, str, float], ...]:
        """(literal, term, weight) of ``terms()``, computed once: the classifier tests every
        keyword's literal against every complaint."""
        return tuple((literal(t), t, w) for t, w in self.terms())


class CfpbMap(_Frozen):
    """CFPB product / issue values to codes: the measuring ground truth, never classifier input."""

    products: dict[str, str] = Field(default_factory=dict)
    issues: dict[str, str] = Field(default_factory=dict)

    def code_of(self, product: str, issue: str) -> str | None:
        """The issue's code, else the product's, else None (unmapped)."""
        return self.issues.get(issue.strip()) or self.products.get(product.strip())


class Taxonomy(_Frozen):
    version: str = Field(min_length=1)
    fallback: str = Field(pattern=CODE, description="The code when no keyword matches.")
    confidence_prior: float = Field(default=1.0, gt=0, description="Pseudo-score of 'something else'.")
    review_threshold: float = Field(ge=0, le=1, description="Below this confidence: human review.")
    types: list[ComplaintType] = Field(min_length=1)
    cfpb: CfpbMap = Field(default_factory=CfpbMap)

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        codes = [t.code for t in self.types]
        twice = sorted({c for c in codes if codes.count(c) > 1})
        if twice:
            raise ValueError(f"codes are not unique: {twice}")
        if self.fallback not in codes:
            raise ValueError(f"fallback {self.fallback} is not a type's code")
        for table, mapping in (("products", self.cfpb.products), ("issues", self.cfpb.issues)):
            unknown = sorted({c for c in mapping.values() if c not in codes})
            if unknown:
                raise ValueError(f"cfpb.{table} maps to unknown codes {unknown}")
        return self

    def get(self, code: str) -> ComplaintType:
        """The type with ``code``; KeyError when there is none."""
        for t in self.types:
            if t.code == code:
                return t
        raise KeyError(code)


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy file; errors name the file, the field and the problem."""
    return load_yaml_model(path or DEFAULT_TAXONOMY, Taxonomy, field_path=_where)


def _where(raw: object, loc: tuple[int | str, ...]) -> str:
    """A dotted field path; list positions under ``types`` shown with the type's code."""
    parts: list[str] = []
    node = raw
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            code = node.get("code") if isinstance(node, dict) else None
            parts.append(f"{part}[{code}]" if isinstance(code, str) else str(part))
        else:
            node = node.get(part) if isinstance(node, dict) else None
            parts.append(str(part))
    return ".".join(parts) or "(top level)"
