"""Landmark-aware transforms: the coordinates must follow the pixels.

Each landmark is drawn as a 5x5 square of its own colour on a black image; after a transform the
pixel under every still-visible transformed landmark must show that landmark's colour, and the
centre of that colour's pixels must sit within 2 px of the coordinate.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fashionnet.data.transforms import (
    IMAGENET_MEAN,
    PAD_FILL,
    AffineJitter,
    ColorJitterParams,
    affine,
    build_transforms,
    crop,
    denormalize,
    horizontal_flip,
    letterbox,
    letterbox_geometry,
    make_sample,
    to_model_coords,
    to_model_input,
    to_original_coords,
)
from fashionnet.landmarks import ABSENT, LANDMARK_NAMES, OCCLUDED, TRUNCATED, VISIBLE

# One fully saturated colour per slot, hues 45 degrees apart, so a marker is still recognised by its
# hue after colour jitter (brightness/contrast/saturation change, hue moves at most ~7 degrees).
MARKER_HUES = np.arange(8) * 45.0
MARKER_COLOURS = np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h / 360, 1.0, 1.0)] for h in MARKER_HUES])
BACKGROUND = (0, 0, 0)
# Marker pixel indices on a 100 x 60 image (x, y); the landmark is the centre of the square.
W, H = 100, 60
MARKER_PIXELS = np.array([(30, 10), (70, 10), (10, 25), (90, 25), (35, 35), (65, 35), (25, 52), (75, 52)])
SIZE = 224
# Written out from the slot names (L/R collar, L/R sleeve, L/R waistline, L/R hem), not imported:
# after a horizontal flip slot s shows the marker drawn for slot MIRRORED_SLOT[s].
MIRRORED_SLOT = (1, 0, 3, 2, 5, 4, 7, 6)


def marker_image(pixels=MARKER_PIXELS, width=W, height=H) -> tuple[Image.Image, np.ndarray]:
    """Black image with a 5x5 square per landmark; returns it and the landmark coordinates
    (continuous: the centre of pixel column i is i + 0.5)."""
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for (x, y), colour in zip(pixels, MARKER_COLOURS):
        draw.rectangle([x - 2, y - 2, x + 2, y + 2], fill=tuple(int(c) for c in colour))
    return img, pixels.astype(np.float32) + 0.5


def label_pixels(rgb: np.ndarray) -> np.ndarray:
    """Slot whose marker hue each pixel shows; -1 for the black background and the grey padding."""
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.float64)
    hue = hsv[..., 0] * 360 / 256
    gap = np.abs((hue[..., None] - MARKER_HUES + 180) % 360 - 180)
    labels = gap.argmin(-1)
    labels[(hsv[..., 1] < 128) | (hsv[..., 2] < 90) | (gap.min(-1) > 20)] = -1
    return labels


def as_rgb(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image)
    return (denormalize(image).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def assert_markers_follow(image, landmarks_px, visibility, marker_of_slot=range(8), tol=2.0) -> int:
    """Every visible/occluded slot sits on its marker's colour; returns how many were checked."""
    labels = label_pixels(as_rgb(image))
    h, w = labels.shape
    checked = 0
    for slot, marker in enumerate(marker_of_slot):
        if int(visibility[slot]) not in (VISIBLE, OCCLUDED):
            continue
        x, y = (float(v) for v in landmarks_px[slot])
        assert 0 <= x < w and 0 <= y < h, f"{LANDMARK_NAMES[slot]} marked in view but at {(x, y)}"
        assert labels[int(y), int(x)] == marker, f"{LANDMARK_NAMES[slot]}: pixel under {(x, y)} is not its marker"
        rows, cols = np.nonzero(labels == marker)
        centre = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
        assert np.linalg.norm(centre - [x, y]) <= tol, f"{LANDMARK_NAMES[slot]}: marker at {centre}, landmark at {(x, y)}"
        checked += 1
    return checked


def marker_present(image, marker: int) -> bool:
    return bool((label_pixels(as_rgb(image)) == marker).any())


def test_letterbox_non_square_keeps_markers_under_landmarks():
    img, xy = marker_image()
    sample, geometry = letterbox(make_sample(img, xy, np.zeros(8)), SIZE)
    assert sample.image.size == (SIZE, SIZE)
    assert (geometry.resized_w, geometry.resized_h) == (SIZE, round(H * SIZE / W))
    assert assert_markers_follow(sample.image, sample.landmarks, sample.visibility) == 8
    # The bands above and below the content are the mean-grey padding.
    rgb = np.asarray(sample.image)
    x1, y1, x2, y2 = geometry.content_box
    assert y1 > 0 and (rgb[: y1 - 1] == PAD_FILL).all() and (rgb[y2 + 1 :] == PAD_FILL).all()
    # The model input normalises the padding to zero.
    assert to_model_input(sample.image)[:, : y1 - 1].abs().max() < 0.02


def test_crop_truncates_cut_off_landmarks_keeps_absent_and_occluded():
    img, xy = marker_image()
    vis = np.array([VISIBLE, OCCLUDED, VISIBLE, VISIBLE, ABSENT, ABSENT, VISIBLE, VISIBLE])
    xy[4] = np.nan  # an upper-body garment has no waistline; an absent slot's stray numbers are ignored
    transform = build_transforms(train=False, size=SIZE, crop_to_bbox=True, crop_margin=0.0)
    image, landmarks, out_vis, geometry = transform(img, xy, vis, bbox=(20, 2, 80, 58))
    out_vis = out_vis.numpy()
    # The sleeves (x = 10 and 90) are outside the crop: truncated, and their markers are gone.
    assert out_vis[2] == TRUNCATED and out_vis[3] == TRUNCATED
    assert not marker_present(image, 2) and not marker_present(image, 3)
    assert out_vis[1] == OCCLUDED and out_vis[0] == VISIBLE
    assert (out_vis[4:6] == ABSENT).all() and torch.isnan(landmarks[4:6]).all()
    assert assert_markers_follow(image, landmarks * SIZE, out_vis) == 4
    # The geometry maps the output landmarks back onto the original pixels (what the Predictor does).
    back = to_original_coords(landmarks.numpy(), geometry, normalized=True)
    np.testing.assert_allclose(back[[0, 1, 6, 7]], xy[[0, 1, 6, 7]], atol=1e-3)


def test_landmark_cut_by_crop_is_truncated_even_inside_the_padding():
    pixels = MARKER_PIXELS.copy()
    pixels[2] = (22, 25)  # just left of the crop below
    pixels[6] = (32, 52)  # keep the left hem's marker whole inside the crop
    img, xy = marker_image(pixels)
    transform = build_transforms(train=False, size=SIZE, crop_to_bbox=True, crop_margin=0.0)
    image, landmarks, vis, geometry = transform(img, xy, np.zeros(8), bbox=(25, 0, 75, 60))
    x = float(landmarks[2, 0]) * SIZE
    assert 0 <= x < geometry.pad_x, "the cut-off point should land in the side padding"
    assert vis[2] == TRUNCATED
    assert vis[7] == TRUNCATED  # the right hem (x = 75.5) is just outside [25, 75)
    assert assert_markers_follow(image, landmarks * SIZE, vis) == 5


def test_flip_swaps_left_and_right_slots():
    img, xy = marker_image()
    flipped = horizontal_flip(make_sample(img, xy, np.zeros(8)))
    out = flipped.landmarks.numpy()
    # Slot left_collar now holds the point drawn as the right collar, mirrored.
    np.testing.assert_allclose(out[0], [W - xy[1, 0], xy[1, 1]])
    np.testing.assert_allclose(out[1], [W - xy[0, 0], xy[0, 1]])
    assert out[0, 0] < out[1, 0], "the left slot must stay the one nearer x = 0"
    marker_of_slot = MIRRORED_SLOT
    assert assert_markers_follow(flipped.image, out, flipped.visibility, marker_of_slot) == 8
    # The visibility codes travel with their points.
    vis = np.array([VISIBLE, OCCLUDED, VISIBLE, VISIBLE, VISIBLE, VISIBLE, OCCLUDED, VISIBLE])
    assert horizontal_flip(make_sample(img, xy, vis)).visibility.tolist() == vis[list(MIRRORED_SLOT)].tolist()


def test_affine_with_fixed_parameters_moves_markers_and_truncates_what_leaves():
    img, xy = marker_image()
    sample, _ = letterbox(make_sample(img, xy, np.zeros(8)), SIZE)
    moved = affine(sample, angle=25.0, translate=(7, -5), scale=1.15)
    assert assert_markers_follow(moved.image, moved.landmarks, moved.visibility) == 8
    # A large shift pushes the right sleeve (x ~ 202 px) off the canvas.
    shifted = affine(sample, angle=0.0, translate=(40, 0), scale=1.0)
    assert shifted.visibility[3] == TRUNCATED and not marker_present(shifted.image, 3)
    assert shifted.visibility[2] == VISIBLE
    assert assert_markers_follow(shifted.image, shifted.landmarks, shifted.visibility) == 7


@pytest.mark.parametrize("flip_p", [0.0, 1.0])
def test_full_train_pipeline_with_fixed_seed(flip_p):
    img, xy = marker_image()
    transform = build_transforms(
        train=True,
        size=SIZE,
        crop_to_bbox=True,
        flip_p=flip_p,
        jitter=AffineJitter(degrees=15, translate=0.05, scale=(0.9, 1.1)),
        color_jitter=ColorJitterParams(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02),
    )
    with torch.random.fork_rng():  # leave the global generator as other tests expect it
        torch.manual_seed(0)
        image, landmarks, vis, _ = transform(img, xy, np.zeros(8), bbox=(5, 5, 95, 57))
        torch.manual_seed(0)
        again = transform(img, xy, np.zeros(8), bbox=(5, 5, 95, 57))
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert landmarks.shape == (8, 2) and landmarks.dtype == torch.float32 and vis.dtype == torch.int64
    assert torch.equal(image, again[0]) and torch.equal(landmarks, again[1])
    marker_of_slot = MIRRORED_SLOT if flip_p else range(8)
    assert assert_markers_follow(image, landmarks * SIZE, vis, marker_of_slot) >= 6


def test_eval_transform_is_deterministic_even_with_train_options():
    img, xy = marker_image()
    transform = build_transforms(train=False, size=SIZE, flip_p=1.0, jitter=AffineJitter(degrees=30))
    first = transform(img, xy, np.zeros(8))
    second = transform(img, xy, np.zeros(8))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    sample, geometry = letterbox(make_sample(img, xy, np.zeros(8)), SIZE)
    np.testing.assert_allclose(first[1].numpy() * SIZE, sample.landmarks.numpy(), atol=1e-4)
    assert assert_markers_follow(first[0], first[1] * SIZE, first[2]) == 8
    # No annotation (a query image): all slots absent.
    _, landmarks, vis, _ = transform(img)
    assert (vis == ABSENT).all() and torch.isnan(landmarks).all()


@pytest.mark.parametrize("region", [None, (13, 7, 41, 50)])
def test_letterbox_round_trip_returns_original_pixels(region):
    geometry = letterbox_geometry(173, 91, 224, region=region)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [173, 91], size=(5, 8, 2))
    model = to_model_coords(xy, geometry)
    np.testing.assert_allclose(to_original_coords(model, geometry), xy, atol=1e-9)
    norm = to_model_coords(xy, geometry, normalized=True)
    np.testing.assert_allclose(norm * 224, model, atol=1e-9)
    back = to_original_coords(torch.as_tensor(norm, dtype=torch.float32), geometry, normalized=True)
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float32
    np.testing.assert_allclose(back.numpy(), xy, atol=1e-3)
    # The corners of the letterboxed region land on the content box.
    rx, ry, rw, rh = region or (0, 0, 173, 91)
    corners = to_model_coords(np.array([[rx, ry], [rx + rw, ry + rh]], dtype=float), geometry)
    np.testing.assert_allclose(corners.ravel(), geometry.content_box, atol=1e-9)


def test_denormalize_inverts_normalisation():
    rgb = np.random.default_rng(1).integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    tensor = to_model_input(Image.fromarray(rgb))
    np.testing.assert_allclose(denormalize(tensor).permute(1, 2, 0).numpy() * 255, rgb, atol=1e-3)
    assert denormalize(tensor[None]).shape == (1, 3, 9, 11)
    np.testing.assert_allclose(tensor.mean(dim=(1, 2)).numpy() * 0, 0)  # finite values
    assert IMAGENET_MEAN[0] == pytest.approx(PAD_FILL[0] / 255, abs=0.002)


def test_bad_annotations_get_clear_errors():
    img, xy = marker_image()
    with pytest.raises(ValueError, match="shape"):
        make_sample(img, xy[:6], None)
    with pytest.raises(ValueError, match="visibility codes"):
        make_sample(img, xy, np.full(8, 5))
    transform = build_transforms(train=False, crop_to_bbox=True)
    with pytest.raises(ValueError, match="bbox"):
        transform(img, xy, np.zeros(8), bbox=(50, 10, 40, 30))
    with pytest.raises(ValueError, match="outside"):
        transform(img, xy, np.zeros(8), bbox=(500, 500, 600, 600))
    # A visible point given outside the image is not in view: truncated.
    xy[0] = (-5, 10)
    assert make_sample(img, xy, np.zeros(8)).visibility[0] == TRUNCATED


def test_crop_function_shifts_coordinates():
    img, xy = marker_image()
    cropped = crop(make_sample(img, xy, np.zeros(8)), left=20, top=5, width=60, height=50)
    assert cropped.image.size == (60, 50)
    np.testing.assert_allclose(cropped.landmarks.numpy()[0], xy[0] - [20, 5])
    assert cropped.visibility[2] == TRUNCATED
    assert assert_markers_follow(cropped.image, cropped.landmarks, cropped.visibility) == 6
