"""Evaluation metrics (training/metrics): CIDEr-D, BLEU, METEOR availability, VQA accuracy, grounding, labels,
and the local `evaluate` modules. Expected values are computed by hand in the tests."""

import math
import socket

import numpy as np
import pytest

from training.metrics import (
    METRIC_MODULES,
    answer_confidences,
    box_iou,
    box_ious,
    cider_d,
    classification_accuracy,
    coco_bleu,
    coco_tokenize,
    grounding_accuracy,
    load_metric,
    meteor,
    meteor_available,
    metric_module_path,
    normalize_label,
    normalize_vqa_answer,
    vqa_accuracy,
    vqa_answer_accuracy,
    vqa_score,
)


# ------------------------------------------------------------------------------------------------------------------
# Tokenisation
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A man, riding a horse.", "a man riding a horse"),
        ("A Black cat!", "a black cat"),
        ("Don't", "do n't"),
        ("the dog's toy", "the dog 's toy"),
        ("the dogs' toys", "the dogs toys"),
        ("a 3.5 inch hot-dog (on a plate)", "a 3.5 inch hot-dog on a plate"),
        ("10:30 - 1,000 people... \"wow\"; ok?", "10:30 1,000 people wow ok"),
        ("it cannot cost 5$", "it can not cost 5 $"),
        ("  two   spaces\tand\nnewline ", "two spaces and newline"),
    ],
)
def test_coco_tokenize(text, expected):
    assert coco_tokenize(text) == expected


# ------------------------------------------------------------------------------------------------------------------
# CIDEr-D
# ------------------------------------------------------------------------------------------------------------------


def test_cider_d_two_image_corpus_by_hand():
    predictions = ["A black cat.", "a brown dog runs"]
    references = [["a black cat", "a white dog"], ["a brown dog"]]
    # N = 2 images, so the IDF part is log(2) - log(max(1, df)). Reference n-gram sets per image:
    #   image 1: a black white cat dog | a-black black-cat a-white white-dog | a-black-cat a-white-dog
    #   image 2: a brown dog           | a-brown brown-dog                   | a-brown-dog
    # df("a") = df("dog") = 2 -> weight log2 - log2 = 0; every other n-gram has df 1 (or 0 if only in a
    # candidate) -> weight L = log 2. Term frequencies are all 1 here, so each vector entry is 0 or L.
    L = math.log(2.0)
    #
    # Image 1, candidate "a black cat" (tokenised: lower-case, "." dropped), bigram length 2.
    #   vs ref "a black cat" (identical, bigram length 2, delta 0, penalty 1):
    #     k=1: cand {a:0, black:L, cat:L}, norm sqrt(2)L; ref same. numerator L*L + L*L = 2L^2 -> 2L^2/(2L^2) = 1
    #     k=2: {a-black:L, black-cat:L} both sides -> 1
    #     k=3: {a-black-cat:L} both sides -> 1
    #     k=4: no 4-grams, norms 0 -> 0
    #   vs ref "a white dog": shares only "a" (weight 0) -> [0, 0, 0, 0]
    #   CIDEr-D = 10 * mean_k(sum over refs) / #refs = 10 * ((1 + 1 + 1 + 0) / 4) / 2 = 3.75
    image1 = 10 * ((1 + 1 + 1 + 0) / 4 + (0 + 0 + 0 + 0) / 4) / 2
    assert image1 == 3.75
    #
    # Image 2, candidate "a brown dog runs" (bigram length 3) vs its one ref "a brown dog" (bigram length 2):
    #   delta = 1 -> Gaussian penalty exp(-1 / (2 * 6^2)) = exp(-1/72)
    #   k=1: cand {a:0, brown:L, dog:0, runs:L(df 0)}, norm sqrt(2)L; ref {a:0, brown:L, dog:0}, norm L
    #        numerator min(L, L) * L = L^2 -> L^2 / (sqrt(2)L * L) = 1/sqrt(2)
    #   k=2: cand {a-brown:L, brown-dog:L, dog-runs:L}, norm sqrt(3)L; ref {a-brown:L, brown-dog:L}, norm sqrt(2)L
    #        numerator 2L^2 -> 2 / sqrt(6)
    #   k=3: cand {a-brown-dog:L, brown-dog-runs:L}, norm sqrt(2)L; ref {a-brown-dog:L}, norm L -> 1/sqrt(2)
    #   k=4: cand {a-brown-dog-runs:L}; ref has no 4-gram (norm 0) -> 0
    penalty = math.exp(-1.0 / 72.0)
    sims = [1 / math.sqrt(2), 2 / math.sqrt(6), 1 / math.sqrt(2), 0.0]
    image2 = 10 * (sum(s * penalty for s in sims) / 4) / 1
    assert image2 == pytest.approx(5.4998555, abs=1e-6)
    #
    # corpus score: mean over the two images
    result = cider_d(predictions, references)
    assert result["scores"] == pytest.approx([image1, image2], rel=1e-12)
    assert result["cider_d"] == pytest.approx((image1 + image2) / 2, rel=1e-12)
    assert result["cider_d"] == pytest.approx(4.6249278, abs=1e-6)


def test_cider_d_clips_candidate_counts_by_reference_counts():
    # Two images; "cat" and "dog" each occur in one reference set: df 1 -> weight L = log 2.
    #   image 1: cand "cat cat" k=1 {cat: 2L} norm 2L; ref "cat" {cat: L} norm L.
    #            clipped numerator min(2L, L) * L = L^2 -> L^2 / (2L * L) = 1/2 (plain CIDEr would give 1).
    #            k=2: cand {cat-cat: L}, ref has no bigram (norm 0) -> 0. k=3, 4: nothing.
    #            lengths (bigram counts) 1 vs 0 -> penalty exp(-1/72).  score = 10 * (1/2 * exp(-1/72)) / 4
    #   image 2: "dog" vs "dog": k=1 -> 1, k=2..4 -> 0, lengths 0 vs 0.    score = 10 * 1 / 4 = 2.5
    result = cider_d(["cat cat", "dog"], [["cat"], ["dog"]])
    assert result["scores"] == pytest.approx([10 * 0.5 * math.exp(-1 / 72) / 4, 2.5], rel=1e-12)


def test_cider_d_identical_candidates_reach_ten():
    # A candidate equal to every reference has cosine 1 for each order k whose vectors are non-zero, and no
    # length penalty: with >= 4 words and n-grams not shared by all images, the score is the maximum 10.
    preds = ["a man rides a brown horse", "two small children eat pizza"]
    refs = [[preds[0]] * 3, [preds[1]] * 2]
    assert cider_d(preds, refs)["scores"] == pytest.approx([10.0, 10.0], rel=1e-12)
    # three words: no 4-gram (k=4 contributes 0) -> 10 * 3/4
    assert cider_d(["a red car", "one dog"], [["a red car"], ["one dog"]])["scores"] == pytest.approx([7.5, 5.0])


def test_cider_d_of_one_sample_is_undefined_not_zero():
    # A one-image corpus has log(N) = 0: every weight would be 0 and any caption would score 0, a perfect one too.
    # The metric says it cannot score rather than report a failure.
    for prediction in ("a red car", "two blue dogs"):
        with pytest.warns(UserWarning, match="CIDEr-D needs at least 2 samples"):
            result = cider_d([prediction], [["a red car"]])
        assert math.isnan(result["cider_d"]) and len(result["scores"]) == 1 and math.isnan(result["scores"][0])
    with pytest.warns(UserWarning, match="at least 2 samples"):
        assert math.isnan(load_metric("cider").compute(predictions=["a red car"], references=[["a red car"]])["cider_d"])


def test_cider_d_per_sample_scores_depend_on_the_corpus():
    # df is computed over the evaluated corpus: adding an image whose references share n-grams changes weights
    # "a red car" vs its reference "a red truck", next to an image whose references share nothing: every weight
    # is log 2 and k=1 gives 2 L^2 / (sqrt(3) L)^2 = 2/3, k=2 gives 1/2, k=3 gives 0 -> 10 * (2/3 + 1/2) / 4
    alone = cider_d(["a red car", "one dog"], [["a red truck"], ["one dog"]])["scores"][0]
    assert alone == pytest.approx(10 * (2 / 3 + 1 / 2) / 4)
    # next to an image whose references contain "a", "red" and "a red" (df 2 -> weight 0), nothing shared with
    # "a red truck" carries weight any more
    shared = cider_d(["a red car", "a red bus"], [["a red truck"], ["a red bus"]])["scores"][0]
    assert shared == 0.0


def test_cider_d_input_checks():
    with pytest.raises(ValueError):
        cider_d(["a", "b"], [["a"]])
    with pytest.raises(ValueError):
        cider_d(["a"], [[]])
    with pytest.raises(TypeError):
        cider_d("a cat", [["a cat"]])


# ------------------------------------------------------------------------------------------------------------------
# BLEU
# ------------------------------------------------------------------------------------------------------------------


def test_coco_bleu_by_hand():
    predictions = ["a cat sat on the mat", "a dog"]
    references = [["the cat sat on the mat", "a cat is on a mat"], ["a dog runs fast", "the dog runs"]]
    # sample 1: c = 6, reference lengths 6 and 6 -> r = 6
    #   1-grams a cat sat on the mat: all in some reference (max counts the:2, a:2) -> 6/6
    #   2-grams a-cat(ref2) cat-sat sat-on on-the the-mat(ref1)                     -> 5/5
    #   3-grams a-cat-sat(no) cat-sat-on sat-on-the on-the-mat                      -> 3/4
    #   4-grams a-cat-sat-on(no) cat-sat-on-the sat-on-the-mat                      -> 2/3
    # sample 2: c = 2, reference lengths 4 and 3 -> closest r = 3
    #   1-grams a dog -> 2/2; 2-gram a-dog (ref1) -> 1/1; no 3- or 4-grams (guess 0, correct 0)
    # corpus: C = 8, R = 9, correct = [8, 6, 3, 2], guess = [8, 6, 4, 3]
    p = [8 / 8, 6 / 6, 3 / 4, 2 / 3]
    bp = math.exp(1 - 9 / 8)  # C < R
    expected = [bp * math.prod(p[: n + 1]) ** (1 / (n + 1)) for n in range(4)]
    assert expected[3] == pytest.approx(math.exp(-1 / 8) * 0.5**0.25)
    result = coco_bleu(predictions, references)
    for n in range(4):
        assert result[f"bleu_{n + 1}"] == pytest.approx(expected[n], rel=1e-8)
    assert result["brevity_penalty"] == pytest.approx(bp, rel=1e-8)
    assert result["translation_length"] == 8 and result["reference_length"] == 9
    # per-sample (COCO's list): sample 2 has p3 = (0 + 1e-15) / (0 + 1e-9) = 1e-6 -> BLEU-3 = 1e-6 ** (1/3) * BP,
    # BP = exp(1 - 3/2)
    bp2 = math.exp(1 - 3 / 2)
    assert result["scores"][1] == pytest.approx([bp2, bp2, 1e-2 * bp2, (1e-6 * 1e-6) ** 0.25 * bp2], rel=1e-6)
    assert result["scores"][0] == pytest.approx([1.0, 1.0, 0.75 ** (1 / 3), (0.75 * 2 / 3) ** 0.25], rel=1e-8)


def test_coco_bleu_closest_length_ties_go_to_the_shorter_reference():
    # candidate of 4 words, references of 3 and 5 words: both 1 away -> r = 3, C >= R -> no brevity penalty
    result = coco_bleu(["a b c d"], [["a b c", "a b c d e"]], max_n=1)
    assert result["reference_length"] == 3 and result["brevity_penalty"] == 1.0
    assert result["bleu_1"] == pytest.approx(1.0)
    assert coco_bleu(["a b c d"], [["a b c", "a b c d e"]], max_n=1, length_option="average")["reference_length"] == 4


# ------------------------------------------------------------------------------------------------------------------
# METEOR
# ------------------------------------------------------------------------------------------------------------------


def test_meteor_unavailable_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("METEOR_JAR", raising=False)
    with pytest.raises(RuntimeError, match="METEOR_JAR"):
        meteor(["a cat"], [["a cat"]])
    with pytest.raises(RuntimeError, match="does not exist"):
        meteor(["a cat"], [["a cat"]], jar=tmp_path / "missing.jar")
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    monkeypatch.setenv("METEOR_JAR", str(tmp_path / "missing.jar"))
    with pytest.raises(RuntimeError, match="java"):
        meteor(["a cat"], [["a cat"]])
    assert not meteor_available()


# ------------------------------------------------------------------------------------------------------------------
# VQA
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "matches, expected",
    [
        (0, 0.0),
        (1, 9 * (1 / 3) / 10),  # 9 subsets keep the match (1/3), 1 drops it (0)
        (2, (8 * (2 / 3) + 2 * (1 / 3)) / 10),  # = 0.6
        (3, (7 * 1 + 3 * (2 / 3)) / 10),  # = 0.9
        (4, 1.0),  # every subset keeps >= 3 matches
        (10, 1.0),
    ],
)
def test_vqa_official_accuracy_over_leave_one_out_subsets(matches, expected):
    answers = ["2"] * matches + ["3"] * (10 - matches)
    assert vqa_answer_accuracy("2", answers) == pytest.approx(expected)
    assert vqa_answer_accuracy("2", answers, formula="simple") == pytest.approx(min(1.0, matches / 3))


def test_vqa_accuracy_values():
    assert vqa_answer_accuracy("2", ["2"] * 2 + ["3"] * 8) == pytest.approx(0.6)
    assert vqa_answer_accuracy("2", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    result = vqa_accuracy(["2", "3", "4"], [["2"] * 3 + ["3"] * 7] * 3)
    assert result["scores"] == pytest.approx([0.9, 1.0, 0.0])
    assert result["vqa_accuracy"] == pytest.approx(1.9 / 3)
    with pytest.raises(ValueError):
        vqa_accuracy(["2"], [["2"], ["3"]])


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("Two", "2"),
        ("a dog", "dog"),
        ("The Dog!", "dog"),
        ("yes.", "yes"),
        ("dont know", "don't know"),
        ("2,000", "2000"),
        ("black/white", "black white"),
        ("black / white", "black white"),
        ("3.5", "3.5"),
        ("girl's", "girl's"),
        ("2:30", "2:30"),
        ("none", "0"),
        ("  an\tapple\n", "apple"),
    ],
)
def test_normalize_vqa_answer(raw, normalised):
    assert normalize_vqa_answer(raw) == normalised


def test_vqa_accuracy_normalisation_modes():
    answers = ["2"] * 3 + ["3"] * 7
    assert vqa_answer_accuracy("Two", answers) == pytest.approx(0.9)
    assert vqa_answer_accuracy("Two", answers, normalize="never") == 0.0
    dogs = ["dog"] * 4 + ["a dog"] * 2 + ["cat"] * 4
    assert vqa_answer_accuracy("a dog", dogs) == 1.0  # 6 annotators once normalised
    assert vqa_answer_accuracy("a dog", dogs, normalize=False) == pytest.approx(0.6)
    # the official script normalises only when the annotators disagree
    assert vqa_answer_accuracy("two", ["2"] * 10, normalize="if_disagree") == 0.0
    assert vqa_answer_accuracy("two", ["2"] * 10, normalize="always") == 1.0
    assert vqa_answer_accuracy("two", ["2"] * 9 + ["3"], normalize="if_disagree") == 1.0


def test_vqa_score_and_confidences():
    confidences = answer_confidences(["2"] * 3 + ["Three"] * 7)
    assert confidences == pytest.approx({"2": 0.9, "3": 1.0})
    result = vqa_score([" 2", "4", "Two"], [confidences, confidences, confidences])
    assert result["scores"] == [0.9, 0.0, 0.0]  # exact string lookup by default
    assert vqa_score(["Two"], [confidences], normalize=True)["scores"] == [0.9]


# ------------------------------------------------------------------------------------------------------------------
# Grounding
# ------------------------------------------------------------------------------------------------------------------


def test_box_iou_by_hand():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    # overlap 5 x 10 = 50, union 100 + 100 - 50 = 150
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    # continuous coordinates ("+0"): areas 1 and 4, overlap 1 -> 1/4 (the "+1" pixel convention would give 4/9)
    assert box_iou([0, 0, 1, 1], [0, 0, 2, 2]) == pytest.approx(0.25)
    # disjoint, and touching along an edge: no overlap
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
    # degenerate boxes have zero area: IoU 0, also for two identical degenerate boxes (union 0)
    assert box_iou([5, 5, 5, 10], [0, 0, 10, 10]) == 0.0
    assert box_iou([5, 5, 5, 5], [5, 5, 5, 5]) == 0.0
    assert box_iou([10, 10, 0, 0], [0, 0, 10, 10]) == 0.0  # inverted corners
    assert box_iou([float("nan"), 0, 10, 10], [0, 0, 10, 10]) == 0.0
    np.testing.assert_allclose(box_ious([[0, 0, 10, 10], [0, 0, 4, 4]], [[0, 0, 10, 20], [0, 0, 2, 2]]), [0.5, 0.25])


def test_grounding_accuracy_at_half_iou():
    preds = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [3, 3, 3, 3]]
    refs = [[0, 0, 10, 20], [5, 0, 15, 10], [50, 50, 60, 60], [0, 0, 10, 10]]
    # IoUs: 100/200 = 0.5 (>= 0.5: hit), 1/3, 0 (disjoint), 0 (degenerate)
    result = grounding_accuracy(preds, refs)
    assert result["ious"] == pytest.approx([0.5, 1 / 3, 0.0, 0.0])
    assert result["hits"] == [True, False, False, False]
    assert result["accuracy"] == 0.25
    assert result["mean_iou"] == pytest.approx((0.5 + 1 / 3) / 4)
    # with UnIVAL/OFA's 1e-6 added to the union, an IoU of exactly 0.5 falls just below the threshold
    assert grounding_accuracy(preds, refs, eps=1e-6)["accuracy"] == 0.0
    with pytest.raises(ValueError):
        grounding_accuracy([[0, 0, 1]], [[0, 0, 1, 1]])


# ------------------------------------------------------------------------------------------------------------------
# Classification
# ------------------------------------------------------------------------------------------------------------------


def test_classification_accuracy():
    preds = ["Yes.", "no", " Maybe ", "yes"]
    refs = ["yes", "No", "maybe", "no"]
    result = classification_accuracy(preds, refs)
    assert result["accuracy"] == 0.75
    assert result["correct"] == [True, True, True, False]
    assert result["per_label"] == {"yes": 1.0, "no": 0.5, "maybe": 1.0}
    assert classification_accuracy(preds, refs, normalize=False)["accuracy"] == 0.0
    assert normalize_label("  It is  NOT.") == "it is not"


# ------------------------------------------------------------------------------------------------------------------
# Local `evaluate` modules
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Offline: hub variables set, and any socket connection fails."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


_CASES = {
    "cider": (
        dict(predictions=["A black cat.", "a brown dog runs"], references=[["a black cat", "a white dog"], ["a brown dog"]]),
        lambda kw: cider_d(**kw),
    ),
    "coco_bleu": (
        dict(
            predictions=["a cat sat on the mat", "a dog"],
            references=[["the cat sat on the mat", "a cat is on a mat"], ["a dog runs fast", "the dog runs"]],
        ),
        lambda kw: coco_bleu(**kw),
    ),
    "vqa_accuracy": (
        dict(predictions=["Two", "a dog"], references=[["2"] * 3 + ["3"] * 7, ["dog"] * 2 + ["cat"] * 8]),
        lambda kw: vqa_accuracy(**kw),
    ),
    "grounding_accuracy": (
        dict(predictions=[[0, 0, 10, 10], [0.5, 0, 10.25, 10]], references=[[0, 0, 10, 20], [5, 0, 15, 10]]),
        lambda kw: grounding_accuracy(**kw),
    ),
    "classification_accuracy": (
        dict(predictions=["Yes.", "no", "maybe"], references=["yes", "yes", "maybe"]),
        lambda kw: classification_accuracy(**kw),
    ),
}


def _assert_same(got, expected):
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys()
        for key in expected:
            _assert_same(got[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            _assert_same(g, e)
    elif isinstance(expected, bool) or isinstance(expected, str):
        assert got == expected
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", METRIC_MODULES)
def test_local_evaluate_modules_load_offline_and_match_the_functions(name, no_network):
    metric = load_metric(name)
    # evaluate copied the script into its modules cache; the copy imports the functions from this package
    assert type(metric).__module__.startswith("evaluate_modules.metrics."), type(metric).__module__
    inputs, function = _CASES[name]
    _assert_same(metric.compute(**inputs), function(inputs))


def test_evaluate_load_of_the_folder_path_and_extra_arguments(no_network):
    import evaluate

    metric = evaluate.load(str(metric_module_path("vqa_accuracy")), keep_in_memory=True)
    inputs = dict(predictions=["two"], references=[["2"] * 10])
    assert metric.compute(**inputs)["vqa_accuracy"] == 1.0
    assert metric.compute(**inputs, normalize="if_disagree")["vqa_accuracy"] == 0.0
    # add_batch then compute, as in an evaluation loop
    cider = load_metric("cider")
    cider.add_batch(predictions=["A black cat."], references=[["a black cat", "a white dog"]])
    cider.add_batch(predictions=["a brown dog runs"], references=[["a brown dog"]])
    assert cider.compute()["cider_d"] == pytest.approx(cider_d(**_CASES["cider"][0])["cider_d"])
    with pytest.raises(ValueError):
        load_metric("bleu")
