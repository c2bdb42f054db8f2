"""Folding BatchNorms into convolutions for inference: same outputs, no BatchNorm left."""

import pytest
import torch
from torch import nn

from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.batchnorm_folding import fold_batch_norms, folded_for_inference


def _trained_looking(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, as after training."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def test_folded_fashionnet_gives_the_same_outputs_without_batchnorm():
    model = _trained_looking(create_model(FashionNetConfig(backbone="efficientnet_lite0", num_categories=3, num_attributes=4)))
    x = torch.randn(2, 3, 160, 160)
    folded, count = folded_for_inference(model, x[:1])
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        a, b = model(x), folded(x)
    for key in ("embedding", "landmarks", "visibility_logits", "category_logits"):
        assert torch.allclose(a[key], b[key], atol=1e-4), key


class _BatchNormBeforeConv(nn.Module):
    """Registered conv-then-bn, but the forward runs bn first: folding would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return {"out": self.conv(self.bn(x))}


def test_folding_that_changes_outputs_is_refused():
    model = _trained_looking(_BatchNormBeforeConv())
    assert fold_batch_norms(_trained_looking(_BatchNormBeforeConv())) == 1  # the naive fold happens...
    kept, count = folded_for_inference(model, torch.randn(1, 3, 8, 8))
    assert kept is model and count == 0  # ...but the checked one keeps the original


def test_training_mode_models_are_not_folded():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(_BatchNormBeforeConv().train())
