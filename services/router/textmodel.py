"""The learned text model beside the taxonomy's keywords: a pruned multinomial logistic
regression over words, characters, character pairs and triples (Chinese segmented with jieba's
dictionary and algorithm, by rjieba) and Latin words and word pairs, stored as a versioned
gzipped JSON file.

Every weight is per (feature, code) and centred over the codes, so a code's logit is its prior
plus the sum of the weights of the text's known features, scaled by the file's temperature;
the features that weighed most for the chosen code are the explanation. A text with fewer than
``min_known`` known features (3 in the shipped file: a stray English word in a model trained on
Chinese is not evidence) makes the model abstain, and the keywords alone decide. Built by
``python -m tools.train_classifier`` (see that module); loaded once at start-up.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Any

from services.common.errors import ConfigError

DEFAULT_MODEL = Path(__file__).with_name("model") / "classifier-v5.json.gz"
NORMS = ("none", "l2")  # how a text's features count (TextModel.norm)
FORMAT = "complaints-text-model/1"
MAX_CHARS = 2000  # the model reads the first 2,000 characters: bounded time on hostile input
EXPLAIN = 5

_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_WORDS = re.compile(r"[a-z][a-z0-9']*")  # every Latin word, for the pairs (stop words included)
_STOP_EN = frozenset(
    "the a an and or of to in on for is was were be been i my me we our you your it this that "
    "with at by as from have has had not no but they them their he she his her are am do did "
    "so if then than there which who what when would could should will can xx xxxx".split())


class ModelError(ConfigError):
    """The model file is missing, unreadable or not a model of this format."""


@lru_cache(maxsize=1)
def _cut() -> Callable[[str], list[str]]:
    """Chinese word segmentation: rjieba, the binding of jieba-rs (jieba's dictionary and its
    dictionary-path algorithm, in Rust), without the HMM that guesses unknown words.

    It cuts as jieba does (tests/test_segmentation.py holds it to jieba's own cut; on the 65,033
    runs of Chinese in the three corpora the two differ nowhere), about six times faster, with
    its dictionary loaded in 0.1 s instead of 0.6 s and nothing written to a cache file.
    """
    import rjieba

    return partial(rjieba.cut, hmm=False)


@lru_cache(maxsize=16)
def features(text: str) -> frozenset[str]:
    """The text's features: jieba's words, characters, character pairs and triples of Chinese; Latin
    words and pairs of adjacent Latin words ("not_sue", "credit_report": a pair says what neither
    word does).

    The last few texts' features are kept: the router reads one complaint's text with the
    classifier and then with the severity model, and segments it once.
    """
    folded = unicodedata.normalize("NFKC", text[:MAX_CHARS]).lower()
    found: set[str] = set()
    cut = _cut()
    for run in _CJK_RUN.findall(folded):
        found.update("w:" + w for w in cut(run) if len(w) > 1)
        found.update("c:" + run[i:i + 2] for i in range(len(run) - 1))
        found.update("t:" + run[i:i + 3] for i in range(len(run) - 2))
        found.update("u:" + ch for ch in run)
    words = _WORDS.findall(folded)
    found.update("e:" + w for w in words if w not in _STOP_EN and len(w) > 1)
    found.update(f"b:{a}_{b}" for a, b in zip(words, words[1:], strict=False))
    return frozenset(found)


def term(feature: str) -> str:
    """A feature as the reader sees it: the word or characters without the kind prefix."""
    return feature.split(":", 1)[1]


@dataclass(frozen=True)
class Prediction:
    """The model's logits per code (keywords not yet added), the features it knew, and whether
    it abstains (it knew fewer than its ``min_known``: the keywords alone decide)."""

    logits: dict[str, float]
    known: tuple[str, ...]
    abstains: bool


@dataclass(frozen=True)
class TextModel:
    """A trained model: codes, priors, per-feature weights, temperature, keyword weight, and
    ``min_known``, the fewest known features on which it speaks (a stray word is not enough), and
    ``norm``: "l2" when each feature of a text counts 1/sqrt(the text's number of features), so a
    long narrative's many words do not outweigh a short complaint's few ("none": each counts 1)."""

    version: str
    codes: tuple[str, ...]
    prior: tuple[float, ...]
    weights: dict[str, dict[int, float]]
    temperature: float
    keyword_weight: float
    meta: dict[str, Any]
    min_known: int = 3
    norm: str = "none"

    @cached_property
    def _dense(self) -> tuple[dict[str, int], Any]:
        """The weights as a (feature x code) matrix and each feature's row: one sum per text."""
        import numpy as np

        index = {f: n for n, f in enumerate(self.weights)}
        matrix = np.zeros((len(index), len(self.codes)))
        for f, n in index.items():
            for i, w in self.weights[f].items():
                matrix[n, i] = w
        return index, matrix

    def predict(self, text: str) -> Prediction:
        """Logits per code for ``text``; abstains on fewer than ``min_known`` known features."""
        index, matrix = self._dense
        every = features(text)
        known = sorted(f for f in every if f in index)
        sums = matrix[[index[f] for f in known]].sum(axis=0)
        if self.norm == "l2" and every:
            sums = sums / math.sqrt(len(every))
        t = self.temperature
        logits = {c: (p + float(s)) * t for c, p, s in zip(self.codes, self.prior, sums, strict=True)}
        return Prediction(logits, tuple(known), abstains=len(known) < self.min_known)

    def weighed(self, prediction: Prediction, code: str, *, limit: int = EXPLAIN) -> list[str]:
        """The known features that raised ``code`` most, as terms, heaviest first.

        Words and character pairs come before single characters (a reader weighs "发热", not
        "热"), and a term found as both a word and a pair is named once.
        """
        if code not in self.codes:
            return []
        index, matrix = self._dense
        column = matrix[:, self.codes.index(code)]
        values = column[[index[f] for f in prediction.known]].tolist() if prediction.known else []
        raised = [(v, f) for v, f in zip(values, prediction.known, strict=True) if v > 0]
        terms: list[str] = []
        for _, f in sorted(raised, key=lambda p: (len(term(p[1])) == 1, -p[0], p[1])):
            if (t := term(f)) not in terms:
                terms.append(t)
                if len(terms) == limit:
                    break
        return terms

    def to_json(self) -> dict[str, Any]:
        """The file's content (``load_model`` reads it back)."""
        doc = {"format": FORMAT, "version": self.version, "codes": list(self.codes),
               "prior": [round(p, 4) for p in self.prior], "temperature": self.temperature,
               "keyword_weight": self.keyword_weight, "min_known": self.min_known, "meta": self.meta,
               "weights": {f: [[i, round(w, 3)] for i, w in sorted(row.items())]
                           for f, row in sorted(self.weights.items())}}
        if self.norm != "none":  # absent in files trained without it
            doc["norm"] = self.norm
        return doc

    def save(self, path: Path) -> None:
        """Write the model as gzipped JSON, byte-for-byte reproducible (no timestamp)."""
        raw = json.dumps(self.to_json(), ensure_ascii=False, sort_keys=True,
                         separators=(",", ":")).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out, gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz:
            gz.write(raw)


def softmax(logits: dict[str, float]) -> dict[str, float]:
    """Probabilities from logits."""
    top = max(logits.values())
    exp = {c: math.exp(v - top) for c, v in logits.items()}
    total = sum(exp.values())
    return {c: e / total for c, e in exp.items()}


def load_model(path: Path | None = None, *, codes: set[str] | None = None) -> TextModel:
    """Read a model file; any problem is a ``ModelError`` naming the file.

    ``codes``: the taxonomy's codes; a model that predicts a code outside them is refused.
    """
    path = path or DEFAULT_MODEL
    try:
        with gzip.open(path, "rb") as raw:
            doc = json.loads(raw.read().decode())
    except FileNotFoundError:
        raise ModelError(f"{path}: classifier model file not found") from None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable classifier model ({exc})") from None
    try:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        model_codes = tuple(str(c) for c in doc["codes"])
        prior = tuple(float(p) for p in doc["prior"])
        if not model_codes or len(prior) != len(model_codes):
            raise ValueError("codes and prior differ in length")
        weights = {str(f): {int(i): float(w) for i, w in row} for f, row in doc["weights"].items()}
        if any(not 0 <= i < len(model_codes) for row in weights.values() for i in row):
            raise ValueError("a weight names a code index out of range")
        temperature, keyword_weight = float(doc["temperature"]), float(doc["keyword_weight"])
        min_known = int(doc.get("min_known", 3))
        norm = str(doc.get("norm", "none"))
        if not (temperature > 0 and keyword_weight >= 0 and min_known >= 1
                and all(map(math.isfinite, prior))):
            raise ValueError("temperature must be > 0, keyword_weight >= 0, min_known >= 1, "
                             "priors finite")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: not a valid classifier model: {exc}") from None
    if codes is not None and (unknown := sorted(set(model_codes) - codes)):
        raise ModelError(f"{path}: predicts codes the taxonomy does not have: {unknown}")
    model = TextModel(version=str(doc["version"]), codes=model_codes, prior=prior, weights=weights,
                     temperature=temperature, keyword_weight=keyword_weight,
                     meta=dict(doc.get("meta") or {}), min_known=min_known, norm=norm)
    model.predict("")  # load the segmenter's dictionary and build the matrix now, not on a complaint
    return model


SEVERITY_MODEL = Path(__file__).with_name("model") / "severity-v9.json.gz"
SEVERITY_LEVELS = ("general", "urgent", "major")


@dataclass(frozen=True)
class SeverityReading:
    """What the severity model read: the level it raises to, its probability, the terms that
    weighed most for it."""

    level: str
    probability: float
    weighed: list[str]


@dataclass(frozen=True)
class SeverityModel:
    """A text model over the three severities, read beside the severity rules.

    It only raises: ``read`` names ``major`` when the model's probability of major is at least
    ``major_at``, ``urgent`` when that of urgent or major together is at least ``urgent_at``,
    and nothing otherwise (nor when it abstains). The thresholds are chosen at training time on
    the training cases alone and stored in the file (``meta.raise_at``).
    """

    text: TextModel
    urgent_at: float
    major_at: float

    @property
    def version(self) -> str:
        return self.text.version

    def read(self, text: str) -> SeverityReading | None:
        """The level the text reads as, when it is above general and the model is sure enough."""
        prediction = self.text.predict(text)
        if prediction.abstains:
            return None
        raised = raised_level(softmax(prediction.logits), urgent_at=self.urgent_at, major_at=self.major_at)
        if raised is None:
            return None
        level, probability = raised
        return SeverityReading(level, probability, self.text.weighed(prediction, level))


def raised_level(probs: dict[str, float], *, urgent_at: float,
                 major_at: float) -> tuple[str, float] | None:
    """The level probabilities over the three severities raise to, with its probability: major at
    ``major_at``, else urgent when urgent and major together reach ``urgent_at``, else none."""
    if probs["major"] >= major_at:
        return "major", probs["major"]
    if probs["major"] + probs["urgent"] >= urgent_at:
        return "urgent", probs["major"] + probs["urgent"]
    return None


def load_severity_model(path: Path | None = None) -> SeverityModel:
    """Read a severity model file; any problem is a ``ModelError`` naming the file."""
    path = path or SEVERITY_MODEL
    text = load_model(path, codes=set(SEVERITY_LEVELS))
    if set(text.codes) != set(SEVERITY_LEVELS):
        raise ModelError(f"{path}: a severity model predicts exactly {list(SEVERITY_LEVELS)}, "
                         f"not {list(text.codes)}")
    raise_at = text.meta.get("raise_at")
    try:
        if not isinstance(raise_at, dict):
            raise TypeError("meta.raise_at is missing")
        urgent_at, major_at = float(raise_at["urgent"]), float(raise_at["major"])
        if not (0.0 < urgent_at <= 1.0 and 0.0 < major_at <= 1.0):
            raise ValueError("meta.raise_at.urgent and .major must be probabilities in (0, 1]")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: not a valid severity model: {exc}") from None
    return SeverityModel(text, urgent_at, major_at)
