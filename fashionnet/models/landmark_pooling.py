"""FashionNet's landmark pooling layer: pool a small conv4 window around each landmark.

Landmarks arrive normalised to the model input ([0, 1] of width and height). They are converted to
input pixels exactly once; the boxes are then handed to torchvision's RoI ops with
``spatial_scale = 1 / stride``, so the library does the only pixel -> feature-cell conversion.
(A known public implementation divided by the image size a second time, so every window landed in
the top-left corner; the tests pin the window to the right cell on non-square maps.)
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align, roi_pool

POOL_MODES = ("max", "align")


def landmark_boxes(landmarks: torch.Tensor, image_hw: tuple[int, int], window_px: float, stride: int, mode: str) -> torch.Tensor:
    """(B*L, 5) RoI boxes ``[batch_index, x1, y1, x2, y2]`` in input pixels, one per landmark.

    The window is ``window_px`` pixels wide and centred on the landmark. Non-finite landmarks
    (absent slots in ground truth) are put at 0; their windows are zeroed by the caller anyway.
    """
    b, l, _ = landmarks.shape
    h, w = image_hw
    lm = torch.nan_to_num(landmarks.detach().float(), nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
    scale = torch.tensor([w, h], dtype=lm.dtype, device=lm.device)
    centre = lm * scale  # the one normalised -> pixel conversion
    window_px = torch.as_tensor(window_px).detach().to(lm).view(-1, 1, 1)
    if mode == "max":
        # roi_pool addresses feature cell i at pixel i * stride (its corner, not its centre) and
        # includes both end cells: shift by half a cell and shrink by one cell so a window of
        # k cells covers exactly the k cells centred on the landmark's cell.
        centre = centre - stride / 2.0
        half = (window_px - stride).clamp(min=0.0) / 2.0
    else:
        # roi_align(aligned=True) uses continuous coordinates: cell i spans [i, i + 1) * stride.
        half = window_px / 2.0
    boxes = torch.cat([centre - half, centre + half], dim=-1).reshape(b * l, 4)
    batch_index = torch.arange(b, device=lm.device, dtype=lm.dtype).repeat_interleave(l).unsqueeze(1)
    return torch.cat([batch_index, boxes], dim=1)


class LandmarkPooling(nn.Module):
    """Pool a ``window`` x ``window``-cell region of the conv4 map around each landmark.

    ``forward(feature_map, landmarks, visible, image_hw)`` with feature_map (B, C, Hf, Wf),
    landmarks (B, L, 2) normalised (x / W, y / H) to the input image of size ``image_hw`` = (H, W),
    visible (B, L) bool, returns (B, L, C, output, output); windows of invisible landmarks are zero.
    ``mode`` "max" uses :func:`torchvision.ops.roi_pool` (max, as in the paper), "align" uses
    :func:`torchvision.ops.roi_align` (bilinear average).
    """

    def __init__(self, stride: int, window: float = 3.0, output: int = 2, mode: str = "max", sampling_ratio: int = 0):
        super().__init__()
        if mode not in POOL_MODES:
            raise ValueError(f"pool mode must be one of {POOL_MODES}, got {mode!r}")
        if window <= 0 or output < 1:
            raise ValueError(f"window must be > 0 and output >= 1, got window={window}, output={output}")
        self.stride = int(stride)
        self.window = float(window)
        self.output = int(output)
        self.mode = mode
        self.sampling_ratio = int(sampling_ratio)

    def forward(self, feature_map: torch.Tensor, landmarks: torch.Tensor, visible: torch.Tensor, image_hw: tuple[int, int],
                window_px: float | None = None) -> torch.Tensor:
        """``window_px``: the window side in input pixels (default: ``window`` cells)."""
        b, c = feature_map.shape[:2]
        l = landmarks.shape[1]
        boxes = landmark_boxes(landmarks, image_hw, self.window * self.stride if window_px is None else window_px, self.stride, self.mode)
        # pool in float32: half-precision box coordinates would move windows by whole pixels
        fmap = feature_map if feature_map.dtype in (torch.float32, torch.float64) else feature_map.float()
        size = (self.output, self.output)
        if self.mode == "max":
            pooled = roi_pool(fmap, boxes.to(fmap.dtype), size, spatial_scale=1.0 / self.stride)
        else:
            # sampling_ratio 0: ceil(bin / cell) samples per bin, so a wide window reads every cell; a fixed
            # ratio reads the same points in ONNX Runtime's RoiAlign as here
            pooled = roi_align(fmap, boxes.to(fmap.dtype), size, spatial_scale=1.0 / self.stride, sampling_ratio=self.sampling_ratio,
                               aligned=True)
        pooled = pooled.to(feature_map.dtype).view(b, l, c, self.output, self.output)
        return pooled * visible.to(pooled.dtype).view(b, l, 1, 1, 1)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, window={self.window}, output={self.output}, mode={self.mode!r}, sampling_ratio={self.sampling_ratio}"
