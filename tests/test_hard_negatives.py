"""Hard negatives: look-alike batches and the cross-batch memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fashionnet.data.samplers import LookAlikeSampler
from fashionnet.hard_negatives import CrossBatchMemory, ItemEmbeddingTable
from fashionnet.training import main
from tests.conftest import TINY_TRAIN_ARGS

# 12 items, 3 rows each; items 0-5 are category "a", 6-11 category "b"
LABELS = np.repeat(np.arange(12), 3)
CATEGORIES = ["a"] * 6 + ["b"] * 6


def _items_in(batch, k=2):
    return [LABELS[i] for i in batch[::k]]


def test_look_alike_batches_pair_items_of_one_category():
    sampler = LookAlikeSampler(LABELS, CATEGORIES, p=4, k=2, group=2, seed=0, num_batches=12)
    for batch in sampler:
        items = _items_in(batch)
        assert len(set(items)) == 4, items
        for seed_item, partner in zip(items[::2], items[1::2]):
            assert CATEGORIES[seed_item] == CATEGORIES[partner], items
        assert all(LABELS[i] == LABELS[j] for i, j in zip(batch[::2], batch[1::2]))  # k rows per item


def test_look_alikes_follow_the_embeddings_once_set():
    sampler = LookAlikeSampler(LABELS, CATEGORIES, p=4, k=2, group=2, neighbours=1, seed=0, num_batches=12)
    # item i's nearest item is i ^ 1 (0<->1, 2<->3, ...), across categories for 5<->4 and 6<->7 alike
    angles = np.repeat(np.arange(6), 2) * 0.5 + np.tile([0.0, 0.01], 6)
    sampler.set_item_embeddings(np.stack([np.cos(angles), np.sin(angles)], axis=1))
    for batch in sampler:
        items = _items_in(batch)
        for seed_item, partner in zip(items[::2], items[1::2]):
            assert partner == seed_item ^ 1, items


def test_look_alike_sampler_is_deterministic_and_shards_like_pk():
    def run(seed, epoch, rank=0, world=1, batches=6):
        s = LookAlikeSampler(LABELS, CATEGORIES, p=4, k=2, seed=seed, num_batches=batches, rank=rank, world_size=world)
        s.set_epoch(epoch)
        return list(s)

    assert run(0, 0) == run(0, 0) and run(0, 0) != run(0, 1) and run(0, 0) != run(1, 0)
    full = run(3, 2)
    shards = [run(3, 2, r, 2) for r in range(2)]
    assert shards[0] == full[0::2] and shards[1] == full[1::2]
    with pytest.raises(ValueError, match="group"):
        LookAlikeSampler(LABELS, CATEGORIES, p=4, k=2, group=5)
    with pytest.raises(ValueError, match="item_groups"):
        LookAlikeSampler(LABELS, CATEGORIES[:5], p=4, k=2)


def test_memory_contrastive_loss_hand_made():
    memory = CrossBatchMemory(size=4, dim=2, loss="contrastive", negative_threshold=0.5)
    assert float(memory.loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))) == 0.0  # empty memory
    memory.enqueue(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), torch.tensor([0, 1, 0]))
    anchor = torch.tensor([[1.0, 0.0]])
    # positives (label 0): sims 1.0 and 0.0 -> mean(1 - s) = 0.5; negatives: sim 0.6 > 0.5 -> 0.6
    assert float(memory.loss(anchor, torch.tensor([0]))) == pytest.approx(0.5 + 0.6)
    # label 1: positive sim 0.6 -> 0.4; negatives sims 1.0, 0.0: only 1.0 counts
    assert float(memory.loss(anchor, torch.tensor([1]))) == pytest.approx(0.4 + 1.0)


def test_memory_triplet_loss_and_ring_buffer():
    memory = CrossBatchMemory(size=2, dim=2, loss="triplet", margin=0.2)
    memory.enqueue(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]), torch.tensor([5, 0, 1]))  # only the last 2 are kept
    assert memory.filled == 2 and sorted(memory.labels.tolist()) == [0, 1]
    anchor = torch.tensor([[1.0, 0.0]])
    d_pos, d_neg = 0.0, float(np.sqrt(2 - 2 * 0.6))
    assert float(memory.loss(anchor, torch.tensor([0]))) == pytest.approx(max(0.0, 0.2 + d_pos - d_neg), abs=1e-5)
    memory.enqueue(torch.tensor([[0.0, -1.0]]), torch.tensor([0]))  # overwrites the oldest row (label 0 at [1, 0])
    assert sorted(memory.labels.tolist()) == [0, 1]
    d_pos = 2 ** 0.5
    assert float(memory.loss(anchor, torch.tensor([0]))) == pytest.approx(0.2 + d_pos - d_neg, abs=1e-5)


def test_item_table_means_what_it_saw():
    table = ItemEmbeddingTable(num_items=3, dim=2)
    table.add(torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]]), torch.tensor([0, 0, -1]))
    means, seen = table.means()
    torch.testing.assert_close(means[0], torch.tensor([2.0, 1.0]))
    assert seen.tolist() == [True, False, False]


def test_training_with_look_alike_batches_and_memory(synth_root, tmp_path):
    out = tmp_path / "run"
    main([*TINY_TRAIN_ARGS, "--data-root", str(synth_root / "consumer2shop"), "--output-dir", str(out), "--joint-epochs", "2",
          "--batches-per-epoch", "3", "--ood-images", "0", "--sampler", "look_alike", "--xbm-size", "64"])
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 3
    assert history[0]["train"]["xbm"] >= 0 and history[-1]["train"]["xbm"] > 0
