"""Landmark-aware image transforms: bbox crop, horizontal flip, letterbox, affine and colour jitter.

The pixels and the 8 landmark slots always move together: the geometry runs on
``torchvision.transforms.v2`` kernels, once for the PIL image and once for a ``tv_tensors.KeyPoints``
holding the landmarks. After every geometric step a landmark that left the canvas becomes
TRUNCATED, and it stays truncated: a point cut off by a crop can later land inside the letterbox
padding, where there are no garment pixels to see.

Coordinates are continuous pixel positions: pixel column ``i`` covers ``[i, i + 1)`` and its centre
is ``i + 0.5``. That is the convention of torchvision's resize, pad, crop and affine kernels; its
keypoint flip mirrors pixel indices instead (``W - 1 - x``), so the flip is our own (``W - x``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fashionnet.data.images import ImageInput, load_image
from fashionnet.landmarks import ABSENT, FLIP_PERMUTATION, NUM_LANDMARKS, OCCLUDED, TRUNCATED, VISIBLE

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# The letterbox padding is the mean colour, so it normalises to zero.
PAD_FILL: tuple[int, int, int] = tuple(round(255 * m) for m in IMAGENET_MEAN)  # (124, 116, 104)
DEFAULT_SIZE = 224

ArrayLike = Union[np.ndarray, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Letterbox geometry (also used by the Predictor to map predictions back to the original image)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LetterboxGeometry:
    """How a region of an original image was placed in the square model input.

    The region (``region_x``, ``region_y``, ``region_w``, ``region_h``; the whole image unless a
    bbox crop was taken) is resized by ``scale`` to ``resized_w`` x ``resized_h`` pixels and pasted
    at (``pad_x``, ``pad_y``) on a ``size`` x ``size`` canvas.
    """

    size: int
    orig_w: int
    orig_h: int
    scale: float
    resized_w: int
    resized_h: int
    pad_x: int
    pad_y: int
    region_x: int = 0
    region_y: int = 0
    region_w: int = -1  # -1: the whole image (filled in by letterbox_geometry)
    region_h: int = -1

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2) of the image content on the canvas; the rest is padding."""
        return self.pad_x, self.pad_y, self.pad_x + self.resized_w, self.pad_y + self.resized_h

    def _axis_scale(self) -> tuple[float, float]:
        # Per-axis factors of the actual (rounded) resize, exactly what the pixels went through.
        return self.resized_w / self.region_w, self.resized_h / self.region_h


def letterbox_geometry(
    width: int, height: int, size: int = DEFAULT_SIZE, region: Optional[Sequence[int]] = None
) -> LetterboxGeometry:
    """Geometry of letterboxing a ``width`` x ``height`` image (or its ``region`` = x, y, w, h) to a square ``size``."""
    width, height, size = int(width), int(height), int(size)
    if width < 1 or height < 1 or size < 1:
        raise ValueError(f"letterbox needs positive sizes, got image {width}x{height} and side {size}")
    rx, ry, rw, rh = (0, 0, width, height) if region is None else (int(v) for v in region)
    if rw < 1 or rh < 1:
        raise ValueError(f"letterbox region {rw}x{rh} is empty")
    scale = size / max(rw, rh)
    resized_w = min(size, max(1, round(rw * scale)))
    resized_h = min(size, max(1, round(rh * scale)))
    return LetterboxGeometry(
        size=size,
        orig_w=width,
        orig_h=height,
        scale=scale,
        resized_w=resized_w,
        resized_h=resized_h,
        pad_x=(size - resized_w) // 2,
        pad_y=(size - resized_h) // 2,
        region_x=rx,
        region_y=ry,
        region_w=rw,
        region_h=rh,
    )


def _per_axis(xy: ArrayLike, values: Sequence[float]) -> ArrayLike:
    if isinstance(xy, torch.Tensor):
        return torch.as_tensor(values, dtype=xy.dtype, device=xy.device)
    return np.asarray(values, dtype=np.result_type(np.asarray(xy).dtype, np.float32))


def to_model_coords(xy: ArrayLike, geometry: LetterboxGeometry, normalized: bool = False) -> ArrayLike:
    """Map original-image pixel coordinates (..., 2) to the letterboxed model input.

    Returns pixels of the ``size`` x ``size`` input, or values in [0, 1] of it with ``normalized``.
    Works on numpy arrays and torch tensors alike.
    """
    sx, sy = geometry._axis_scale()
    out = (xy - _per_axis(xy, (geometry.region_x, geometry.region_y))) * _per_axis(xy, (sx, sy))
    out = out + _per_axis(xy, (geometry.pad_x, geometry.pad_y))
    return out / geometry.size if normalized else out


def to_original_coords(xy: ArrayLike, geometry: LetterboxGeometry, normalized: bool = False) -> ArrayLike:
    """Inverse of :func:`to_model_coords`: model-input coordinates (..., 2) -> original-image pixels.

    With ``normalized`` the input is in [0, 1] of the model input (what FashionNet predicts).
    """
    if normalized:
        xy = xy * geometry.size
    sx, sy = geometry._axis_scale()
    out = (xy - _per_axis(xy, (geometry.pad_x, geometry.pad_y))) / _per_axis(xy, (sx, sy))
    return out + _per_axis(xy, (geometry.region_x, geometry.region_y))


# ---------------------------------------------------------------------------------------------
# One image with its landmarks, and the geometric steps on it
# ---------------------------------------------------------------------------------------------


@dataclass
class LandmarkSample:
    """A PIL image with its 8 landmark slots: ``keypoints`` (8, 2) pixels, ``visibility`` (8,) codes."""

    image: Image.Image
    keypoints: tv_tensors.KeyPoints
    visibility: torch.Tensor

    @property
    def landmarks(self) -> torch.Tensor:
        """(8, 2) float32 pixel coordinates as a plain tensor (NaN for absent slots)."""
        return self.keypoints.as_subclass(torch.Tensor)


def _truncate_outside(keypoints: torch.Tensor, visibility: torch.Tensor, canvas_hw: tuple[int, int]) -> torch.Tensor:
    """Visible/occluded slots whose point is off the canvas become TRUNCATED; others keep their code."""
    h, w = canvas_hw
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)  # False for NaN too
    seen = (visibility == VISIBLE) | (visibility == OCCLUDED)
    return torch.where(seen & ~inside, torch.full_like(visibility, TRUNCATED), visibility)


def _moved(image: Image.Image, keypoints: tv_tensors.KeyPoints, visibility: torch.Tensor) -> LandmarkSample:
    """The sample after a geometric step, with points that left the canvas marked TRUNCATED."""
    visibility = _truncate_outside(keypoints.as_subclass(torch.Tensor), visibility, keypoints.canvas_size)
    return LandmarkSample(image, keypoints, visibility)


def make_sample(
    image: ImageInput, landmarks_xy: Optional[ArrayLike] = None, visibility: Optional[ArrayLike] = None
) -> LandmarkSample:
    """Wrap an image and its (8, 2) pixel landmarks and (8,) visibility codes into a :class:`LandmarkSample`.

    ``landmarks_xy=None`` means no annotation (query time): every slot ABSENT. Absent slots get NaN
    coordinates; a slot with a NaN coordinate is absent whatever its code says; visible/occluded
    points outside the image become TRUNCATED.
    """
    image = load_image(image)
    w, h = image.size
    if landmarks_xy is None:
        xy = torch.full((NUM_LANDMARKS, 2), float("nan"))
        vis = torch.full((NUM_LANDMARKS,), ABSENT, dtype=torch.int64)
    else:
        xy = torch.as_tensor(np.asarray(landmarks_xy, dtype=np.float32)).clone()
        if xy.shape != (NUM_LANDMARKS, 2):
            raise ValueError(f"landmarks must have shape ({NUM_LANDMARKS}, 2), got {tuple(xy.shape)}")
        if visibility is None:
            vis = torch.where(torch.isnan(xy).any(dim=1), ABSENT, VISIBLE).to(torch.int64)
        else:
            vis = torch.as_tensor(np.asarray(visibility, dtype=np.int64)).clone()
            if vis.shape != (NUM_LANDMARKS,):
                raise ValueError(f"visibility must have shape ({NUM_LANDMARKS},), got {tuple(vis.shape)}")
            bad = (vis < VISIBLE) | (vis > ABSENT)
            if bad.any():
                raise ValueError(f"visibility codes must be 0..3, got {vis.tolist()}")
        vis = torch.where(torch.isnan(xy).any(dim=1), torch.full_like(vis, ABSENT), vis)
        xy[vis == ABSENT] = float("nan")
    keypoints = tv_tensors.KeyPoints(xy, canvas_size=(h, w))
    return LandmarkSample(image, keypoints, _truncate_outside(xy, vis, (h, w)))


def crop_box_with_margin(
    bbox: Sequence[float], image_size: tuple[int, int], margin: float = 0.1
) -> tuple[int, int, int, int]:
    """Integer crop (left, top, width, height) of ``bbox`` (x1, y1, x2, y2) grown by ``margin`` of its
    width/height on each side and clipped to the image (``image_size`` = width, height)."""
    w, h = image_size
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise ValueError(f"bbox {list(bbox)} is not a valid x1 y1 x2 y2 box")
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    left, top = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
    right, bottom = min(w, math.ceil(x2 + mx)), min(h, math.ceil(y2 + my))
    if right <= left or bottom <= top:
        raise ValueError(f"bbox {list(bbox)} lies outside the {w}x{h} image")
    return left, top, right - left, bottom - top


def crop(sample: LandmarkSample, left: int, top: int, width: int, height: int) -> LandmarkSample:
    """Crop to the integer box; landmarks outside it become TRUNCATED."""
    image = F.crop(sample.image, top, left, height, width)
    keypoints = F.crop(sample.keypoints, top, left, height, width)
    return _moved(image, keypoints, sample.visibility)


def horizontal_flip(sample: LandmarkSample) -> LandmarkSample:
    """Mirror the image; mirror the landmarks and swap every L/R slot pair (FLIP_PERMUTATION)."""
    image = F.horizontal_flip(sample.image)
    w = sample.keypoints.canvas_size[1]
    xy = sample.landmarks.clone()
    xy[:, 0] = w - xy[:, 0]  # continuous mirror (see module docstring)
    # Slot j moves to FLIP_PERMUTATION[j]: the point that was the right collar is now the left one.
    target = torch.as_tensor(FLIP_PERMUTATION)
    new_xy, new_vis = torch.empty_like(xy), torch.empty_like(sample.visibility)
    new_xy[target], new_vis[target] = xy, sample.visibility
    keypoints = tv_tensors.wrap(new_xy, like=sample.keypoints)
    return _moved(image, keypoints, new_vis)


def letterbox(sample: LandmarkSample, size: int = DEFAULT_SIZE) -> tuple[LandmarkSample, LetterboxGeometry]:
    """Resize keeping the aspect ratio so the long side is ``size``, then pad to a square with the mean grey."""
    w, h = sample.image.size
    geometry = letterbox_geometry(w, h, size)
    pad = [
        geometry.pad_x,
        geometry.pad_y,
        size - geometry.resized_w - geometry.pad_x,
        size - geometry.resized_h - geometry.pad_y,
    ]
    new_hw = [geometry.resized_h, geometry.resized_w]
    image = F.pad(F.resize(sample.image, new_hw, antialias=True), pad, fill=list(PAD_FILL))
    keypoints = F.pad(F.resize(sample.keypoints, new_hw), pad)
    return _moved(image, keypoints, sample.visibility), geometry


def affine(
    sample: LandmarkSample,
    angle: float,
    translate: Sequence[float],
    scale: float,
    shear: Sequence[float] = (0.0, 0.0),
) -> LandmarkSample:
    """Rotate (degrees, about the canvas centre), scale and translate (pixels) image and landmarks
    together, keeping the canvas size; uncovered pixels take the mean grey."""
    args = dict(angle=float(angle), translate=[float(t) for t in translate], scale=float(scale), shear=[float(s) for s in shear])
    image = F.affine(sample.image, **args, interpolation=v2.InterpolationMode.BILINEAR, fill=list(PAD_FILL))
    keypoints = F.affine(sample.keypoints, **args)
    return _moved(image, keypoints, sample.visibility)


def to_model_input(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float32 (3, H, W) tensor normalised with the ImageNet mean/std."""
    tensor = F.to_dtype(F.to_image(image), torch.float32, scale=True)
    return F.normalize(tensor, list(IMAGENET_MEAN), list(IMAGENET_STD))


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo :func:`to_model_input`: (3, H, W) or (B, 3, H, W) normalised tensor -> RGB in [0, 1]."""
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# The pipeline used by the dataset and the Predictor
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AffineJitter:
    """Random affine of training images: rotation in [-degrees, degrees], translation up to
    ``translate`` of the side, scale factor drawn from ``scale``."""

    degrees: float = 10.0
    translate: float = 0.05
    scale: tuple[float, float] = (0.9, 1.1)


@dataclass(frozen=True)
class ColorJitterParams:
    """Arguments of ``torchvision.transforms.v2.ColorJitter`` for training images.

    Hue stays fixed by default: a garment's colour is part of its identity for retrieval (and the
    hue shift is also by far the slowest of the four on PIL images).
    """

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1
    hue: float = 0.0


TransformOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, LetterboxGeometry]


@dataclass
class LandmarkTransform:
    """Callable ``(image, landmarks_xy (8, 2) pixels or None, visibility (8,) or None, bbox or None)
    -> (image (3, S, S) float32 normalised, landmarks (8, 2) float32 in [0, 1] of S, visibility (8,)
    int64, geometry)``.

    Steps: optional bbox crop (with ``crop_margin``) -> [train: colour jitter -> random flip] ->
    letterbox -> [train: random affine]. Evaluation is deterministic: no random step runs when
    ``train`` is False. The returned geometry covers the crop and the letterbox; in training the
    random flip and affine are not part of it. Absent slots come back as NaN. Random draws use
    torch's global generator, which DataLoader seeds differently in every worker.
    """

    train: bool = False
    size: int = DEFAULT_SIZE
    crop_to_bbox: bool = False
    crop_margin: float = 0.1
    flip_p: float = 0.5
    jitter: Optional[AffineJitter] = field(default_factory=AffineJitter)
    color_jitter: Optional[ColorJitterParams] = field(default_factory=ColorJitterParams)

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {self.flip_p}")
        if self.crop_margin < 0:
            raise ValueError(f"crop_margin must be >= 0, got {self.crop_margin}")
        self._affine = None
        if self.jitter is not None:
            self._affine = v2.RandomAffine(
                degrees=self.jitter.degrees,
                translate=(self.jitter.translate, self.jitter.translate),
                scale=self.jitter.scale,
            )
        self._color = None
        if self.color_jitter is not None:
            c = self.color_jitter
            self._color = v2.ColorJitter(brightness=c.brightness, contrast=c.contrast, saturation=c.saturation, hue=c.hue)

    def __call__(
        self,
        image: ImageInput,
        landmarks_xy: Optional[ArrayLike] = None,
        visibility: Optional[ArrayLike] = None,
        bbox: Optional[Sequence[float]] = None,
    ) -> TransformOutput:
        return self.with_bbox(image, landmarks_xy, visibility, bbox)[:4]

    def with_bbox(
        self,
        image: ImageInput,
        landmarks_xy: Optional[ArrayLike] = None,
        visibility: Optional[ArrayLike] = None,
        bbox: Optional[Sequence[float]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, LetterboxGeometry, Optional[torch.Tensor]]:
        """Like calling the transform, plus the ``bbox`` (x1, y1, x2, y2 pixels) carried through the
        same crop, flip, letterbox and affine: float32 (4,) in [0, 1] of the model input (the
        enclosing box of its moved corners, clipped to the input), or None without a usable bbox."""
        sample = make_sample(image, landmarks_xy, visibility)
        orig_w, orig_h = sample.image.size
        region = (0, 0, orig_w, orig_h)
        has_box = bbox is not None and np.isfinite(np.asarray(bbox, dtype=np.float64)).all()
        corners = _corners(bbox) if has_box else None
        if self.crop_to_bbox and bbox is not None and not np.isnan(np.asarray(bbox, dtype=np.float64)).all():
            region = crop_box_with_margin(bbox, (orig_w, orig_h), self.crop_margin)
            sample = crop(sample, *region)
        if corners is not None:
            corners = corners - torch.tensor([float(region[0]), float(region[1])])
        if self.train:
            if self._color is not None:
                sample = LandmarkSample(self._color(sample.image), sample.keypoints, sample.visibility)
            if self.flip_p > 0 and torch.rand(()) < self.flip_p:
                if corners is not None:
                    corners = torch.stack([sample.image.width - corners[:, 0], corners[:, 1]], dim=1)
                sample = horizontal_flip(sample)
        sample, boxed = letterbox(sample, self.size)
        geometry = letterbox_geometry(orig_w, orig_h, self.size, region=region)
        if corners is not None:
            corners = to_model_coords(corners, boxed)
        if self.train and self._affine is not None:
            params = self._affine.make_params([sample.image])
            sample = affine(sample, **params)
            if corners is not None:
                moved = F.affine(tv_tensors.KeyPoints(corners, canvas_size=(self.size, self.size)), angle=float(params["angle"]),
                                 translate=[float(t) for t in params["translate"]], scale=float(params["scale"]),
                                 shear=[float(v) for v in params["shear"]])
                corners = moved.as_subclass(torch.Tensor)
        landmarks = (sample.landmarks / self.size).to(torch.float32)
        box = None
        if corners is not None:
            box = torch.cat([corners.min(dim=0).values, corners.max(dim=0).values]).clamp(0.0, float(self.size)) / self.size
            box = box.to(torch.float32) if bool((box[2:] > box[:2]).all()) else None
        return to_model_input(sample.image), landmarks, sample.visibility.to(torch.int64), geometry, box


def _corners(bbox: Sequence[float]) -> torch.Tensor:
    """The four corners (4, 2) of an (x1, y1, x2, y2) box; a rotation moves each of them."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return torch.tensor([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], dtype=torch.float32)


def build_transforms(
    train: bool,
    size: int = DEFAULT_SIZE,
    crop_to_bbox: bool = False,
    flip_p: float = 0.5,
    jitter: Optional[AffineJitter] = AffineJitter(),
    color_jitter: Optional[ColorJitterParams] = ColorJitterParams(),
    crop_margin: float = 0.1,
) -> Callable[..., TransformOutput]:
    """The landmark-aware pipeline for training (``train=True``: colour jitter, random flip with
    probability ``flip_p``, random affine ``jitter``; pass None to switch one off) or for evaluation
    and queries (``train=False``: deterministic crop + letterbox only). See :class:`LandmarkTransform`."""
    return LandmarkTransform(
        train=train,
        size=size,
        crop_to_bbox=crop_to_bbox,
        crop_margin=crop_margin,
        flip_p=flip_p,
        jitter=jitter,
        color_jitter=color_jitter,
    )
