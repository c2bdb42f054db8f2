"""Cutting a worn garment's box below the wearer's face: the face detector on a real portrait, the
rules that decide whether a face counts, and the second pass on the crop below it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fashionnet.inference import faces
from fashionnet.inference.faces import FaceDetector, box_below_face, default_face_detector, wants_face_check
from fashionnet.inference.localisation import crop_region
from fashionnet.inference.predictor import Predictor
from fashionnet.landmarks import FULL_BODY, LOWER_BODY, UPPER_BODY
from fashionnet.models import FashionNetConfig, create_model
from tests.test_localisation import flat_heatmaps, force_box

SIDE = 96
PORTRAIT = (400, 600)  # width, height
BOX = (40, 60, 360, 580)  # the garment box the model is made to predict, in the portrait's pixels
FACE = (150, 40, 250, 160)  # a face at the top of that box


def grace_hopper() -> Image.Image:
    cbook = pytest.importorskip("matplotlib.cbook")
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB")


class FixedFaces:
    """A detector that finds the given faces in every photo, and counts the photos it was shown."""

    def __init__(self, *boxes):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.calls = 0

    def find(self, image):
        self.calls += 1
        return self.boxes


def box_in_input(box, size=PORTRAIT, side=SIDE):
    """A box in the portrait's pixels -> [0, 1] of the letterboxed input (the portrait is taller than wide)."""
    w, h = size
    scale = side / max(w, h)
    pad_x = (side - round(w * scale)) // 2
    x1, y1, x2, y2 = box
    return ((x1 * scale + pad_x) / side, y1 * scale / side, (x2 * scale + pad_x) / side, y2 * scale / side)


def forced_predictor(detector, label_maps=None, box=BOX) -> Predictor:
    torch.manual_seed(0)
    categories = (label_maps or {}).get("categories", [])
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=SIDE, num_categories=len(categories))).eval()
    force_box(model, box_in_input(box))
    flat_heatmaps(model)  # every landmark unsure, at the centre of what the model looks at
    return Predictor(model, model.config, label_maps or {"categories": [], "attributes": []}, {"image_size": SIDE}, "test",
                     device="cpu", fold_batch_norms=False, face_detector=detector, flip_average=False, runtime="torch")


def portrait() -> Image.Image:
    return Image.new("RGB", PORTRAIT, (120, 140, 160))


def test_detector_finds_grace_hoppers_face_and_nothing_on_a_plain_photo():
    if not FaceDetector.available():
        pytest.skip("OpenCV is not installed")
    photo = grace_hopper()
    found = FaceDetector().find(photo)
    assert found.shape == (1, 4), found
    x1, y1, x2, y2 = found[0]
    # her face: the nose near (265, 230), the chin near y = 330, above the jacket's collar
    assert x1 < 265 < x2 and y1 < 230 < y2
    assert 290 < y2 < 370 and 150 < x2 - x1 < 300
    assert FaceDetector().find(portrait()).shape == (0, 4)


@pytest.mark.parametrize("face, expected_top", [
    (FACE, 160.0),  # at the top of the box, over its middle: cut at the chin
    ((150, 20, 250, 140), 140.0),  # starts above the box
    ((150, 200, 250, 320), None),  # starts in the middle of the garment: a print, not a wearer
    ((0, 40, 30, 160), None),  # beside the box
    ((50, 40, 350, 340), None),  # as wide as the garment: a detection on the garment itself
    ((150, 40, 250, 400), None),  # would leave too little of the garment below it
    ((150, 0, 250, 50), None),  # wholly above the box: nothing to cut
])
def test_a_face_cuts_the_box_only_where_a_wearers_face_would_be(face, expected_top):
    cut = box_below_face(BOX, np.asarray([face], dtype=np.float64))
    if expected_top is None:
        assert cut is None
    else:
        assert cut == (BOX[0], expected_top, BOX[2], BOX[3])


def test_the_lowest_counting_face_sets_the_cut_and_no_face_or_box_cuts_nothing():
    two = np.asarray([FACE, (200, 50, 260, 190), (150, 200, 250, 320)], dtype=np.float64)
    assert box_below_face(BOX, two) == (BOX[0], 190.0, BOX[2], BOX[3])
    assert box_below_face(BOX, np.zeros((0, 4))) is None
    assert box_below_face(None, two) is None


def test_faces_are_looked_for_only_where_the_neckline_was_missed_on_a_top_or_dress():
    assert wants_face_check([0.1, 0.2], UPPER_BODY, 0.25)
    assert wants_face_check([0.1, 0.2], FULL_BODY, 0.25)
    assert wants_face_check([0.1, 0.2], None, 0.25)
    assert not wants_face_check([0.1, 0.2], LOWER_BODY, 0.25)
    assert not wants_face_check([0.4, 0.3], UPPER_BODY, 0.25)


def test_a_face_above_the_garment_moves_the_box_below_it_and_the_landmarks_onto_the_crop():
    detector = FixedFaces(FACE)
    pred = forced_predictor(detector).predict(portrait())
    assert detector.calls == 1
    assert pred.below_face and pred.cropped and pred.as_dict()["below_face"] is True
    np.testing.assert_allclose(pred.garment_box, (BOX[0], FACE[3], BOX[2], BOX[3]), atol=0.5)
    # flat heatmaps put every landmark at the centre of what the model looked at: the crop cut
    # around the box below the face, not the photo
    left, top, width, height = crop_region(pred.garment_box, PORTRAIT, 0.15)
    for lm in pred.landmarks:
        assert lm.x == pytest.approx(left + width / 2, abs=2.0) and lm.y == pytest.approx(top + height / 2, abs=2.0)
        assert lm.y > FACE[3]

    plain = forced_predictor(None).predict(portrait())
    assert not plain.below_face and not plain.cropped  # the box covers 69% of the photo: no crop
    np.testing.assert_allclose(plain.garment_box, BOX, atol=0.5)
    assert plain.landmarks[0].y == pytest.approx(PORTRAIT[1] / 2, abs=2.0)


def test_no_face_check_when_the_collar_is_found_the_garment_is_a_bottom_or_crops_are_off():
    detector = FixedFaces(FACE)
    sure = forced_predictor(detector)
    forward = sure.forward_batch
    sure.forward_batch = lambda x: {**forward(x), "landmark_confidence": torch.full((len(x), 8), 0.9)}
    pred = sure.predict(portrait())
    assert detector.calls == 0 and not pred.below_face and not pred.cropped

    trousers = {"categories": ["Trousers"], "attributes": [], "category_clothes_types": {"Trousers": LOWER_BODY}}
    pred = forced_predictor(detector, trousers).predict(portrait())
    assert pred.clothes_type == LOWER_BODY and detector.calls == 0 and not pred.below_face

    pred = forced_predictor(detector).predict_batch([portrait()], crop_below=0.0)[0]
    assert detector.calls == 0 and not pred.below_face and not pred.cropped


def test_batch_cuts_only_the_photo_with_a_face_and_looks_at_each_photo_once():
    class FaceInFirst(FixedFaces):
        def find(self, image):
            self.calls += 1
            return self.boxes if image.getpixel((0, 0)) == (0, 0, 0) else np.zeros((0, 4))

    detector = FaceInFirst(FACE)
    marked = portrait()
    marked.putpixel((0, 0), (0, 0, 0))
    preds = forced_predictor(detector).predict_batch([marked, portrait()])
    assert [p.below_face for p in preds] == [True, False] and detector.calls == 2
    assert preds[0].garment_box[1] == pytest.approx(FACE[3], abs=0.5)
    np.testing.assert_allclose(preds[1].garment_box, BOX, atol=0.5)


def test_real_detector_cuts_grace_hoppers_garment_box_at_her_chin():
    if not FaceDetector.available():
        pytest.skip("OpenCV is not installed")
    photo = grace_hopper()  # 512 x 600
    torch.manual_seed(0)
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=SIDE)).eval()
    force_box(model, box_in_input((4, 100, 508, 596), size=photo.size))  # from her forehead down
    flat_heatmaps(model)
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": SIDE}, "test",
                          device="cpu", fold_batch_norms=False, runtime="torch")
    assert isinstance(predictor.face_detector, FaceDetector)
    pred = predictor.predict(photo)
    assert pred.below_face and pred.cropped
    assert 290 < pred.garment_box[1] < 370  # at her chin, above the collar of the jacket
    assert all(lm.y > 290 for lm in pred.landmarks)


def test_without_opencv_the_predictor_runs_without_the_cut(monkeypatch):
    def missing():
        raise ImportError("No module named 'cv2'")

    monkeypatch.setattr(faces, "_cascade", missing)
    assert not FaceDetector.available() and default_face_detector() is None
    predictor = forced_predictor("auto")
    assert predictor.face_detector is None
    pred = predictor.predict(portrait())
    assert not pred.below_face and not pred.cropped


def test_with_flip_averaging_faces_are_found_once_and_mirrored_for_the_mirror_image():
    from PIL import ImageOps

    from fashionnet.inference.faces import mirrored_boxes
    from fashionnet.inference.retrieval_time import average_views

    # the model puts the garment box left of centre in every photo; the face is over it in the
    # photo, and in the mirror image it lies beside it, so only the photo's box is cut
    box, face = (20, 60, 300, 580), (20, 40, 100, 160)
    mirrored_face = (300, 40, 380, 160)
    np.testing.assert_allclose(mirrored_boxes(np.asarray([face]), PORTRAIT[0]), [mirrored_face])
    photo = portrait()
    photo.paste((200, 180, 160), face)
    detector = FixedFaces(face)
    flipped = forced_predictor(detector, box=box)
    flipped.flip_average = True
    pred = flipped.predict(photo)
    assert detector.calls == 1 and pred.below_face
    one = forced_predictor(FixedFaces(face), box=box).predict(photo)
    mirror = forced_predictor(FixedFaces(mirrored_face), box=box).predict(ImageOps.mirror(photo))
    assert one.below_face and not mirror.below_face
    np.testing.assert_allclose(pred.embedding, average_views(one.embedding[None], mirror.embedding[None])[0], atol=1e-5)


def test_draw_real_photos_script_draws_each_photo_without_and_with_the_cut(tiny_checkpoint, tmp_path):
    from tests.conftest import load_script

    module = load_script("draw_real_photos")
    photos = [tmp_path / "a.png", tmp_path / "b.png"]
    portrait().save(photos[0])
    Image.new("RGB", (300, 200), (30, 30, 30)).save(photos[1])
    out = tmp_path / "sheet.png"
    module.main(["--checkpoint", str(tiny_checkpoint), "--photos", *map(str, photos), "--out", str(out), "--side", "120"])
    sheet = Image.open(out)
    assert sheet.width == 2 * 120
    assert sheet.height == (120 + 22) + (80 + 22)  # one row per photo: its panel height plus the caption line
