"""webui/render.py: the landmark drawing a user looks at, without Streamlit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from fashionnet.inference.prediction import Landmark
from webui.render import LANDMARK_COLOURS, display_copy, draw_landmarks, short_name, thumbnail

GREY = (128, 128, 128)


def _photo(w=300, h=200) -> Image.Image:
    return Image.new("RGB", (w, h), GREY)


def _pixel(image, x, y):
    return tuple(int(v) for v in np.asarray(image)[int(y), int(x)])


def test_short_names():
    assert short_name("left_waistline") == "L waistline"
    assert short_name("right_hem") == "R hem"
    assert short_name("left_collar") == "L collar"
    assert short_name("collar") == "collar"
    assert short_name("neck_line") == "neck line"
    assert short_name("left") == "left"


def test_every_slot_has_its_own_colour():
    names = ["left_collar", "right_collar", "left_sleeve", "right_sleeve", "left_waistline", "right_waistline", "left_hem", "right_hem"]
    assert sorted(LANDMARK_COLOURS) == sorted(names)
    assert len(set(LANDMARK_COLOURS.values())) == 8, "a swapped left/right pair must be visible"


def test_visible_landmark_is_a_filled_dot_in_its_colour_and_the_input_is_untouched():
    photo = _photo()
    before = np.asarray(photo).copy()
    out = draw_landmarks(photo, [Landmark("left_sleeve", 150.0, 100.0, "visible", 0.9)], show_names=False)
    assert out is not photo and out.size == photo.size
    np.testing.assert_array_equal(np.asarray(photo), before)
    assert _pixel(out, 150, 100) == LANDMARK_COLOURS["left_sleeve"]
    # Nothing is drawn far from the point.
    assert _pixel(out, 20, 20) == GREY and _pixel(out, 280, 180) == GREY


def test_occluded_is_a_ring_and_truncated_a_dashed_ring():
    radius = max(3.0, 300 / 45)
    out = draw_landmarks(_photo(), [Landmark("right_hem", 100.0, 100.0, "occluded", 0.2),
                                    Landmark("left_hem", 200.0, 100.0, "truncated", 0.1)], show_names=False)
    arr = np.asarray(out)
    for x, name in ((100, "right_hem"), (200, "left_hem")):
        assert _pixel(out, x, 100) == GREY, f"{name}: the centre of a ring stays empty"
        window = arr[100 - int(radius) - 2 : 100 + int(radius) + 3, x - int(radius) - 2 : x + int(radius) + 3]
        ring = (window == LANDMARK_COLOURS[name]).all(-1)
        assert ring.any(), f"{name}: no ring drawn"
    solid = ((arr[80:121, 80:121] == LANDMARK_COLOURS["right_hem"]).all(-1)).sum()
    dashed = ((arr[80:121, 180:221] == LANDMARK_COLOURS["left_hem"]).all(-1)).sum()
    assert dashed < solid, "the truncated ring should be dashed (fewer pixels than the full ring)"


def test_landmark_outside_the_photo_is_drawn_at_the_border_and_nan_is_skipped():
    out = draw_landmarks(_photo(), [Landmark("right_sleeve", -40.0, 60.0, "truncated", 0.0),
                                    Landmark("left_collar", math.nan, 10.0, "visible", 0.9),
                                    Landmark("right_collar", 50.0, math.inf, "visible", 0.9)], show_names=False)
    arr = np.asarray(out)
    colour_mask = (arr == LANDMARK_COLOURS["right_sleeve"]).all(-1)
    ys, xs = np.nonzero(colour_mask)
    assert len(xs) and xs.min() >= 0 and xs.max() < 30, "the clamped ring should hug the left border"
    assert abs(np.mean(ys) - 60) < 8
    assert not (arr == LANDMARK_COLOURS["left_collar"]).all(-1).any()
    assert not (arr == LANDMARK_COLOURS["right_collar"]).all(-1).any()


def test_labels_of_a_pair_point_away_from_each_other():
    marks = [Landmark("left_collar", 120.0, 100.0, "visible", 0.9), Landmark("right_collar", 180.0, 100.0, "visible", 0.9)]
    bare = np.asarray(draw_landmarks(_photo(), marks, show_names=False))
    named = np.asarray(draw_landmarks(_photo(), marks, show_names=True))
    changed = (bare != named).any(-1)
    cols = np.nonzero(changed)[1]
    assert changed.any(), "show_names=True must draw the labels"
    assert (cols < 120).any() and (cols > 180).any(), "left label on the left, right label on the right"
    assert not ((cols > 130) & (cols < 170)).any(), "no label between the pair"


def test_label_that_would_leave_the_canvas_is_flipped_inside():
    out = np.asarray(draw_landmarks(_photo(), [Landmark("left_hem", 8.0, 100.0, "visible", 0.9)], show_names=True))
    bare = np.asarray(draw_landmarks(_photo(), [Landmark("left_hem", 8.0, 100.0, "visible", 0.9)], show_names=False))
    cols = np.nonzero((out != bare).any(-1))[1]
    assert len(cols) and cols.min() > 8, "a left label with no room on the left goes to the right"


@pytest.mark.parametrize("size,side", [((100, 50), 480), ((1200, 3000), 480), ((64, 64), 32)])
def test_display_copy_scales_the_long_side(size, side):
    image = Image.new("RGBA", size, (10, 20, 30, 255))
    shown, scale = display_copy(image, side)
    assert max(shown.size) == side and shown.mode == "RGB"
    assert scale == pytest.approx(side / max(size))
    assert shown.size[0] / shown.size[1] == pytest.approx(size[0] / size[1], rel=0.02)


def test_thumbnail_keeps_aspect_and_leaves_the_original():
    image = Image.new("RGB", (1000, 400), GREY)
    small = thumbnail(image, 320)
    assert small.size == (320, 128) and image.size == (1000, 400)
    tiny = Image.new("RGB", (100, 40), GREY)
    assert thumbnail(tiny, 320).size == (100, 40)


def test_unsure_landmark_is_a_grey_ring_with_a_question_mark_not_a_coloured_dot():
    from webui.render import UNSURE_COLOUR

    sure = draw_landmarks(_photo(), [Landmark("left_sleeve", 150.0, 100.0, "visible", 0.9, confidence=0.9)], show_names=False)
    unsure = draw_landmarks(_photo(), [Landmark("left_sleeve", 150.0, 100.0, "visible", 0.9, confidence=0.05)], show_names=False)
    assert _pixel(sure, 150, 100) == LANDMARK_COLOURS["left_sleeve"]
    arr = np.asarray(unsure)
    assert not (arr == LANDMARK_COLOURS["left_sleeve"]).all(-1).any(), "an unsure point must not look like a found one"
    radius = max(3.0, 300 / 45)
    ring = np.hypot(*np.meshgrid(np.arange(300) - 150, np.arange(200) - 100))
    on_ring = (arr == UNSURE_COLOUR).all(-1) & (abs(ring - radius) < 2.5)
    assert on_ring.sum() > 10, "the grey ring"
    inside = arr[100 - 3 : 100 + 4, 150 - 3 : 150 + 4]
    assert (inside != GREY).any(-1).sum() > 3, "the question mark inside the ring"
    # without a confidence (fc-head models) a landmark is drawn as before
    plain = draw_landmarks(_photo(), [Landmark("left_sleeve", 150.0, 100.0, "visible", 0.9)], show_names=False)
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(sure))


def test_garment_box_is_framed_on_its_pixels_and_none_draws_nothing():
    from webui.render import BOX_COLOUR, draw_box, legend

    photo = _photo()
    out = np.asarray(draw_box(photo, (40.0, 30.0, 200.0, 180.0)))
    frame = (out == BOX_COLOUR).all(-1)
    ys, xs = np.nonzero(frame)
    assert abs(xs.min() - 41) <= 2 and abs(xs.max() - 199) <= 2 and abs(ys.min() - 31) <= 2 and abs(ys.max() - 179) <= 2
    assert not frame[60:150, 60:180].any(), "only the frame is drawn, not the inside"
    assert (out[5, 250] == GREY).all()
    np.testing.assert_array_equal(np.asarray(draw_box(photo, None)), np.asarray(photo))
    meanings = dict(legend())
    assert "unsure" in meanings["grey ring with ?"] and "garment" in meanings["white frame"]
