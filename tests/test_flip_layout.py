"""The 8-slot landmark layout and the left/right swap of a horizontal flip, checked against
expectations written out here by name (never imported from the code under test).

DeepFashion's own layout: upper-body clothes have L/R collar, L/R sleeve, L/R hem; lower-body
clothes L/R waistline, L/R hem; full-body clothes all eight. "Left" is the image's left, so a
mirrored photo shows the right collar where the left one was: every L/R pair swaps.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fashionnet import landmarks as layout
from fashionnet.data.transforms import build_transforms, horizontal_flip, make_sample

SLOT_NAMES = (
    "left_collar", "right_collar",
    "left_sleeve", "right_sleeve",
    "left_waistline", "right_waistline",
    "left_hem", "right_hem",
)
MIRROR_OF = {
    "left_collar": "right_collar", "right_collar": "left_collar",
    "left_sleeve": "right_sleeve", "right_sleeve": "left_sleeve",
    "left_waistline": "right_waistline", "right_waistline": "left_waistline",
    "left_hem": "right_hem", "right_hem": "left_hem",
}
PARTS_OF_TYPE = {
    1: ("left_collar", "right_collar", "left_sleeve", "right_sleeve", "left_hem", "right_hem"),
    2: ("left_waistline", "right_waistline", "left_hem", "right_hem"),
    3: SLOT_NAMES,
}


def test_slot_order_and_codes_are_deepfashions():
    assert tuple(layout.LANDMARK_NAMES) == SLOT_NAMES
    assert layout.NUM_LANDMARKS == 8
    # DeepFashion's visibility codes; the project's extra "absent" code must differ from all three.
    assert (layout.VISIBLE, layout.OCCLUDED, layout.TRUNCATED) == (0, 1, 2)
    assert layout.ABSENT not in (0, 1, 2)
    assert layout.NUM_VISIBILITY_CLASSES == 3
    assert layout.VISIBILITY_NAMES[0] == "visible" and layout.VISIBILITY_NAMES[1] == "occluded"
    assert layout.VISIBILITY_NAMES[2] == "truncated" and layout.VISIBILITY_NAMES[layout.ABSENT] == "absent"
    assert (layout.UPPER_BODY, layout.LOWER_BODY, layout.FULL_BODY) == (1, 2, 3)
    assert layout.CLOTHES_TYPE_NAMES == {1: "upper", 2: "lower", 3: "full"}


@pytest.mark.parametrize("clothes_type", [1, 2, 3])
def test_clothes_type_slots_follow_the_file_order_by_name(clothes_type):
    slots = layout.CLOTHES_TYPE_SLOTS[clothes_type]
    assert tuple(SLOT_NAMES[s] for s in slots) == PARTS_OF_TYPE[clothes_type]
    mask = layout.present_mask(clothes_type)
    assert mask.dtype == bool and mask.shape == (8,)
    assert [SLOT_NAMES[s] for s in np.flatnonzero(mask)] == sorted(PARTS_OF_TYPE[clothes_type], key=SLOT_NAMES.index)
    # The mask is a fresh array each call, and numpy integer codes work like Python ints.
    mask[:] = False
    assert layout.present_mask(np.int64(clothes_type)).sum() == len(PARTS_OF_TYPE[clothes_type])


def test_present_mask_refuses_unknown_clothes_types():
    with pytest.raises(KeyError):
        layout.present_mask(4)


def test_flip_permutation_swaps_every_named_pair():
    for slot, name in enumerate(SLOT_NAMES):
        assert SLOT_NAMES[layout.FLIP_PERMUTATION[slot]] == MIRROR_OF[name], name
    # Written out literally as well: 0<->1, 2<->3, 4<->5, 6<->7.
    assert tuple(layout.FLIP_PERMUTATION) == (1, 0, 3, 2, 5, 4, 7, 6)


def _frontal_garment(width=80, height=60):
    """Eight points of a frontal full-body garment: each left point nearer x = 0 than its right one."""
    points = {
        "left_collar": (30.0, 8.0), "right_collar": (50.0, 8.5),
        "left_sleeve": (6.0, 20.0), "right_sleeve": (74.0, 21.0),
        "left_waistline": (28.0, 33.0), "right_waistline": (52.0, 34.0),
        "left_hem": (20.0, 55.0), "right_hem": (61.0, 56.0),
    }
    xy = np.array([points[n] for n in SLOT_NAMES], dtype=np.float32)
    return Image.new("RGB", (width, height), (200, 200, 200)), points, xy


def test_flipped_sample_keeps_left_slots_on_the_left_and_moves_each_point_to_its_partner():
    image, points, xy = _frontal_garment()
    vis = np.array([0, 1, 0, 0, 1, 0, 0, 0])  # right collar and left waistline occluded
    flipped = horizontal_flip(make_sample(image, xy, vis))
    out = flipped.landmarks.numpy()
    for slot, name in enumerate(SLOT_NAMES):
        source_x, source_y = points[MIRROR_OF[name]]
        np.testing.assert_allclose(out[slot], [80 - source_x, source_y], err_msg=name)
    for left, right in (("left_collar", "right_collar"), ("left_sleeve", "right_sleeve"),
                        ("left_waistline", "right_waistline"), ("left_hem", "right_hem")):
        assert out[SLOT_NAMES.index(left)][0] < out[SLOT_NAMES.index(right)][0], f"{left} must stay nearer x = 0"
    # The occlusion travels with the point: the occluded right collar is now the left collar.
    names_occluded = {SLOT_NAMES[s] for s in np.flatnonzero(flipped.visibility.numpy() == 1)}
    assert names_occluded == {"left_collar", "right_waistline"}
    # Flipping twice is the identity.
    twice = horizontal_flip(flipped)
    np.testing.assert_allclose(twice.landmarks.numpy(), xy, atol=1e-5)
    assert twice.visibility.tolist() == vis.tolist()


def test_training_pipeline_flip_swaps_pairs_in_model_coordinates():
    image, points, xy = _frontal_garment(80, 80)
    transform = build_transforms(train=True, size=80, flip_p=1.0, jitter=None, color_jitter=None)
    _, landmarks, vis, _ = transform(image, xy, np.zeros(8))
    for slot, name in enumerate(SLOT_NAMES):
        source_x, source_y = points[MIRROR_OF[name]]
        np.testing.assert_allclose(landmarks[slot].numpy(), [(80 - source_x) / 80, source_y / 80], atol=1e-5, err_msg=name)
    assert (vis.numpy() == 0).all()
