"""Transforms at their edges: boundary sizes and coordinates, defaults, bad arguments, and each
random training step really doing its own part. Added when a mutation run (scripts/mutation_test.sh)
showed these were not pinned down by tests/test_transforms.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fashionnet.data.transforms import (
    PAD_FILL,
    AffineJitter,
    ColorJitterParams,
    affine,
    build_transforms,
    crop_box_with_margin,
    denormalize,
    letterbox,
    letterbox_geometry,
    make_sample,
    to_model_coords,
    to_original_coords,
)
from fashionnet.landmarks import ABSENT, TRUNCATED, VISIBLE


def _colourful(w=64, h=48, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(h // 8, w // 8, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8)))


def _points(w=64, h=48):
    return np.array([[w * (i + 1) / 10, h * (0.2 + 0.07 * i)] for i in range(8)], dtype=np.float32)


# ------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize("args", [(0, 10, 8), (10, 0, 8), (10, 10, 0), (-3, 10, 8)])
def test_letterbox_needs_positive_sizes(args):
    with pytest.raises(ValueError, match=f"letterbox needs positive sizes, got image {args[0]}x{args[1]} and side {args[2]}"):
        letterbox_geometry(*args)


def test_one_pixel_sizes_are_fine():
    g = letterbox_geometry(1, 1, 1)
    assert (g.resized_w, g.resized_h, g.pad_x, g.pad_y) == (1, 1, 0, 0)
    # A 1000 x 1 strip on an 8 px canvas keeps at least one row.
    g = letterbox_geometry(1000, 1, 8)
    assert (g.resized_w, g.resized_h) == (8, 1)
    g = letterbox_geometry(20, 20, 8, region=(3, 4, 1, 1))
    assert (g.region_w, g.region_h, g.resized_w, g.resized_h) == (1, 1, 8, 8)


@pytest.mark.parametrize("region", [(0, 0, 0, 5), (0, 0, 5, 0), (2, 2, -1, 4)])
def test_empty_region_is_refused(region):
    with pytest.raises(ValueError, match=f"letterbox region {region[2]}x{region[3]} is empty"):
        letterbox_geometry(20, 20, 8, region=region)


def test_geometry_records_the_original_and_centres_the_content():
    g = letterbox_geometry(50, 100, 100)  # tall: full height, padded left and right
    assert (g.orig_w, g.orig_h, g.scale) == (50, 100, pytest.approx(1.0))
    assert (g.resized_w, g.resized_h, g.pad_x, g.pad_y) == (50, 100, 25, 0)
    g = letterbox_geometry(300, 100, 60)
    assert (g.orig_w, g.orig_h, g.scale) == (300, 100, pytest.approx(0.2))
    assert (g.resized_w, g.resized_h, g.pad_x, g.pad_y) == (60, 20, 0, 20)
    assert (g.region_x, g.region_y, g.region_w, g.region_h) == (0, 0, 300, 100)


def test_tall_image_letterboxes_to_a_square():
    sample, g = letterbox(make_sample(Image.new("RGB", (30, 90), (255, 0, 0))), 45)
    assert sample.image.size == (45, 45) and (g.pad_x, g.resized_w) == (15, 15)
    rgb = np.asarray(sample.image)
    assert (rgb[:, :14] == PAD_FILL).all() and (rgb[:, 31:] == PAD_FILL).all()
    assert (rgb[:, 16:29] == (255, 0, 0)).all()


def test_coordinate_mapping_keeps_float32_and_takes_integer_pixels():
    g = letterbox_geometry(173, 91, 224)
    xy32 = np.array([[10.5, 20.25]], dtype=np.float32)
    assert to_model_coords(xy32, g).dtype == np.float32
    assert to_original_coords(xy32, g).dtype == np.float32
    ints = np.array([[10, 20], [172, 90]])
    np.testing.assert_allclose(to_model_coords(ints, g), to_model_coords(ints.astype(np.float64), g), rtol=1e-6)
    np.testing.assert_allclose(to_original_coords(to_model_coords(ints, g), g), ints, atol=1e-4)


# ------------------------------------------------------------------------------------- samples


def test_points_on_the_canvas_edges():
    # Pixel columns cover [i, i + 1): x = 0 is the first column (inside), x = w is past the last one.
    img = Image.new("RGB", (40, 30))
    xy = np.array([[0, 5], [40, 5], [5, 0], [5, 30], [39.9, 29.9], [-0.01, 5], [5, -0.01], [20, 15]], dtype=np.float32)
    vis = make_sample(img, xy, np.zeros(8)).visibility.tolist()
    assert vis == [VISIBLE, TRUNCATED, VISIBLE, TRUNCATED, VISIBLE, TRUNCATED, TRUNCATED, VISIBLE]


def test_make_sample_types_and_derived_visibility():
    img = Image.new("RGB", (40, 30))
    xy = _points(40, 30).astype(np.float64)
    xy[4] = np.nan
    sample = make_sample(img, xy)  # no visibility given: NaN rows absent, the rest visible
    assert sample.landmarks.dtype == torch.float32 and sample.visibility.dtype == torch.int64
    assert sample.visibility.tolist() == [VISIBLE] * 4 + [ABSENT] + [VISIBLE] * 3
    floats = make_sample(img, xy, [0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0])
    assert floats.visibility.dtype == torch.int64
    assert floats.visibility.tolist() == [0, 1, 2, 0, ABSENT, 0, ABSENT, 0]
    assert torch.isnan(floats.landmarks[6]).all()
    query = make_sample(img)
    assert query.visibility.dtype == torch.int64 and (query.visibility == ABSENT).all()
    with pytest.raises(ValueError, match=r"visibility must have shape \(8,\), got \(7,\)"):
        make_sample(img, xy, np.zeros(7))


def test_crop_box_margin_default_and_arithmetic():
    # bbox 50 x 40 at (20, 10): 10% margin is 5 px left/right and 4 px top/bottom.
    assert crop_box_with_margin((20, 10, 70, 50), (100, 100)) == (15, 6, 60, 48)
    assert crop_box_with_margin((20, 10, 70, 50), (100, 100), margin=0.5) == (0, 0, 95, 70)
    assert crop_box_with_margin((0, 0, 10, 10), (100, 100), margin=0.0) == (0, 0, 10, 10)
    assert crop_box_with_margin((20.5, 10.5, 30.2, 20.2), (100, 100), margin=0.0) == (20, 10, 11, 11)


@pytest.mark.parametrize("bbox,words", [
    ((10, 10, 10, 20), "not a valid"), ((10, 10, 20, 10), "not a valid"), ((10, 10, 5, 20), "not a valid"),
    ((10, float("nan"), 20, 20), "not a valid"),
    ((100, 10, 110, 20), "outside"), ((10, 100, 20, 110), "outside"), ((150, 10, 160, 20), "outside"), ((10, 150, 20, 160), "outside"),
])
def test_bad_crop_boxes(bbox, words):
    with pytest.raises(ValueError, match=words):
        crop_box_with_margin(bbox, (100, 100), margin=0.0)


def test_denormalize_clamps_to_the_unit_range():
    image = torch.stack([torch.full((2, 2), -50.0), torch.full((2, 2), 50.0), torch.zeros(2, 2)])
    out = denormalize(image)
    assert out[0].max() == 0.0 and out[1].min() == 1.0
    assert out.dtype == torch.float32
    assert denormalize(image.double()).dtype == torch.float64


def test_affine_fills_with_the_mean_grey_and_interpolates():
    half = np.zeros((60, 60, 3), dtype=np.uint8)
    half[:, 30:] = 255
    sample = make_sample(Image.fromarray(half))
    turned = np.asarray(affine(sample, angle=45.0, translate=(0, 0), scale=1.0).image)
    assert (turned[0, 0] == PAD_FILL).all() and (turned[-1, -1] == PAD_FILL).all()
    # Bilinear interpolation leaves intermediate greys along the rotated edge.
    small = np.asarray(affine(sample, angle=10.0, translate=(0, 0), scale=1.0).image)[10:50, 10:50, 0]
    assert ((small > 20) & (small < 235)).sum() >= 20


# ----------------------------------------------------------------------------------- pipeline


def test_bad_pipeline_arguments():
    with pytest.raises(ValueError, match=r"flip_p must be in \[0, 1\], got 1.5"):
        build_transforms(train=True, flip_p=1.5)
    with pytest.raises(ValueError, match=r"flip_p must be in \[0, 1\], got -0.1"):
        build_transforms(train=True, flip_p=-0.1)
    with pytest.raises(ValueError, match="crop_margin must be >= 0, got -0.2"):
        build_transforms(train=False, crop_margin=-0.2)


def test_defaults_ignore_the_bbox_and_map_back_to_the_original():
    img, xy = _colourful(), _points()
    transform = build_transforms(train=False, size=96)
    image, landmarks, vis, geometry = transform(img, xy, np.zeros(8), bbox=(10, 10, 30, 30))
    assert image.shape == (3, 96, 96)
    assert (geometry.region_x, geometry.region_y, geometry.region_w, geometry.region_h) == (0, 0, 64, 48)
    assert (geometry.orig_w, geometry.orig_h, geometry.size) == (64, 48, 96)
    np.testing.assert_allclose(to_original_coords(landmarks.numpy(), geometry, normalized=True), xy, atol=1e-3)
    assert (vis == VISIBLE).all() and landmarks.dtype == torch.float32


def test_bbox_crop_uses_the_default_margin():
    img, xy = _colourful(), _points()
    _, _, _, geometry = build_transforms(train=False, size=96, crop_to_bbox=True)(img, xy, np.zeros(8), bbox=(10, 10, 50, 30))
    assert (geometry.region_x, geometry.region_y, geometry.region_w, geometry.region_h) == crop_box_with_margin((10, 10, 50, 30), (64, 48), 0.1)
    _, _, _, no_box = build_transforms(train=False, size=96, crop_to_bbox=True)(img, xy, np.zeros(8), bbox=(np.nan,) * 4)
    assert (no_box.region_w, no_box.region_h) == (64, 48)


def _train(seed, img, xy, **kwargs):
    options = dict(size=64, flip_p=0.0, jitter=None, color_jitter=None)
    options.update(kwargs)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_transforms(train=True, **options)(img, xy, np.zeros(8))


def test_random_flip_happens_about_flip_p_of_the_time():
    img, xy = _colourful(64, 64), _points(64, 64)
    flipped = [bool(_train(seed, img, xy, flip_p=0.5)[1][0, 0] > 0.5) for seed in range(40)]  # left collar moved right
    assert 8 <= sum(flipped) <= 32
    assert not any(bool(_train(seed, img, xy, flip_p=0.0)[1][0, 0] > 0.5) for seed in range(10))


def test_affine_jitter_translates_and_scales():
    img, xy = _colourful(64, 64), _points(64, 64)
    still = _train(0, img, xy)[1]
    shifted = _train(0, img, xy, jitter=AffineJitter(degrees=0.0, translate=0.2, scale=(1.0, 1.0)))[1]
    assert (shifted - still).abs().max() > 0.01
    np.testing.assert_allclose((shifted - still).std(dim=0).numpy(), 0, atol=1e-4)  # a pure shift
    zoomed = _train(0, img, xy, jitter=AffineJitter(degrees=0.0, translate=0.0, scale=(1.5, 1.5)))[1]
    np.testing.assert_allclose((zoomed - 0.5).numpy(), 1.5 * (still - 0.5).numpy(), atol=1e-4)


@pytest.mark.parametrize("params", [ColorJitterParams(0.5, 0, 0, 0), ColorJitterParams(0, 0.5, 0, 0), ColorJitterParams(0, 0, 0.9, 0),
                                    ColorJitterParams(0, 0, 0, 0.3)])
def test_each_colour_jitter_parameter_changes_the_image(params):
    img, xy = _colourful(64, 64), _points(64, 64)
    plain = _train(0, img, xy)[0]
    changed = [(_train(seed, img, xy, color_jitter=params)[0] - plain).abs().max() for seed in range(3)]
    assert max(changed) > 0.05


def test_one_pixel_wide_strip_keeps_one_column():
    g = letterbox_geometry(1, 1000, 8)
    assert (g.resized_w, g.resized_h) == (1, 8)


def test_float64_coordinates_keep_float64_precision():
    g = letterbox_geometry(173, 91, 224, region=(13, 7, 141, 77))
    xy = np.random.default_rng(2).uniform(0, 170, size=(4, 8, 2))
    sx, sy = g.resized_w / g.region_w, g.resized_h / g.region_h
    expected = np.stack([(xy[..., 0] - 13) * sx + g.pad_x, (xy[..., 1] - 7) * sy + g.pad_y], axis=-1)
    np.testing.assert_allclose(to_model_coords(xy, g), expected, rtol=0, atol=1e-10)
    as_tensor = to_model_coords(torch.from_numpy(xy), g)
    assert as_tensor.dtype == torch.float64
    np.testing.assert_allclose(as_tensor.numpy(), expected, rtol=0, atol=1e-10)
    back = to_original_coords(torch.from_numpy(expected), g)
    np.testing.assert_allclose(back.numpy(), xy, rtol=0, atol=1e-10)


def test_denormalize_in_float64_uses_exact_constants():
    out = denormalize(torch.zeros(3, 1, 1, dtype=torch.float64))
    assert out.flatten().tolist() == [0.485, 0.456, 0.406]


def test_training_pipeline_with_every_random_step_off_equals_evaluation():
    img, xy = _colourful(64, 64), _points(64, 64)
    plain = _train(0, img, xy)  # flip_p 0, no affine jitter, no colour jitter
    evaluation = build_transforms(train=False, size=64)(img, xy, np.zeros(8))
    assert torch.equal(plain[0], evaluation[0]) and torch.equal(plain[1], evaluation[1])
