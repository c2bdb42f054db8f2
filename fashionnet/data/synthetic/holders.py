"""A garment hung from two points, and what holds those points: jointed arms, stands, strings or hands.

Real sellers and labs photograph garments clipped at the shoulders (tops, dresses) or at the waist
corners (bottoms), held up by whatever is at hand. None of it belongs to the garment box, and two
long limbs either side of a hung top are not a body: the model has to see such holders often enough
to leave them out of the box and out of the clothes type. Holders vary in kind, colour and reach so
that no one machine or stand is learned.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import ImageDraw

from fashionnet.data.synthetic.geometry import CX, SHOULDER_Y
from fashionnet.data.synthetic.items import ItemSpec
from fashionnet.data.synthetic.raster import _capsule
from fashionnet.landmarks import LOWER_BODY

HOLDER_KINDS = ("jointed_arm", "stand", "string", "hand")
HOLDER_WEIGHTS = (0.4, 0.25, 0.15, 0.2)
# Painted plastic and metal of lab arms, lamp stands and camera rigs.
HOLDER_COLOURS = ((238, 238, 234), (214, 214, 210), (150, 152, 156), (60, 60, 64), (32, 32, 36), (222, 120, 40), (60, 90, 150))
SKINS = ((236, 200, 170), (214, 168, 130), (170, 118, 82), (112, 74, 52))
GRIP_HEIGHT = 30.0  # figure units: how far a clip or gripper reaches down over the garment's top edge


def darker(col, k: float = 0.8) -> tuple[int, int, int]:
    """``col`` scaled by ``k`` (above 1: lighter, capped at white)."""
    return tuple(int(min(255, v * k)) for v in col)


def clip_points(item: ItemSpec) -> list[tuple[float, float]]:
    """Where the two clips hold the garment (figure frame): the shoulder corners of a top or dress,
    the waistband corners of a bottom."""
    dims = item.style.dims
    if item.style.clothes_type == LOWER_BODY:
        half = dims["waist_half"] * 0.8
        return [(CX - half, dims["waist_y"] + 2), (CX + half, dims["waist_y"] + 2)]
    half = dims.get("shoulder_half", 60.0) - 10
    return [(CX - half, SHOULDER_Y + 6), (CX + half, SHOULDER_Y + 6)]


class HolderStyle:
    """One photo's holders, drawn from a seed so that the part behind and the part in front agree."""

    def __init__(self, seed: float):
        rng = np.random.default_rng(int(seed * 2**31))
        self.kind = HOLDER_KINDS[int(rng.choice(len(HOLDER_KINDS), p=HOLDER_WEIGHTS))]
        self.colour = HOLDER_COLOURS[int(rng.integers(len(HOLDER_COLOURS)))]
        self.joint = darker(self.colour, 0.55) if sum(self.colour) > 300 else darker((200, 200, 200), 0.7)
        self.skin = SKINS[int(rng.integers(len(SKINS)))]
        self.thickness = float(rng.uniform(30, 95))  # from a thin rod to a limb half the garment's width
        # per side: base offset out from the clip, base height, elbow reach and height
        self.reach = rng.uniform(90, 260, 2)
        self.base_y = rng.uniform(560, 800, 2)
        self.elbow_out = rng.uniform(20, 150, 2)
        self.elbow_up = rng.uniform(40, 190, 2)
        self.from_above = bool(rng.random() < 0.5)  # a hand reaching down, or up from the side

    def behind(self, draw: ImageDraw.ImageDraw, p, s: float, clips) -> None:
        """Everything of the holders but the grip: drawn before the garment."""
        for i, ((cx, cy), side) in enumerate(zip(clips, (-1, 1))):
            grip = (cx, cy - GRIP_HEIGHT * 0.6)
            if self.kind == "jointed_arm":
                base = (cx + side * self.reach[i], self.base_y[i])
                shoulder = (base[0], base[1] - (base[1] - cy) * 0.45)
                elbow = (cx + side * self.elbow_out[i], cy - self.elbow_up[i])
                wrist = (cx + side * 6, cy - GRIP_HEIGHT * 1.6)
                t = self.thickness
                foot = p(*base)
                draw.rectangle([foot[0] - 0.9 * t * s, foot[1] - 0.2 * t * s, foot[0] + 0.9 * t * s, foot[1] + 0.25 * t * s], fill=self.joint)
                for a, b, width in ((base, shoulder, t), (shoulder, elbow, t * 0.9), (elbow, wrist, t * 0.75)):
                    _capsule(draw, p(*a), p(*b), width * s, self.colour)
                for j, width in ((shoulder, t * 0.62), (elbow, t * 0.55)):
                    q = p(*j)
                    r = width * s / 2
                    draw.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=self.joint)
                _capsule(draw, p(*wrist), p(*grip), t * 0.5 * s, darker(self.colour, 0.85))
            elif self.kind == "stand":
                pole_x = cx + side * self.reach[i] * 0.6
                top = cy - self.elbow_up[i] * 0.5
                width = max(1, round(self.thickness * 0.3 * s))
                draw.line([p(pole_x, self.base_y[i]), p(pole_x, top)], fill=self.colour, width=width)
                draw.line([p(pole_x, top), p(cx, top), p(*grip)], fill=self.colour, width=width, joint="curve")
                for leg in (-1, 1):  # a tripod foot
                    draw.line([p(pole_x, self.base_y[i] - 40), p(pole_x + leg * 45, self.base_y[i])], fill=self.joint, width=width)
            elif self.kind == "string":
                draw.line([p(cx + side * self.elbow_out[i] * 0.2, -400), p(*grip)], fill=darker(self.colour, 0.8), width=max(1, round(2.5 * s)))
            else:  # hands holding the garment up by its corners
                if self.from_above:
                    elbow = (cx + side * self.elbow_out[i] * 0.6, cy - 170 - self.elbow_up[i])
                else:
                    elbow = (cx + side * (90 + self.reach[i] * 0.5), cy + self.elbow_up[i] * 0.4)
                _capsule(draw, p(*elbow), p(*grip), 34 * s, self.skin)

    def in_front(self, draw: ImageDraw.ImageDraw, p, s: float, clips, fill=None) -> None:
        """The grips over the garment's top edge (``fill``: one colour for a mask, else their own)."""
        for (cx, cy), side in zip(clips, (-1, 1)):
            if self.kind == "hand":
                a, b = p(cx - 17, cy - 14), p(cx + 17, cy + 20)
                draw.ellipse([a[0], a[1], b[0], b[1]], fill=fill if fill is not None else self.skin)
                continue
            half = 11 if self.kind == "jointed_arm" else 6
            a, b = p(cx - half, cy - GRIP_HEIGHT * 0.8), p(cx + half, cy + GRIP_HEIGHT * 0.4)
            colour = fill if fill is not None else (darker(self.colour, 0.8) if self.kind == "jointed_arm" else (70, 70, 74))
            draw.rounded_rectangle([a[0], a[1], b[0], b[1]], radius=max(1.0, 2.5 * s), fill=colour)


def draw_clutter(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, floor_y: float) -> None:
    """Things standing in a studio or a room that are not the garment: light stands, a clothes rack
    with other garments, a jointed arm, a chair. ``floor_y``: where they stand (pixels)."""
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(4))
        x = (rng.uniform(0.0, 0.3) if rng.random() < 0.5 else rng.uniform(0.7, 1.0)) * w
        base = floor_y + rng.uniform(-0.02, 0.1) * h
        col = HOLDER_COLOURS[int(rng.integers(len(HOLDER_COLOURS)))]
        if kind == 0:  # a light stand: tripod, pole, a box light or a round reflector
            top = base - rng.uniform(0.5, 0.9) * h
            lw = max(1, round(0.006 * w))
            d.line([(x, base), (x, top)], fill=(50, 50, 54), width=lw)
            for leg in (-1, 1):
                d.line([(x, base - 0.08 * h), (x + leg * 0.05 * w, base)], fill=(50, 50, 54), width=lw)
            r = rng.uniform(0.04, 0.1) * w
            if rng.random() < 0.5:
                d.rectangle([x - r, top - r * 1.3, x + r, top + r * 0.3], fill=(244, 244, 240), outline=(40, 40, 44))
            else:
                d.ellipse([x - r, top - r, x + r, top + r], fill=darker(col, 1.05), outline=(60, 60, 64))
        elif kind == 1:  # a clothes rack with other garments on it
            rw = rng.uniform(0.15, 0.35) * w
            top = base - rng.uniform(0.45, 0.7) * h
            lw = max(1, round(0.006 * w))
            for px in (x - rw / 2, x + rw / 2):
                d.line([(px, base), (px, top)], fill=(120, 120, 126), width=lw)
            d.line([(x - rw / 2, top), (x + rw / 2, top)], fill=(120, 120, 126), width=lw)
            for gx in np.linspace(x - rw * 0.4, x + rw * 0.4, int(rng.integers(2, 6))):
                gw, gh = rng.uniform(0.04, 0.08) * w, rng.uniform(0.2, 0.4) * h
                gcol = darker(HOLDER_COLOURS[int(rng.integers(len(HOLDER_COLOURS)))], rng.uniform(0.6, 1.1))
                shape = [(gx - gw * 0.5, top + 0.03 * h), (gx + gw * 0.5, top + 0.03 * h), (gx + gw * 0.6, top + gh), (gx - gw * 0.6, top + gh)]
                d.polygon(shape, fill=gcol)
        elif kind == 2:  # a jointed arm standing on its own
            t = rng.uniform(0.03, 0.06) * w
            pts = [(x, base), (x, base - rng.uniform(0.2, 0.35) * h)]
            a = rng.uniform(-math.pi, 0)
            for _ in range(2):
                length = rng.uniform(0.15, 0.3) * h
                pts.append((pts[-1][0] + math.cos(a) * length, pts[-1][1] + math.sin(a) * length))
                a += rng.uniform(-1.4, 1.4)
            for p0, p1 in zip(pts, pts[1:]):
                _capsule(d, p0, p1, t, col)
            for q in pts[1:-1]:
                d.ellipse([q[0] - t * 0.35, q[1] - t * 0.35, q[0] + t * 0.35, q[1] + t * 0.35], fill=darker(col, 0.55))
        else:  # a chair, side on
            cw, seat = rng.uniform(0.08, 0.16) * w, base - rng.uniform(0.12, 0.2) * h
            wood = darker((150, 104, 62), rng.uniform(0.6, 1.2))
            lw = max(1, round(0.01 * w))
            d.line([(x, base), (x, seat), (x + cw, seat), (x + cw, base)], fill=wood, width=lw)
            d.line([(x, seat), (x, seat - rng.uniform(0.15, 0.25) * h)], fill=wood, width=lw)
