"""An index's close-match score: the best score under which a photo's item is taken not to be in
this catalogue, so that searches can say "no close match" instead of filling a page with strangers.

A search always returns its k nearest items. The score its best one needs depends on the model and
on the catalogue: a larger catalogue, or one full of look-alikes, gives a photo of a missing item a
higher best score. So the score is fitted per index, when it is built and after each add, from the
checkpoint's held-out photos (fashionnet.calibration.close_match), none of whose items is in the
catalogue:

- a held-out photo's best score here is what a photo of an item the catalogue lacks gets;
- had its item been here, its best score would be the larger of that and its positive score
  (against its own item's shop photos);
- the close-match score is the one that MATCH_RECALL of these "item here" scores reach (the
  split-conformal rank, so the share holds for new photos like the held-out ones).

Recorded beside it: how many held-out photos would reach it from this catalogue's other items alone
(``others_above``), i.e. how often a photo of a look-alike the catalogue lacks is called a match.
Figures and the choices behind this: docs/experiments/close_match.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from fashionnet.calibration.close_match import MatchReference

# Photos of items the catalogue holds that are called a match. Missing one hides the right item
# under "no close match"; a false one the user sees at a glance in the results.
MATCH_RECALL = 0.9
EXTRA_KEY = "close_match"  # where the index's manifest (extra) records it


@dataclass(frozen=True)
class CloseMatch:
    min_score: float  # a best score from here on is a close match
    recall: float  # the share of photos of items in the catalogue that reach it
    held_out: int  # held-out photos it was fitted on
    others_above: float  # share of them whose best score among the catalogue's other items reaches it

    def to_extra(self) -> dict:
        return {"min_score": float(self.min_score), "recall": float(self.recall), "held_out": int(self.held_out),
                "others_above": float(self.others_above)}

    @classmethod
    def from_extra(cls, extra: Optional[dict]) -> Optional["CloseMatch"]:
        """The close match an index's manifest records, None when it records none (or a broken one)."""
        value = (extra or {}).get(EXTRA_KEY)
        try:
            return cls(float(value["min_score"]), float(value["recall"]), int(value["held_out"]), float(value["others_above"]))
        except (TypeError, KeyError, ValueError):
            return None

    def describe(self) -> str:
        return (f"close match from score {self.min_score:.3f}: {self.recall:.0%} of photos of items in this catalogue reach it; "
                f"of {self.held_out} held-out photos of items it lacks, {self.others_above:.0%} reach it with another item")


def conformal_rank(n: int, recall: float) -> int:
    """The 1-based rank, counted from the lowest, of the score that at least ``recall`` of new photos
    reach, given ``n`` exchangeable ones (0: too few photos to promise it)."""
    return int(math.floor((n + 1) * (1.0 - recall) + 1e-9))


def fit_close_match(index, reference: MatchReference, recall: float = MATCH_RECALL) -> Optional[CloseMatch]:
    """The close match of ``index`` (an EmbeddingIndex of cosine scores) from ``reference``; None
    when the index is empty or ranks by distance, its photos were embedded with flip averaging and
    the reference's without (or the other way), or the reference has too few photos for ``recall``."""
    if not 0 < recall < 1:
        raise ValueError(f"the close-match recall must be between 0 and 1, got {recall}")
    if index.ntotal == 0 or index.metric != "ip" or reference.embeddings.shape[1] != index.dim:
        return None
    # held-out photos embedded one way say nothing of scores between photos embedded the other way
    embedded_with_flips = (getattr(index, "extra", None) or {}).get("flip_average")
    if embedded_with_flips is not None and bool(embedded_with_flips) != bool(reference.flip_average):
        return None
    rank = conformal_rank(len(reference), recall)
    if rank < 1:
        return None
    scores, ids = index.nearest(reference.embeddings, 1)
    others = np.where(ids[:, 0] >= 0, scores[:, 0], -np.inf).astype(np.float64)  # none of their items is here
    here = np.maximum(reference.positives, others)
    min_score = float(np.sort(here)[rank - 1])
    return CloseMatch(min_score, recall, len(reference), float(np.mean(others >= min_score)))


def match_flags(scores, close: Optional[CloseMatch], unfamiliar: Optional[bool]) -> list[Optional[bool]]:
    """Per result: a close match? None where the index has no close-match score. A photo flagged
    unfamiliar is never one: its scores were not calibrated on anything like it."""
    if close is None:
        return [None] * len(scores)
    return [bool(s >= close.min_score) and not unfamiliar for s in np.asarray(scores, dtype=np.float64)]


def with_match(matches: pd.DataFrame, close: Optional[CloseMatch], unfamiliar: Optional[bool]) -> tuple[pd.DataFrame, Optional[bool]]:
    """``matches`` with a ``match`` column, and whether any of them is a close match (None: unknown)."""
    flags = match_flags(matches["score"] if "score" in matches else [], close, unfamiliar)
    matches = matches.assign(match=pd.array(flags, dtype="boolean"))
    return matches, (None if close is None else any(bool(f) for f in flags))


class CloseMatchOf:
    """The close match of whichever index a SearchEngine holds now: the one its manifest records,
    else one fitted from the model's reference when first asked (an index built before indexes
    recorded it), remembered per index object."""

    def __init__(self, reference: Optional[MatchReference]):
        self.reference = reference
        self._fitted: tuple[object, Optional[CloseMatch]] = (None, None)

    def __call__(self, index) -> Optional[CloseMatch]:
        recorded = CloseMatch.from_extra(index.extra)
        if recorded is not None or self.reference is None:
            return recorded
        seen, close = self._fitted  # one tuple, read and written whole: threads may fit it twice, alike
        if seen is not index:
            close = fit_close_match(index, self.reference)
            self._fitted = (index, close)
        return close


def reference_of_index(directory) -> Optional[MatchReference]:
    """The held-out reference in the checkpoint an index was built with (where its manifest says),
    or None where that checkpoint is not found, holds none, or is another model's."""
    from pathlib import Path

    from fashionnet.models.checkpoint import CheckpointError, load_checkpoint
    from indexer import layout
    from indexer.portable import find_checkpoint

    manifest = layout.read_manifest(Path(directory))
    try:
        state = load_checkpoint(find_checkpoint(Path(directory), manifest.get("extra") or {}, None)).get("close_match")
        reference = MatchReference.from_state(state) if state else None
    except (ValueError, OSError, CheckpointError):
        return None
    return reference if reference is not None and reference.model_checksum == manifest.get("model_checksum") else None


def record_close_match(index, reference: Optional[MatchReference], recall: Optional[float] = None) -> Optional[CloseMatch]:
    """Fit the close match of ``index`` and record it in its manifest (extra), at ``recall`` (default:
    the one it recorded before, else MATCH_RECALL). Without a reference the record stays as it was."""
    before = CloseMatch.from_extra(index.extra)
    if reference is None:
        return before
    recall = recall if recall is not None else (before.recall if before is not None else MATCH_RECALL)
    close = fit_close_match(index, reference, recall)
    extra = {key: value for key, value in (index.extra or {}).items() if key != EXTRA_KEY}
    if close is not None:
        extra[EXTRA_KEY] = close.to_extra()
    index.extra = extra
    return close
