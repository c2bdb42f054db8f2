"""Keep the trunk near what it knew before training: feature distillation to a frozen copy.

Synthetic photos are all the model sees in training, so a trunk left free drifts towards features
that only separate synthetic garments. A frozen copy of the pretrained trunk (the teacher) sees the
same batch, and the loss is the mean cosine distance between the two conv4 feature maps, location
by location. Its weight trades in-style accuracy for what transfers to real photos.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def _last_trunk_stage(model: nn.Module) -> nn.Module:
    # FashionNet runs a Sequential trunk stage by stage (to take statistics midway), so a hook on
    # the trunk itself would never fire; its last stage outputs conv4 either way.
    trunk = model.trunk
    return trunk[-1] if isinstance(trunk, nn.Sequential) and len(trunk) else trunk


class TrunkDistillation(nn.Module):
    """``loss = distill(images)`` after the student's forward pass on ``images``.

    Built from the model before training, it copies the trunk as the teacher and hooks the
    student's conv4. Call :meth:`remove` when training ends.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.teacher = copy.deepcopy(model.trunk).eval().requires_grad_(False)
        self._student_conv4: Optional[torch.Tensor] = None
        self._hook = _last_trunk_stage(model).register_forward_hook(self._keep_output)

    def _keep_output(self, module, inputs, output) -> None:
        self._student_conv4 = output

    def train(self, mode: bool = True) -> "TrunkDistillation":
        super().train(mode)
        self.teacher.eval()  # the teacher's BN statistics never move
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        student = self._student_conv4
        if student is None:
            raise RuntimeError("TrunkDistillation: run the student's forward pass on these images first")
        self._student_conv4 = None  # one loss per forward pass
        with torch.no_grad():
            teacher = self.teacher(images)
        if teacher.shape != student.shape:
            raise ValueError(f"teacher conv4 {tuple(teacher.shape)} and student conv4 {tuple(student.shape)} differ")
        return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=1)).mean()

    def remove(self) -> None:
        self._hook.remove()
