"""The one 8-slot landmark layout used everywhere in the project.

DeepFashion stores 6 (upper-body), 4 (lower-body) or 8 (full-body) landmarks per image. We always
hold 8 slots; slots a clothes type does not have are marked ABSENT. "Left" is the image's left
(the point nearer x = 0 on a frontal photo), so a horizontal flip swaps every L/R pair.
"""

from __future__ import annotations

import numpy as np

LANDMARK_NAMES: tuple[str, ...] = (
    "left_collar",
    "right_collar",
    "left_sleeve",
    "right_sleeve",
    "left_waistline",
    "right_waistline",
    "left_hem",
    "right_hem",
)
NUM_LANDMARKS = len(LANDMARK_NAMES)

# Visibility codes. 0-2 are DeepFashion's own; ABSENT marks a slot the clothes type lacks.
VISIBLE = 0
OCCLUDED = 1
TRUNCATED = 2
ABSENT = 3
VISIBILITY_NAMES = {VISIBLE: "visible", OCCLUDED: "occluded", TRUNCATED: "truncated", ABSENT: "absent"}
NUM_VISIBILITY_CLASSES = 3  # the model predicts visible / occluded / truncated

# DeepFashion clothes_type codes.
UPPER_BODY = 1
LOWER_BODY = 2
FULL_BODY = 3
CLOTHES_TYPE_NAMES = {UPPER_BODY: "upper", LOWER_BODY: "lower", FULL_BODY: "full"}

# For each clothes type, the slot each landmark triple of a DeepFashion row goes to, in file order.
CLOTHES_TYPE_SLOTS: dict[int, tuple[int, ...]] = {
    UPPER_BODY: (0, 1, 2, 3, 6, 7),  # L/R collar, L/R sleeve, L/R hem
    LOWER_BODY: (4, 5, 6, 7),  # L/R waistline, L/R hem
    FULL_BODY: (0, 1, 2, 3, 4, 5, 6, 7),
}

# Slot index each slot moves to under a horizontal flip.
FLIP_PERMUTATION: tuple[int, ...] = (1, 0, 3, 2, 5, 4, 7, 6)


def present_mask(clothes_type: int) -> np.ndarray:
    """Boolean (8,) mask of the slots that exist for a clothes type."""
    mask = np.zeros(NUM_LANDMARKS, dtype=bool)
    mask[list(CLOTHES_TYPE_SLOTS[int(clothes_type)])] = True
    return mask
