"""FashionNet's landmark branch (visibility, and landmarks from an fc or from heatmaps) and its
garment box head: the parts of the network that say where the garment and its landmarks are."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fashionnet.landmarks import NUM_LANDMARKS, NUM_VISIBILITY_CLASSES


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) logits -> (B, N, 2) expected (x, y) of their spatial softmax, in [0, 1] of the map.

    Cell centres sit at (i + 0.5) / size, the convention the letterbox and roi pooling use.
    """
    b, n, h, w = heatmaps.shape
    prob = torch.softmax(heatmaps.float().flatten(2), dim=-1).view(b, n, h, w)
    xs = (torch.arange(w, device=heatmaps.device, dtype=prob.dtype) + 0.5) / w
    ys = (torch.arange(h, device=heatmaps.device, dtype=prob.dtype) + 0.5) / h
    return torch.stack([(prob.sum(dim=2) * xs).sum(dim=-1), (prob.sum(dim=3) * ys).sum(dim=-1)], dim=-1)


# Radius, in heatmap cells, around the soft-argmax within which a sure heatmap holds its mass.
CONFIDENCE_RADIUS = 1.5


def heatmap_confidence(heatmaps: torch.Tensor, radius: float = CONFIDENCE_RADIUS) -> torch.Tensor:
    """(B, N, H, W) logits -> (B, N) confidence in [0, 1]: the share of the spatial softmax's mass
    within ``radius`` cells of its soft-argmax, times min(1, radius / spread), spread being the
    root mean squared distance (cells) of the mass from that point.

    One sharp peak scores near 1; a flat map, or two far-apart peaks (whose soft-argmax falls
    between them, on no garment point), score near 0.
    """
    b, n, h, w = heatmaps.shape
    prob = torch.softmax(heatmaps.float().flatten(2), dim=-1).view(b, n, h, w)
    xs = torch.arange(w, device=heatmaps.device, dtype=prob.dtype) + 0.5
    ys = torch.arange(h, device=heatmaps.device, dtype=prob.dtype) + 0.5
    cx = (prob.sum(dim=2) * xs).sum(dim=-1)
    cy = (prob.sum(dim=3) * ys).sum(dim=-1)
    d2 = (xs.view(1, 1, 1, w) - cx[..., None, None]) ** 2 + (ys.view(1, 1, h, 1) - cy[..., None, None]) ** 2
    near = (prob * (d2 <= radius * radius).to(prob.dtype)).sum(dim=(2, 3))
    spread = (prob * d2).sum(dim=(2, 3)).clamp_min(1e-12).sqrt()
    return (near * (radius / spread).clamp(max=1.0)).clamp(0.0, 1.0)


class LandmarkBranch(nn.Module):
    """Own conv5 copy -> 1x1 reduce -> fixed grid -> fc -> visibility logits, and landmarks either
    from the same fc (head "fc", the paper's) or from soft-argmax heatmaps on the conv4 grid (head
    "heatmap"), which keeps the spatial detail an fc over a 7 x 7 grid loses."""

    def __init__(
        self, conv5: nn.Module, conv5_channels: int, width: int, grid: int, hidden: int, dropout: float, head: str, trunk_channels: int
    ):
        super().__init__()
        self.head = head
        self.conv5 = conv5
        self.reduce = nn.Sequential(nn.Conv2d(conv5_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        # A fixed grid keeps the fc's input size independent of the image size.
        self.grid = nn.AdaptiveAvgPool2d(grid)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(width * grid * grid, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.visibility = nn.Linear(hidden, NUM_LANDMARKS * NUM_VISIBILITY_CLASSES)
        if head == "fc":
            self.coordinates = nn.Linear(hidden, NUM_LANDMARKS * 2)
            # start every landmark at the image centre with small spread rather than at random corners
            nn.init.normal_(self.coordinates.weight, std=1e-3)
            nn.init.zeros_(self.coordinates.bias)
        else:
            self.heatmaps = nn.Sequential(
                nn.Conv2d(trunk_channels + width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, NUM_LANDMARKS, 1),
            )

    def forward(self, conv4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """landmarks (B, 8, 2), visibility logits (B, 8, 3), and each landmark's heatmap confidence
        (B, 8) (None for the fc head, which has no heatmap to judge)."""
        conv5 = self.reduce(self.conv5(conv4))
        h = self.fc(self.grid(conv5))
        visibility_logits = self.visibility(h).view(-1, NUM_LANDMARKS, NUM_VISIBILITY_CLASSES)
        if self.head == "fc":
            return torch.sigmoid(self.coordinates(h)).view(-1, NUM_LANDMARKS, 2), visibility_logits, None
        context = F.interpolate(conv5, size=conv4.shape[-2:], mode="bilinear", align_corners=False)
        heatmaps = self.heatmaps(torch.cat([conv4, context], dim=1))
        return soft_argmax(heatmaps).to(conv4.dtype), visibility_logits, heatmap_confidence(heatmaps)


# Initial box (0.1, 0.1, 0.9, 0.9): most of the frame, as in shop photos; logits of 0.1 and 0.8 / 0.9.
_BOX_INIT_BIAS = (-2.1972, -2.1972, 2.0794, 2.0794)


class BoxHead(nn.Module):
    """conv5 map -> 1x1 reduce -> fixed grid -> fc -> garment box (x1, y1, x2, y2) in [0, 1].

    The fixed grid keeps where things are (a global average would not). The corners are
    x1 = s(a), x2 = x1 + (1 - x1) s(b): ordered and inside the input by construction, without a
    clamp that would stop the gradient of a box hanging over the border.
    """

    def __init__(self, channels: int, width: int, grid: int, hidden: int):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.grid = nn.AdaptiveAvgPool2d(grid)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(width * grid * grid, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4))
        nn.init.normal_(self.fc[-1].weight, std=1e-3)
        with torch.no_grad():
            self.fc[-1].bias.copy_(torch.tensor(_BOX_INIT_BIAS))

    def forward(self, conv5: torch.Tensor) -> torch.Tensor:
        raw = self.fc(self.grid(self.reduce(conv5))).float()
        low = torch.sigmoid(raw[:, :2])
        high = low + (1.0 - low) * torch.sigmoid(raw[:, 2:])
        return torch.cat([low, high], dim=1).to(conv5.dtype)
