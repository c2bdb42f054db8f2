"""Photos added to an index that do not look like garment photos (fashionnet.calibration.ood).

Nothing is refused by default: a real garment photo unlike the training photos is still a product,
so each added photo's flag is reported and stored with its row (``unfamiliar``, ``unfamiliarity``),
and searches may leave flagged rows out. ``reject_unfamiliar`` (``indexer add --reject-unfamiliar``,
``indexer serve --reject-unfamiliar``, the API's ``reject_unfamiliar`` field) refuses them instead,
naming each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Flagged:
    path: str
    unfamiliarity: float
    threshold: Optional[float]

    @property
    def problem(self) -> str:
        against = f" above the threshold of {self.threshold:.2f}" if self.threshold is not None else ""
        return f"does not look like a garment photo (unfamiliarity {self.unfamiliarity:.2f}{against}; garment photos score about 1)"


def flagged_photos(embedded, paths: Sequence[str], threshold: Optional[float]) -> list[Flagged]:
    """The photos of an :class:`indexer.embedding.EmbeddedImages` the model flagged, in order;
    ``paths`` are the ones it was asked to embed (its rows hold positions into them)."""
    rows = embedded.rows
    if "unfamiliar" not in rows or len(rows) == 0:
        return []
    flags = rows["unfamiliar"].astype("boolean").fillna(False).to_numpy(bool)
    return [Flagged(str(paths[int(pos)]), float(score), threshold)
            for pos, score in zip(rows["position"][flags], rows["unfamiliarity"][flags])]


def without_flagged(embedded):
    """``embedded`` less its flagged photos (for ``reject_unfamiliar``)."""
    rows = embedded.rows
    if "unfamiliar" not in rows:
        return embedded
    keep = ~rows["unfamiliar"].astype("boolean").fillna(False).to_numpy(bool)
    return replace(embedded, embeddings=np.ascontiguousarray(embedded.embeddings[keep]), rows=rows[keep].reset_index(drop=True))


def refusals(flagged: Sequence[Flagged]) -> list[tuple[str, str]]:
    """(path, reason) of each flagged photo refused."""
    return [(f.path, f"refused: it {f.problem}") for f in flagged]
