"""Drawing helpers for the web page: predicted landmarks on the query photo, and thumbnails.

Kept apart from ``webui/app.py`` so the page reads as page -> SearchEngine -> Predictor -> model,
and so the drawing can be used (and looked at) without Streamlit.
"""

from __future__ import annotations

import math
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from fashionnet.inference.prediction import LOW_CONFIDENCE, Landmark
from fashionnet.landmarks import LANDMARK_NAMES

# One colour per landmark slot; left/right pairs share a hue, the right one darker, so a swapped
# pair is easy to spot.
LANDMARK_COLOURS: dict[str, tuple[int, int, int]] = dict(
    zip(
        LANDMARK_NAMES,
        [
            (255, 99, 71), (178, 34, 34),  # collar: tomato / firebrick
            (50, 205, 50), (0, 128, 0),  # sleeve: lime green / green
            (30, 144, 255), (0, 0, 180),  # waistline: dodger blue / dark blue
            (255, 215, 0), (200, 140, 0),  # hem: gold / dark gold
        ],
    )
)

# How each predicted visibility is drawn: visible filled, occluded hollow, truncated dashed.
VISIBILITY_STYLES = {"visible": "filled dot", "occluded": "hollow ring", "truncated": "dashed ring"}
# A landmark whose heatmap confidence is below LOW_CONFIDENCE is a guess: drawn as a grey ring with a
# "?" whatever its visibility, so it does not look like a found point.
UNSURE_COLOUR = (205, 205, 205)
UNSURE_RIM = (40, 40, 40)
UNSURE_STYLE = "grey ring with ?"
BOX_COLOUR = (255, 255, 255)
BOX_SHADOW = (20, 20, 20)


def legend() -> list[tuple[str, str]]:
    """(mark, meaning) pairs for the page's legend of :func:`draw_landmarks` and :func:`draw_box`."""
    return [*((style, f"{vis} landmark") for vis, style in VISIBILITY_STYLES.items()),
            (UNSURE_STYLE, f"unsure: the model is guessing this point (confidence below {LOW_CONFIDENCE:.2f})"),
            ("white frame", "where the model thinks the garment is")]


def _dashed_circle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, colour, width: int, dashes: int = 8) -> None:
    """A ring made of ``dashes`` arcs with equal gaps between them."""
    step = 360.0 / dashes
    box = (cx - r, cy - r, cx + r, cy + r)
    for i in range(dashes):
        start = i * step
        draw.arc(box, start, start + step * 0.55, fill=colour, width=width)


def short_name(name: str) -> str:
    """"left_waistline" -> "L waistline": short labels overlap less on small garments."""
    side, _, part = name.partition("_")
    return f"{side[:1].upper()} {part}" if side in ("left", "right") and part else name.replace("_", " ")


def display_copy(image: Image.Image, side: int = 480) -> tuple[Image.Image, float]:
    """``image`` resized so its long side is ``side`` (up or down) and the scale used.

    Drawing on the shown size keeps marks and labels crisp for thumbnails and camera shots alike.
    """
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS), scale


def draw_landmarks(image: Image.Image, landmarks: Sequence[Landmark], show_names: bool = True) -> Image.Image:
    """A copy of ``image`` with each landmark drawn in its colour and named.

    Visible landmarks are filled dots, occluded ones hollow rings and truncated ones dashed rings;
    an unsure one (``Landmark.low_confidence``) is a grey ring with a "?" and a grey label. A
    truncated landmark may be predicted outside the photo; it is drawn clamped to the border so the
    user still sees where the model thinks the garment continues.
    """
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    # Sizes follow the photo so marks stay readable on both thumbnails and 4000 px camera shots.
    side = max(1, w, h)
    radius = max(3.0, side / 45)
    line = max(1, round(radius / 3))
    font = ImageFont.load_default(size=max(10, round(side / 32)))
    for lm in landmarks:
        if not (math.isfinite(lm.x) and math.isfinite(lm.y)):
            continue
        colour = LANDMARK_COLOURS.get(lm.name, (255, 0, 255))
        x = min(max(lm.x, radius), w - radius)
        y = min(max(lm.y, radius), h - radius)
        box = (x - radius, y - radius, x + radius, y + radius)
        if lm.low_confidence:
            colour = UNSURE_COLOUR
            # a dark rim keeps the light ring readable on light photos too
            draw.ellipse(box, outline=UNSURE_RIM, width=line + 2)
            draw.ellipse((x - radius + 1, y - radius + 1, x + radius - 1, y + radius - 1), outline=colour, width=line)
            mark = ImageFont.load_default(size=max(8, round(radius * 1.5)))
            draw.text((x, y), "?", fill=UNSURE_RIM, font=mark, anchor="mm", stroke_width=max(1, line // 2), stroke_fill=colour)
        elif lm.visibility == "visible":
            draw.ellipse(box, fill=colour, outline=(255, 255, 255), width=max(1, line // 2))
        elif lm.visibility == "occluded":
            draw.ellipse(box, outline=colour, width=line)
        else:
            _dashed_circle(draw, x, y, radius, colour, line)
        if show_names:
            label = short_name(lm.name)
            left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
            text_w = right - left
            # Left landmarks are labelled on their left, right ones on their right, so the labels of
            # a pair point away from each other; a label that would leave the canvas is flipped.
            before, after = x - radius - 3 - text_w, x + radius + 3
            tx = before if lm.name.startswith("left") else after
            if tx < 0 or tx + text_w > w:
                tx = after if tx == before else before
            ty = y - (bottom - top) / 2 - top
            # An outline of the opposite brightness keeps dark and light labels readable anywhere.
            luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            outline = (0, 0, 0) if luminance > 110 else (255, 255, 255)
            draw.text((tx, ty), label, fill=colour, font=font, stroke_width=max(1, line // 2), stroke_fill=outline)
    return canvas


def draw_box(image: Image.Image, box: Sequence[float] | None) -> Image.Image:
    """A copy of ``image`` with the garment ``box`` (x1, y1, x2, y2 in its pixels) framed in white
    over a dark line, visible on light and dark photos; ``None`` draws nothing."""
    canvas = image.convert("RGB").copy()
    if box is None:
        return canvas
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    line = max(2, round(max(w, h) / 160))
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)
    y1, y2 = min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)
    draw.rectangle((x1, y1, x2, y2), outline=BOX_SHADOW, width=line + 2)
    draw.rectangle((x1 + 1, y1 + 1, x2 - 1, y2 - 1), outline=BOX_COLOUR, width=line)
    return canvas


def thumbnail(image: Image.Image, max_side: int = 320) -> Image.Image:
    """A copy no larger than ``max_side`` on its long side (keeps the page light)."""
    small = image.copy()
    small.thumbnail((max_side, max_side))
    return small
