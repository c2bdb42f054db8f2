"""DeepFashionDataset samples and error handling, collate_skip_none, and the P x K batch sampler."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fashionnet.data.dataset import DeepFashionDataset, SkippedSample, collate_skip_none, make_label_map
from fashionnet.data.images import ImageLoadError
from fashionnet.data.samplers import PKSampler
from fashionnet.data.schema import conform
from fashionnet.data.transforms import build_transforms, letterbox_geometry, to_model_coords
from fashionnet.landmarks import ABSENT, LANDMARK_NAMES, VISIBLE

SIZE = 32


def write_dataset(root, rows):
    """Write tiny images for ``rows`` (image_path, item_id, category, size) and return a schema frame."""
    records = []
    for i, (path, item, category, (w, h)) in enumerate(rows):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (40 * i % 255, 90, 200)).save(root / path)
        rec = {"image_path": path, "item_id": item, "category": category, "clothes_type": 1, "split": "train"}
        for j, name in enumerate(LANDMARK_NAMES):
            present = j in (0, 1, 2, 3, 6, 7)  # upper body: no waistline
            rec[f"{name}_x"] = (j + 1) * w / 10 if present else np.nan
            rec[f"{name}_y"] = h / 2 if present else np.nan
            rec[f"{name}_vis"] = VISIBLE if present else ABSENT
        records.append(rec)
    frame = conform(pd.DataFrame(records))
    frame["attributes"] = [np.array([1, -1, 0], dtype=np.int8) if i % 2 == 0 else None for i in range(len(frame))]
    return frame


ROWS = [
    ("img/WOMEN/Dresses/id_00000002/01_1_front.jpg", "id_00000002", "Dresses", (40, 60)),
    ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "Dresses", (50, 50)),
    ("img/MEN/Tees/id_00000001/01_1_front.jpg", "id_00000001", "Tees", (64, 48)),
    ("img/MEN/Tees/id_00000007/01_1_front.jpg", "id_00000007", None, (30, 45)),
]


@pytest.fixture
def tiny(tmp_path):
    return tmp_path, write_dataset(tmp_path, ROWS)


def test_sample_has_documented_keys_dtypes_and_shapes(tiny):
    root, frame = tiny
    ds = DeepFashionDataset(frame, root, build_transforms(train=False, size=SIZE))
    assert len(ds) == 4
    assert ds.item_labels == {"id_00000001": 0, "id_00000002": 1, "id_00000007": 2}
    assert ds.category_labels == {"Dresses": 0, "Tees": 1}
    expected = {
        "image": (torch.float32, (3, SIZE, SIZE)),
        "landmarks": (torch.float32, (8, 2)),
        "visibility": (torch.int64, (8,)),
        "item": (torch.int64, ()),
        "category": (torch.int64, ()),
        "attributes": (torch.float32, (3,)),
        "clothes_type": (torch.int64, ()),
        "index": (torch.int64, ()),
        "original_size": (torch.int64, (2,)),
        "bbox": (torch.float32, (4,)),
        "has_bbox": (torch.bool, ()),
    }
    for i in range(len(ds)):
        sample = ds[i]
        assert set(sample) == set(expected)
        for key, (dtype, shape) in expected.items():
            assert sample[key].dtype == dtype and tuple(sample[key].shape) == shape, key
        assert int(sample["index"]) == i
        assert int(sample["item"]) == ds.item_labels[ROWS[i][1]]
        assert int(sample["category"]) == (ds.category_labels[ROWS[i][2]] if ROWS[i][2] else -1)
        assert int(sample["clothes_type"]) == 1
        assert sample["original_size"].tolist() == list(ROWS[i][3])
        # Landmarks are the letterboxed pixels normalised to the model input; absent slots are 0, not NaN.
        w, h = ROWS[i][3]
        xy = np.stack([frame.loc[i, [f"{n}_x" for n in LANDMARK_NAMES]], frame.loc[i, [f"{n}_y" for n in LANDMARK_NAMES]]], -1)
        want = to_model_coords(xy.astype(np.float64), letterbox_geometry(w, h, SIZE), normalized=True)
        present = sample["visibility"].numpy() != ABSENT
        np.testing.assert_allclose(sample["landmarks"].numpy()[present], want[present], atol=1e-5)
        assert torch.isfinite(sample["landmarks"]).all() and (sample["landmarks"][~torch.as_tensor(present)] == 0).all()
        assert sample["visibility"].tolist() == [0, 0, 0, 0, 3, 3, 0, 0]
        assert not sample["has_bbox"] and sample["bbox"].tolist() == [0.0] * 4  # these rows have no bbox
    assert ds[0]["attributes"].tolist() == [1.0, -1.0, 0.0]
    assert ds[1]["attributes"].tolist() == [0.0, 0.0, 0.0]  # unknown attributes


@pytest.mark.parametrize("seed", range(4))
def test_bbox_follows_the_garment_pixels_through_crop_flip_letterbox_and_affine(tmp_path, seed):
    """The sample's bbox encloses the red garment where it lands in the (flipped, rotated) input."""
    w, h, box = 120, 80, (70, 10, 110, 70)
    Image.new("RGB", (w, h), (128, 128, 128)).save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        im = im.copy()
    im.paste((255, 0, 0), box)
    im.save(tmp_path / "a.png")
    frame = conform(pd.DataFrame([{"image_path": "a.png", "item_id": "i", "category": None, "clothes_type": 1, "split": "train",
                                   "bbox_x1": box[0], "bbox_y1": box[1], "bbox_x2": box[2], "bbox_y2": box[3]}]))
    size = 64
    torch.manual_seed(seed)
    transform = build_transforms(train=True, size=size, crop_to_bbox=seed % 2 == 1, flip_p=0.5, color_jitter=None)
    sample = DeepFashionDataset(frame, tmp_path, transform)[0]
    assert bool(sample["has_bbox"])
    rgb = sample["image"] * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) + torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    red = (rgb[0] > 0.75) & (rgb[1] < 0.3)
    ys, xs = torch.nonzero(red, as_tuple=True)
    seen = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32) / size
    assert torch.allclose(sample["bbox"], seen, atol=3.0 / size), (sample["bbox"], seen)


def test_given_label_maps_are_used_and_unknown_items_rejected(tiny):
    root, frame = tiny
    items = {"id_00000002": 5, "id_00000001": 3, "id_00000007": 9}
    ds = DeepFashionDataset(frame, root, build_transforms(train=False, size=SIZE), item_labels=items, category_labels={"Tees": 4})
    assert [int(ds[i]["item"]) for i in range(4)] == [5, 5, 3, 9]
    assert [int(ds[i]["category"]) for i in range(4)] == [-1, -1, 4, -1]
    with pytest.raises(ValueError, match="id_00000007"):
        DeepFashionDataset(frame, root, item_labels={"id_00000002": 0, "id_00000001": 1})
    assert make_label_map(["b", None, "a", "b", pd.NA]) == {"a": 0, "b": 1}


def test_bad_image_raises_naming_the_file_or_is_skipped(tiny, caplog):
    root, frame = tiny
    (root / ROWS[1][0]).write_bytes(b"this is not a jpeg")
    ds = DeepFashionDataset(frame, root, build_transforms(train=False, size=SIZE))
    with pytest.raises(ImageLoadError, match="02_2_side.jpg"):
        ds[1]
    skipping = DeepFashionDataset(frame, root, build_transforms(train=False, size=SIZE), on_error="skip")
    skipped = skipping[1]
    assert isinstance(skipped, SkippedSample) and not skipped and "02_2_side.jpg" in skipped.error
    batch = collate_skip_none([skipping[i] for i in range(4)])
    assert batch["index"].tolist() == [0, 2, 3] and batch["image"].shape == (3, 3, SIZE, SIZE)
    assert len(batch["errors"]) == 1 and "02_2_side.jpg" in batch["errors"][0]
    assert collate_skip_none([skipping[0]])["errors"] == []
    with caplog.at_level(logging.WARNING, logger="fashionnet.data.dataset"):
        assert collate_skip_none([None, skipped]) is None
    assert "02_2_side.jpg" in caplog.text and "sample was None" in caplog.text
    # Through a DataLoader with the P x K sampler.
    loader = DataLoader(skipping, batch_sampler=PKSampler(skipping.item_per_row, p=2, k=2), collate_fn=collate_skip_none)
    seen = [batch for batch in loader]
    assert len(seen) == 1 and seen[0]["image"].shape[0] + len(seen[0]["errors"]) == 4


def test_bad_annotation_error_names_file_and_row(tiny):
    root, frame = tiny
    frame.loc[2, ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]] = [30, 10, 5, 40]  # x2 < x1
    ds = DeepFashionDataset(frame, root, build_transforms(train=False, size=SIZE, crop_to_bbox=True))
    with pytest.raises(ValueError, match=r"Tees/id_00000001/01_1_front.jpg \(row 2\)"):
        ds[2]
    frame.loc[1, "attributes"] = np.array([1, 1], dtype=np.int8)
    with pytest.raises(ValueError, match="row 1"):
        DeepFashionDataset(frame, root)


# ----------------------------------------------------------------------------------- PKSampler

# 7 items: item i has i + 1 rows, shuffled over the dataset; label -1 rows are never drawn.
LABELS = np.random.default_rng(3).permutation(np.concatenate([[-1, -1], np.repeat(np.arange(7), np.arange(1, 8))]))


def item_counts(batch):
    return Counter(int(LABELS[i]) for i in batch)


def test_pk_batches_hold_p_distinct_items_k_times_each():
    sampler = PKSampler(LABELS, p=3, k=4, seed=1, num_batches=5)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    for batch in batches:
        assert len(batch) == 12
        counts = item_counts(batch)
        assert len(counts) == 3 and set(counts.values()) == {4} and -1 not in counts
        for item in counts:
            rows = [i for i in batch if LABELS[i] == item]
            # Distinct rows when the item has enough images; all of its images when it has fewer.
            assert len(set(rows)) == min(4, item + 1)
    # A pass over the items (7 // 3 = 2 batches) never repeats an item; the next pass reshuffles.
    passes = [set(item_counts(batches[0])) | set(item_counts(batches[1])), set(item_counts(batches[2])) | set(item_counts(batches[3]))]
    assert len(passes[0]) == len(passes[1]) == 6
    assert [set(item_counts(b)) for b in batches[:2]] != [set(item_counts(b)) for b in batches[2:4]]


def test_pk_sampler_is_deterministic_per_seed_and_epoch():
    def run(seed, epoch):
        sampler = PKSampler(LABELS, p=2, k=2, seed=seed, num_batches=6)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert run(0, 0) == run(0, 0)
    assert run(0, 0) != run(0, 1)
    assert run(0, 0) != run(1, 0)


def test_pk_sampler_shards_batches_across_ranks():
    full = list(PKSampler(LABELS, p=2, k=2, seed=5, num_batches=3))  # one pass over 7 items
    ranks = [list(PKSampler(LABELS, p=2, k=2, seed=5, num_batches=3, rank=r, world_size=3)) for r in range(3)]
    assert [len(r) for r in ranks] == [1, 1, 1]
    assert [r[0] for r in ranks] == full
    items = [set(item_counts(r[0])) for r in ranks]
    assert not (items[0] & items[1]) and not (items[0] & items[2]) and not (items[1] & items[2])
    # Uneven splits drop the remainder so every rank steps the same number of times.
    assert [len(PKSampler(LABELS, p=2, k=2, num_batches=5, rank=r, world_size=2)) for r in range(2)] == [2, 2]


def test_pk_sampler_rejects_impossible_settings():
    with pytest.raises(ValueError, match="distinct items"):
        PKSampler(LABELS, p=8, k=2)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(LABELS, p=2, k=2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="ranks"):
        PKSampler(LABELS, p=2, k=2, num_batches=1, world_size=2)
