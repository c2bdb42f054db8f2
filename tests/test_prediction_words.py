"""What the page, the API and the CLI say about a prediction the model is unsure of: a category it is
not sure of is given as the likeliest few, not one name, and a garment whose points are mostly
unsure is said in words to have landmarks the model cannot place."""

from __future__ import annotations

import numpy as np

from fashionnet.inference.prediction import LOW_CONFIDENCE, Landmark, Prediction
from fashionnet.landmarks import LANDMARK_NAMES
from webui.trust import category_line, landmarks_note


def _prediction(category_scores: dict[str, float], confidences: list[float]) -> Prediction:
    best = max(category_scores, key=category_scores.get)
    landmarks = [Landmark(name, 10.0 * i, 20.0, "visible", 0.9, confidence=c) for i, (name, c) in enumerate(zip(LANDMARK_NAMES, confidences))]
    return Prediction(landmarks=landmarks, category=best, category_prob=category_scores[best], attributes=[],
                      embedding=np.zeros(4, np.float32), original_size=(100, 100), category_scores=category_scores)


SURE, UNSURE = LOW_CONFIDENCE + 0.3, LOW_CONFIDENCE - 0.1


def test_a_sure_category_is_named_alone():
    p = _prediction({"Tees": 0.81, "Tanks": 0.12, "Dresses": 0.07}, [SURE] * 8)
    assert p.category_sure and category_line(p) == "**Category:** Tees (81%)"
    assert p.as_dict()["category_sure"] is True


def test_an_unsure_category_gives_the_likeliest_three_in_order():
    p = _prediction({"Dresses": 0.35, "Tees": 0.3, "Jumpsuits": 0.2, "Shorts": 0.15}, [SURE] * 8)
    assert not p.category_sure
    line = category_line(p)
    assert "not sure" in line and line.index("Dresses (35%)") < line.index("Tees (30%)") < line.index("Jumpsuits (20%)")
    assert "Shorts" not in line
    d = p.as_dict()
    assert d["category_sure"] is False and [c["name"] for c in d["likely_categories"]] == ["Dresses", "Tees", "Jumpsuits"]


def test_mostly_unsure_points_are_said_in_words_and_a_few_are_listed():
    placed = _prediction({"Tees": 0.9, "Dresses": 0.1}, [SURE] * 6 + [UNSURE] * 2)
    assert placed.landmarks_placed is True and placed.as_dict()["landmarks_placed"] is True
    note = landmarks_note(placed)
    assert "cannot place" not in note and "unsure of 2 of 8" in note and LANDMARK_NAMES[6].replace("_", " ") in note

    lost = _prediction({"Tees": 0.9, "Dresses": 0.1}, [SURE] * 3 + [UNSURE] * 5)
    assert lost.landmarks_placed is False and lost.as_dict()["landmarks_placed"] is False
    assert landmarks_note(lost).startswith("**The model cannot place this garment's landmarks:** 5 of 8")

    assert landmarks_note(_prediction({"Tees": 0.9, "Dresses": 0.1}, [SURE] * 8)) is None


def test_a_model_without_heatmap_confidence_does_not_claim_either_way():
    p = _prediction({"Tees": 0.9, "Dresses": 0.1}, [None] * 8)
    assert p.landmarks_placed is None
