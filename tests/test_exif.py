"""A phone photo stored sideways with an EXIF orientation tag is used the way a viewer shows it.

The upright photo is a synthetic shop image. Its "phone" copies hold the pixels rotated by 90
degrees and a tag saying how to turn them back: orientation 6 means "rotate 90 degrees clockwise to
view", orientation 8 "rotate 90 degrees counter-clockwise to view".
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fashionnet.data.images import load_image
from fashionnet.inference.predictor import Predictor

EXIF_ORIENTATION = 0x0112
# The stored pixels for each tag: the upright image turned the opposite way to the viewing rotation.
STORED_TURN = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}  # ROTATE_90 is counter-clockwise


def _jpeg(image: Image.Image, path, orientation: int | None = None):
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    image.save(path, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def upright(synth_root) -> Image.Image:
    path = sorted((synth_root / "consumer2shop" / "img").rglob("shop_*.jpg"))[0]
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if w == h:  # make the two orientations distinguishable by size alone
        image = image.crop((0, 0, w, h * 3 // 4))
    return image


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")


@pytest.mark.parametrize("orientation", [6, 8])
def test_tagged_photo_loads_upright(upright, tmp_path, orientation):
    reference = np.asarray(load_image(_jpeg(upright, tmp_path / "upright.jpg")), dtype=np.float64)
    phone = _jpeg(upright.transpose(STORED_TURN[orientation]), tmp_path / "phone.jpg", orientation)
    assert Image.open(phone).size == upright.size[::-1], "the stored pixels are sideways"
    loaded = load_image(phone)
    assert loaded.size == upright.size
    assert np.abs(np.asarray(loaded, dtype=np.float64) - reference).mean() < 2.0
    # The same bytes as an upload behave the same.
    assert load_image(phone.read_bytes()).size == upright.size


@pytest.mark.parametrize("orientation", [6, 8])
def test_tagged_photo_embeds_like_the_upright_one(upright, predictor, tmp_path, orientation):
    reference = predictor.predict(_jpeg(upright, tmp_path / "upright.jpg"))
    stored = upright.transpose(STORED_TURN[orientation])
    phone = predictor.predict(_jpeg(stored, tmp_path / "phone.jpg", orientation))
    untagged = predictor.predict(_jpeg(stored, tmp_path / "sideways.jpg"))

    assert phone.original_size == reference.original_size == upright.size
    assert float(phone.embedding @ reference.embedding) > 0.99
    ref_xy = np.array([(lm.x, lm.y) for lm in reference.landmarks])
    phone_xy = np.array([(lm.x, lm.y) for lm in phone.landmarks])
    np.testing.assert_allclose(phone_xy, ref_xy, atol=0.02 * max(upright.size))
    assert phone.category == reference.category
    # Without the tag the model sees a sideways photo: a different input (so the checks above have teeth).
    assert untagged.original_size == upright.size[::-1]
    assert float(untagged.embedding @ reference.embedding) < float(phone.embedding @ reference.embedding)
