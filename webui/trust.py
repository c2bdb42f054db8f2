"""What the page says about how far an answer can be trusted: a photo that does not look like a
garment photo, a catalogue with no close match for it (indexer.close_match), and a result's score
split into the parts that make it. Text only, no Streamlit, so each can be tested alone."""

from __future__ import annotations

import dataclasses
from typing import Optional

import pandas as pd

from fashionnet.inference.prediction import Landmark, Prediction
from indexer.search import QueryResult

# Checkpoints without an out-of-distribution density (fashionnet.calibration.ood) fall back to a simpler rule:
# "no clothing" when both signals are near chance. No landmark is visible with this probability ...
NO_CLOTHING_LANDMARK_PROB = 0.05
# ... and the top category is barely above a uniform guess (this factor x 1 / number of categories).
NO_CLOTHING_CATEGORY_FACTOR = 1.2
# Parts shown in this order; the names score_parts gives (fashionnet.inference.predictor).
PART_NAMES = ("global", "appearance", "local", "bias")
# Parts that miss the index's score by more than this were not computed from what the index holds.
PARTS_TOLERANCE = 0.01


def no_clothing_found(prediction: Prediction, num_categories: int) -> bool:
    """True when the photo looks unlike the garment photos the model was trained on (the
    checkpoint's calibrated out-of-distribution check). For checkpoints without one: when the
    model sees neither a landmark nor a category, both near chance. The page only warns: a real
    garment photo unlike the training photos is still searched."""
    if prediction.unfamiliar is not None:
        return prediction.unfamiliar
    best_landmark = max((lm.visible_prob for lm in prediction.landmarks), default=0.0)
    if best_landmark >= NO_CLOTHING_LANDMARK_PROB:
        return False
    if num_categories and prediction.category is not None:
        return prediction.category_prob < NO_CLOTHING_CATEGORY_FACTOR / num_categories
    return True


def not_a_garment_lead(name: str, prediction: Prediction) -> str:
    """The page's first words for a flagged photo."""
    score = prediction.unfamiliarity
    measured = f" (unfamiliarity {score:.2f}; the garment photos it was trained on score about 1)" if score is not None else ""
    return (f"**This does not look like a garment photo.** **{name}** is unlike the photos this model was trained on{measured}, "
            "so it names no category, its landmarks are guesses, and the items below are only the least unlike it.")


def all_unsure(landmarks: list[Landmark]) -> list[Landmark]:
    """``landmarks`` drawn and listed as guesses: a photo without a garment has no sure point."""
    return [dataclasses.replace(lm, confidence=0.0) for lm in landmarks]


def no_close_match_note(result: QueryResult) -> Optional[str]:
    """The page's note when the catalogue holds nothing close to the photo (None otherwise, and for a
    photo unlike a garment photo, which the page's lead already says has no match)."""
    close = result.close_match
    if result.match is not False or close is None or result.matches.empty or result.prediction.unfamiliar:
        return None
    best = float(result.matches["score"].max())
    return (f"**No close match in this catalogue.** The best score is {best:.3f}; {close.recall:.0%} of photos of items "
            f"this catalogue holds score {close.min_score:.3f} or more. The nearest items are listed below.")


def matches_heading(result: QueryResult) -> str:
    n = len(result.matches)
    return f"Nearest {n} shop items" if result.match is False else f"Top {n} shop matches"


def parts_caption(row: dict) -> Optional[str]:
    """A result's score as the sum of the parts its model has, e.g. "appearance 0.268 + local 0.480 +
    bias -0.018 = 0.729"; None when the row was not explained."""
    parts = [(name, float(row[f"score_{name}"])) for name in PART_NAMES if pd.notna(row.get(f"score_{name}"))]
    if not parts:
        return None
    total = sum(value for _, value in parts)
    text = " + ".join(f"{name} {value:.3f}" for name, value in parts) + f" = {total:.3f}"
    if abs(total - float(row["score"])) > PARTS_TOLERANCE:
        text += (f" (the index scored it {float(row['score']):.3f}: the photo or the model changed since it was indexed, "
                 "or the index keeps compressed vectors)")
    return text


def category_line(prediction: Prediction) -> str:
    """The page's category line: the name when the model is sure of it, else "not sure" with the
    likeliest few, so that a wrong guess is not printed as an answer."""
    if prediction.category_sure:
        return f"**Category:** {prediction.category} ({prediction.category_prob:.0%})"
    likely = " or ".join(f"{name} ({prob:.0%})" for name, prob in prediction.likely_categories())
    return f"**Category:** not sure; most likely {likely}"


def landmarks_note(prediction: Prediction) -> Optional[str]:
    """Words for a garment whose landmarks the model cannot place (``Prediction.landmarks_placed``),
    else for the few unsure points; None when every point is sure."""
    present = prediction.present_landmarks
    unsure = [lm for lm in present if lm.low_confidence]
    if prediction.landmarks_placed is False:
        return (f"**The model cannot place this garment's landmarks:** {len(unsure)} of {len(present)} points are unsure "
                "and drawn as grey rings with \"?\": guesses.")
    if unsure:
        return (f"The model is unsure of {len(unsure)} of {len(present)} landmarks "
                f"({', '.join(lm.name.replace('_', ' ') for lm in unsure)}): their places are guesses.")
    return None
