"""How a garment is posed in one photo: limb angles, elbow bends, hem sway and side-view
foreshortening, drawn to suit its presentation (worn, hung, laid flat)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fashionnet.data.synthetic.items import ItemSpec

LYING_MODES = ("flat_lay", "bed_lay")  # presentations where the garment lies on a surface, seen from above


@dataclass(frozen=True)
class Pose:
    """Per-image pose of model and garment (non-rigid: limb angles, hem sway, flare)."""

    view: str  # front / back / side
    near: int = 1  # side view: +1 the model faces image right (right limbs in front), -1 left
    compress: float = 1.0  # side view: horizontal foreshortening of the body
    arms: tuple[float, float] = (15.0, 15.0)  # degrees from vertical, image-left then image-right
    legs: tuple[float, float] = (3.0, 3.0)
    sway: float = 0.0  # horizontal shift of skirt hems
    flare: float = 0.0  # extra skirt flare
    arm_style: str = "down"  # worn: down / hips / walk (how the body's arms are drawn)
    elbows: tuple[float, float] = (0.0, 0.0)  # elbow bend in degrees (forearm turned towards the body)


def sample_pose(rng: np.random.Generator, item: ItemSpec, view: str, mode: str = "worn") -> Pose:
    """A random pose for one photo (limb angles, hem sway, side-view foreshortening).

    ``mode`` is the presentation: a worn garment follows the body (arms down, hands on hips or
    walking); a hung one has its sleeves dropping nearly straight; a flat-lay spreads them out.
    """
    s = item.style
    short, long_ = s.sleeve == "short", s.sleeve == "long"
    arm_style = "down"
    if mode in ("worn", "mannequin"):
        u = rng.random()
        if mode == "worn" and u < 0.25:
            arm_style = "hips"  # elbows out, hands back on the hips
            arms = rng.uniform(30, 48, 2)
        elif mode == "worn" and u < 0.5:
            arm_style = "walk"  # arms swing, legs stride
            arms = rng.uniform(22, 48, 2) if short else rng.uniform(4, 24, 2) if long_ else rng.uniform(6, 22, 2)
        else:
            arms = rng.uniform(22, 44, 2) if short else rng.uniform(6, 22, 2) if long_ else rng.uniform(8, 20, 2)
    elif mode in LYING_MODES:  # sleeves spread on the surface
        arms = rng.uniform(34, 56, 2) if short else rng.uniform(24, 62, 2) if long_ else rng.uniform(10, 20, 2)
    else:  # hanger, hook, pegs: sleeves hang down
        arms = rng.uniform(18, 30, 2) if short else rng.uniform(3, 10, 2) if long_ else rng.uniform(8, 14, 2)
    # Elbows: hands on hips turn the forearm back to the hip; relaxed arms bend a little; flat-lays
    # sometimes fold a sleeve across the body; hung garments hang straight.
    if arm_style == "hips":
        elbows = arms + rng.uniform(55, 80, 2)
    elif mode == "worn":
        elbows = rng.uniform(0, 35 if arm_style == "walk" else 25, 2)
    elif mode in LYING_MODES:
        elbows = rng.uniform(0, 70, 2) * (rng.random(2) < 0.4)
    else:
        elbows = rng.uniform(0, 8, 2)
    if arm_style == "walk":
        legs = rng.uniform(-3, 12, 2) if s.category != "Shorts" else rng.uniform(-2, 8, 2)
    elif mode in LYING_MODES:
        legs = rng.uniform(3, 9, 2)
    elif mode in ("worn", "mannequin"):
        legs = rng.uniform(0, 8, 2) if s.category != "Shorts" else rng.uniform(0, 5, 2)
    else:
        legs = rng.uniform(0, 2.5, 2)
    return Pose(
        view=view,
        near=int(rng.choice([-1, 1])),
        compress=float(rng.uniform(0.55, 0.7)),
        arms=(float(arms[0]), float(arms[1])),
        legs=(float(legs[0]), float(legs[1])),
        sway=float(rng.uniform(-8, 8)) if mode in ("worn", "mannequin") else float(rng.uniform(-3, 3)),
        flare=float(rng.uniform(-6, 6)) if mode not in LYING_MODES else float(rng.uniform(0, 12)),
        arm_style=arm_style,
        elbows=(float(elbows[0]), float(elbows[1])),
    )
