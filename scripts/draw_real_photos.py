#!/usr/bin/env python
"""Draw a model's predictions on photos as the page does, without and with the face cut.

One row per photo: on the left the garment box and landmarks with the face cut switched off, on
the right as the product predicts them (the box cut below the wearer's face where it applies).
For looking at real photos, which no metric here covers.

    python scripts/draw_real_photos.py --checkpoint runs/demo/checkpoint.pt \\
        --photos grace_hopper.jpg astronaut.png --out docs/real_portraits.jpg
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw  # noqa: E402

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import device_option  # noqa: E402
from fashionnet.data.images import load_image  # noqa: E402
from fashionnet.inference.predictor import Predictor  # noqa: E402
from webui.render import display_copy, draw_box, draw_landmarks  # noqa: E402


def panel(predictor: Predictor, photo: Image.Image, title: str, side: int) -> Image.Image:
    prediction = predictor.predict(photo)
    shown, scale = display_copy(photo, side)
    box = None if prediction.garment_box is None else [v * scale for v in prediction.garment_box]
    landmarks = [dataclasses.replace(lm, x=lm.x * scale, y=lm.y * scale) for lm in prediction.present_landmarks]
    drawn = draw_landmarks(draw_box(shown, box), landmarks)
    caption = f"{title}: {prediction.category} {prediction.category_prob:.0%}"
    out = Image.new("RGB", (side, drawn.height + 22), "white")
    out.paste(drawn, (0, 22))
    ImageDraw.Draw(out).text((4, 4), caption, fill=(0, 0, 0))
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained FashionNet checkpoint")
    p.add_argument("--photos", nargs="+", required=True, help="photos to draw, one row each")
    p.add_argument("--out", required=True, help="the contact sheet written: each photo without and with the face cut (.jpg or .png)")
    p.add_argument("--side", type=int, default=360, help="longer side of each panel, in pixels")
    device_option(p)
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    with_cut = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    without_cut = Predictor.from_checkpoint(args.checkpoint, device=args.device, face_detector=None)
    if with_cut.face_detector is None:
        print("OpenCV is not installed: both columns are without the face cut", file=sys.stderr)
    rows = []
    for path in args.photos:
        photo = load_image(path)
        rows.append([panel(without_cut, photo, "without the face cut", args.side), panel(with_cut, photo, "as served", args.side)])
    width = sum(im.width for im in rows[0])
    sheet = Image.new("RGB", (width, sum(max(im.height for im in row) for row in rows)), "white")
    y = 0
    for row in rows:
        x = 0
        for im in row:
            sheet.paste(im, (x, y))
            x += im.width
        y += max(im.height for im in row)
    sheet.save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(run_main(main))
