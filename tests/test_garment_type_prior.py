"""The clothes-type prior: an ImageNet classifier's opinion of the garment box, multiplied into the
model's categories so that the clothes type the page names, and the points it draws, follow it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

from fashionnet.inference.garment_type_prior import (
    CLOTHES_TYPES, IMAGENET_GARMENT_CLASSES, GarmentTypePrior, default_type_prior, reweighed_categories, smoothed,
)
from fashionnet.inference.predictor import Predictor
from fashionnet.landmarks import FULL_BODY, LOWER_BODY, UPPER_BODY, present_mask


def grace_hopper() -> Image.Image:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB")


def test_the_garment_labels_are_imagenet_classes_of_one_type_each():
    from torchvision.models import ResNet50_Weights

    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    seen = set()
    for clothes_type, classes in IMAGENET_GARMENT_CLASSES.items():
        for index, label in classes.items():
            assert names[index] == label, (clothes_type, index)
            assert index not in seen
            seen.add(index)


def test_a_photo_of_a_jacket_worn_is_upper_body_and_a_plain_photo_gives_no_opinion():
    prior = default_type_prior("cpu")
    assert isinstance(prior, GarmentTypePrior)
    plain = Image.fromarray(np.full((200, 160, 3), 128, np.uint8))
    probs = prior.type_probabilities([grace_hopper(), plain], [None, None])
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(dim=1), torch.ones(2))
    assert int(probs[0].argmax()) == CLOTHES_TYPES.index(UPPER_BODY) and probs[0].max() > 0.6
    # no garment label: close to uniform, so the model decides
    assert probs[1].max() < 0.5


def test_the_box_is_what_is_looked_at():
    prior = default_type_prior("cpu")
    photo = grace_hopper()
    whole = prior.type_probabilities([photo], [None])
    # the same photo pasted into a wide grey canvas, with the box around it: the same opinion
    canvas = Image.new("RGB", (photo.width * 3, photo.height), (128, 128, 128))
    canvas.paste(photo, (photo.width, 0))
    boxed = prior.type_probabilities([canvas], [(photo.width, 0, 2 * photo.width, photo.height)])
    grey = prior.type_probabilities([canvas], [(0, 0, photo.width // 2, photo.height)])
    assert int(boxed.argmax()) == int(whole.argmax())
    assert boxed.max() > grey.max()


def test_reweighing_multiplies_by_the_type_and_keeps_a_distribution():
    types = [UPPER_BODY, UPPER_BODY, LOWER_BODY, FULL_BODY, None]
    probs = torch.tensor([[0.1, 0.1, 0.1, 0.6, 0.1]])
    uniform = torch.full((1, 3), 1 / 3)
    assert torch.allclose(reweighed_categories(probs, uniform, types), probs)
    lower = smoothed(torch.tensor([[0.0, 0.5, 0.0]]))
    out = reweighed_categories(probs, lower, types)
    assert torch.isclose(out.sum(), torch.tensor(1.0))
    assert int(out.argmax()) == 2  # the one lower-body category now leads the full-body one
    expected = probs * torch.tensor([[lower[0, 0], lower[0, 0], lower[0, 1], lower[0, 2], lower.mean()]])
    assert torch.allclose(out, expected / expected.sum())


class _Says:
    """A stand-in prior with a fixed opinion, so the test sees what the Predictor does with it."""

    def __init__(self, clothes_type: int):
        self.column = CLOTHES_TYPES.index(clothes_type)
        self.calls = 0

    def type_probabilities(self, photos, boxes):
        self.calls += len(photos)
        mass = torch.zeros((len(photos), 3))
        mass[:, self.column] = 1.0
        return smoothed(mass)


@pytest.mark.parametrize("clothes_type", [UPPER_BODY, LOWER_BODY])
def test_the_prediction_follows_the_prior(tiny_checkpoint, clothes_type):
    prior = _Says(clothes_type)
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch", type_prior=prior)
    photos = [grace_hopper(), Image.fromarray(np.full((120, 90, 3), 200, np.uint8))]
    predictions = predictor.predict_batch(photos)
    assert prior.calls == len(photos)  # once per photo, not for the mirror images
    for p in predictions:
        assert p.clothes_type == clothes_type
        assert predictor.category_clothes_types[p.category] == clothes_type
        present = present_mask(clothes_type)
        assert [lm.visibility != "absent" for lm in p.landmarks] == [bool(v) for v in present]


def test_without_a_prior_the_model_alone_decides(tiny_checkpoint):
    photo = grace_hopper()
    alone = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch", type_prior=None).predict(photo)
    raw = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch", type_prior=None)
    out, _, _ = raw.forward_photos([photo])
    assert "type_prior" not in out
    probs = (out["category_logits"].float() / raw.category_temperature).softmax(-1)[0]
    assert alone.category == raw.category_names[int(probs.argmax())]


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_the_exported_prior_gives_the_same_opinion(runtime):
    from fashionnet.runtimes.onnx_runtime import onnx_available
    from fashionnet.runtimes.openvino_runtime import openvino_available

    if not onnx_available() or (runtime == "openvino" and not openvino_available()):
        pytest.skip(f"{runtime} is not installed")
    photo = grace_hopper()
    boxes = [None, (60, 300, 450, 600)]
    exported = GarmentTypePrior(runtime=runtime)
    assert exported.runtime == runtime
    expected = default_type_prior("cpu").type_probabilities([photo, photo], boxes)
    assert torch.allclose(exported.type_probabilities([photo, photo], boxes), expected, atol=1e-4)
