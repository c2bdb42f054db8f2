"""Garment localisation: the predicted garment box in the photo's pixels, and the second pass on a
crop around it when the garment is small in the photo.

FashionNet learns from photos the garment fills. On a photo where it covers a small part, the
landmarks stray onto the background; cutting the photo to the predicted box (plus a margin) and
running the model again gives it the framing it knows. Both passes share one letterbox geometry
convention (``fashionnet.data.transforms``): a crop is the geometry's ``region``, so landmarks and
boxes of the second pass map straight back to the original pixels.

A worn garment's box is also cut below the wearer's face when the model missed the neckline
(``fashionnet.inference.faces``), and that photo too is looked at again on the crop.

:class:`~fashionnet.inference.predictor.Predictor` runs this on every query and gallery photo;
:func:`predict_localised` is the same path for any list of photos (e.g. an evaluation).
"""

from __future__ import annotations

import functools
import math

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from fashionnet.calibration.landmark_prior import DEFAULT_THRESHOLD as UNSURE
from fashionnet.data.transforms import LetterboxGeometry, crop_box_with_margin, to_model_coords, to_original_coords
from fashionnet.inference.faces import COLLAR_SLOTS, box_below_face, wants_face_check

# Crop and run again when the garment box covers less than this share of the photo's area.
CROP_BELOW_AREA = 0.35
# Margin added on each side of the box, as a share of its width / height: the garment's edges
# (hem, sleeves) stay inside even when the box is a little tight.
CROP_MARGIN = 0.15
# A crop narrower or lower than this (original pixels) holds too little to look at again.
MIN_CROP_SIDE = 16

Box = tuple[float, float, float, float]


def box_to_original(box: Sequence[float], geometry: LetterboxGeometry) -> Optional[Box]:
    """A box (x1, y1, x2, y2) in [0, 1] of the model input -> original pixels, clipped to the photo;
    None when nothing of it lies on the photo (e.g. all in the letterbox padding)."""
    corners = to_original_coords(np.asarray(box, dtype=np.float64).reshape(2, 2), geometry, normalized=True)
    x1, x2 = np.clip(corners[:, 0], 0, geometry.orig_w)
    y1, y2 = np.clip(corners[:, 1], 0, geometry.orig_h)
    # rounded to 1/1000 px so that float noise between runtimes (torch, ONNX) cannot move the
    # integer crop edges by a pixel
    x1, y1, x2, y2 = (round(float(v), 3) for v in (x1, y1, x2, y2))
    if not (math.isfinite(x1 + y1 + x2 + y2) and x2 > x1 and y2 > y1):
        return None
    return x1, y1, x2, y2


def area_fraction(box: Optional[Box], size: tuple[int, int]) -> float:
    """Share of the ``size`` (width, height) photo's area the box covers (0 without a box)."""
    if box is None:
        return 0.0
    w, h = size
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]) / float(w * h)


def crop_region(box: Box, size: tuple[int, int], margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """Integer (left, top, width, height) of the box grown by ``margin`` and clipped to the photo:
    exactly the region the crop transform cuts (``crop_box_with_margin``)."""
    return crop_box_with_margin(box, size, margin)


def wants_crop(box: Optional[Box], size: tuple[int, int], below: float = CROP_BELOW_AREA, margin: float = CROP_MARGIN) -> bool:
    """Whether a photo with this garment box gets the second pass: a box covering less than
    ``below`` of the photo whose crop is at least :data:`MIN_CROP_SIDE` pixels each way."""
    if box is None or not area_fraction(box, size) < below:
        return False
    _, _, w, h = crop_region(box, size, margin)
    return min(w, h) >= MIN_CROP_SIDE


def _box_in_input(box: Box, geometry: LetterboxGeometry) -> torch.Tensor:
    """Inverse of :func:`box_to_original`: original pixels -> (4,) in [0, 1] of that geometry's input."""
    corners = to_model_coords(np.asarray(box, dtype=np.float64).reshape(2, 2), geometry, normalized=True)
    return torch.as_tensor(corners.reshape(4), dtype=torch.float32)


def boxes_to_original(out: dict, geometries: Sequence[LetterboxGeometry]) -> list[Optional[Box]]:
    """Each row's predicted garment box in its photo's pixels (all None for a model without a box head)."""
    if "box" not in out:
        return [None] * len(geometries)
    boxes = out["box"].float().cpu().numpy()
    return [box_to_original(boxes[i], g) for i, g in enumerate(geometries)]


def second_pass(predictor, out: dict, geometries: Sequence[LetterboxGeometry], image_of: Callable[[int], Image.Image],
                below: Optional[float] = None, faces_of: Optional[Callable[[int], np.ndarray]] = None
                ) -> tuple[dict, list[LetterboxGeometry], list[bool]]:
    """Run ``predictor`` again on crops of the rows whose garment is small.

    ``out`` and ``geometries`` are the first pass over a batch; ``image_of(i)`` gives row i's
    original photo (only called for the rows that are cropped). Returns the outputs with those
    rows replaced by the crop's (their geometries cover the crop, so decoding maps to original
    pixels), the geometries, and which rows were cropped. The "box" stays the first pass's (the one
    cut around); ``trunk_stats_first`` keeps the first pass's statistics, so the unfamiliarity check
    judges the whole photo. ``faces_of(i)`` gives row i's faces where they are already known
    (default: the predictor's face detector on ``image_of(i)``).
    """
    below = predictor.crop_below if below is None else below
    image_of = functools.lru_cache(maxsize=None)(image_of)  # a photo looked at for a face is cropped next
    boxes = boxes_to_original(out, geometries)
    below_face = cut_below_faces(predictor, out, boxes, image_of, faces_of) if below > 0 else [None] * len(boxes)
    boxes = [b if cut is None else cut for b, cut in zip(boxes, below_face)]
    rows = [i for i, (b, g) in enumerate(zip(boxes, geometries))
            if below_face[i] is not None or wants_crop(b, (g.orig_w, g.orig_h), below, predictor.crop_margin)]
    cropped = [False] * len(geometries)
    if not rows:
        return out, list(geometries), cropped
    tensors, crop_geometries = [], []
    for i in rows:
        tensor, _, _, geometry = predictor.crop_transform(image_of(i), None, None, boxes[i])
        tensors.append(tensor)
        crop_geometries.append(geometry)
    again = dict(predictor.forward_batch(torch.stack(tensors)))
    if "box" in again:
        # the box reported is the one the crop was cut around, in the crop's input coordinates so
        # that decoding maps it back like everything else
        again["box"] = torch.stack([_box_in_input(boxes[i], g).to(again["box"].dtype) for i, g in zip(rows, crop_geometries)])
    index = torch.as_tensor(rows)
    merged = {"trunk_stats_first": out["trunk_stats"],
              "below_face": torch.as_tensor([cut is not None for cut in below_face])}
    for key, value in out.items():
        if isinstance(value, torch.Tensor) and key in again:
            value = value.clone()
            value[index.to(value.device)] = again[key].to(value.device, value.dtype)
        merged.setdefault(key, value)
    geometries = list(geometries)
    for i, geometry in zip(rows, crop_geometries):
        geometries[i] = geometry
        cropped[i] = True
    return merged, geometries, cropped


def cut_below_faces(predictor, out: dict, boxes: Sequence[Optional[Box]], image_of: Callable[[int], Image.Image],
                    faces_of: Optional[Callable[[int], np.ndarray]] = None) -> list[Optional[Box]]:
    """Each row's garment box cut below the wearer's face (``fashionnet.inference.faces``), or None where it
    is not cut: the predictor has no face detector, the collar points were found, the garment is a
    lower-body one, or no face sits at the top of the box."""
    detector = getattr(predictor, "face_detector", None)
    if detector is None or "landmark_confidence" not in out:
        return [None] * len(boxes)
    faces_of = faces_of or (lambda i: detector.find(image_of(i)))
    collars = out["landmark_confidence"][:, list(COLLAR_SLOTS)].float().cpu().numpy()
    clothes_types = predictor.predicted_clothes_types(predictor.category_probs(out))
    return [box_below_face(box, faces_of(i))
            if box is not None and wants_face_check(collars[i], clothes_types[i], UNSURE) else None
            for i, box in enumerate(boxes)]


def predict_localised(predictor, images: Sequence, below: Optional[float] = None) -> list:
    """Two-pass :class:`~fashionnet.inference.prediction.Prediction` of each photo (PIL images, paths or
    bytes): landmarks in the photo's pixels, the garment box, and the embedding of the crop where
    one was taken. Same as ``predictor.predict_batch`` with ``below`` overriding the predictor's
    crop threshold (0 turns the second pass off)."""
    return predictor.predict_batch(images, crop_below=below)

