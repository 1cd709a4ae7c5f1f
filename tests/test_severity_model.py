"""The learned severity model beside the rules: it raises what the rules miss, never lowers what
they found, explains itself, and a bad file stops the router at start-up."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from schemas.events import Severity
from services.common.errors import ConfigError
from services.common.policy import load_policy
from services.router.classify import assess
from services.router.textmodel import (
    SEVERITY_MODEL,
    ModelError,
    SeverityModel,
    TextModel,
    load_severity_model,
)
from tests.test_severity import HELDOUT_RULES
from tools.measure import case_complaint, measure_severity

RULES = load_policy().router.severity
DATA = Path(__file__).parent / "data" / "severity"
_ORDER = {Severity.general: 0, Severity.urgent: 1, Severity.major: 2}


@pytest.fixture(scope="module")
def model() -> SeverityModel:
    return load_severity_model()


def case(text: str) -> dict[str, str]:
    return {"id": "t-1", "lang": "zh", "text": text, "expected": "general"}


def test_the_shipped_model_loads_with_its_thresholds(model: SeverityModel) -> None:
    # Given the shipped severity model, When it is loaded
    # Then it is versioned, small, names the three levels, and its thresholds are probabilities
    assert model.version == "severity-v9"
    assert SEVERITY_MODEL.stat().st_size < 200_000
    assert set(model.text.codes) == {"general", "urgent", "major"}
    assert 0.5 <= model.urgent_at <= 1 and 0.5 <= model.major_at <= 1


def test_a_paraphrase_the_rules_miss_is_raised_with_the_terms_that_weighed(model: SeverityModel) -> None:
    # Given an injury told without any word of the rules' phrase families (a training case)
    text = "洗衣机脱水的时候门突然弹开，我女儿的手被卷进去，手指扭断了。"
    assert assess(case_complaint(case(text)), RULES, repeat=False)[0] is Severity.general
    # When it is assessed with the model beside the rules
    found, reasons = assess(case_complaint(case(text)), RULES, repeat=False, model=model)
    # Then it is major, and the reason names the model and terms taken from the text
    assert found is Severity.major
    reading = model.read(text)
    assert reading is not None and reading.level == "major" and reading.weighed
    assert all(term in text for term in reading.weighed)
    assert f"model severity-v9 read it as major ({reading.probability:.0%}; weighed " in reasons[0]


def test_the_model_never_lowers_what_the_rules_found(model: SeverityModel) -> None:
    # Given every hand-labelled case of the held-out sets
    for name in ("heldout.jsonl", *(f"heldout-{n}.jsonl" for n in range(14, 22))):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            complaint = case_complaint(json.loads(line))
            # When each is assessed with and without the model
            alone = assess(complaint, RULES, repeat=False)[0]
            beside = assess(complaint, RULES, repeat=False, model=model)[0]
            # Then the model's level is never below the rules'
            assert _ORDER[beside] >= _ORDER[alone], (name, line)


def test_a_model_that_is_not_sure_enough_adds_nothing() -> None:
    # Given a model that leans to major on one term, below its threshold of 0.99
    lean = TextModel("lean", ("general", "urgent", "major"), (0.0, 0.0, 0.0),
                     {"w:电梯": {2: 1.0}}, 1.0, 0.0, {}, min_known=1)
    model = SeverityModel(lean, urgent_at=0.99, major_at=0.99)
    # When a text with that term is assessed, Then the rules alone decide
    complaint = case_complaint(case("电梯又坏了"))
    assert assess(complaint, RULES, repeat=False, model=model) == assess(complaint, RULES, repeat=False)


# The held-out sets: heldout.jsonl (written before the rules; its writers then wrote them: rules
# 98.6 %, with the model 98.6 %), and heldout-14.jsonl to heldout-23.jsonl (320 cases each, each by
# a hand that saw neither the rules nor any other set). 14 and 15 were written after round 8 and
# never read while round 9 was written; 16 to 19 after round 9 and severity-v8; each was measured
# once on round 9 + v8 (96.9, 95.0, 95.3, 95.0, 95.9, 91.9 %), then again on round 10 + v9, which
# was written from the training sets alone (97.2, 95.3, 95.6, 95.9 (its misses had been read), 96.6,
# 92.2 %). 20 and 21 were written after round 10 + v9 and measured once: 96.6 % and 94.4 %; 22 and
# 23 after those, with nothing changed, measured once: 97.5 % and 95.9 %.
# Floors: rules + model, and the least the model adds; the rules alone are held to test_severity's
# floors for the same sets (heldout.jsonl: 97 % here).
MODEL_FLOORS = {14: (0.97, 0.03), 15: (0.95, 0.04), 16: (0.95, 0.05), 17: (0.95, 0.04), 18: (0.96, 0.02),
                19: (0.92, 0.03), 20: (0.96, 0.06), 21: (0.94, 0.04), 22: (0.97, 0.05), 23: (0.95, 0.03)}


@pytest.mark.parametrize(("name", "floor", "rules_floor", "gain"), [
    ("heldout.jsonl", 0.98, 0.97, -0.01),
    *((f"heldout-{n}.jsonl", floor, HELDOUT_RULES[n][0], gain) for n, (floor, gain) in MODEL_FLOORS.items()),
])
def test_rules_and_model_together_stay_above_the_floor(model: SeverityModel, name: str, floor: float,
                                                       rules_floor: float, gain: float) -> None:
    # Given a held-out set; when it is assessed as the router does, and by the rules alone
    beside = measure_severity([DATA / name], model=model)
    alone = measure_severity([DATA / name])
    # Then both stay above their floors, and the model gains at least what it did when measured
    assert beside.share >= floor, beside.misses
    assert alone.share >= rules_floor
    assert beside.share - alone.share >= gain, (beside.share, alone.share)


def _write(path: Path, doc: dict[str, object]) -> None:
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))


_BASE = {"format": "complaints-text-model/1", "version": "x", "prior": [0.0, 0.0, 0.0], "weights": {},
         "temperature": 1, "keyword_weight": 0}


@pytest.mark.parametrize(("doc", "problem"), [
    ({**_BASE, "codes": ["PQ-01", "LG-01", "SA-01"]}, "codes the taxonomy does not have"),
    ({**_BASE, "codes": ["general", "urgent", "major"], "meta": {}}, "meta.raise_at is missing"),
    ({**_BASE, "codes": ["general", "urgent", "major"], "meta": {"raise_at": {"urgent": 1.5, "major": 0.8}}},
     "must be probabilities"),
    ({**_BASE, "prior": [0.0, 0.0], "codes": ["general", "major"]}, "predicts exactly"),
])
def test_a_bad_severity_model_file_is_a_start_up_error_naming_the_file(
        tmp_path: Path, doc: dict[str, object], problem: str) -> None:
    # Given a classifier model, or a severity model without valid thresholds
    path = tmp_path / "severity.json.gz"
    _write(path, doc)
    # When it is loaded as the severity model, Then a configuration error names the file
    with pytest.raises(ModelError) as err:
        load_severity_model(path)
    assert isinstance(err.value, ConfigError)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_the_router_does_not_start_with_a_bad_severity_model(tmp_path: Path) -> None:
    # Given router settings that name the classifier's model as the severity model
    from services.router.app import build
    from services.router.settings import RouterSettings
    from services.router.textmodel import DEFAULT_MODEL

    settings = RouterSettings.model_validate({"COMPLAINTS_DATA_DIR": tmp_path,
                                              "ROUTER_SEVERITY_MODEL_FILE": DEFAULT_MODEL})
    # When the router is built, Then start-up fails naming the file
    with pytest.raises(ModelError, match=f"^{DEFAULT_MODEL}: "):
        build(settings, load_policy())


def test_training_is_deterministic_and_gives_the_shipped_model(tmp_path: Path) -> None:
    # Given the training command (the shipped file was written by an earlier run of it)
    import argparse

    from tools.train_severity import train

    train(argparse.Namespace(seed=17, version="severity-v9", output=tmp_path / "model.json.gz"))
    # Then the file is byte for byte the shipped model
    assert (tmp_path / "model.json.gz").read_bytes() == SEVERITY_MODEL.read_bytes()
