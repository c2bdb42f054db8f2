"""Garment geometry in the figure frame: polygons, bands, prints and landmarks of one garment.

The figure frame is 400 x 720 units (a standing person, x right, y down). :func:`build_garment`
builds an item's garment for a :class:`~.poses.Pose` (front, back or side view, sampled by
:func:`~.poses.sample_pose`); its landmarks come from the same template geometry, a few units inside the
garment edge, and ``left_*`` slots are always the point nearer the image's left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fashionnet.data.synthetic.items import Band, ItemSpec
from fashionnet.data.synthetic.poses import Pose
from fashionnet.landmarks import FULL_BODY, LOWER_BODY, NUM_LANDMARKS, UPPER_BODY

FIG_W, FIG_H = 400, 720
CX = 200.0
SHOULDER_Y = 128.0
ELBOW_FROM_ROOT = 128.0  # where a long sleeve bends, measured from its root (the body's elbow)
LANDMARK_INSET = 5.0  # landmarks sit this far inside the garment edge (figure units)


@dataclass
class _BandShape:
    owner: str
    band: Band
    polygon: np.ndarray | None = None  # (N, 2) figure coords
    line: np.ndarray | None = None  # polyline (N, 2) drawn ``band.width`` wide
    stripe: np.ndarray | None = None  # polyline of the sporty stripe, in the band's inner part


@dataclass
class Garment:
    """A garment posed in the figure frame: parts (back to front), landmarks and details."""

    parts: list[tuple[str, np.ndarray, float]]  # (name, polygon, brightness factor), drawing order
    landmarks: np.ndarray  # (8, 2); NaN for slots this clothes type lacks
    owners: list[str | None]  # part each landmark lies on
    bands: list[_BandShape]
    prints: list[tuple[str, np.ndarray, float, tuple[int, int, int]]]  # (shape, centre, size, colour)
    buttons: list[np.ndarray]
    seams: list[tuple[str, np.ndarray, float]]  # (owner, polyline, width) darker lines: jacket opening
    lapels: list[np.ndarray]
    print_part: str = "body"  # part the hem print is on

    def bbox(self) -> tuple[float, float, float, float]:
        pts = np.concatenate([p for _, p, _ in self.parts])
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _arr(*pts) -> np.ndarray:
    return np.array(pts, dtype=np.float64)


def _neckline(nh: float, depth: float, v: bool, n: int = 9) -> np.ndarray:
    t = np.linspace(-1.0, 1.0, n)
    dip = (1.0 - np.abs(t)) if v else (1.0 - t**2)
    return np.stack([CX + nh * t, SHOULDER_Y + depth * dip], axis=1)


def _limb(top_outer, top_inner, side: int, angle_deg: float, length: float, end_half: float, bend_deg: float = 0.0, upper: float = 0.0):
    """A sleeve or trouser leg hanging from an attachment edge: (polygon, end centre, axis, outer end, inner end).

    ``bend_deg`` bends it at ``upper`` units from the root (an elbow): the part below turns towards
    the body by that angle, and the end edge, its band and landmark follow the lower part."""
    a = math.radians(angle_deg)
    axis = np.array([side * math.sin(a), math.cos(a)])
    outward = np.array([side * math.cos(a), -math.sin(a)])  # perpendicular, pointing away from the body
    root = (np.asarray(top_outer) + np.asarray(top_inner)) / 2.0
    if bend_deg and 0 < upper < length - 10:
        return _bent_limb(top_outer, top_inner, root, side, a, math.radians(bend_deg), length, upper, end_half)
    end = root + axis * length
    end_outer, end_inner = end + outward * end_half, end - outward * end_half
    # Cloth bulges a little between seam ends (elbow, knee): the outline is curved, not straight.
    bulge = min(4.0, 0.03 * length)
    mid_outer = (np.asarray(top_outer) + end_outer) / 2 + outward * bulge
    mid_inner = (np.asarray(top_inner) + end_inner) / 2 - outward * bulge * 0.5
    polygon = np.stack([top_outer, mid_outer, end_outer, end_inner, mid_inner, top_inner])
    return polygon, end, axis, end_outer, end_inner


def _wobble(poly: np.ndarray, rng: np.random.Generator, step: float = 14.0, amplitude: float = 1.8) -> np.ndarray:
    """Cloth is never cut by a ruler: subdivide the outline and move it smoothly in and out by at
    most ``amplitude`` units (well under LANDMARK_INSET, so landmarks stay on the cloth)."""
    pts = []
    for p, q in zip(poly, np.roll(poly, -1, axis=0)):
        n = max(1, int(np.linalg.norm(q - p) // step))
        pts.append(p + (q - p) * (np.arange(n)[:, None] / n))
    pts = np.concatenate(pts)
    if len(pts) < 3:
        return poly
    k = np.arange(len(pts))
    phase, freq = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.15, 0.5, 2)
    offset = amplitude * 0.5 * (np.sin(k * freq[0] + phase[0]) + np.sin(k * freq[1] + phase[1]))
    tangent = np.roll(pts, -1, axis=0) - np.roll(pts, 1, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1) / np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-6)
    return pts + normal * offset[:, None]


def _bent_limb(top_outer, top_inner, root, side: int, a: float, bend: float, length: float, upper: float, end_half: float):
    """A limb bent at the elbow: the upper part along angle ``a``, the lower part along ``a - bend``."""
    half_top = float(np.linalg.norm(np.asarray(top_outer) - np.asarray(top_inner))) / 2.0
    axis1 = np.array([side * math.sin(a), math.cos(a)])
    a2 = a - bend
    axis2 = np.array([side * math.sin(a2), math.cos(a2)])
    out1 = np.array([side * math.cos(a), -math.sin(a)])
    out2 = np.array([side * math.cos(a2), -math.sin(a2)])
    elbow = root + axis1 * upper
    end = elbow + axis2 * (length - upper)
    half_elbow = half_top + (end_half - half_top) * upper / length
    mitre = (out1 + out2) / max(1e-6, float(np.linalg.norm(out1 + out2)))
    scale = half_elbow / max(0.5, float(np.dot(mitre, out1)))  # keep the sleeve width through the joint
    elbow_outer, elbow_inner = elbow + mitre * scale, elbow - mitre * min(scale, half_elbow * 1.4)
    end_outer, end_inner = end + out2 * end_half, end - out2 * end_half
    polygon = np.stack([top_outer, elbow_outer, end_outer, end_inner, elbow_inner, top_inner])
    return polygon, end, axis2, end_outer, end_inner


def _round_corners(poly: np.ndarray, radius: float = 4.0, steps: int = 3) -> np.ndarray:
    """Replace each corner by a short quadratic curve (cut at most ``radius`` or a third of an edge).

    A corner moves inward by at most ~0.35 * radius, well under LANDMARK_INSET, so landmarks placed
    inside the sharp template stay inside the smooth outline."""
    n = len(poly)
    out = []
    t = np.linspace(0.0, 1.0, steps + 2)[:, None]
    for i in range(n):
        prev_, cur, next_ = poly[i - 1], poly[i], poly[(i + 1) % n]
        a, b = prev_ - cur, next_ - cur
        la, lb = np.linalg.norm(a), np.linalg.norm(b)
        if la < 1e-6 or lb < 1e-6:
            out.append(cur[None])
            continue
        p0 = cur + a / la * min(radius, la / 3)
        p1 = cur + b / lb * min(radius, lb / 3)
        out.append((1 - t) ** 2 * p0 + 2 * (1 - t) * t * cur + t**2 * p1)
    return np.concatenate(out)


def _shape_waist(body: np.ndarray, dims: dict) -> np.ndarray:
    """A fitted top: the side seams curve in at the waist (points inserted between armpit and hem)."""
    out = [body[0]]
    armpit_y, hem_y = SHOULDER_Y + dims["armhole_depth"], dims["hem_y"]
    for p, q in zip(body[:-1], body[1:]):
        if abs(p[1] - armpit_y) < 1e-6 and abs(q[1] - hem_y) < 1e-6 or abs(q[1] - armpit_y) < 1e-6 and abs(p[1] - hem_y) < 1e-6:
            mid = (p + q) / 2
            mid[0] += (CX - mid[0]) / max(1.0, abs(CX - mid[0])) * min(6.0, 0.1 * dims["chest_half"])
            out.append(mid)
        out.append(q)
    return np.array(out)


STITCH_WIDTH = 0.9  # hem and cuff topstitching, a faint darker line


def _stitch(p_outer, p_inner, axis) -> np.ndarray:
    """Topstitching across a limb, 7 units up from its end edge."""
    return np.stack([p_outer, p_inner]) - axis * 7.0


def _edge_band(owner: str, band: Band, p_outer, p_inner, axis) -> _BandShape:
    """Band along an end edge (cuff, leg opening), reaching ``band.width`` up the limb."""
    ext = (p_outer - p_inner) * 0.08
    w = band.width
    polygon = np.stack([p_outer + ext + axis * 3, p_inner - ext + axis * 3, p_inner - ext - axis * w, p_outer + ext - axis * w])
    return _BandShape(owner, band, polygon=polygon, stripe=np.stack([p_outer + ext, p_inner - ext]) - axis * 0.72 * w)


def _straight_band(owner: str, band: Band, left, right, inward: float, outside: float, pad: float) -> _BandShape:
    """Band along a horizontal edge from ``left`` to ``right``; ``inward`` = +1 down, -1 up."""
    w = band.width
    polygon = np.stack(
        [left + (-pad, -inward * outside), right + (pad, -inward * outside), right + (pad, inward * w), left + (-pad, inward * w)]
    )
    return _BandShape(owner, band, polygon=polygon, stripe=np.stack([left + (-pad, inward * 0.72 * w), right + (pad, inward * 0.72 * w)]))


def build_garment(item: ItemSpec, pose: Pose) -> Garment:
    """Pose the item's template in the figure frame; landmarks come from the same geometry."""
    s, d, dims = item.style, item.details, item.style.dims
    back = pose.view == "back"
    lm = np.full((NUM_LANDMARKS, 2), np.nan)
    owners: list[str | None] = [None] * NUM_LANDMARKS
    parts: list[tuple[str, np.ndarray, float]] = []
    bands: list[_BandShape] = []
    prints, buttons, seams, lapels = [], [], [], []
    inset = LANDMARK_INSET
    ct = s.clothes_type
    print_part = "body"
    body: list[np.ndarray] = []  # outline of the main body part, built top to bottom
    limbs: list[tuple[str, np.ndarray]] = []

    if ct in (UPPER_BODY, FULL_BODY):
        nh, sh, ch = dims["neck_half"], dims["shoulder_half"], dims["chest_half"]
        depth = 8.0 if back else dims["neck_depth"]
        neck = _neckline(nh, depth, s.neck == "v" and not back)
        sleeveless = s.sleeve == "none"
        sy = SHOULDER_Y + (4.0 if sleeveless else 8.0)
        armpit_y = SHOULDER_Y + dims["armhole_depth"]
        shoulder = {side: _arr(CX + side * sh, sy) for side in (-1, 1)}
        armpit = {side: _arr(CX + side * ch, armpit_y) for side in (-1, 1)}
        # Left half of the outline is appended later in reverse; keep the right-hand path here.
        right_path = [neck[-1], shoulder[1]]
        if sleeveless:  # deep armhole from strap to armpit, hugging the strap first
            t = np.linspace(0.0, 1.0, 7)[1:-1]
            curve = {
                side: np.stack([shoulder[side][0] + (armpit[side][0] - shoulder[side][0]) * t**2, sy + (armpit_y - sy) * t], 1)
                for side in (-1, 1)
            }
            right_path += list(curve[1])
        right_path.append(armpit[1])
        for side, slot_c, slot_s in ((-1, 0, 2), (1, 1, 3)):
            lm[slot_c] = (CX + side * (nh + 3.0), SHOULDER_Y + inset)
            owners[slot_c] = "body"
            if sleeveless:
                lm[slot_s] = armpit[side] + (-side * inset, -2.0)
                owners[slot_s] = "body"
                if d.cuffs:  # armhole binding plays the cuff's part on sleeveless tops
                    path = np.concatenate([[shoulder[side]], curve[side], [armpit[side]]])
                    w = d.cuffs.width
                    bands.append(_BandShape("body", d.cuffs, line=path + (-side * w / 2, 0), stripe=path + (-side * 0.72 * w, 0)))
            else:
                angle = pose.arms[0 if side < 0 else 1]
                bend = pose.elbows[0 if side < 0 else 1] if s.sleeve == "long" else 0.0
                poly, end, axis, e_out, e_in = _limb(
                    shoulder[side], armpit[side], side, angle, dims["sleeve_len"], dims["cuff_half"], bend, ELBOW_FROM_ROOT
                )
                name = "sleeve_l" if side < 0 else "sleeve_r"
                limbs.append((name, poly))
                lm[slot_s] = end - axis * inset
                seams.append((name, _stitch(e_out, e_in, axis), STITCH_WIDTH))
                owners[slot_s] = name
                if d.cuffs:
                    bands.append(_edge_band(name, d.cuffs, e_out, e_in, axis))
        if d.collar:
            w = d.collar.width
            ext_l = neck[0] + (-9.0, 1.5)
            ext_r = neck[-1] + (9.0, 1.5)
            path = np.concatenate([[ext_l], neck, [ext_r]])
            bands.append(_BandShape("body", d.collar, line=path + (0, w / 2.0), stripe=path + (0, 0.72 * w)))
        if s.category == "Jackets" and not back:
            bottom = _arr(CX, SHOULDER_Y + depth)
            for side in (-1, 1):
                neck_end = neck[0 if side < 0 else -1]
                tip = _arr(CX + side * (nh + 16), SHOULDER_Y + depth * 0.5)
                lapels.append(np.stack([neck_end + (side * 1.0, 0), bottom + (side * 2.0, -3.0), tip]))
        top_outline = [*neck]
        seams.append(("body", neck + (0.0, 4.0), STITCH_WIDTH))  # neckband seam
        mid_right = right_path
    if ct == UPPER_BODY:
        hh, hy = dims["hem_half"], dims["hem_y"]
        hem_l, hem_r = _arr(CX - hh, hy), _arr(CX + hh, hy)
        outline = top_outline + mid_right[1:] + [hem_r, hem_l] + [p * (-1, 1) + (2 * CX, 0) for p in reversed(mid_right[1:])]
        body = outline
        lm[6], lm[7] = hem_l + (inset, -inset), hem_r + (-inset, -inset)
        seams.append(("body", np.stack([hem_l + (2.0, -7.0), hem_r + (-2.0, -7.0)]), STITCH_WIDTH))
        owners[6] = owners[7] = "body"
        if d.hem:
            bands.append(_straight_band("body", d.hem, hem_l, hem_r, inward=-1, outside=4, pad=6))
        print_at = hem_l + (26.0, -(d.hem.width if d.hem else 0.0) - 20.0)
        opening = (SHOULDER_Y + dims["neck_depth"], hy)
    elif ct == LOWER_BODY or (ct == FULL_BODY):
        wy, wh = dims["waist_y"], dims["waist_half"]
        waist_l, waist_r = _arr(CX - wh, wy), _arr(CX + wh, wy)
        if ct == LOWER_BODY:
            top_outline = [waist_l]
            mid_right = [waist_l, waist_r]
            lm[4], lm[5] = waist_l + (inset, inset), waist_r + (-inset, inset)
            if d.waist:
                bands.append(_straight_band("body", d.waist, waist_l, waist_r, inward=1, outside=4, pad=6))
        else:
            lm[4], lm[5] = waist_l + (inset, 0.0), waist_r + (-inset, 0.0)
            if d.waist:  # a belt across the waistline
                w = d.waist.width
                belt = np.stack([waist_l + (-8, -w / 2), waist_r + (8, -w / 2), waist_r + (8, w / 2), waist_l + (-8, w / 2)])
                # The stripe runs below the belt's centre line, clear of the waist landmarks on it.
                bands.append(_BandShape("body", d.waist, polygon=belt, stripe=np.stack([waist_l + (-8, 0.3 * w), waist_r + (8, 0.3 * w)])))
            mid_right = mid_right + [waist_r]
        owners[4] = owners[5] = "body"
        if s.category in ("Skirts", "Dresses"):
            length, flare = dims["length"], max(2.0, dims["flare"] + pose.flare)
            hy = wy + length
            hem_l = _arr(CX - wh - flare + pose.sway, hy)
            hem_r = _arr(CX + wh + flare + pose.sway, hy)
            hip_r = _arr(CX + wh + 6 + flare * 0.25 + pose.sway * 0.3, wy + min(55.0, length * 0.35))
            t = np.linspace(0, 1, 7)[1:-1]
            hem_curve = [hem_r + (hem_l - hem_r) * ti + (0, 6.0 * math.sin(math.pi * ti)) for ti in t]
            hip_l = hip_r * (-1, 1) + (2 * CX + 2 * pose.sway * 0.3, 0)
            right = mid_right[1:] + [hip_r, hem_r] + hem_curve + [hem_l, hip_l]
            left_back = [p * (-1, 1) + (2 * CX, 0) for p in reversed(mid_right[1:])]
            body = top_outline + right + left_back
            lm[6], lm[7] = hem_l + (inset + 1, -inset), hem_r + (-inset - 1, -inset)
            seams.append(("body", np.array([hem_r, *hem_curve, hem_l]) + (0.0, -8.0), STITCH_WIDTH))
            owners[6] = owners[7] = "body"
            if d.hem:
                bands.append(_straight_band("body", d.hem, hem_l, hem_r, inward=-1, outside=12, pad=8))
            print_at = hem_l + (30.0 + flare * 0.15, -(d.hem.width if d.hem else 0.0) - 22.0)
        else:  # trousers, shorts, jumpsuits: a seat and two legs
            drop = dims["drop"]
            crotch = _arr(CX, wy + drop)
            hip = {side: _arr(CX + side * (wh + 4), wy + drop * 0.6) for side in (-1, 1)}
            right = mid_right[1:] + [hip[1], crotch, hip[-1]]
            left_back = [p * (-1, 1) + (2 * CX, 0) for p in reversed(mid_right[1:])]
            body = top_outline + right + left_back
            for side, slot in ((-1, 6), (1, 7)):
                angle = pose.legs[0 if side < 0 else 1]
                top_inner = crotch + (side * 1.0, 0)
                poly, end, axis, e_out, e_in = _limb(hip[side], top_inner, side, angle, dims["leg_len"] + drop * 0.2, dims["open_half"])
                name = "leg_l" if side < 0 else "leg_r"
                limbs.append((name, poly))
                lm[slot] = end - axis * inset
                seams.append((name, _stitch(e_out, e_in, axis), STITCH_WIDTH))
                owners[slot] = name
                if d.hem:
                    bands.append(_edge_band(name, d.hem, e_out, e_in, axis))
                if side < 0:
                    print_part = name
                    print_at = end - axis * ((d.hem.width if d.hem else 0.0) + 20.0)
        opening = (SHOULDER_Y + dims.get("neck_depth", 0.0), dims["waist_y"] + dims.get("length", dims.get("drop", 0.0)))
    if s.collar == "hood" and ct != LOWER_BODY:  # a hood lying behind the neck, drawn before the body
        nh = dims["neck_half"]
        # A folded-down hood: a thick roll round the back of the neck, low and wide (neck and chin visible).
        half = [(nh + 22, SHOULDER_Y + 16), (nh + 18, SHOULDER_Y - 8), (nh + 6, SHOULDER_Y - 17), (nh - 6, SHOULDER_Y - 15), (16, SHOULDER_Y - 4)]
        hood = [(CX - x, y) for x, y in half] + [(CX + x, y) for x, y in reversed(half)]
        parts.append(("hood", _round_corners(np.array(hood, np.float64), 10.0), 0.82))
    body = np.array(body, np.float64)
    if ct == UPPER_BODY and s.gender == "WOMEN" and s.category != "Jackets":
        body = _shape_waist(body, dims)
    wobble = np.random.default_rng(int(abs(pose.sway) * 1e6 + abs(pose.flare) * 1e3) % (1 << 32))
    parts.append(("body", _wobble(_round_corners(body), wobble), 1.0))

    if not back:
        if d.print_shape:
            prints.append((d.print_shape, np.asarray(print_at), d.print_size, d.print_colour))
        if s.category == "Jackets":
            seams.append(("body", _arr((CX, opening[0]), (CX, opening[1] - 1)), 2.5))
        if s.buttons and ct != LOWER_BODY:
            top, bottom = opening[0] + 14, min(opening[1] - 20, opening[0] + 150)
            n = max(3, int((bottom - top) // 32) + 1)
            buttons = [_arr(CX - (5.0 if s.category == "Jackets" else 0.0), y) for y in np.linspace(top, bottom, n)]
    # Limbs in front of the body on front/back views; a side view puts the far limb behind.
    for name, poly in limbs:
        parts.append((name, _wobble(_round_corners(poly, 3.0), wobble), 0.94))
    garment = Garment(parts, lm, owners, bands, prints, buttons, seams, lapels, print_part)
    if pose.view == "side":
        garment = _to_side_view(garment, pose)
    return garment


def _to_side_view(g: Garment, pose: Pose) -> Garment:
    """Foreshorten the garment horizontally and move the far limbs behind the body."""
    c, near = pose.compress, pose.near

    def squeeze(p):
        p = np.array(p, dtype=np.float64)
        p[..., 0] = CX + (p[..., 0] - CX) * c
        return p

    far_names, near_names, shift = [], [], {}
    for name, poly, _ in g.parts:
        if name in ("body", "hood"):
            continue
        side = -1 if name.endswith("_l") else 1
        # The far limb slides in behind the torso, the near one towards the body's side line.
        if side == near:
            near_names.append(name)
            shift[name] = -near * 0.35 * abs(float(poly[:, 0].mean()) - CX) * c
        else:
            far_names.append(name)
            shift[name] = near * 0.75 * abs(float(poly[:, 0].mean()) - CX) * c

    def move(name, p):
        p = squeeze(p)
        if name in shift:
            p = p + (shift[name], 0.0)
        return p

    order = [n for n in far_names] + [n for n, _, _ in g.parts if n == "hood"] + ["body"] + [n for n in near_names]
    by_name = {n: (p, b) for n, p, b in g.parts}
    parts = [(n, move(n, by_name[n][0]), by_name[n][1] * (0.85 if n in far_names else 1.0)) for n in order]
    lm = g.landmarks.copy()
    for j in range(NUM_LANDMARKS):
        if g.owners[j] is not None:
            lm[j] = move(g.owners[j], lm[j])
    bands = [
        _BandShape(b.owner, b.band, *(None if v is None else move(b.owner, v) for v in (b.polygon, b.line, b.stripe)))
        for b in g.bands
    ]
    prints = [(shape, move(g.print_part, centre), size * c, col) for shape, centre, size, col in g.prints]
    out = Garment(
        parts,
        lm,
        list(g.owners),
        bands,
        prints,
        [squeeze(b) for b in g.buttons],
        [(o, move(o, p), w) for o, p, w in g.seams],
        [squeeze(p) for p in g.lapels],
        g.print_part,
    )
    _assign_slots_by_image_side(out)
    return out


def _assign_slots_by_image_side(g: Garment) -> None:
    """Keep 'left' = image left after foreshortening: swap an L/R pair whose order flipped."""
    for a, b in ((0, 1), (2, 3), (4, 5), (6, 7)):
        if not np.isnan(g.landmarks[a, 0]) and g.landmarks[a, 0] > g.landmarks[b, 0]:
            g.landmarks[[a, b]] = g.landmarks[[b, a]]
            g.owners[a], g.owners[b] = g.owners[b], g.owners[a]
