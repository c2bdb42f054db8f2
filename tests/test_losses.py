"""Losses and triplet miners: masking, weighting and mining on hand-made examples."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fashionnet.landmarks import ABSENT, OCCLUDED, TRUNCATED, VISIBLE
from fashionnet.training.losses import AttributeLoss, CategoryLoss, LandmarkL2Loss, TripletLoss, VisibilityLoss
from fashionnet.training.miners import BatchHardMiner, SemiHardMiner, pairwise_distances


def _landmark_batch():
    g = torch.Generator().manual_seed(0)
    predicted = torch.rand(2, 8, 2, generator=g)
    target = torch.rand(2, 8, 2, generator=g)
    visibility = torch.tensor([[VISIBLE, OCCLUDED, TRUNCATED, ABSENT, VISIBLE, VISIBLE, ABSENT, ABSENT], [VISIBLE] * 4 + [ABSENT] * 4])
    target[visibility == ABSENT] = float("nan")  # absent slots are NaN in real data
    return predicted, target, visibility


def test_landmark_loss_counts_only_visible_landmarks():
    predicted, target, visibility = _landmark_batch()
    loss = LandmarkL2Loss()(predicted, target, visibility)

    visible = visibility == VISIBLE
    expected = sum(((predicted[b][visible[b]] - target[b][visible[b]]) ** 2).sum() for b in range(2)) / 2
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)

    # moving occluded / truncated / absent predictions changes nothing ...
    moved = predicted.clone()
    moved[~visible] += 0.5
    assert LandmarkL2Loss()(moved, target, visibility).item() == pytest.approx(loss.item(), rel=1e-6)
    # ... moving a visible one does
    moved = predicted.clone()
    moved[0, 0] += 0.5
    assert LandmarkL2Loss()(moved, target, visibility).item() > loss.item() + 1e-3


def test_landmark_loss_gives_no_gradient_to_hidden_landmarks():
    predicted, target, visibility = _landmark_batch()
    predicted.requires_grad_(True)
    LandmarkL2Loss()(predicted, target, visibility).backward()
    visible = visibility == VISIBLE
    assert torch.all(predicted.grad[~visible] == 0)
    assert torch.all(predicted.grad[visible].abs().sum(-1) > 0)
    assert torch.isfinite(predicted.grad).all()


def test_visibility_loss_ignores_absent_slots():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 8, 3, generator=g)
    _, _, visibility = _landmark_batch()
    loss = VisibilityLoss()(logits, visibility)
    keep = visibility != ABSENT
    expected = F.cross_entropy(logits[keep], visibility[keep])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)

    changed = logits.clone()
    changed[~keep] = 10 * torch.randn_like(changed[~keep])
    assert VisibilityLoss()(changed, visibility).item() == pytest.approx(loss.item(), rel=1e-6)

    all_absent = torch.full((2, 8), ABSENT)
    zero = VisibilityLoss()(logits.requires_grad_(True), all_absent)
    assert zero.item() == 0.0
    zero.backward()


def test_category_loss_ignores_unknown_labels():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 5, generator=g)
    labels = torch.tensor([1, -1, 4, -1])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert CategoryLoss()(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert CategoryLoss()(logits, torch.full((4,), -1)).item() == 0.0
    assert CategoryLoss()(torch.zeros(4, 0), labels).item() == 0.0


def test_attribute_weights_come_from_training_ratio():
    train = np.array([[1, -1, 0], [1, -1, 0], [-1, -1, 1], [-1, 1, 0], [-1, -1, 0], [-1, -1, 0]])
    loss = AttributeLoss.from_labels(train)
    # attribute 0: 2 positives / 4 negatives; 1: 1 / 5; 2: one positive, no negative -> 1
    assert loss.pos_weight.tolist() == pytest.approx([2.0, 5.0, 1.0])
    with pytest.raises(ValueError, match="1, -1 or 0"):
        AttributeLoss.from_labels(np.array([[2, 1]]))


def test_attribute_loss_masks_unknowns_and_weights_positives():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 4, generator=g)
    labels = torch.tensor([[1, -1, 0, 1], [0, 0, -1, 1], [-1, 1, 0, 0]])
    weights = torch.tensor([3.0, 1.0, 2.0, 0.5])
    loss = AttributeLoss(weights)(logits, labels)

    known = labels != 0
    p = torch.sigmoid(logits)
    y = (labels == 1).float()
    w = weights.expand_as(logits)
    manual = -(w * y * torch.log(p) + (1 - y) * torch.log(1 - p))
    assert loss.item() == pytest.approx(manual[known].mean().item(), rel=1e-5)

    # unknown labels do not matter
    changed = logits.clone()
    changed[~known] = 50.0
    assert AttributeLoss(weights)(changed, labels).item() == pytest.approx(loss.item(), rel=1e-5)
    # a larger positive weight makes a missed positive cost more
    heavier = AttributeLoss(weights * torch.tensor([10.0, 1, 1, 1]))(logits, labels)
    assert heavier.item() > loss.item()
    assert AttributeLoss()(logits, torch.zeros_like(labels)).item() == 0.0


# Embeddings on a line, labels 0,0,0,1,1,1: a hand-checkable batch.
LINE = torch.tensor([[0.0], [1.0], [4.2], [2.5], [6.0], [9.0]])
LABELS = torch.tensor([0, 0, 0, 1, 1, 1])


def test_pairwise_distances_match_cdist():
    x = torch.randn(5, 3)
    assert torch.allclose(pairwise_distances(x), torch.cdist(x, x), atol=1e-5)


def test_batch_hard_picks_farthest_positive_and_nearest_negative():
    a, p, n = BatchHardMiner()(LINE, LABELS)
    assert a.tolist() == [0, 1, 2, 3, 4, 5]
    # anchor 0 (x=0): farthest positive 4.2 (idx 2), nearest negative 2.5 (idx 3)
    # anchor 2 (x=4.2): farthest positive 0.0 (idx 0), nearest negative 2.5 (idx 3: 1.7 away; 6.0 is 1.8)
    # anchor 3 (x=2.5): farthest positive 9.0 (idx 5), nearest negative 1.0 (idx 1: 1.5 away; 4.2 is 1.7)
    # anchor 5 (x=9): farthest positive 2.5 (idx 3), nearest negative 4.2 (idx 2)
    assert p.tolist() == [2, 2, 0, 5, 3, 3]
    assert n.tolist() == [3, 3, 3, 1, 2, 2]


def test_batch_hard_skips_anchors_without_positive():
    a, p, n = BatchHardMiner()(LINE[:4], torch.tensor([0, 0, 0, 1]))
    assert a.tolist() == [0, 1, 2]  # anchor 3 is alone in its class
    assert n.tolist() == [3, 3, 3]


def test_semi_hard_picks_nearest_negative_beyond_the_positive_within_margin():
    # anchor 0 at 0 with positive 1 at 1.0; negatives at 0.5 (hard), 1.3, 1.8 (semi-hard), 5 (easy)
    x = torch.tensor([[0.0], [1.0], [0.5], [1.3], [1.8], [5.0]])
    labels = torch.tensor([0, 0, 1, 2, 3, 4])
    a, p, n = SemiHardMiner(margin=1.0)(x, labels)
    triplets = set(zip(a.tolist(), p.tolist(), n.tolist()))
    assert (0, 1, 3) in triplets  # 1.3 is nearer than 1.8; 0.5 is closer than the positive (hard)
    # anchor 1 (x=1) with positive 0 (d=1): negatives at d 0.5, 0.3, 0.8 are hard, 4.0 is beyond the margin
    assert not any(t[0] == 1 for t in triplets)
    assert SemiHardMiner(margin=0.1)(x, labels)[0].numel() == 0  # 1.3 is 0.3 past the positive


def test_triplet_loss_on_mined_triplets():
    emb = LINE.clone().requires_grad_(True)
    loss = TripletLoss(margin=0.5, miner=BatchHardMiner())(emb, LABELS)
    # per anchor: relu(0.5 + d_ap - d_an), from the batch-hard picks above
    d_ap = torch.tensor([4.2, 3.2, 4.2, 6.5, 3.5, 6.5])
    d_an = torch.tensor([2.5, 1.5, 1.7, 1.5, 1.8, 4.8])
    assert loss.item() == pytest.approx(torch.relu(0.5 + d_ap - d_an).mean().item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_triplet_loss_zero_when_classes_are_separated_and_finite_on_duplicates():
    separated = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    labels = torch.tensor([0, 0, 1, 1])
    assert TripletLoss(margin=0.2)(separated, labels).item() == 0.0

    duplicates = torch.zeros(4, 3, requires_grad=True)  # all points equal: d = 0 everywhere
    loss = TripletLoss(margin=0.2)(duplicates, labels)
    loss.backward()
    assert loss.item() == pytest.approx(0.2, abs=1e-5)
    assert torch.isfinite(duplicates.grad).all()


def test_box_loss_is_zero_on_the_target_grows_with_the_error_and_skips_rows_without_a_box():
    from fashionnet.training.losses import BoxLoss

    loss = BoxLoss()
    target = torch.tensor([[0.2, 0.1, 0.7, 0.9], [0.0, 0.0, 1.0, 1.0]])
    pred = target.clone().requires_grad_()
    assert loss(pred, target, torch.tensor([True, True]), pred).item() == pytest.approx(0.0, abs=1e-6)
    near = loss(target + 0.02, target, torch.tensor([True, True]), pred)
    far = loss(target + torch.tensor([0.2, 0.0, 0.2, 0.0]), target, torch.tensor([True, True]), pred)
    assert 0 < near < far
    # the second row has no box: whatever is predicted for it adds nothing
    wrong_second = torch.stack([target[0], torch.tensor([0.5, 0.5, 0.6, 0.6])])
    assert loss(wrong_second, target, torch.tensor([True, False]), pred).item() == pytest.approx(0.0, abs=1e-6)
    none = loss(pred, target, torch.tensor([False, False]), pred)
    none.backward()
    assert none.item() == 0.0 and torch.isfinite(pred.grad).all()
    assert loss(None, target, torch.tensor([True, True]), pred).item() == 0.0  # a model without a box head


def test_box_is_a_loss_term_weighted_in_both_stages():
    from fashionnet.training.losses import AttributeLoss, FashionNetLosses
    from fashionnet.training.schedule import LOSS_TERMS, IterativeSchedule, StageWeights

    assert "box" in LOSS_TERMS
    schedule = IterativeSchedule()
    assert schedule.weights(0)["box"] > 0 and schedule.weights(1)["box"] > 0
    assert StageWeights(1, 1, 1, 1, 1).as_dict()["box"] == 1.0  # five weights (the command line's) still work
    losses = FashionNetLosses(AttributeLoss(), 0.2, "batch_hard")
    out = {"landmarks": torch.rand(2, 8, 2), "visibility_logits": torch.randn(2, 8, 3), "category_logits": torch.randn(2, 3),
           "attribute_logits": torch.randn(2, 0), "embedding": F.normalize(torch.randn(2, 4), dim=1), "fusion_feature": torch.randn(2, 4),
           "box": torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9]])}
    batch = {"landmarks": torch.rand(2, 8, 2), "visibility": torch.zeros(2, 8, dtype=torch.long), "category": torch.tensor([0, 1]),
             "attributes": torch.zeros(2, 0), "item": torch.tensor([0, 0]),
             "bbox": torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.3, 0.3]]), "has_bbox": torch.tensor([True, True])}
    terms = losses(out, batch)
    assert set(terms) == set(LOSS_TERMS) and terms["box"] > 0
    assert losses(out, {**batch, "has_bbox": torch.tensor([True, False])})["box"].item() == pytest.approx(0.0, abs=1e-6)
