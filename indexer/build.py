"""Building and updating a gallery index: choose the gallery rows, embed them, store them in FAISS."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from fashionnet.data.readers import detect_benchmark, read_benchmark
from fashionnet.inference import Predictor
from indexer.embedding import embed_images, folder_catalogue
from indexer.errors import IndexMismatchError
from indexer.store import EmbeddingIndex

METADATA_COLUMNS = ("image_path", "item_id", "category", "clothes_type", "source")


@dataclass
class BuildReport:
    index: EmbeddingIndex
    added: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def parse_shard(spec: Optional[str]) -> Optional[tuple[int, int]]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    if not spec:
        return None
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {spec}: need 0 <= i < n")
    return i, n


def gallery_rows(data_root: str | os.PathLike, benchmark: str = "auto", split: str = "auto") -> pd.DataFrame:
    """The gallery of a DeepFashion layout, as the evaluation protocols define it.

    In-shop: the ``gallery`` split. Consumer-to-shop: all shop images of the ``test`` items.
    ``split`` overrides the split; ``all`` takes every shop image.
    """
    root = Path(data_root)
    bench = detect_benchmark(root) if benchmark == "auto" else benchmark
    frame = read_benchmark(root, bench)
    if split == "auto":
        split = "gallery" if bench == "inshop" else "test"
    rows = frame if split == "all" else frame[frame["split"] == split]
    if "source" in rows and rows["source"].notna().any():
        rows = rows[rows["source"] == "shop"]
    if rows.empty:
        raise ValueError(f"{root}: no shop images in split {split!r} (splits present: {sorted(frame['split'].dropna().unique())})")
    out = rows[list(METADATA_COLUMNS)].copy()
    out["image_path"] = [str((root / p).resolve()) for p in out["image_path"]]
    return out.reset_index(drop=True)


def _metadata(catalogue: pd.DataFrame, embedded_rows: pd.DataFrame) -> pd.DataFrame:
    base = catalogue.iloc[embedded_rows["position"].to_numpy()].reset_index(drop=True)
    base = base.astype({"image_path": "string", "item_id": "string", "category": "string", "source": "string"})
    base["clothes_type"] = pd.array(base["clothes_type"], dtype="Int64")
    return pd.concat([base, embedded_rows.drop(columns="position").reset_index(drop=True)], axis=1)


def build_index(predictor: Predictor, catalogue: pd.DataFrame, out: str | os.PathLike, *, index_factory: Optional[str] = None,
                nprobe: Optional[int] = None, shard: Optional[tuple[int, int]] = None, trained_index: Optional[str] = None,
                batch_size: int = 32, workers: int = 2, device: str = "auto", checkpoint_path: Optional[str] = None,
                progress: bool = True, train_sample: int = 100_000, extra: Optional[dict] = None) -> BuildReport:
    """Embed ``catalogue`` (columns image_path, item_id, ...) into a FAISS index saved atomically at ``out``.

    ``shard=(i, n)`` embeds every n-th row starting at i (merge the shards with ``indexer merge``).
    ``trained_index`` starts from an already trained (IVF) index so shards share one quantizer.
    """
    if shard is not None:
        i, n = shard
        catalogue = catalogue.iloc[i::n].reset_index(drop=True)
    embedded = embed_images(predictor, catalogue["image_path"].tolist(), batch_size=batch_size, workers=workers, progress=progress,
                            desc="embedding gallery" + (f" shard {shard[0]}/{shard[1]}" if shard else ""))
    if len(embedded.embeddings) == 0:
        raise ValueError(f"none of the {len(catalogue)} gallery images could be read; first problem: "
                         f"{embedded.skipped[0][1] if embedded.skipped else 'no images'}")
    manifest_extra = {
        "checkpoint": str(Path(checkpoint_path).resolve()) if checkpoint_path else None,
        "image_size": predictor.image_size,
        "build_command": " ".join(["indexer", *sys.argv[1:]]) if Path(sys.argv[0]).name == "indexer" else "indexer build",
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "skipped": [{"path": p, "problem": m} for p, m in embedded.skipped[:1000]],
        "skipped_count": len(embedded.skipped),
        **(extra or {}),
    }
    if trained_index:
        base = EmbeddingIndex.load(trained_index, expected_model_checksum=predictor.model_checksum, expected_dim=predictor.embedding_dim,
                                   device=device)
        index = base.empty_copy()
        index.extra = {**index.extra, **manifest_extra}
    else:
        index = EmbeddingIndex.create(predictor.embedding_dim, index_factory, model_checksum=predictor.model_checksum,
                                      model_config=predictor.config.to_dict(), extra=manifest_extra, device=device)
        if not index.is_trained:
            index.train(embedded.embeddings, max_train=train_sample)
    if nprobe is None and index.nprobe is not None:
        # FAISS starts IVF indexes at nprobe=1, far too few; 1/64 of the lists is a sane start
        # (scripts/benchmark_index.py measures the trade-off).
        nprobe = min(index.info()["nlist"], max(8, index.info()["nlist"] // 64))
    if nprobe is not None:
        index.nprobe = nprobe
    index.add(embedded.embeddings, _metadata(catalogue, embedded.rows), show_progress=progress)
    index.save(out)
    return BuildReport(index, len(embedded.embeddings), embedded.skipped)


def add_to_index(index: EmbeddingIndex, predictor: Predictor, paths: Sequence[str], *, batch_size: int = 32, workers: int = 2,
                 progress: bool = True) -> BuildReport:
    """Embed image files / folders and add them; the caller saves."""
    check_compatible(index, predictor)
    catalogue = folder_catalogue(paths)
    if catalogue.empty:
        raise ValueError(f"no image files found in {', '.join(map(str, paths))}")
    embedded = embed_images(predictor, catalogue["image_path"].tolist(), batch_size=batch_size, workers=workers, progress=progress,
                            desc="embedding new images")
    if len(embedded.embeddings):
        index.add(embedded.embeddings, _metadata(catalogue, embedded.rows), show_progress=progress)
    return BuildReport(index, len(embedded.embeddings), embedded.skipped)


def check_compatible(index: EmbeddingIndex, predictor: Predictor) -> None:
    """Refuse to mix an index with a model that did not build it."""
    where = index.info().get("path") or "the index"
    if index.dim != predictor.embedding_dim:
        raise IndexMismatchError(f"{where} holds {index.dim}-d embeddings but the checkpoint makes {predictor.embedding_dim}-d ones; "
                                 "rebuild the index with this checkpoint (indexer build ...)")
    if index.model_checksum and index.model_checksum != predictor.model_checksum:
        raise IndexMismatchError(f"{where} was built by model {index.model_checksum}, but the checkpoint is model {predictor.model_checksum}; "
                                 "its embeddings are not comparable. Rebuild the index with this checkpoint (indexer build ...)")


def default_checkpoint(index: EmbeddingIndex, given: Optional[str]) -> str:
    """The checkpoint to embed queries with: the one given, else the one recorded at build time."""
    path = given or (index.extra or {}).get("checkpoint")
    if not path:
        raise ValueError("this index records no checkpoint; pass --checkpoint")
    return path

