"""Metrics at their edges: bad input is refused with a message that says what is wrong, boundary
values (k = gallery size, R = number of results, a true label 0, image side 1) are accepted, and
the blocked ranking gives the same answer as one block. Added when a mutation run
(scripts/mutation_test.sh) showed these paths were not pinned down by tests/test_metrics.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import fashionnet.evaluation.retrieval_metrics as retrieval_module
from fashionnet.evaluation.label_metrics import attribute_recall_at_k, category_accuracy
from fashionnet.evaluation.landmark_metrics import normalized_error, pdl
from fashionnet.evaluation.retrieval_metrics import map_at_r, retrieval_metrics, topk_hit_rate
from fashionnet.landmarks import ABSENT, LANDMARK_NAMES, VISIBLE


def _unit(degrees):
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------- retrieval


def test_tensors_that_require_grad_are_accepted():
    emb = torch.tensor(_unit([0, 5, 90]), requires_grad=True)
    result = retrieval_metrics(emb, ["a", "a", "b"], emb, ["a", "a", "b"], ks=(1,), exclude_self=True, show_progress=False)
    assert result["top_k"][1] == pytest.approx(2 / 3)
    pred = torch.zeros(8, 2, requires_grad=True)
    assert normalized_error(pred, torch.zeros(8, 2), torch.zeros(8), (10, 10))["average"] == 0.0


@pytest.mark.parametrize("ks", [(), (0, 1), (-1,)])
def test_ks_must_be_positive(ks):
    with pytest.raises(ValueError, match="ks must be positive integers"):
        topk_hit_rate(np.array([[0, 1]]), np.array(["A"]), ks=ks, gallery_item_ids=np.array(["A", "B"]))


def test_ranked_results_are_checked():
    gallery = np.array(["A", "B"])
    with pytest.raises(ValueError, match="must be 2-D"):
        topk_hit_rate(np.array([0, 1]), np.array(["A"]), ks=(1,), gallery_item_ids=gallery)
    with pytest.raises(ValueError, match="must be integers when gallery_item_ids is given"):
        topk_hit_rate(np.array([[0.0, 1.0]]), np.array(["A"]), ks=(1,), gallery_item_ids=gallery)
    with pytest.raises(ValueError, match="ranked index 2 is out of range for a gallery of 2 images"):
        topk_hit_rate(np.array([[0, 2]]), np.array(["A"]), ks=(1,), gallery_item_ids=gallery)
    assert topk_hit_rate(np.array([[1, 0]]), np.array(["A"]), ks=(1, 2), gallery_item_ids=gallery) == {1: 0.0, 2: 1.0}


def test_query_ids_must_match_the_ranked_rows():
    with pytest.raises(ValueError, match="need one item id per query: 1 ranked rows"):
        topk_hit_rate(np.array([[0, 1]]), np.array(["A", "B"]), ks=(1,), gallery_item_ids=np.array(["A", "B"]))
    with pytest.raises(ValueError, match="need one item id per query"):
        topk_hit_rate(np.array([[0, 1]]), np.array([["A"]]), ks=(1,), gallery_item_ids=np.array(["A", "B"]))
    with pytest.raises(ValueError, match="no queries given"):
        topk_hit_rate(np.zeros((0, 2), dtype=np.int64), np.array([], dtype=object), ks=(1,), gallery_item_ids=np.array(["A", "B"]))


def test_missing_neighbour_matches_no_item_whatever_its_id():
    # An empty-string item id must not be matched by a FAISS -1 placeholder.
    rates = topk_hit_rate(np.array([[-1, 1]]), np.array([""]), ks=(1, 2), gallery_item_ids=np.array(["x", ""], dtype=object))
    assert rates == {1: 0.0, 2: 1.0}


def test_map_at_r_boundaries_and_errors():
    # Results A, B, A and R = 2: only the first two count -> (1/1) / 2.
    assert map_at_r(np.array([[0, 1, 2]]), np.array(["A"]), np.array(["A", "B", "A"])) == pytest.approx(0.5)
    # R equal to the number of results given is allowed: A, A -> (1/1 + 2/2) / 2.
    assert map_at_r(np.array([[0, 2]]), np.array(["A"]), np.array(["A", "B", "A"])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="R goes up to 2 but only 1 were given"):
        map_at_r(np.array([[0]]), np.array(["A"]), np.array(["A", "B", "A"]))
    with pytest.raises(ValueError, match=r"num_relevant must have one count per query \(1\)"):
        map_at_r(np.array([[0, 1]]), np.array(["A"]), np.array(["A", "B"]), num_relevant=[1, 1])
    # num_relevant given: it replaces the count from the gallery (here: only 1 of the 2 A's counts).
    assert map_at_r(np.array([[1, 0]]), np.array(["A"]), np.array(["A", "B"]), num_relevant=np.array([1.0])) == pytest.approx(0.0)


def test_k_equal_to_the_gallery_size_ranks_everything():
    emb = _unit([0, 30, 60, 90])
    items = np.array(["a", "b", "c", "d"])
    result = retrieval_metrics(emb[:1], items[:1], emb[::-1], items[::-1], ks=(1, 4), show_progress=False)
    assert result["top_k"] == {1: 1.0, 4: 1.0}
    # A query at 180 deg of item "a" (gallery image at 0 deg, the farthest): found only at k = 4.
    result = retrieval_metrics(_unit([180]), ["a"], emb, items, ks=(1, 3, 4), show_progress=False)
    assert result["top_k"] == {1: 0.0, 3: 0.0, 4: 1.0}
    assert result["map_at_r"] == 0.0  # R = 1 and the hit is at rank 4
    assert result["num_gallery"] == 4 and result["num_queries"] == 1


def test_only_relevant_image_at_exactly_rank_k_is_a_hit_at_k():
    # 60 gallery images at decreasing similarity; the only image of the query's item is the 8th.
    angles = np.arange(60) * 1.5
    items = np.array([f"other{i}" for i in range(60)], dtype=object)
    items[7] = "mine"
    rng = np.random.default_rng(0)
    order = rng.permutation(60)
    result = retrieval_metrics(_unit([0.0]), ["mine"], _unit(angles[order]), items[order], ks=(1, 7, 8), show_progress=False)
    assert result["top_k"] == {1: 0.0, 7: 0.0, 8: 1.0}
    assert result["map_at_r"] == 0.0  # R = 1 and rank 7 > R


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_blocked_ranking_equals_one_block(monkeypatch, limit):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(9, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    items = np.array([0, 1, 2, 0, 1, 2, 0, 1, 3])
    whole = retrieval_metrics(emb, items, emb, items, ks=(1, 2, 3), exclude_self=True, show_progress=False)
    monkeypatch.setattr(retrieval_module, "_MAX_BLOCK_ELEMENTS", limit * 9 + 4)  # blocks of `limit` queries
    blocked = retrieval_metrics(emb, items, emb, items, ks=(1, 2, 3), exclude_self=True, show_progress=False)
    assert blocked == whole


def test_progress_bar_shows_only_for_several_blocks_when_asked(monkeypatch, capsys):
    emb = _unit([0, 10, 20, 30])
    items = np.array([1, 1, 2, 2])
    monkeypatch.setattr(retrieval_module, "_MAX_BLOCK_ELEMENTS", 2 * 4)  # 2 queries per block
    retrieval_metrics(emb, items, emb, items, ks=(1,), show_progress=False)
    assert capsys.readouterr().err == ""
    retrieval_metrics(emb, items, emb, items, ks=(1,))  # progress is on by default
    err = capsys.readouterr().err
    assert "ranking gallery" in err and "block" in err
    retrieval_metrics(emb[:2], items[:2], emb, items, ks=(1,))  # one block: no bar
    assert capsys.readouterr().err == ""


def test_retrieval_input_checks():
    emb = _unit([0, 10])
    with pytest.raises(ValueError, match="same D"):
        retrieval_metrics(np.ones((2, 3), np.float32), [1, 2], emb, [1, 2], ks=(1,), show_progress=False)
    with pytest.raises(ValueError, match="same D"):
        retrieval_metrics(np.ones(2, np.float32), [1], emb, [1, 2], ks=(1,), show_progress=False)
    with pytest.raises(ValueError, match="one item id per embedding row"):
        retrieval_metrics(emb, [1], emb, [1, 2], ks=(1,), show_progress=False)
    with pytest.raises(ValueError, match="one item id per embedding row"):
        retrieval_metrics(emb, [1, 2], emb, [1], ks=(1,), show_progress=False)
    with pytest.raises(ValueError, match="exclude_self needs the query set to be the gallery"):
        retrieval_metrics(emb[:1], [1], emb, [1, 2], ks=(1,), exclude_self=True, show_progress=False)
    with pytest.raises(ValueError, match="k=3 asked for but the gallery offers only 2 results per query"):
        retrieval_metrics(emb, [1, 2], emb, [1, 2], ks=(3,), show_progress=False)
    with pytest.raises(ValueError, match="k=2 asked for but the gallery offers only 1 results per query"):
        retrieval_metrics(emb, [1, 2], emb, [1, 2], ks=(2,), exclude_self=True, show_progress=False)
    assert retrieval_metrics(emb, [1, 1], emb, [1, 1], ks=(1,), exclude_self=True, show_progress=False)["top_k"] == {1: 1.0}
    with pytest.raises(ValueError, match="no queries given"):
        retrieval_metrics(np.zeros((0, 2), np.float32), [], emb, [1, 2], ks=(1,), show_progress=False)


# ------------------------------------------------------------------------------------- landmarks


def _one_image():
    pred = np.full((8, 2), np.nan)
    true = np.full((8, 2), np.nan)
    vis = np.full(8, ABSENT)
    return pred, true, vis


def test_single_image_without_batch_axis():
    pred, true, vis = _one_image()
    pred[0], true[0], vis[0] = (3, 4), (0, 0), VISIBLE
    assert normalized_error(pred, true, vis, (10, 10))["average"] == pytest.approx(0.5)
    assert pdl(pred, true, vis, threshold_px=5)["average"] == 1.0


def test_landmark_shapes_are_checked():
    pred, true, vis = _one_image()
    good = dict(pred_xy=pred[None], true_xy=true[None], visibility=vis[None], image_sizes=(1, 1))
    for key, bad in (("pred_xy", pred[None, :6]), ("true_xy", true[None, :, :1]), ("visibility", vis[None, :7])):
        with pytest.raises(ValueError, match=r"need \(N, 8, 2\) predicted and true coordinates"):
            normalized_error(**{**good, key: bad})


def test_non_finite_visible_coordinates_are_refused():
    pred, true, vis = _one_image()
    pred[0], true[0], vis[0] = (1, 1), (np.inf, 1), VISIBLE
    with pytest.raises(ValueError, match="a landmark marked visible has a NaN/inf ground-truth coordinate"):
        normalized_error(pred, true, vis, (10, 10))
    true[0], pred[0] = (1, 1), (np.nan, 1)
    with pytest.raises(ValueError, match="a predicted coordinate of a visible landmark is NaN/inf"):
        pdl(pred, true, vis)


def test_image_sizes_forms_and_errors():
    pred, true, vis = _one_image()
    pred[0], true[0], vis[0] = (0.3, 0.0), (0.0, 0.4), VISIBLE
    assert normalized_error(pred, true, vis, (1, 1))["average"] == pytest.approx(0.5)  # already in [0, 1]
    assert normalized_error(pred, true, vis, 1)["average"] == pytest.approx(0.5)  # one side for both axes
    assert normalized_error(pred[None], true[None], vis[None], [[1, 2]])["average"] == pytest.approx(np.hypot(0.3, 0.2))
    for bad in ((0, 10), (10, -1), [[1, 2, 3]], [[1, 1], [1, 1]]):
        with pytest.raises(ValueError, match="image_sizes must be positive"):
            normalized_error(pred, true, vis, bad)


def test_nothing_visible_gives_nan_without_warnings():
    pred, true, vis = _one_image()
    pred[1], true[1] = (np.inf, 0), (np.inf, 0)  # an occluded slot with stray infinite numbers
    vis[1] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ne = normalized_error(pred, true, vis, (10, 10))
        found = pdl(pred, true, vis)
    for result in (ne, found):
        assert math.isnan(result["average"]) and result["num_visible"] == 0
        assert all(math.isnan(v) for v in result["per_landmark"].values())
        assert list(result["per_landmark"]) == list(LANDMARK_NAMES)


def test_pdl_rescaling_per_image():
    # 35 px on a 512-px reference. Left collar: 60 px on a 1024-px image reads 30 -> in.
    # Right collar: 20 px on a 256-px image reads 40 -> out.
    pred = np.full((2, 8, 2), np.nan)
    true = np.full((2, 8, 2), np.nan)
    vis = np.full((2, 8), ABSENT)
    true[0, 0], pred[0, 0], vis[0, 0] = (0, 0), (60, 0), VISIBLE
    true[1, 1], pred[1, 1], vis[1, 1] = (0, 0), (0, 20), VISIBLE
    result = pdl(pred, true, vis, threshold_px=35, image_sizes=[[1024, 800], [200, 256]], reference_size=512)
    assert result["per_landmark"]["left_collar"] == 1.0 and result["per_landmark"]["right_collar"] == 0.0
    with pytest.raises(ValueError, match="reference_size needs image_sizes"):
        pdl(pred, true, vis, reference_size=512)


# ------------------------------------------------------------------------------ category, attributes


def test_category_accuracy_edges():
    logits = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert category_accuracy(logits, [0, 0], ks=(1, 2)) == {1: 0.5, 2: 1.0}  # label 0 is a real class
    assert category_accuracy(np.array([0, 1]), np.array([0, -1])) == {1: 1.0}
    nan_only = category_accuracy(np.array([0, 1]), np.array([-1, -1]))
    assert list(nan_only) == [1] and math.isnan(nan_only[1])
    nan_all = category_accuracy(logits, [-1, -1], ks=(1, 2))
    assert list(nan_all) == [1, 2] and all(math.isnan(v) for v in nan_all.values())
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        category_accuracy(logits, [0, 1, 1])
    with pytest.raises(ValueError, match="label 2 out of range for 2 classes"):
        category_accuracy(logits, [0, 2], ks=(1,))
    with pytest.raises(ValueError, match="k=3 asked for but only 2"):
        category_accuracy(logits, [0, 1], ks=(1, 3))


def test_attribute_recall_edges():
    scores = np.array([[0.9, 0.1, 0.5]])
    labels = np.array([[-1, 1, 1]])
    assert attribute_recall_at_k(scores, labels, k=1) == 0.0  # top-1 is attribute 0, not positive
    assert attribute_recall_at_k(scores, labels, k=2) == 0.5
    assert attribute_recall_at_k(scores, labels, k=3) == 1.0
    for k in (0, 4):
        with pytest.raises(ValueError, match=r"k must be in 1\.\.3"):
            attribute_recall_at_k(scores, labels, k=k)
    with pytest.raises(ValueError, match="scores and labels must both be"):
        attribute_recall_at_k(scores, labels[:, :2], k=1)
    with pytest.raises(ValueError, match="scores and labels must both be"):
        attribute_recall_at_k(scores[0], labels[0], k=1)


def test_messages_are_exactly_the_documented_sentences():
    emb = _unit([0, 10])
    cases = [
        (lambda: topk_hit_rate(np.zeros((0, 1), dtype=np.int64), np.array([]), ks=(1,), gallery_item_ids=["a"]), "no queries given"),
        (lambda: retrieval_metrics(emb, [1], emb, [1, 2], ks=(1,), show_progress=False), "need one item id per embedding row"),
        (lambda: retrieval_metrics(emb[:1], [1], emb, [1, 2], ks=(1,), exclude_self=True, show_progress=False),
         r"exclude_self needs the query set to be the gallery \(same rows\)"),
        (lambda: pdl(np.zeros((8, 2)), np.zeros((8, 2)), np.zeros(8), reference_size=512), "reference_size needs image_sizes to rescale distances"),
        (lambda: normalized_error(np.zeros((8, 2)), np.full((8, 2), np.inf), np.zeros(8), 1),
         "a landmark marked visible has a NaN/inf ground-truth coordinate"),
        (lambda: normalized_error(np.full((8, 2), np.nan), np.zeros((8, 2)), np.zeros(8), 1),
         "a predicted coordinate of a visible landmark is NaN/inf"),
    ]
    for call, sentence in cases:
        with pytest.raises(ValueError, match=f"^{sentence}$"):
            call()


def test_the_kth_result_is_the_kth_nearest_for_every_query():
    # Each query's item is exactly its 10th nearest gallery image: a miss at 9, a hit at 10.
    rng = np.random.default_rng(4)
    gallery = rng.normal(size=(200, 6)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.normal(size=(40, 6)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    items = np.array([f"g{i}" for i in range(200)])
    tenth = np.argsort(-(queries @ gallery.T), axis=1)[:, 9]
    result = retrieval_metrics(queries, items[tenth], gallery, items, ks=(9, 10), show_progress=False)
    assert result["top_k"] == {9: 0.0, 10: 1.0}
