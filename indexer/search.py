"""A loaded index plus the model that built it: photo in, ranked shop items out.

The web page, ``indexer query`` and the HTTP API all use :class:`SearchEngine`, so they answer
alike. Filters (clothes type, category, attributes) restrict the search inside the index (FAISS: the
allowed ids; Milvus: an expression on the collection's scalar fields); each reads the gallery's own
label where it has one (the shop's catalogue metadata or an annotation, :mod:`indexer.catalogue_metadata`)
and the model's prediction where it does not (:mod:`indexer.gallery_labels`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from fashionnet.data.images import ImageInput
from fashionnet.device import serving_threads, set_threads
from fashionnet.inference.prediction import Prediction
from fashionnet.inference.predictor import Predictor
from indexer import layout
from indexer.backends import AnyIndex, open_index
from indexer.close_match import CloseMatch, CloseMatchOf, with_match
from indexer.compatibility import check_index_fits_model
from indexer.filter_values import CLOTHES_TYPES, UnknownFilterValue, check_known, parse_clothes_type
from indexer.gallery_labels import familiar_mask, gallery_attributes, gallery_column  # noqa: F401 (also imported from here)
from indexer.milvus_store import MilvusIndex
from indexer.portable import ImageLocator, find_checkpoint
from indexer.store import EmbeddingIndex



@dataclass(frozen=True)
class Filters:
    """Which gallery images may answer: all given conditions must hold."""

    clothes_type: Optional[int] = None  # 1 upper, 2 lower, 3 full body
    category: Optional[str] = None
    attributes: tuple[str, ...] = field(default_factory=tuple)  # every one must be among the image's attributes
    familiar_only: bool = False  # leave out the photos flagged unfamiliar when they were added

    @property
    def empty(self) -> bool:
        return self.clothes_type is None and not self.category and not self.attributes and not self.familiar_only


@dataclass
class QueryResult:
    prediction: Prediction
    matches: pd.DataFrame  # rank, score, match, id, image_path, item_id, category, clothes_type, ...
    match: Optional[bool] = None  # is any result a close match (indexer.close_match)? None: the index cannot tell
    close_match: Optional[CloseMatch] = None

# Item results search this many images per item asked for; a catalogue photographs an item a few times.
ITEM_OVERFETCH = 4


class SearchEngine:
    def __init__(self, index: AnyIndex, predictor: Predictor, index_dir: Optional[str | os.PathLike] = None,
                 image_root: Optional[str | os.PathLike] = None):
        check_index_fits_model(index.info().get("path"), index.built_by, model_checksum=predictor.model_checksum,
                               embedding_dim=predictor.embedding_dim, flip_average=predictor.flip_average)
        self.index = index
        self.predictor = predictor
        self.index_dir = Path(index_dir).absolute() if index_dir is not None else None
        self.images = ImageLocator(self.index_dir, index.extra or {}, image_root)
        self._manifest_version = self._saved_version()
        self._swap = threading.Lock()
        # filters -> (the index they were read from, its allowed ids); the server's threads share it
        self._allowed: dict[Filters, tuple[EmbeddingIndex, np.ndarray]] = {}
        self._allowed_lock = threading.Lock()
        self._known: tuple[Optional[AnyIndex], dict] = (None, {})  # known_values() of one index
        self._close_match = CloseMatchOf(predictor.match_reference)

    @classmethod
    def open(cls, index_dir: str | os.PathLike, checkpoint: Optional[str] = None, device: str = "auto",
             threads: Optional[int] = None, image_root: Optional[str | os.PathLike] = None, runtime: str = "auto",
             backend: Optional[str] = None, milvus_uri: Optional[str] = None) -> "SearchEngine":
        """Load the index and its model; refuses a checkpoint that did not build the index.
        The index's vectors are where its manifest says (FAISS files or a Milvus collection,
        :mod:`indexer.backends`); ``backend`` only checks that, ``milvus_uri`` reaches a Milvus
        index's collection elsewhere than the URI it recorded.
        ``checkpoint`` and ``image_root`` override where the model and the gallery images are
        looked for (an index moved to another machine; :mod:`indexer.portable`). ``runtime``: "onnx"
        or "openvino" runs the model with ONNX Runtime or OpenVINO on the CPU (exported once per
        model; falls back with a warning), "auto" (default) takes the fastest one installed on a
        CPU (fashionnet.runtimes.selection.resolve_runtime), else torch.

        Sets this process's torch and FAISS CPU threads for serving: ``threads``, else
        $FASHIONNET_THREADS, else 1 per query, which keeps latency steady when other processes
        load the CPU and lets concurrent queries share the cores (fashionnet.device).
        """
        set_threads(threads if threads is not None else serving_threads())
        index = open_index(index_dir, device=device, backend=backend, milvus_uri=milvus_uri)
        if isinstance(index, MilvusIndex):
            index.connect()  # a wrong collection or a Milvus out of reach is said now, not at the first query
        predictor = Predictor.from_checkpoint(default_checkpoint(index, checkpoint), device=device, runtime=runtime,
                                              flip_average=index.flip_average)
        return cls(index, predictor, index_dir, image_root)

    # ------------------------------------------------------------------------- searching

    def query(self, image: ImageInput, k: int = 20, clothes_type: Optional[int | str] = None, nprobe: Optional[int] = None,
              category: Optional[str] = None, attributes: Sequence[str] = (), per_item: bool = True, offset: int = 0,
              min_score: Optional[float] = None, exclude_unfamiliar: bool = False) -> QueryResult:
        """Top-k gallery matches for one photo, optionally filtered (see :class:`Filters`): k items,
        each at its best-matching image, or with ``per_item=False`` the k nearest images; ``offset``
        skips that many first (a later page), ``min_score`` leaves out results scored below it,
        ``exclude_unfamiliar`` the gallery photos flagged unfamiliar. Each result says whether it is
        a close match (:attr:`close_match`). A filter value neither the gallery nor the model knows
        raises UnknownFilterValue (a ValueError)."""
        filters = Filters(parse_clothes_type(clothes_type), category or None, tuple(attributes), exclude_unfamiliar)
        self.check_filters(filters)
        prediction = self.predictor.predict(image)
        close = self.close_match
        rows = self.search_embedding(prediction.embedding, k, filters, nprobe, per_item, offset, min_score)
        matches, match = with_match(rows, close, prediction.unfamiliar)
        return QueryResult(prediction, matches, match, close)

    @property
    def close_match(self) -> Optional[CloseMatch]:
        """The best score from which a result is a close match in this catalogue (None: unknown)."""
        return self._close_match(self.index)

    def search_embedding(self, embedding, k: int = 20, filters: Optional[Filters | int] = None, nprobe: Optional[int] = None,
                         per_item: bool = False, offset: int = 0, min_score: Optional[float] = None) -> pd.DataFrame:
        """Top-k rows for an embedding. ``filters`` may also be a bare clothes type (1, 2, 3).
        ``per_item``: k distinct items, each at its best view (:func:`first_view_of_each_item`).
        ``offset``: the rows ranked offset+1 to offset+k. ``min_score``: only rows scored at least this."""
        if offset < 0:
            raise ValueError(f"offset must be 0 or more, got {offset}")
        if min_score is not None and self.index.metric != "ip":
            raise ValueError(f"min_score needs cosine scores; this index ranks by {self.index.metric} distance")
        if isinstance(filters, (int, np.integer)):
            filters = Filters(clothes_type=int(filters))
        index = self.index  # one consistent index even if a refresh swaps it meanwhile
        restriction = {}
        if filters is not None and not filters.empty:
            restriction = self._restriction_of(filters, index)

        def nearest(n: int) -> tuple[np.ndarray, np.ndarray]:
            scores, ids = index.nearest(embedding[None, :], n, nprobe=nprobe, **restriction)
            found = ids[0] >= 0
            return scores[0][found], ids[0][found]

        def item_ids(ids: np.ndarray) -> np.ndarray:
            rows = index.metadata_of(ids, columns=("item_id",))
            return rows["item_id"].to_numpy(object) if "item_id" in rows else np.full(len(ids), None, object)

        wanted = k + offset  # the rows before the page are searched too: ranks are the same on every page
        scores, ids = first_view_of_each_item(nearest, item_ids, wanted, len(index)) if per_item else nearest(wanted)
        ranks = np.arange(1, len(ids) + 1)[offset:]
        scores, ids = scores[offset:], ids[offset:]
        if min_score is not None:  # scores come best first, so this cuts the tail
            keep = scores >= float(min_score)
            scores, ids, ranks = scores[keep], ids[keep], ranks[keep]
        rows = index.metadata_of(ids)
        for position, (name, values) in enumerate((("rank", ranks), ("score", scores), ("id", ids))):
            rows.insert(position, name, values)
        return self._with_image_files(rows)

    def explain(self, prediction: Prediction, matches: pd.DataFrame) -> pd.DataFrame:
        """``matches`` plus each result's score split into its global, local (landmark-pooled) and
        bias parts, and the pooled appearance where the model appends it (``score_global``,
        ``score_local``, ``score_bias``, ``score_appearance``; they add up to ``score``).
        Re-embeds the result images, so it costs a forward pass per result."""
        parts = self.predictor.score_parts(prediction.embedding, [self.resolve_image(p) for p in matches["image_path"]])
        explained = matches.copy()
        for name in ("global", "local", "bias", "appearance"):
            if parts and name in parts[0]:
                explained[f"score_{name}"] = [p[name] for p in parts]
        return explained

    def _restriction_of(self, filters: Filters, index: AnyIndex) -> dict:
        """How the index applies ``filters`` inside its search: a Milvus collection as an expression
        on its scalar fields, FAISS as the allowed ids read from the metadata table."""
        if isinstance(index, MilvusIndex):
            return {"where": index.filter_expression(filters.clothes_type, filters.category, filters.attributes, filters.familiar_only)}
        return {"allowed_ids": self._allowed_ids_of(filters, index)}

    def _allowed_ids_of(self, filters: Filters, index: EmbeddingIndex) -> np.ndarray:
        """:meth:`allowed_ids`, remembered per filters for the index now current. An entry holds the
        index it was read from, so a search never takes ids read from another index, whatever the
        order in which a refresh and concurrent searches run."""
        with self._allowed_lock:
            hit = self._allowed.get(filters)
        if hit is not None and hit[0] is index:
            return hit[1]
        allowed = self.allowed_ids(filters, index)  # outside the lock: two threads may both compute it, alike
        allowed.flags.writeable = False  # shared by every search with these filters
        with self._allowed_lock:
            if self.index is index:  # not for an index a refresh has already replaced
                if len(self._allowed) >= 64:
                    self._allowed.clear()
                self._allowed[filters] = (index, allowed)
        return allowed

    def check_filters(self, filters: Filters) -> None:
        """UnknownFilterValue for a category or attribute that neither this gallery (its own labels
        or the model's predictions) nor the model knows; the error lists the known ones."""
        known = None
        if filters.clothes_type is not None and int(filters.clothes_type) not in CLOTHES_TYPES:
            raise UnknownFilterValue("clothes_type", filters.clothes_type, [f"{n} ({name})" for n, name in CLOTHES_TYPES.items()])
        if filters.category:
            known = self.known_values()
            check_known("category", filters.category, known["category"])
        for name in filters.attributes:
            known = known or self.known_values()
            check_known("attributes", name, known["attributes"])

    def known_values(self) -> dict[str, list[str]]:
        """Categories and attributes a filter may name: those of the gallery and of the model
        (read once per loaded index: a query checks its filters against them)."""
        index, known = self._known
        if index is not self.index:
            index = self.index
            choices = self.filter_choices()
            p = self.predictor
            known = {"category": sorted(set(choices["category"]) | set(p.category_names), key=str.lower),
                     "attributes": sorted(set(choices["attributes"]) | {a.lower() for a in p.attribute_names})}
            self._known = (index, known)
        return known

    @staticmethod
    def allowed_ids(filters: Filters, index: EmbeddingIndex) -> np.ndarray:
        """Ids of the gallery images that pass ``filters``."""
        gallery = index.metadata
        keep = np.ones(len(gallery), dtype=bool)
        if filters.clothes_type is not None:
            keep &= (gallery_column(gallery, "clothes_type") == int(filters.clothes_type)).to_numpy(bool)
        if filters.category:
            keep &= (gallery_column(gallery, "category").astype(str).str.lower() == filters.category.lower()).to_numpy(bool)
        if filters.attributes:
            have = gallery_attributes(gallery)
            for name in filters.attributes:
                keep &= np.array([name.lower() in names for names in have], dtype=bool)
        if filters.familiar_only:
            keep &= familiar_mask(gallery).to_numpy(bool)
        return gallery.index.to_numpy(np.int64)[keep]

    # ------------------------------------------------------------------ keeping it current

    def _saved_version(self):
        if self.index_dir is None:
            return None
        try:
            manifest = layout.read_manifest(self.index_dir)
        except Exception:
            return None
        return manifest.get("version"), manifest.get("saved_utc"), manifest.get("count")

    def refresh(self) -> bool:
        """Reload the index if another writer saved a newer version; True when it did."""
        if self.index_dir is None:
            return False
        with self._swap:
            version = self._saved_version()
            if version is None or version == self._manifest_version:
                return False
            fresh = open_index(self.index_dir, expected_model_checksum=self.predictor.model_checksum,
                               expected_dim=self.predictor.embedding_dim, device=self.index.device)
            self.index, self._manifest_version = fresh, version  # searches in flight keep the old object
            with self._allowed_lock:
                self._allowed.clear()
            return True

    def add_images(self, paths: Sequence[str | os.PathLike], *, workers: int = 0, progress: bool = False, shop_metadata=None,
                   reject_unfamiliar: bool = False):
        """Embed and add image files or folders to the saved index (duplicates skipped), then reload it.
        ``shop_metadata``: an :class:`indexer.catalogue_metadata.Catalogue` for the new photos.
        ``reject_unfamiliar``: leave out the photos flagged unfamiliar (they are added, flagged, otherwise).
        Returns :class:`indexer.build.AddReport`."""
        from indexer.build import add_images  # build's embedding machinery loads only when an add needs it

        report = add_images(self._require_dir(), self.predictor, [str(p) for p in paths], workers=workers, progress=progress,
                            index=self.index, shop_metadata=shop_metadata, reject_unfamiliar=reject_unfamiliar)
        self.refresh()
        return report

    def update_item(self, item_id: str, values: dict, fields_patch: Optional[dict] = None) -> int:
        """Set the shop's data of every image of an item in the saved index (:func:`indexer.catalogue_metadata.update_item`),
        then reload it; returns how many images changed (0: no such item)."""
        from indexer.catalogue_metadata import update_item

        changed = update_item(self._require_dir(), item_id, values, fields_patch)
        self.refresh()
        return changed

    def remove_items(self, item_ids: Sequence[str]) -> int:
        """Remove every gallery image of these items from the saved index (and their files in the
        index's uploads folder: :func:`indexer.updates.remove_items`), then reload it; returns how many."""
        from indexer.updates import remove_items

        removed = sum(remove_items(self._require_dir(), item_ids, self.predictor.match_reference).removed.values())
        self.refresh()
        return removed

    def _require_dir(self) -> Path:
        if self.index_dir is None:
            raise ValueError("this SearchEngine was made from an index in memory; open it with SearchEngine.open(INDEX_DIR) to change it")
        return self.index_dir

    # ------------------------------------------------------------------ what the page shows

    @property
    def gallery_size(self) -> int:
        return self.index.ntotal

    @property
    def category_count(self) -> int:
        """Categories the model tells apart (0 for a model without a category head)."""
        return len(self.predictor.category_names)

    @property
    def data_root(self) -> Optional[str]:
        """The DeepFashion root the gallery was built from, if it was built from one."""
        return (self.index.extra or {}).get("data_root")

    def describe(self) -> str:
        """One line about the gallery and the model, e.g. for a page's sidebar."""
        p = self.predictor
        return f"{self.gallery_size} gallery images · model {p.model_checksum} ({p.config.backbone}, {p.input_side}px)"

    def _with_image_files(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` with ``image_path`` pointing at the file on this machine."""
        rows = rows.reset_index(drop=True)
        relpaths = rows["image_relpath"] if "image_relpath" in rows else [None] * len(rows)
        rows["image_path"] = [self.images.file(str(p), r) for p, r in zip(rows["image_path"], relpaths)]
        return rows

    def image_file(self, image_id: int) -> Path:
        """The file of the gallery image with this id on this machine; KeyError for an unknown id."""
        row = self.index.metadata.loc[int(image_id)]
        return Path(self.images.file(str(row["image_path"]), row.get("image_relpath")))

    def resolve_image(self, image_path: str) -> Path:
        """The file of a gallery image; result rows already carry it in ``image_path``."""
        return Path(image_path)

    def item_images(self, item_id: str) -> pd.DataFrame:
        """Every gallery row of one item, by image path."""
        gallery = self.index.metadata
        rows = gallery[gallery["item_id"].astype(str) == str(item_id)].sort_values("image_path")
        return self._with_image_files(rows.reset_index()).set_index("id")

    def filter_choices(self) -> dict[str, list]:
        """The values each filter can take in this gallery (for menus)."""
        gallery = self.index.metadata
        attributes = sorted({a for names in gallery_attributes(gallery) for a in names})
        return {
            "clothes_type": sorted(int(v) for v in gallery_column(gallery, "clothes_type").dropna().unique()),
            "category": sorted(str(v) for v in gallery_column(gallery, "category").dropna().unique()),
            "attributes": attributes,
        }


def first_view_of_each_item(nearest, item_ids, k: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the first k distinct items among ``nearest(n)``'s images (best first), each
    at its best view; ``item_ids(ids)`` gives the images' item ids.

    Searches ITEM_OVERFETCH x k images, then more while fewer than k items came back and the index
    holds more. Images without an item id count as items of their own. Since every item among the k
    nearest images is kept, top-k by item never misses an item that top-k by image shows.
    """
    n = min(total, ITEM_OVERFETCH * k)
    while True:
        scores, ids = nearest(max(n, 1))
        seen, first = set(), []
        for position, (item, image) in enumerate(zip(item_ids(ids), ids)):
            key = item if pd.notna(item) else ("image", int(image))
            if key not in seen:
                seen.add(key)
                first.append(position)
        if len(first) >= k or n >= total:
            first = first[:k]
            return scores[first], ids[first]
        n = min(total, n * ITEM_OVERFETCH)


def default_checkpoint(index: AnyIndex, given: Optional[str]) -> str:
    """The checkpoint to embed queries with: the one given, else the one the index carries or
    recorded at build time (:func:`indexer.portable.find_checkpoint`)."""
    where = index.info().get("path")
    return find_checkpoint(Path(where) if where else None, index.extra or {}, given)
