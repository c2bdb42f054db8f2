"""Metrics: hand-worked cases with expectations reasoned out in comments, and brute-force checks."""

import math

import numpy as np
import pytest
import torch

from fashionnet.evaluation.label_metrics import attribute_recall_at_k, category_accuracy
from fashionnet.evaluation.landmark_metrics import normalized_error, pdl
from fashionnet.evaluation.retrieval_metrics import map_at_r, retrieval_metrics, topk_hit_rate
from fashionnet.landmarks import ABSENT, LANDMARK_NAMES, OCCLUDED, VISIBLE

# Gallery of 5 images: items A, B, C, A, D.
GALLERY_ITEMS = np.array(["A", "B", "C", "A", "D"])
QUERY_ITEMS = np.array(["A", "C", "E"])
RANKED = np.array(
    [
        [1, 3, 0, 2, 4],  # query A: B, A, A, C, D -> first hit at rank 2
        [2, 0, 1, 3, 4],  # query C: C first -> hit at rank 1
        [0, 1, 2, 3, 4],  # query E: no gallery image of E -> never a hit
    ]
)


def test_hit_rate_hand_made_case():
    rates = topk_hit_rate(RANKED, QUERY_ITEMS, ks=(1, 2, 5), gallery_item_ids=GALLERY_ITEMS)
    # @1: only query C; @2 and @5: A and C. E counts in the denominator (hits / queries).
    assert rates == pytest.approx({1: 1 / 3, 2: 2 / 3, 5: 2 / 3})
    # tp / relevant (the public toolkit's bug) would give query A 2/2 at k=5; we report hit or no hit.
    same_from_item_ids = topk_hit_rate(GALLERY_ITEMS[RANKED], QUERY_ITEMS, ks=(1, 2, 5))
    assert same_from_item_ids == rates


def test_hit_rate_counts_missing_results_as_misses_and_takes_tensors():
    ranked = torch.tensor([[-1, 0], [-1, -1]])  # FAISS pads missing neighbours with -1
    rates = topk_hit_rate(ranked, np.array(["D", "A"]), ks=(1, 2), gallery_item_ids=np.array(["A", "B"]))
    # Query D has no result of D; query A's only real result (-1 aside) is absent -> both miss;
    # index -1 must NOT wrap around to the last gallery image.
    assert rates == {1: 0.0, 2: 0.0}
    rates = topk_hit_rate(torch.tensor([[-1, 0]]), np.array(["A"]), ks=(1, 2), gallery_item_ids=np.array(["A", "B"]))
    assert rates == {1: 0.0, 2: 1.0}


def test_hit_rate_rejects_k_beyond_results():
    with pytest.raises(ValueError, match="k=5"):
        topk_hit_rate(RANKED[:, :3], QUERY_ITEMS, ks=(1, 5), gallery_item_ids=GALLERY_ITEMS)


def test_map_at_r_hand_made_case():
    # Query A: R = 2 (gallery 0 and 3); first 2 results B, A -> precision@2 = 1/2 at the one hit -> AP = 0.5 / 2.
    # Query C: R = 1; result 1 is C -> AP = 1. Query E: R = 0 -> skipped.
    assert map_at_r(RANKED, QUERY_ITEMS, GALLERY_ITEMS) == pytest.approx((0.25 + 1.0) / 2)
    # A relevant image after position R does not count: A, X, A with R = 2 -> (1/1) / 2.
    assert map_at_r(np.array([[0, 1, 2]]), np.array(["A"]), np.array(["A", "X", "A"])) == pytest.approx(0.5)
    assert math.isnan(map_at_r(np.array([[0]]), np.array(["Z"]), np.array(["A"])))


def _unit(degrees):
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_retrieval_metrics_excluding_self():
    # Five images on the unit circle, queries = gallery, own image excluded.
    emb = _unit([0, 10, 90, 100, 200])
    items = np.array(["x", "x", "y", "z", "y"])
    # 0 deg: nearest 10 (x) hit@1. 10: nearest 0 (x) hit@1. 90 (y): 100 z, 10 x, 0 x, 200 y -> rank 4.
    # 100 (z): no other z. 200 (y): 100 z, 90 y -> rank 2.
    result = retrieval_metrics(emb, items, emb, items, ks=(1, 2, 4), exclude_self=True, show_progress=False)
    assert result["top_k"] == pytest.approx({1: 2 / 5, 2: 3 / 5, 4: 4 / 5})
    # R = 1 for x, x, y, y (z has none): AP 1, 1, 0 (rank 4 > R), 0 (rank 2 > R) -> 0.5.
    assert result["map_at_r"] == pytest.approx(0.5)
    assert result["num_queries"] == 5


def _brute_force_hit_rate(queries, query_items, gallery, gallery_items, k):
    hits = 0
    for q, item in zip(queries, query_items):
        order = np.argsort(-(gallery @ q), kind="stable")
        hits += any(gallery_items[j] == item for j in order[:k])
    return hits / len(queries)


def test_retrieval_metrics_match_brute_force_on_random_data():
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(300, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    gallery_items = rng.integers(0, 60, size=300)
    query_items = rng.integers(0, 70, size=50)  # some items have no gallery image
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ks = (1, 5, 10, 20)
    result = retrieval_metrics(torch.from_numpy(queries), query_items, gallery, gallery_items, ks=ks, show_progress=False)
    for k in ks:
        assert result["top_k"][k] == pytest.approx(_brute_force_hit_rate(queries, query_items, gallery, gallery_items, k))
    # mAP@R brute force
    aps = []
    for q, item in zip(queries, query_items):
        relevant = gallery_items[np.argsort(-(gallery @ q), kind="stable")] == item
        r = relevant.sum()
        if r:
            precision = np.cumsum(relevant[:r]) / np.arange(1, r + 1)
            aps.append((precision * relevant[:r]).sum() / r)
    assert result["map_at_r"] == pytest.approx(np.mean(aps))
    assert 0 < result["top_k"][20] < 1  # the random case is neither trivial nor hopeless


def _landmark_arrays(n):
    pred = np.full((n, 8, 2), np.nan)
    true = np.full((n, 8, 2), np.nan)
    vis = np.full((n, 8), ABSENT)
    return pred, true, vis


def test_normalized_error_hand_made():
    slot = {name: i for i, name in enumerate(LANDMARK_NAMES)}
    pred, true, vis = _landmark_arrays(2)
    sizes = np.array([[100, 200], [50, 50]])  # width, height
    # Image 0, left collar: dx 6/100 = 0.06, dy 16/200 = 0.08 -> 0.1.
    pred[0, slot["left_collar"]], true[0, slot["left_collar"]], vis[0, slot["left_collar"]] = (10, 20), (16, 36), VISIBLE
    # Image 0, right collar occluded and far off: must be ignored.
    pred[0, slot["right_collar"]], true[0, slot["right_collar"]], vis[0, slot["right_collar"]] = (0, 0), (90, 190), OCCLUDED
    # Image 1, left collar: dx 15/50 = 0.3, dy 20/50 = 0.4 -> 0.5. Right hem exact -> 0.
    pred[1, slot["left_collar"]], true[1, slot["left_collar"]], vis[1, slot["left_collar"]] = (0, 0), (15, 20), VISIBLE
    pred[1, slot["right_hem"]], true[1, slot["right_hem"]], vis[1, slot["right_hem"]] = (30, 30), (30, 30), VISIBLE
    ne = normalized_error(pred, true, vis, sizes)
    assert ne["per_landmark"]["left_collar"] == pytest.approx(0.3)
    assert ne["per_landmark"]["right_hem"] == pytest.approx(0.0)
    assert math.isnan(ne["per_landmark"]["right_collar"])
    assert ne["average"] == pytest.approx((0.1 + 0.5 + 0.0) / 3)
    assert ne["num_visible"] == 3


def test_pdl_threshold_and_rescaling():
    pred, true, vis = _landmark_arrays(1)
    true[0, :4] = (100, 100)
    pred[0, 0], pred[0, 1], pred[0, 2], pred[0, 3] = (130, 100), (100, 140), (121, 128), (400, 400)
    vis[0, :3] = VISIBLE  # distances 30, 40, 35 -> in, out, in (the threshold is inclusive)
    vis[0, 3] = OCCLUDED  # far off but not counted
    result = pdl(pred, true, vis, threshold_px=35)
    assert result["average"] == pytest.approx(2 / 3)
    assert result["per_landmark"]["right_collar"] == 0.0
    assert math.isnan(result["per_landmark"]["right_sleeve"])

    # 35 px on a 512-px reference: 60 px on a 1024-px image is 30 -> in; 20 px on 256 px is 40 -> out.
    pred, true, vis = _landmark_arrays(2)
    true[:, 0] = (0, 0)
    pred[0, 0], pred[1, 0] = (60, 0), (0, 20)
    vis[:, 0] = VISIBLE
    result = pdl(pred, true, vis, threshold_px=35, image_sizes=[[1024, 800], [200, 256]], reference_size=512)
    assert result["average"] == pytest.approx(0.5)


def test_category_accuracy_top_k_and_unknown_labels():
    logits = torch.tensor(
        [
            [0.1, 0.7, 0.2, 0.0],  # label 1: top-1
            [0.5, 0.1, 0.4, 0.0],  # label 2: second -> top-2 only
            [0.9, 0.0, 0.0, 0.1],  # label 3: only 0.9 scores higher -> second
            [0.0, 0.0, 1.0, 0.0],  # label -1: unknown, ignored
        ]
    )
    labels = torch.tensor([1, 2, 3, -1])
    acc = category_accuracy(logits, labels, ks=(1, 2, 3))
    # Ranks of the true class: 0, 1, 1 -> top-1 1/3, top-2 3/3.
    assert acc == pytest.approx({1: 1 / 3, 2: 1.0, 3: 1.0})
    assert category_accuracy(np.array([1, 0, 3, 2]), labels.numpy()) == pytest.approx({1: 2 / 3})


def test_attribute_recall_at_k():
    scores = np.array(
        [
            [0.9, 0.8, 0.1, 0.0, 0.2],  # top-2: attrs 0, 1
            [0.1, 0.2, 0.3, 0.9, 0.8],  # top-2: attrs 3, 4
            [0.5, 0.4, 0.3, 0.2, 0.1],  # no positives: skipped
        ]
    )
    labels = np.array(
        [
            [1, -1, 1, 0, -1],  # positives {0, 2}: found {0} -> 1/2
            [-1, 0, -1, 1, -1],  # positives {3}: found -> 1
            [-1, -1, 0, 0, -1],
        ]
    )
    assert attribute_recall_at_k(scores, labels, k=2) == pytest.approx((0.5 + 1.0) / 2)
    assert attribute_recall_at_k(scores, labels, k=5) == pytest.approx(1.0)
    assert math.isnan(attribute_recall_at_k(scores[2:], labels[2:], k=2))


def test_mean_layout_floor_hand_made():
    from fashionnet.evaluation.landmark_metrics import mean_layout

    # two tops (group 0) in 100 x 200 and 200 x 400 photos, one pair of trousers (group 1)
    true = np.full((3, 8, 2), np.nan)
    true[0, 0] = (10, 20)     # relative (0.1, 0.1)
    true[1, 0] = (60, 120)    # relative (0.3, 0.3)
    true[0, 1] = (50, 50)     # relative (0.5, 0.25), and occluded on row 1
    true[1, 1] = (0, 0)
    true[2, 0] = (40, 40)     # trousers: relative (0.4, 0.2)
    vis = np.full((3, 8), 3)
    vis[0, :2] = 0
    vis[1, 0] = 0
    vis[1, 1] = 1
    vis[2, 0] = 0
    sizes = np.array([[100, 200], [200, 400], [100, 200]])
    layout = mean_layout(true, vis, sizes, groups=[0, 0, 1])
    np.testing.assert_allclose(layout[0, 0], (20, 40))        # mean relative (0.2, 0.2) in 100 x 200
    np.testing.assert_allclose(layout[1, 0], (40, 80))        # the same layout in 200 x 400
    np.testing.assert_allclose(layout[1, 1], (100, 100))      # only row 0 shows slot 1: (0.5, 0.25)
    np.testing.assert_allclose(layout[2, 0], (40, 40))        # trousers keep their own layout
    np.testing.assert_allclose(layout[2, 1], (50, 50))        # slot 1 unseen in trousers: the overall mean
    ne = normalized_error(layout, true, vis, sizes)
    expected = np.mean([np.hypot(0.1, 0.1), np.hypot(0.1, 0.1), 0.0, 0.0])
    assert ne["average"] == pytest.approx(expected)


def test_box_iou_hand_made():
    from fashionnet.evaluation.box_metrics import box_iou

    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4])
    true = np.array([[0, 0, 10, 10],    # the same box: 1
                     [5, 0, 15, 10],    # half of each: intersection 50, union 150 -> 1/3
                     [20, 20, 30, 30],  # apart: 0
                     [0, 0, 10, 10]])   # no predicted box: unknown
    iou = box_iou(pred, true)
    np.testing.assert_allclose(iou[:3], [1.0, 1 / 3, 0.0])
    assert np.isnan(iou[3])


def test_garment_box_iou_leaves_out_unannotated_and_scores_missing_boxes_zero():
    from fashionnet.evaluation.box_metrics import garment_box_iou

    nan = [np.nan] * 4
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], nan, [0, 0, 10, 10]])
    true = np.array([[0, 0, 10, 10],  # 1
                     [5, 0, 15, 10],  # 1/3
                     [0, 0, 10, 6],   # 60 / 100 = 0.6
                     [0, 0, 10, 5],   # exactly 0.5: counts as at least 0.5
                     [0, 0, 10, 10],  # no predicted box: 0
                     nan])            # no annotation: left out
    r = garment_box_iou(pred, true)
    assert r["mean_iou"] == pytest.approx((1 + 1 / 3 + 0.6 + 0.5 + 0) / 5)
    assert r["iou_at_least_0.5"] == pytest.approx(3 / 5)
    assert r["iou_at_least_0.75"] == pytest.approx(1 / 5)
    assert (r["num_photos"], r["num_without_annotated_box"], r["num_without_predicted_box"]) == (5, 1, 1)


def test_mean_layout_in_box_lands_on_the_right_pixels():
    from fashionnet.evaluation.landmark_metrics import mean_layout_in_box

    true = np.full((4, 8, 2), np.nan)
    vis = np.full((4, 8), 3)
    boxes = np.array([[0, 0, 100, 200], [100, 100, 300, 500], [0, 0, 100, 100], [np.nan] * 4], dtype=float)
    true[0, 0], vis[0, 0] = (10, 20), 0     # top, relative to its box (0.1, 0.1)
    true[1, 0], vis[1, 0] = (160, 220), 0   # top, relative (0.3, 0.3): the tops' mean is (0.2, 0.2)
    true[1, 1], vis[1, 1] = (0, 0), 1       # occluded: not fitted
    true[2, 1], vis[2, 1] = (50, 25), 0     # trousers, relative (0.5, 0.25)
    true[3, 0], vis[3, 0] = (999, 999), 0   # a top without a box: not fitted
    groups = [1, 1, 2, 1]
    layout = mean_layout_in_box(true, vis, boxes, groups)
    np.testing.assert_allclose(layout[0, 0], (20, 40))     # (0.2, 0.2) of 100 x 200 from (0, 0)
    np.testing.assert_allclose(layout[1, 0], (140, 180))   # (0.2, 0.2) of 200 x 400 from (100, 100)
    np.testing.assert_allclose(layout[0, 1], (50, 50))     # no top shows slot 1: the overall mean (0.5, 0.25)
    np.testing.assert_allclose(layout[2, 0], (20, 20))     # trousers never show slot 0: overall (0.2, 0.2)
    np.testing.assert_allclose(layout[2, 2], (50, 50))     # nobody shows slot 2: the box's centre
    assert np.isnan(layout[3]).all()                       # nowhere to place it
    elsewhere = np.array([[50, 50, 150, 250], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 200, 100]], dtype=float)
    moved = mean_layout_in_box(true, vis, boxes, groups, place_in=elsewhere)
    np.testing.assert_allclose(moved[0, 0], (70, 90))      # the same layout, fitted on `boxes`, in another box
    np.testing.assert_allclose(moved[3, 0], (40, 20))      # the boxless top placed in a given box
    # in the boxes it was fitted in: the tops' slot 0 is off by 0.1 of the box each way, the trousers' slot 1 exact
    ne = normalized_error(layout[:3], true[:3], vis[:3], [[100, 200], [200, 400], [100, 100]])
    expected = np.mean([np.hypot(0.1, 0.1), np.hypot(0.1, 0.1), 0.0])  # 0.1 of the box is 0.1 of these photos
    assert ne["average"] == pytest.approx(expected)


def test_normalized_error_split_by_the_models_confidence():
    from fashionnet.evaluation.landmark_metrics import normalized_error_by_confidence

    true = np.zeros((1, 8, 2)) + 50
    pred = true.copy()
    pred[0, 0] += (10, 0)    # sure, 0.1 of the 100 x 100 photo
    pred[0, 1] += (0, 20)    # sure, 0.2
    pred[0, 2] += (30, 40)   # unsure, 0.5
    pred[0, 4] += (0, 0)     # sure, 0
    pred[0, 5] += (90, 0)    # not visible: left out whatever its flag
    vis = np.array([[0, 0, 0, 0, 0, 1, 3, 3]])
    sure = np.array([[True, True, False, False, True, False, True, True]])
    r = normalized_error_by_confidence(pred, true, vis, (100, 100), sure)
    assert r["ne_sure"] == pytest.approx(0.1)   # (0.1 + 0.2 + 0) / 3
    assert r["ne_unsure"] == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert (r["num_sure"], r["num_unsure"]) == (3, 2)
    assert r["sure_share"] == pytest.approx(3 / 5)
    none_unsure = normalized_error_by_confidence(pred, true, vis, (100, 100), np.ones((1, 8), bool))
    assert np.isnan(none_unsure["ne_unsure"]) and none_unsure["sure_share"] == 1.0
