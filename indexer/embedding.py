"""Embedding many images with a Predictor: DataLoader workers decode, the model runs in batches,
and unreadable images are skipped and reported instead of ending the job."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from tqdm.auto import tqdm

from fashionnet.data.images import ImageLoadError, load_image
from fashionnet.inference.predictor import Predictor
from fashionnet.landmarks import LANDMARK_NAMES
from indexer.gallery_labels import ATTRIBUTE_SEPARATOR  # noqa: F401 (also imported from here)

ATTRIBUTE_THRESHOLD = 0.5  # a predicted attribute is stored (and can be filtered on) from this probability
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class _ImageFiles(Dataset):
    """Decodes and letterboxes image files; a bad file yields its error message instead of a tensor."""

    def __init__(self, paths: Sequence[str], transform):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = load_image(self.paths[i])
        except ImageLoadError as exc:
            return i, None, str(exc), None
        tensor, _, _, geometry = self.transform(image)
        return i, tensor, geometry, file_sha256(self.paths[i])


def file_sha256(path: str | os.PathLike) -> str | None:
    """Checksum of a file's bytes, which finds the same picture under another name; None if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _collate(samples):
    good = [s for s in samples if s[1] is not None]
    bad = [(s[0], s[2]) for s in samples if s[1] is None]
    if not good:
        return None, [], [], [], bad
    tensors = [s[1] for s in good]
    out = None
    if get_worker_info() is not None:
        # The batch goes to shared memory here, in the worker's fetch, as default_collate does: left
        # to the queue's feeder thread, a failure to get that memory (a full /dev/shm, a file size
        # limit) is only printed and the batch dropped, so the main process would wait for it forever.
        out = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype).share_memory_()
    return torch.stack(tensors, out=out), [s[0] for s in good], [s[2] for s in good], [s[3] for s in good], bad


def _worker_problem(exc: BaseException) -> str:
    """The first line of what a DataLoader worker raised, from the error the DataLoader re-raised
    (its message holds the worker's traceback), else the error's own first line."""
    lines = str(exc).splitlines()
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    if starts:
        after = [line for line in lines[starts[-1] + 1:] if line.strip() and not line.startswith(" ")]
        if after:
            return after[0].strip()
    return next((line.strip() for line in lines if line.strip()), type(exc).__name__)


def _batches(loader: DataLoader):
    """The loader's batches; a worker's failure (an error it raised, or its death) as one RuntimeError."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            if loader.num_workers == 0:
                raise
            raise RuntimeError(f"a decoding worker failed: {_worker_problem(exc)}; try --workers 0") from exc
        yield batch


@dataclass
class EmbeddedImages:
    """Result of :func:`embed_images`: rows for the images that worked, and the ones skipped."""

    embeddings: np.ndarray  # (N, D) float32
    rows: pd.DataFrame  # one per embedded image: position in the input, predicted landmarks and category
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    seconds: float = 0.0  # wall time of decoding and embedding

    @property
    def images_per_second(self) -> float:
        return len(self.embeddings) / self.seconds if self.seconds > 0 else 0.0


# forkserver where the platform has it (Linux, macOS); elsewhere the platform's default, spawn
WORKER_START = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None


def embed_images(predictor: Predictor, paths: Sequence[str], batch_size: int = 32, workers: int = 2,
                 progress: bool = True, desc: str = "embedding") -> EmbeddedImages:
    """Embed ``paths`` in batches. Landmarks come back in each image's own pixels."""
    started = time.perf_counter()
    dataset = _ImageFiles(paths, predictor.transform)
    # Workers are started fresh, not forked: a process forked from one that already runs OpenVINO's
    # thread pool hangs on its first decode.
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                        persistent_workers=False, pin_memory=predictor.device.type == "cuda",
                        multiprocessing_context=WORKER_START if workers > 0 else None)
    embeddings, records, skipped = [], [], []
    with tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for batch, positions, geometries, digests, bad in _batches(loader):
            skipped.extend((str(paths[i]), problem) for i, problem in bad)
            if batch is not None:
                # the same two passes as a query: a small garment is cropped and embedded again
                out, geometries, cropped = predictor.localise(predictor.forward_batch(batch), geometries,
                                                              lambda k, positions=positions: load_image(paths[positions[k]]))
                for pos, digest, pred in zip(positions, digests, predictor.decode(out, [(g, (g.orig_w, g.orig_h)) for g in geometries], cropped)):
                    record = {"position": pos, "image_sha256": digest, "predicted_category": pred.category,
                              "predicted_category_prob": pred.category_prob, "predicted_clothes_type": pred.clothes_type,
                              "predicted_attributes": ATTRIBUTE_SEPARATOR.join(n for n, p in pred.attributes if p >= ATTRIBUTE_THRESHOLD),
                              "cropped": pred.cropped, "below_face": pred.below_face,
                              # stored with the row: searches may leave flagged photos out
                              "unfamiliar": pred.unfamiliar, "unfamiliarity": pred.unfamiliarity}
                    for lm in pred.landmarks:
                        record[f"pred_{lm.name}_x"] = lm.x
                        record[f"pred_{lm.name}_y"] = lm.y
                        record[f"pred_{lm.name}_vis"] = lm.visibility
                    records.append(record)
                    embeddings.append(pred.embedding)
            bar.update(len(positions) + len(bad))
            if skipped:
                bar.set_postfix(skipped=len(skipped), refresh=False)
    dim = predictor.embedding_dim
    emb = np.stack(embeddings).astype(np.float32) if embeddings else np.zeros((0, dim), np.float32)
    return EmbeddedImages(emb, embedded_rows(records), skipped, time.perf_counter() - started)


def embedded_rows(records: Sequence[dict]) -> pd.DataFrame:
    """The rows of :class:`EmbeddedImages` from one record per image (what the model said of it);
    a distributed build reads them back from its collection through here too, so they come out alike."""
    rows = pd.DataFrame.from_records(records, columns=row_columns()) if records else pd.DataFrame(columns=row_columns())
    return rows.astype({"unfamiliar": "boolean", "unfamiliarity": "float64"})  # NA where the model has no density


def row_columns() -> list[str]:
    cols = ["position", "image_sha256", "predicted_category", "predicted_category_prob", "predicted_clothes_type", "predicted_attributes",
            "cropped", "below_face", "unfamiliar", "unfamiliarity"]
    for name in LANDMARK_NAMES:
        cols += [f"pred_{name}_x", f"pred_{name}_y", f"pred_{name}_vis"]
    return cols


def list_image_files(paths: Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """Expand files and folders (recursively) into (image file, item id) pairs, in a stable order.

    Inside a folder, a photo in a sub-folder takes the sub-folder's name as its item id
    (``shop/ITEM/photo.jpg``: several photos of one item); a photo directly in the folder, or
    given as a file, takes its file name without the suffix.
    """
    found: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES):
                rel = f.relative_to(p)
                found.append((f, rel.parts[0] if len(rel.parts) > 1 else f.stem))
        elif p.exists():
            found.append((p, p.stem))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return found


def folder_catalogue(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Gallery rows for plain shop photos with no annotations (what a real shop has)."""
    rows = [{"image_path": str(f.resolve()), "item_id": item, "category": None, "clothes_type": None, "source": "shop"}
            for f, item in list_image_files(paths)]
    return pd.DataFrame(rows, columns=["image_path", "item_id", "category", "clothes_type", "source"])
