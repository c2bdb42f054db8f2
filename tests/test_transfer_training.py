"""What training does to keep what transfers to real photos: photographic style augmentation and
a stronger zoom."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fashionnet.data.style_augment import StyleAugment, StyledTransform
from fashionnet.data.transforms import build_transforms
from fashionnet.training.args import parse_args
from fashionnet.training.data import training_transform
from fashionnet.training.train import main
from tests.conftest import TINY_TRAIN_ARGS


def _garment_photo() -> Image.Image:
    """A mid-grey scene with a saturated red garment block and a white stripe."""
    pixels = np.full((120, 90, 3), 128, np.uint8)
    pixels[30:100, 20:70] = (200, 30, 40)
    pixels[60:64, 20:70] = 255
    return Image.fromarray(pixels)


def test_style_augment_changes_pixels_but_not_landmarks():
    torch.manual_seed(0)
    base = build_transforms(train=False, size=64)
    styled = StyledTransform(base, StyleAugment(strength=2.0))
    image = _garment_photo()
    landmarks = np.array([[20.0, 30.0], [69.0, 30.0]] + [[45.0, 60.0]] * 6)
    visibility = np.zeros(8, np.int64)
    plain = base(image, landmarks, visibility)
    changed = 0
    for _ in range(12):
        out = styled(image, landmarks, visibility)
        torch.testing.assert_close(out[1], plain[1])  # a camera effect never moves a landmark
        torch.testing.assert_close(out[2], plain[2])
        changed += int(not torch.allclose(out[0], plain[0], atol=1e-3))
    assert changed >= 9, f"only {changed} of 12 draws changed the photo"


def test_style_augment_off_is_identity_and_strength_is_checked():
    image = _garment_photo()
    assert StyleAugment(strength=0.0)(image) is image
    with pytest.raises(ValueError, match="strength"):
        StyleAugment(strength=3.0)


def test_style_augment_is_repeatable_under_the_same_seed():
    image = _garment_photo()
    augment = StyleAugment(strength=1.5)
    torch.manual_seed(7)
    first = [np.asarray(augment(image)) for _ in range(5)]
    torch.manual_seed(7)
    second = [np.asarray(augment(image)) for _ in range(5)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_training_transform_follows_the_flags():
    args = parse_args(["--style-augment", "1", "--affine-scale", "0.5", "0.8", "--affine-degrees", "0", "--affine-translate", "0"])
    transform = training_transform(args)
    assert isinstance(transform, StyledTransform)
    # zoomed out to at most 0.8: a landmark at a corner of the frame moves towards the centre
    torch.manual_seed(0)
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    corner = np.array([[2.0, 2.0]] * 8)
    for _ in range(5):
        _, landmarks, _, _ = transform(image, corner, np.zeros(8, np.int64))
        if transform.base.flip_p and landmarks[0, 0] > 0.5:  # flipped: the corner is on the right
            landmarks[:, 0] = 1 - landmarks[:, 0]
        assert 0.5 - 0.8 * 0.5 <= float(landmarks[0, 0]) and float(landmarks[0, 1]) >= 0.5 - 0.8 * 0.47
    plain = training_transform(parse_args([]))
    assert not isinstance(plain, StyledTransform)


def test_training_with_style_and_a_wide_zoom_stays_finite(synth_root, tmp_path):
    out = tmp_path / "run"
    main([*TINY_TRAIN_ARGS, "--data-root", str(synth_root / "consumer2shop"), "--output-dir", str(out), "--joint-epochs", "1",
          "--batches-per-epoch", "3", "--ood-images", "0", "--style-augment", "1.0", "--affine-scale", "0.6", "1.1"])
    history = json.loads((out / "history.json").read_text())
    assert all(np.isfinite(epoch["train"]["total"]) for epoch in history)


def test_styled_training_data_keeps_the_garment_box(synth_root):
    from fashionnet.data.dataset import DeepFashionDataset
    from fashionnet.data.readers import read_benchmark

    frame = read_benchmark(synth_root / "consumer2shop")
    args = parse_args(["--style-augment", "1", "--image-size", "64"])
    dataset = DeepFashionDataset(frame.head(4), synth_root / "consumer2shop", training_transform(args))
    for i in range(4):
        sample = dataset[i]
        assert bool(sample["has_bbox"]), "the box loss would see no box"
        x1, y1, x2, y2 = sample["bbox"].tolist()
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
