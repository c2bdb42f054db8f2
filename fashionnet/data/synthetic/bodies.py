"""What holds the garment in a photo: a person, a mannequin, a hanger, a wall hook, pegs on a line,
or two clips held by arms, stands, strings or hands (:mod:`.holders`).

Everything is drawn in the figure frame through the same matrix as the garment, so the body and the
supports line up with the garment geometry. Parts behind the garment are drawn first
(:func:`draw_behind`); clips, pegs and untucked tops are drawn over it (:func:`draw_in_front`) and also into a
mask, so the landmarks they cover are labelled occluded from the pixels actually drawn.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import ImageDraw

from fashionnet.data.synthetic.geometry import CX, SHOULDER_Y
from fashionnet.data.synthetic.poses import Pose
from fashionnet.data.synthetic.holders import HolderStyle, clip_points, darker
from fashionnet.data.synthetic.items import ItemSpec, Look
from fashionnet.data.synthetic.raster import _capsule
from fashionnet.landmarks import LOWER_BODY, UPPER_BODY

# Presentation modes that show a body, and those where the garment hangs or lies on its own.
BODY_MODES = ("worn", "mannequin")
MANNEQUIN_COLOURS = ((236, 232, 224), (46, 46, 50), (212, 192, 160), (190, 190, 192))
WOOD = ((150, 104, 62), (196, 160, 112), (96, 64, 40))
METAL = ((172, 172, 178), (120, 120, 126), (60, 60, 64))


def _mapper(m: np.ndarray, pose: Pose):
    s, tx, ty = float(m[0, 0]), float(m[0, 2]), float(m[1, 2])  # m is a similarity without rotation
    c = pose.compress if pose.view == "side" else 1.0

    def p(x, y):
        return ((CX + (x - CX) * c) * s + tx, y * s + ty)

    return p, s, c



def _draw_body(draw: ImageDraw.ImageDraw, m: np.ndarray, item: ItemSpec, pose: Pose, look: Look, mannequin: bool) -> None:
    """A person (skin, face, hair, shoes, companion garment) or a mannequin in plastic."""
    p, s, c = _mapper(m, pose)
    skin = look.skin
    ct = item.style.clothes_type
    shoulder_half = item.style.dims.get("shoulder_half", 62.0)
    shoulder_half = max(shoulder_half, 58.0) if item.style.sleeve != "none" else 60.0
    on_stand = mannequin and ct == UPPER_BODY
    # Legs and shoes (a mannequin for tops stands on a pole instead).
    if on_stand:
        _capsule(draw, p(CX, 360), p(CX, 700), 10 * s, darker(skin, 0.5))
        draw.ellipse([*p(CX - 60, 690), *p(CX + 60, 712)], fill=darker(skin, 0.45))
    else:
        for side, angle in ((-1, pose.legs[0]), (1, pose.legs[1])):
            a = math.radians(angle)
            hip = (CX + side * 26, 372)
            knee = (hip[0] + side * math.sin(a) * 160, hip[1] + math.cos(a) * 160)
            ankle = (hip[0] + side * math.sin(a) * 320, hip[1] + math.cos(a) * 320)
            _capsule(draw, p(*hip), p(*knee), 54 * s * c, skin)
            _capsule(draw, p(*knee), p(*ankle), 38 * s * c, skin)
            if not mannequin:
                foot = p(ankle[0] + side * 6, ankle[1] + 8)
                draw.ellipse([foot[0] - 19 * s, foot[1] - 9 * s, foot[0] + 19 * s, foot[1] + 9 * s], fill=look.shoes)
    # Arms: from the shoulders along the sleeve angles, bent at the elbow like the sleeves (geometry.py).
    for side, angle, bend in ((-1, pose.arms[0], pose.elbows[0]), (1, pose.arms[1], pose.elbows[1])):
        a, a2 = math.radians(angle), math.radians(angle - bend)
        top = (CX + side * (shoulder_half - 8), SHOULDER_Y + 22)
        elbow = (top[0] + side * math.sin(a) * 140, top[1] + math.cos(a) * 140)
        hand = (elbow[0] + side * math.sin(a2) * 145, elbow[1] + math.cos(a2) * 145)
        _capsule(draw, p(*top), p(*elbow), 38 * s * c, skin)
        _capsule(draw, p(*elbow), p(*hand), 30 * s * c, skin)
        h = p(*hand)
        draw.ellipse([h[0] - 16 * s, h[1] - 20 * s, h[0] + 16 * s, h[1] + 20 * s], fill=skin)
    torso = [p(CX - 58, SHOULDER_Y + 4), p(CX + 58, SHOULDER_Y + 4), p(CX + 48, 290), p(CX + 60, 380), p(CX - 60, 380), p(CX - 48, 290)]
    draw.polygon(torso, fill=skin)
    for side in (-1, 1):  # rounded shoulders
        q = p(CX + side * 50, SHOULDER_Y + 22)
        draw.ellipse([q[0] - 22 * s * c, q[1] - 20 * s, q[0] + 22 * s * c, q[1] + 20 * s], fill=skin)
    if not mannequin:
        if ct == UPPER_BODY:  # trousers under a top
            outline = [(-58, 320), (58, 320), (66, 690), (10, 690), (0, 430), (-10, 690), (-66, 690)]
            draw.polygon([p(CX + x, y) for x, y in outline], fill=look.companion)
        elif ct == LOWER_BODY:  # a plain top over bottoms
            half = [(24, SHOULDER_Y), (66, SHOULDER_Y + 10), (96, SHOULDER_Y + 60), (70, SHOULDER_Y + 76), (58, 330)]
            outline = half + [(-x, y) for x, y in reversed(half)]
            draw.polygon([p(CX + x, y) for x, y in outline], fill=look.companion)
    # Neck and head.
    draw.polygon([p(CX - 15, 84), p(CX + 15, 84), p(CX + 17, SHOULDER_Y + 6), p(CX - 17, SHOULDER_Y + 6)], fill=skin)
    if mannequin and look.long_hair:  # headless mannequin: a neck cap
        cap = p(CX, 84)
        draw.ellipse([cap[0] - 17 * s, cap[1] - 6 * s, cap[0] + 17 * s, cap[1] + 6 * s], fill=darker(skin, 0.85))
        return
    head_c = p(CX, 58)
    rx, ry = 31 * s * c + 4 * s * (1 - c), 39 * s
    hair = look.hair
    if not mannequin and look.long_hair and pose.view != "back":
        draw.polygon([p(CX - 40, 40), p(CX + 40, 40), p(CX + 46, 172), p(CX - 46, 172)], fill=hair)
    head_fill = hair if (pose.view == "back" and not mannequin) else skin
    if not mannequin and pose.view == "front":  # ears, which a large face in a portrait shows
        for side in (-1, 1):
            ex = head_c[0] + side * rx * 0.97
            draw.ellipse([ex - 6 * s, head_c[1] - 7 * s, ex + 6 * s, head_c[1] + 11 * s], fill=darker(skin, 0.93))
    draw.ellipse([head_c[0] - rx, head_c[1] - ry, head_c[0] + rx, head_c[1] + ry], fill=head_fill)
    if mannequin:
        return
    # Face: only from the front or the side, small and soft, as in catalogue photos.
    if pose.view != "back":
        shift = (pose.near * 10 * s) if pose.view == "side" else 0.0
        eye_y = head_c[1] + 2 * s
        dark = darker(skin, 0.45)
        for side in ((-1, 1) if pose.view != "side" else (pose.near,)):
            ex = head_c[0] + shift + side * 11 * s * c
            draw.ellipse([ex - 3.6 * s, eye_y - 2.2 * s, ex + 3.6 * s, eye_y + 2.2 * s], fill=(245, 245, 240))
            draw.ellipse([ex - 2.0 * s, eye_y - 2.0 * s, ex + 2.0 * s, eye_y + 2.0 * s], fill=(40, 30, 26))
            draw.line([(ex - 5 * s, eye_y - 7 * s), (ex + 5 * s, eye_y - 8 * s)], fill=darker(hair, 0.9), width=max(1, round(1.8 * s)))
        nose = head_c[0] + shift * 1.3
        draw.line([(nose, eye_y + 3 * s), (nose + 1.5 * s, eye_y + 12 * s)], fill=darker(skin, 0.78), width=max(1, round(1.5 * s)))
        if look.glasses is not None and s > 0.25:  # two rims and a bridge round the eyes (too small to see below)
            width = max(1, round(1.6 * s))
            eyes = [head_c[0] + shift + side * 11 * s * c for side in ((-1, 1) if pose.view != "side" else (pose.near,))]
            for ex in eyes:
                draw.ellipse([ex - 8 * s, eye_y - 6 * s, ex + 8 * s, eye_y + 6 * s], outline=look.glasses, width=width)
            if len(eyes) == 2:
                draw.line([(eyes[0] + 8 * s, eye_y - 2 * s), (eyes[1] - 8 * s, eye_y - 2 * s)], fill=look.glasses, width=width)
        mouth_y = head_c[1] + 22 * s
        draw.line([(nose - 6 * s, mouth_y), (nose + 6 * s, mouth_y)], fill=(150, 72, 70), width=max(1, round(2.0 * s)))
    # Hair over the crown, in the look's style.
    style = look.hair_style
    low = ry * (0.1 if style == "buzz" else 0.35)
    draw.chord([head_c[0] - rx - 3 * s, head_c[1] - ry - (2 if style == "buzz" else 5) * s, head_c[0] + rx + 3 * s, head_c[1] + low], 180, 360, fill=hair)
    if style == "curly":  # a ring of curls round the crown
        for t in np.linspace(math.pi * 0.95, math.pi * 2.05, 9):
            cx_, cy_ = head_c[0] + math.cos(t) * rx * 1.05, head_c[1] - 8 * s + math.sin(t) * ry * 0.95
            draw.ellipse([cx_ - 9 * s, cy_ - 9 * s, cx_ + 9 * s, cy_ + 9 * s], fill=hair)
    elif style == "bun":
        top = p(CX, 14)
        draw.ellipse([top[0] - 15 * s, top[1] - 13 * s, top[0] + 15 * s, top[1] + 13 * s], fill=hair)
    if look.long_hair and pose.view == "back":
        draw.polygon([p(CX - 38, 50), p(CX + 38, 50), p(CX + 42, 190), p(CX - 42, 190)], fill=hair)


def _top_y(item: ItemSpec) -> float:
    """Where the garment's top edge is: shoulders for tops and dresses, the waistband for bottoms."""
    return item.style.dims["waist_y"] if item.style.clothes_type == LOWER_BODY else SHOULDER_Y


def draw_behind(draw: ImageDraw.ImageDraw, m: np.ndarray, item: ItemSpec, pose: Pose, look: Look, mode: str, size, rng_u: np.ndarray) -> None:
    """Body or support behind the garment. ``rng_u``: a few uniform numbers drawn by the caller."""
    if mode in BODY_MODES:
        if mode == "mannequin":
            look = Look(MANNEQUIN_COLOURS[int(rng_u[0] * len(MANNEQUIN_COLOURS))], look.hair, rng_u[1] < 0.5, look.companion, look.background, look.shoes)
        _draw_body(draw, m, item, pose, look, mannequin=mode == "mannequin")
        return
    p, s, _ = _mapper(m, pose)
    lower = item.style.clothes_type == LOWER_BODY
    top = _top_y(item)
    if mode == "hanger":
        metal, wood = METAL[int(rng_u[0] * 3)], WOOD[int(rng_u[1] * 3)]
        hook_base = top - (40 if lower else 8)
        draw.line([p(CX, hook_base), p(CX, hook_base - 38)], fill=metal, width=max(1, round(3 * s)))
        draw.arc([*p(CX - 14, hook_base - 66), *p(CX + 14, hook_base - 38)], 180, 90, fill=metal, width=max(1, round(3 * s)))
        if lower:
            half = item.style.dims["waist_half"] + 16
            draw.line([p(CX - half, top - 40), p(CX + half, top - 40)], fill=wood, width=max(1, round(7 * s)))
        else:
            sh = item.style.dims.get("shoulder_half", 60.0) - 4
            draw.line([p(CX - sh, SHOULDER_Y + 12), p(CX, SHOULDER_Y - 6), p(CX + sh, SHOULDER_Y + 12)], fill=wood, width=max(1, round(9 * s)), joint="curve")
    elif mode == "clipped":
        HolderStyle(rng_u[0]).behind(draw, p, s, clip_points(item))
    elif mode == "hook":
        metal = METAL[int(rng_u[0] * 3)]
        plate = p(CX, top - 34)
        draw.rounded_rectangle([plate[0] - 7 * s, plate[1] - 12 * s, plate[0] + 7 * s, plate[1] + 12 * s], radius=3 * s, fill=darker(metal, 0.9))
        draw.line([p(CX, top - 34), p(CX, top + 6)], fill=metal, width=max(1, round(4 * s)))
    elif mode == "pegs":  # a washing line right across the photo, sagging a little
        w = size[0]
        y0 = p(CX, top - 2)[1]
        sag = rng_u[0] * 0.04 * w
        pts = [(x, y0 + sag * (1 - ((x - w / 2) / (w / 2)) ** 2) - sag) for x in np.linspace(-5, w + 5, 12)]
        draw.line(pts, fill=(235, 235, 230) if rng_u[1] < 0.5 else (70, 70, 74), width=max(1, round(2.2 * s)))


def _front_shapes(item: ItemSpec, mode: str) -> list[tuple[float, float, float, float]]:
    """Clips or pegs over the garment's top edge: (x, y_top, width, height) in figure units."""
    dims, lower = item.style.dims, item.style.clothes_type == LOWER_BODY
    top = _top_y(item)
    if mode == "hanger" and lower:
        half = dims["waist_half"] * 0.55
        return [(CX - half, top - 40, 9, 56), (CX + half, top - 40, 9, 56)]
    if mode == "pegs":
        if lower:
            xs = (CX - dims["waist_half"] * 0.55, CX + dims["waist_half"] * 0.55)
        else:
            sh = dims["shoulder_half"]
            xs = (CX - sh + 9, CX + sh - 9)
        return [(x, top - 16, 8, 36) for x in xs]
    return []


def draw_in_front(
    draws: list[tuple[ImageDraw.ImageDraw, object]], m: np.ndarray, item: ItemSpec, pose: Pose, mode: str, rng_u: np.ndarray,
    look: Look | None = None,
) -> None:
    """What lies over the garment, drawn into every (draw, fill or None) given (fill None paints its
    own colours): clips and pegs, and on worn bottoms sometimes an untucked top hanging over the
    waistband (it hides the waist landmarks, which are then labelled occluded)."""
    if mode == "clipped":
        p, s, _ = _mapper(m, pose)
        holders = HolderStyle(rng_u[0])
        for draw, fill in draws:
            holders.in_front(draw, p, s, clip_points(item), fill)
        return
    shapes = _front_shapes(item, mode)
    untucked = mode == "worn" and item.style.clothes_type == LOWER_BODY and look is not None and rng_u[3] < 0.35
    if not shapes and not untucked:
        return
    p, s, _ = _mapper(m, pose)
    colour = WOOD[int(rng_u[2] * 3)] if mode == "pegs" else METAL[int(rng_u[2] * 3)]
    for draw, fill in draws:
        if untucked:
            wy, wh = item.style.dims["waist_y"], item.style.dims["waist_half"]
            drop = 8.0 + rng_u[3] / 0.35 * 34.0
            outline = [(-58, wy - 90), (58, wy - 90), (wh + 14, wy + drop - 4), (wh * 0.3, wy + drop + 3), (-wh * 0.3, wy + drop + 3), (-wh - 14, wy + drop - 4)]
            draw.polygon([p(CX + x, y) for x, y in outline], fill=fill if fill is not None else look.companion)
        for x, y, w, h in shapes:
            a, b = p(x - w / 2, y), p(x + w / 2, y + h)
            draw.rounded_rectangle([a[0], a[1], b[0], b[1]], radius=max(1.0, 2.5 * s), fill=fill if fill is not None else colour)
            if fill is None:  # the spring / hinge line
                mid = p(x, y + h * 0.45)
                draw.line([(a[0], mid[1]), (b[0], mid[1])], fill=darker(colour, 0.6), width=max(1, round(1.5 * s)))
