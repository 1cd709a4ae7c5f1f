"""The router's learned text model: loading, explanations, a held-out floor, the keyword path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.router.classify import classify, code_reasons
from services.router.taxonomy import load_taxonomy
from services.router.textmodel import DEFAULT_MODEL, ModelError, TextModel, features, load_model

TAXONOMY = load_taxonomy()
CODES = {t.code for t in TAXONOMY.types}
HELDOUT = Path(__file__).parent / "data" / "classifier" / "heldout-zh-v1.tsv"


@pytest.fixture(scope="module")
def model() -> TextModel:
    return load_model(codes=CODES)


def heldout() -> list[tuple[str, str]]:
    rows = [line.split("\t", 1) for line in HELDOUT.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    return [(code, text) for code, text in rows]


def accuracy(model: TextModel | None) -> float:
    rows = heldout()
    return sum(classify(text, taxonomy=TAXONOMY, model=model).code == code
               for code, text in rows) / len(rows)


def test_the_shipped_model_loads_and_names_only_taxonomy_codes(model: TextModel) -> None:
    # Given the shipped model file, When it is loaded against the taxonomy
    # Then it is the versioned model, small, and every code it predicts is a taxonomy code
    assert model.version == "classifier-v1"
    assert DEFAULT_MODEL.stat().st_size < 200_000
    assert set(model.codes) <= CODES and len(model.codes) > 5
    assert 0 < len(model.weights) <= 6000


def test_the_explanation_names_the_terms_that_weighed_most(model: TextModel) -> None:
    # Given a Chinese complaint about a dirty, worn-out hotel room
    text = "房间很脏，设施陈旧，床单上有污渍，卫生间还有异味"
    # When it is classified with the model
    result = classify(text, taxonomy=TAXONOMY, model=model)
    reasons = code_reasons(result, TAXONOMY, review=False, review_department="triage")
    # Then the model took part, the weighed terms come from the text, and the reason names them
    assert result.model == "classifier-v1"
    assert result.weighed and all(term in text for term in result.weighed)
    assert f"model classifier-v1 weighed {', '.join(result.weighed)}" in reasons[0]
    assert result.code == "PQ-01"


def test_the_held_out_mini_set_reaches_its_floor(model: TextModel) -> None:
    # Given 112 hand-labelled real reviews the model never saw (tests/data/classifier)
    # When each is classified with and without the model
    with_model, keywords_only = accuracy(model), accuracy(None)
    # Then the model reaches the floor measured at training time (less a margin) and beats the
    # keywords by a wide margin
    assert with_model >= 0.45, with_model
    assert with_model >= keywords_only + 0.2, (with_model, keywords_only)


@pytest.mark.parametrize("text", [
    "I was charged twice and the bank refused a refund",  # no feature the model knows
    "I was charged twice and the bank refused a refund, out of office",  # one stray one ("out")
])
def test_the_keywords_decide_when_the_model_abstains(model: TextModel, text: str) -> None:
    # Given an English text: the model, trained on Chinese, knows fewer than min_known features
    assert len(set(features(text)) & set(model.weights)) < model.min_known
    assert model.predict(text).abstains
    # When it is classified with the model
    result = classify(text, taxonomy=TAXONOMY, model=model)
    # Then the decision is the keyword classifier's, unchanged and without model terms
    assert result == classify(text, taxonomy=TAXONOMY)
    assert result.model is None and result.weighed == [] and result.matched


def test_a_keyword_hit_still_counts_beside_the_model() -> None:
    # Given a model that knows one feature and leans it to PQ-01, with a keyword weight
    tiny = TextModel(version="tiny", codes=("PQ-01", "LG-01"), prior=(0.0, 0.0),
                     weights={"w:快递": {0: 0.2, 1: -0.2}}, temperature=1.0, keyword_weight=2.0,
                     meta={}, min_known=1)
    # When a text has that feature and a late-delivery keyword (物流慢)
    result = classify("快递物流慢", taxonomy=TAXONOMY, model=tiny)
    # Then the keyword evidence outweighs the small model lean, and both are reported
    assert result.code == "LG-01" and result.model == "tiny" and "物流慢" in result.matched


def test_sure_keywords_keep_their_decision_over_a_less_sure_model() -> None:
    # Given a model that leans slightly to PQ-01 on 快递 and gives keywords no weight
    tiny = TextModel(version="tiny", codes=("PQ-01", "LG-01"), prior=(0.0, 0.0),
                     weights={"w:快递": {0: 0.1, 1: -0.1}}, temperature=1.0, keyword_weight=0.0,
                     meta={}, min_known=1)
    # When a text has two late-delivery keywords (confidence 2/3, the model's PQ-01 only 0.55)
    result = classify("快递太慢，物流慢", taxonomy=TAXONOMY, model=tiny)
    # Then the keywords' decision stands, as the keywords alone would give it
    assert result == classify("快递太慢，物流慢", taxonomy=TAXONOMY)
    assert result.code == "LG-01" and result.model is None


def test_features_segment_chinese_into_words_and_characters() -> None:
    # Given a Chinese sentence, When its features are read
    found = features("酒店服务态度很差")
    # Then jieba's words, the bigrams and the characters are all there
    assert {"w:酒店", "w:服务态度", "c:态度", "u:差"} <= found


@pytest.mark.parametrize(("content", "problem"), [
    (None, "classifier model file not found"),
    (b"not gzip at all", "not a readable classifier model"),
    (gzip.compress(b"{\"format\": \"something-else\"}"), "not a valid classifier model"),
    (gzip.compress(json.dumps({"format": "complaints-text-model/1", "version": "x", "codes": ["PQ-01"],
                               "prior": [0.0, 1.0], "weights": {}, "temperature": 1,
                               "keyword_weight": 0}).encode()), "codes and prior differ"),
    (gzip.compress(json.dumps({"format": "complaints-text-model/1", "version": "x", "codes": ["ZZ-99"],
                               "prior": [0.0], "weights": {}, "temperature": 1,
                               "keyword_weight": 0}).encode()), "codes the taxonomy does not have"),
])
def test_a_bad_model_file_is_a_start_up_error_naming_the_file(tmp_path: Path, content: bytes | None,
                                                              problem: str) -> None:
    # Given a missing, corrupt, foreign or inconsistent model file
    path = tmp_path / "model.json.gz"
    if content is not None:
        path.write_bytes(content)
    # When it is loaded, Then a configuration error names the file and the problem
    with pytest.raises(ModelError) as err:
        load_model(path, codes=CODES)
    assert isinstance(err.value, ConfigError)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_the_router_does_not_start_with_a_bad_model_file(tmp_path: Path) -> None:
    # Given router settings that name a corrupt model file
    from services.common.policy import load_policy
    from services.router.app import build
    from services.router.settings import RouterSettings

    path = tmp_path / "broken.json.gz"
    path.write_bytes(b"\x1f\x8b broken")
    settings = RouterSettings.model_validate({"COMPLAINTS_DATA_DIR": tmp_path,
                                              "ROUTER_TEXT_MODEL_FILE": path})
    # When the router is built, Then start-up fails naming the file
    with pytest.raises(ModelError, match=f"^{path}: "):
        build(settings, load_policy())


def test_training_is_deterministic(tmp_path: Path) -> None:
    # Given a tiny labelled set
    from tools.train_classifier import logistic

    data = [(features(t), c, 1.0) for t, c in [("房间很脏很旧", "PQ-01"), ("床单脏了", "PQ-01"),
                                              ("送货太慢了", "LG-01"), ("快递一直没到", "LG-01"),
                                              ("前台态度很差", "SA-01"), ("服务员不礼貌", "SA-01")]]
    # When a model is trained and saved twice
    files = []
    for n in (1, 2):
        codes, prior, weights = logistic(data, l2=1e-3, max_features=100, min_count=1.0)
        TextModel("t", codes, prior, weights, 1.0, 1.0, {}, min_known=1).save(tmp_path / f"{n}.json.gz")
        files.append((tmp_path / f"{n}.json.gz").read_bytes())
    # Then the files are byte for byte the same, and the model reads its own training lines
    assert files[0] == files[1]
    trained = load_model(tmp_path / "1.json.gz")
    assert classify("送货太慢了", taxonomy=TAXONOMY, model=trained).code == "LG-01"
