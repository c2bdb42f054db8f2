"""Photos of an item: presentation mode, scene, framing, camera, and the labels that go with them.

A photo is made in one pipeline whatever its kind: pick how the garment is presented (worn by a
person, on a mannequin, on a hanger, clipped up by two holders, laid flat; or the held-out wall hook, washing-line pegs and
laid out on a bed),
in which scene family and with which framing (the garment, an upper-body crop, a head-and-shoulders
portrait, the full body, a wide shot, a detail zoom); map the figure frame to the photo with one matrix (similarity for
studio shots, plus rotation and a perspective homography for consumer photos); paint body, garment
and supports through it; warp pixels and landmarks with the *same* matrices; composite over the
scene with a soft shadow; add occluders; run the camera. Visibility comes from the masks drawn.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fashionnet.data.synthetic.bodies import BODY_MODES
from fashionnet.data.synthetic.camera import apply_camera, sample_camera
from fashionnet.data.synthetic.figure import _render_figure
from fashionnet.data.synthetic.geometry import CX, FIG_H, FIG_W, SHOULDER_Y, _arr, build_garment
from fashionnet.data.synthetic.poses import LYING_MODES, sample_pose
from fashionnet.data.synthetic.items import ItemSpec, _sample_look
from fashionnet.data.synthetic.photos import RenderedImage, _bbox_of, _draw_occluders, _finish_labels
from fashionnet.data.synthetic.raster import _apply, _homography, _sim, _warp
from fashionnet.data.synthetic.scenes import TOP_DOWN_SCENES, render_scene
from fashionnet.data.synthetic.shading import bevel, soft_shadow
from fashionnet.data.synthetic.vocabulary import CONSUMER_SIDE_RANGE, SHOP_SIZE, VIEW_CODES
from fashionnet.landmarks import CLOTHES_TYPE_SLOTS, LOWER_BODY, OCCLUDED, TRUNCATED, UPPER_BODY

IN_STYLE_MODES = ("worn", "mannequin", "hanger", "flat_lay", "clipped")
HELD_OUT_MODES = ("hook", "pegs", "bed_lay")  # only in the style-shift split
# Scene families each presentation can appear in (held-out scenes only with held-out modes).
SCENES_FOR_MODE = {
    "worn": (("studio", "room", "street"), (0.3, 0.4, 0.3)),
    "mannequin": (("studio", "room"), (0.5, 0.5)),
    "hanger": (("studio", "room"), (0.4, 0.6)),
    "flat_lay": (("floor", "table"), (0.55, 0.45)),
    "clipped": (("studio", "room"), (0.5, 0.5)),
    "hook": (("bedroom", "garden"), (0.5, 0.5)),
    "pegs": (("garden", "bedroom"), (0.7, 0.3)),
    "bed_lay": (("bed",), (1.0,)),  # laid out on a bed, seen from above
}
FRAMINGS = ("garment", "upper_body", "portrait", "full_body", "wide", "detail")


def _choice(rng: np.random.Generator, options, p) -> str:
    return str(options[int(rng.choice(len(options), p=np.asarray(p, float) / np.sum(p)))])


def choose_presentation(
    rng: np.random.Generator, item: ItemSpec, kind: str, view: str, held_out: bool, user_photos: bool, mode: str | None = None
) -> tuple[str, str, str]:
    """(presentation mode, scene family, framing) of one photo. ``kind``: shop / consumer; a given
    ``mode`` is kept and the scene and framing are drawn to suit it."""
    ct = item.style.clothes_type
    forced = mode
    if held_out:
        mode = _choice(rng, HELD_OUT_MODES, (0.35, 0.35, 0.3))
    elif view in ("side", "back", "full"):
        mode = _choice(rng, ("worn", "mannequin"), (0.75, 0.25))
    elif kind == "shop":
        mode = _choice(rng, IN_STYLE_MODES, (0.48, 0.14, 0.1, 0.13, 0.15))
    else:
        mode = _choice(rng, IN_STYLE_MODES, (0.46, 0.06, 0.11, 0.19, 0.18))
    mode = forced or mode
    scenes, weights = SCENES_FOR_MODE[mode]
    if kind == "shop" and mode in ("worn", "mannequin", "hanger"):
        weights = (0.85,) + tuple(0.15 / (len(scenes) - 1) for _ in scenes[1:])  # studio first
    elif kind == "consumer" and scenes[0] == "studio":  # consumers shoot at home, in shops and outside
        weights = (0.1,) + tuple(w * 0.9 / sum(weights[1:]) for w in weights[1:])
    scene = _choice(rng, scenes, weights)
    if user_photos and not held_out and scene not in TOP_DOWN_SCENES and rng.random() < (0.35 if kind == "consumer" else 0.1):
        scene = "photo"
    if view == "full":
        framing = "full_body"
    elif view == "additional":
        framing = "detail"
    elif kind == "shop":
        framing = "garment"
    elif mode in BODY_MODES:
        options = ("garment", "upper_body", "full_body", "wide", "portrait")
        # Selfies crop at the waist; portraits show a large face over a top or dress cut off by the frame.
        portrait = 0.15 if mode == "worn" and ct != LOWER_BODY else 0.0
        framing = _choice(rng, options, (0.4, 0.3 if ct == UPPER_BODY else 0.0, 0.2, 0.15, portrait))
    elif mode == "clipped":  # wide enough to show what holds it, which the box must leave out
        framing = _choice(rng, ("garment", "wide"), (0.4, 0.6))
    else:
        framing = _choice(rng, ("garment", "wide"), (0.8, 0.2))
    return mode, scene, framing


def _region(framing: str, garment_box, rng: np.random.Generator, item: ItemSpec, landmarks: np.ndarray):
    """Figure-frame box (x0, y0, x1, y1) the photo is composed around, and how much of it to fill."""
    gx0, gy0, gx1, gy1 = garment_box
    if framing == "full_body":
        return (CX - 110, 8, CX + 110, 712), rng.uniform(0.85, 0.98)
    if framing == "upper_body":
        return (CX - 125, 5, CX + 125, gy1 + 30), rng.uniform(0.85, 1.0)
    if framing == "portrait":  # head and shoulders: the face fills the top, the garment runs out of the frame
        half = rng.uniform(80, 130)
        return (CX - half, rng.uniform(2, 16), CX + half, SHOULDER_Y + rng.uniform(50, 190)), rng.uniform(0.95, 1.1)
    if framing == "detail":  # zoom-in on a landmark region
        span = max(gx1 - gx0, gy1 - gy0) * rng.uniform(0.5, 0.7)
        c = landmarks[int(rng.choice(list(CLOTHES_TYPE_SLOTS[item.style.clothes_type])))] + rng.uniform(-0.1, 0.1, 2) * span
        return (c[0] - span / 2, c[1] - span / 2, c[0] + span / 2, c[1] + span / 2), 1.0
    if framing == "wide":
        return garment_box, rng.uniform(0.2, 0.4)
    return garment_box, None


def render_photo(
    item: ItemSpec, rng: np.random.Generator, kind: str, view: str = "front", mode: str | None = None, scene: str | None = None,
    framing: str | None = None, backgrounds: tuple[str, ...] = (), held_out: bool = False, draw_occluders: bool = True, degrade: bool = True,
    plain: bool = False,
) -> RenderedImage:
    """One photo of ``item`` with its labels. ``kind`` "shop" is a 256 x 256 studio-style shot, "consumer"
    a photo of 200-360 px a side with rotation, perspective, truncation, occluders and a rough camera.
    Unset ``mode`` / ``scene`` / ``framing`` are drawn (held-out ones when ``held_out``); ``plain``
    makes an in-style photo a plain catalogue shot (worn or on a mannequin, studio, garment framing)."""
    if view not in VIEW_CODES:
        raise ValueError(f"unknown view {view!r}; expected one of {sorted(VIEW_CODES)}")
    if plain and not held_out:  # a plain catalogue shot (see SizeSpec.catalogue_share)
        mode = mode or ("worn" if rng.random() < 0.8 else "mannequin")
        scene = scene or "studio"
        framing = framing or {"full": "full_body", "additional": "detail"}.get(view, "garment")
    mode, c_scene, c_framing = choose_presentation(rng, item, kind, view, held_out, bool(backgrounds), mode)
    scene, framing = scene or c_scene, framing or c_framing
    if scene == "photo" and not backgrounds:
        scene = "room"
    body = mode in BODY_MODES
    pose_view = {"front": "front", "full": "front", "additional": "front", "side": "side", "back": "back"}[view] if body else "front"
    turn = rng.random()  # consumer photos catch people turned away or seen from behind too
    if body and kind == "consumer" and turn < 0.22:
        pose_view = "side" if turn < 0.16 else "back"
    pose = sample_pose(rng, item, pose_view, mode)
    garment = build_garment(item, pose)
    look = item.look if kind == "shop" else _sample_look(rng, item.style.gender)  # consumer: a different person
    if kind == "shop":
        fw = fh = SHOP_SIZE
    else:
        fw, fh = (int(v) for v in rng.integers(CONSUMER_SIDE_RANGE[0], CONSUMER_SIDE_RANGE[1] + 1, 2))
    gbox = garment.bbox()
    (rx0, ry0, rx1, ry1), fill = _region(framing, gbox, rng, item, garment.landmarks)
    if mode == "clipped" and framing == "wide":  # the garment still large, its holders beside it
        fill = rng.uniform(0.35, 0.75)
    rw, rh = max(rx1 - rx0, 1.0), max(ry1 - ry0, 1.0)
    rc = np.array([(rx0 + rx1) / 2, (ry0 + ry1) / 2])
    if fill is None:  # the garment itself: studio shots leave a margin, consumer photos vary
        if kind == "shop":
            fill = 1.0 / rng.uniform(1.12, 1.28)
        else:
            fill = rng.uniform(0.3, 1.0) if rng.random() < 0.85 else rng.uniform(1.0, 1.35)  # some close-ups
    k = fill * min(fw / rw, fh / rh)
    flat = mode in LYING_MODES
    if kind == "shop":
        offset = rng.uniform(-0.03, 0.03, 2) * (fw, fh)
        rot = float(rng.uniform(-8, 8)) if flat else 0.0
        persp = 0.0
    else:
        offset = rng.normal(0, 0.08, 2) * (fw, fh)
        if rng.random() < 0.3:  # push part of the garment out of the frame
            offset += rng.choice([-1, 1], 2) * rng.uniform(0.15, 0.4, 2) * (fw, fh) * (rng.random(2) < 0.6)
        rot = float(np.clip(rng.normal(0, 12 if flat else 8), -25, 25))
        persp = float(rng.uniform(0.0, 0.09))
    a = math.radians(rot)
    rmat = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
    centre = np.array([fw / 2 - 0.5, fh / 2 - 0.5]) + offset
    affine = _sim(1.0, centre[0], centre[1]) @ rmat @ _sim(k, -rc[0] * k, -rc[1] * k)
    corners = _arr((0, 0), (fw - 1, 0), (fw - 1, fh - 1), (0, fh - 1))
    jitter = rng.uniform(-1, 1, (4, 2)) * persp * (fw, fh)
    h_total = _homography(corners, corners + jitter) @ affine
    light_angle = math.radians(rng.uniform(-160, -20))  # light from above, left or right
    light = (math.cos(light_angle), math.sin(light_angle), float(rng.uniform(0.15, 0.4)))
    if rot == 0.0 and persp == 0.0:  # a similarity: paint straight into the photo
        m, cw, ch = h_total, fw, fh
    else:  # canvas: the part of the figure frame that lands in the photo, at the photo's resolution
        pre = _apply(np.linalg.inv(h_total), corners)
        fx0, fy0 = np.maximum(pre.min(0), (-40, -40))
        fx1, fy1 = np.minimum(pre.max(0), (FIG_W + 40, FIG_H + 40))
        m = _sim(k, -fx0 * k, -fy0 * k)
        cw, ch = max(2, int(math.ceil((fx1 - fx0) * k)) + 2), max(2, int(math.ceil((fy1 - fy0) * k)) + 2)
    layers = _render_figure(item, garment, pose, m, (cw, ch), look, rng, mode, light)
    warp = h_total @ np.linalg.inv(m)  # canvas -> photo, applied to pixels and landmarks alike
    if m is h_total:
        premult, alpha, gcov = layers.rgb, layers.alpha, layers.garment
        front = layers.front
    else:

        def w8(arr, mode_="L"):
            return np.asarray(_warp(Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8), mode_), warp, (fw, fh)), np.float32) / 255.0

        premult = np.asarray(_warp(Image.fromarray(np.clip(layers.rgb + 0.5, 0, 255).astype(np.uint8), "RGB"), warp, (fw, fh)), np.float32)
        alpha, gcov = w8(layers.alpha), w8(layers.garment)
        front = None if layers.front is None else w8(layers.front)
    gmask = gcov > 0.5
    background = render_scene(scene, (fw, fh), rng, backgrounds)
    # A soft shadow on what is behind: strong on floors and walls close behind, faint outdoors.
    strength = {"flat_lay": 0.45, "bed_lay": 0.35, "hanger": 0.35, "clipped": 0.25, "hook": 0.4, "pegs": 0.2}.get(mode, 0.3 if scene == "studio" else 0.12)
    dist = (0.012 if flat else 0.03) * max(fw, fh) * rng.uniform(0.6, 1.4)
    shadow = soft_shadow(alpha, (-light[0] * dist, -light[1] * dist + (0.5 * dist if not flat else 0.0)), max(1.0, dist * 0.8))
    if body and pose_view != "back" and scene not in TOP_DOWN_SCENES:  # where the feet meet the floor
        shadow = np.maximum(shadow, _contact_shadow(h_total, k, (fw, fh)))
    background = background * (1.0 - strength * shadow)[..., None]
    img = premult + background * (1.0 - alpha[..., None])
    image = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    lm_frame = _apply(warp, layers.landmarks)
    gsize = max(gbox[2] - gbox[0], gbox[3] - gbox[1]) * k
    occluders = np.zeros((fh, fw), bool)
    if kind == "consumer":
        occluders = _draw_occluders(rng, item, lm_frame, gmask, (fw, fh), gsize, draw_occluders, image)
        if occluders.any():  # round, lit arms and bags instead of flat cut-outs
            shade = bevel(occluders.astype(np.float32), max(1.5, 0.02 * gsize), np.array(light[:2]), 0.25)
            lit = np.asarray(image, np.float32) * np.where(occluders, shade, 1.0)[..., None]
            image = Image.fromarray(np.clip(lit + 0.5, 0, 255).astype(np.uint8), "RGB")
    if front is not None:
        occluders = occluders | (front > 0.5)
    cam = sample_camera(rng, kind)
    if degrade:
        image = apply_camera(image, cam)
    radius = max(2.0, 0.025 * gsize)
    lm, vis = _finish_labels(lm_frame, layers.self_occluded, item.style.clothes_type, (fw, fh), occluders if occluders.any() else None, radius, gmask)
    present = len(CLOTHES_TYPE_SLOTS[item.style.clothes_type])
    n_trunc = int((vis == TRUNCATED).sum())
    if kind == "shop" and view != "additional":
        variation = {"front": 1, "full": 1, "back": 2, "side": 3}[view]
    elif n_trunc * 2 >= present:
        variation = 5
    elif n_trunc or view == "additional":
        variation = 4
    elif abs(rot) > 15 or persp > 0.06:
        variation = 3
    elif abs(rot) > 7 or persp > 0.03 or (vis == OCCLUDED).any():
        variation = 2
    else:
        variation = 1
    style = {"presentation": mode, "scene": scene, "palette": item.style.palette, "texture": item.style.texture, "framing": framing}
    return RenderedImage(image, lm, vis, _bbox_of(gmask), variation, gmask, occluders, cam.jpeg_quality, style)


def _contact_shadow(h_total: np.ndarray, k: float, size: tuple[int, int]) -> np.ndarray:
    """A soft dark ellipse under the feet of a standing figure (figure frame y ~ 700), in the photo."""
    w, h = size
    cx, cy = _apply(h_total, _arr((CX, 702)))[0]
    rx, ry = 95 * k, 14 * k
    out = np.zeros((h, w), np.float32)
    if not (-rx < cx < w + rx and -ry < cy < h + ry) or rx < 1:
        return out
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=200)
    return np.asarray(img.filter(ImageFilter.GaussianBlur(max(1.0, 8.0 * float(k)))), np.float32) / 255.0


def render_shop_image(item: ItemSpec, view: str, rng: np.random.Generator, **kwargs) -> RenderedImage:
    """A 256 x 256 catalogue photo of ``item`` (``view`` in VIEW_CODES); see :func:`render_photo`."""
    return render_photo(item, rng, "shop", view, **kwargs)


def render_consumer_image(item: ItemSpec, rng: np.random.Generator, draw_occluders: bool = True, degrade: bool = True, **kwargs) -> RenderedImage:
    """A consumer photo of ``item``; ``draw_occluders`` / ``degrade`` = False render the identical scene
    without occluders / without the camera's degradation (all random numbers are still drawn)."""
    return render_photo(item, rng, "consumer", "front", draw_occluders=draw_occluders, degrade=degrade, **kwargs)
