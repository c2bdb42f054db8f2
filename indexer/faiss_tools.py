"""FAISS helpers for the index store: building an index from a factory string that keeps caller-chosen
ids, reading ids and vectors back out of one, describing its structure and its memory per vector.

These know FAISS's class zoo (ID maps, IVF lists, pre-transforms, refine stages) so that
:class:`indexer.store.EmbeddingIndex` does not have to.
"""

from __future__ import annotations

import warnings
from typing import Any

import faiss
import numpy as np

from indexer.errors import IndexDeviceError

FLAT_FACTORY = "Flat"
METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
DEVICES = ("auto", "cpu", "cuda")


def resolve_faiss_device(device: str) -> str:
    """'cpu' or 'cuda' for a requested device; 'cuda' only where FAISS can use a GPU."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if device == "cuda" and not has_gpu:
        raise IndexDeviceError(
            "the cuda device was asked for but FAISS sees no GPU (a CPU-only FAISS build, or no CUDA device); "
            "use the cpu or auto device"
        )
    return "cuda" if device != "cpu" and has_gpu else "cpu"


def new_faiss_index(dim: int, index_factory: str | None, metric: str) -> faiss.Index:
    """An empty CPU index whose add_with_ids / remove_ids keep caller-chosen int64 ids."""
    if index_factory is None or index_factory.strip() == FLAT_FACTORY:
        flat = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
        return faiss.IndexIDMap2(flat)
    try:
        index = faiss.index_factory(dim, index_factory, METRICS[metric])
    except RuntimeError as e:
        raise ValueError(f"FAISS cannot build an index from factory string {index_factory!r}: {e}") from None
    if isinstance(index, faiss.IndexIDMap):  # "IDMap,..." / "IDMap2,..." factories
        if native_ivf(index.index) is not None:
            raise ValueError(
                f"{index_factory!r}: IVF indexes keep their own ids and an ID map on top breaks removal; "
                "drop the IDMap prefix"
            )
        return index
    if native_ivf(index) is not None:
        return index
    return faiss.IndexIDMap2(index)  # also IVF inside a refine/ID-mapped wrapper, which cannot take ids


def describe_index(index: faiss.Index) -> str:
    """Readable structure of a FAISS index, e.g. IndexIDMap2(IndexFlatIP)."""
    index = faiss.downcast_index(index)
    name = type(index).__name__
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexPreTransform)):
        return f"{name}({describe_index(index.index)})"
    if isinstance(index, faiss.IndexIVF):
        return f"{name}(nlist={index.nlist})"
    return name


def bytes_per_vector(index: faiss.Index) -> float:
    """Approximate memory per stored vector: its code, its id and the index's own links."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap2):
        return 8 + 40 + bytes_per_vector(index.index)  # id array + reverse hash map entry (approx.)
    if isinstance(index, faiss.IndexIDMap):
        return 8 + bytes_per_vector(index.index)
    if isinstance(index, faiss.IndexPreTransform):
        return bytes_per_vector(index.index)
    if isinstance(index, faiss.IndexIVF):
        return index.code_size + 8  # code + id in the inverted list
    if isinstance(index, faiss.IndexHNSW):
        return bytes_per_vector(index.storage) + 4 * index.hnsw.nb_neighbors(0) * 1.1  # level-0 links + upper levels
    if isinstance(index, faiss.IndexRefine):
        return bytes_per_vector(index.base_index) + bytes_per_vector(index.refine_index)
    try:
        return float(index.sa_code_size())
    except RuntimeError:  # index types without a standalone code size
        return float("nan")


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF index anywhere inside ``index`` (for nprobe), else None."""
    return faiss.try_extract_index_ivf(index)


def native_ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF index whose inverted lists hold the ids: ``index`` itself or behind transforms.

    None for everything else, including an IVF under an ID map or a refine stage, whose ids are not
    the lists' ids.
    """
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index if isinstance(index, faiss.IndexIVF) else None


def clear_freed_fast_scan_slots(index: faiss.Index) -> None:
    """Zero the unused slots of each fast-scan inverted list's last block (a no-op for other indexes).

    FAISS 1.15's ``BlockInvertedLists.remove_ids`` compacts a list but leaves the old 4-bit codes in
    the slots it frees, and a later add ORs the new codes into them: vectors added after a removal
    then carry wrong codes and are not found. Call after every ``remove_ids``.
    """
    ivf = native_ivf(index)
    lists = None if ivf is None else faiss.downcast_InvertedLists(ivf.invlists)
    if not isinstance(lists, faiss.BlockInvertedLists):
        return
    packer = lists.get_packer() if hasattr(lists, "get_packer") else lists.packer
    zero = np.zeros(packer.code_size, np.uint8)
    for list_no in range(lists.nlist):
        size = lists.list_size(list_no)
        capacity = -(-size // packer.nvec) * packer.nvec
        if capacity > size:
            block = lists.get_codes(list_no)
            for slot in range(size, capacity):
                packer.pack_1_c(faiss.swig_ptr(zero), slot, block)  # the packer finds the slot's block


def remove_ids(index: faiss.Index, ids: np.ndarray) -> int:
    """``index.remove_ids(ids)``, leaving fast-scan lists ready for later adds; returns how many went."""
    removed = index.remove_ids(ids)
    clear_freed_fast_scan_slots(index)
    return removed


def merge_ivf(target: faiss.IndexIVF, source: faiss.IndexIVF, offset: int) -> None:
    """``target.merge_from(source, offset)``: append every list of ``source``, ids shifted by ``offset``.

    FAISS 1.15 appends to a fast-scan (block) list only whole blocks at a time and aborts the
    process otherwise, so fast-scan lists are appended here code by code instead.
    """
    lists = faiss.downcast_InvertedLists(target.invlists)
    if not isinstance(lists, faiss.BlockInvertedLists):
        target.merge_from(source, offset)
        return
    other = faiss.downcast_InvertedLists(source.invlists)
    packer = lists.get_packer() if hasattr(lists, "get_packer") else lists.packer
    code = np.empty(packer.code_size, np.uint8)
    for list_no in range(source.nlist):
        n, start = other.list_size(list_no), lists.list_size(list_no)
        if not n:
            continue
        lists.resize(list_no, start + n)  # new bytes come zeroed
        faiss.rev_swig_ptr(lists.get_ids(list_no), start + n)[start:] = faiss.rev_swig_ptr(other.get_ids(list_no), n) + offset
        source_codes, target_codes = other.get_codes(list_no), lists.get_codes(list_no)
        for i in range(n):
            packer.unpack_1_c(source_codes, i, faiss.swig_ptr(code))
            packer.pack_1_c(faiss.swig_ptr(code), start + i, target_codes)
    target.ntotal += source.ntotal


def stored_ids(index: faiss.Index) -> np.ndarray:
    """Every id the FAISS index holds (order unspecified)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = native_ivf(index)
    if ivf is not None:
        lists = ivf.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(ivf.nlist)
            if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
    raise TypeError(f"index of type {describe_index(index)} carries no ids")


def export_id_mapped_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, ids) of an ID-mapped index, reconstructed from its storage (lossy for PQ/SQ codes)."""
    index = faiss.downcast_index(index)
    if not isinstance(index, faiss.IndexIDMap):
        raise TypeError(f"cannot export vectors from {describe_index(index)}")
    vectors = index.index.reconstruct_n(0, index.ntotal) if index.ntotal else np.empty((0, index.d), np.float32)
    return vectors, faiss.vector_to_array(index.id_map).astype(np.int64)


def trained_arrays(index: faiss.Index) -> list[np.ndarray]:
    """The trained parameters that must be equal for two IVF indexes to be merged list by list."""
    arrays = []
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            transform = faiss.downcast_VectorTransform(index.chain.at(i))
            for name in ("A", "b"):
                if hasattr(transform, name):
                    arrays.append(faiss.vector_to_array(getattr(transform, name)))
    ivf = native_ivf(index)
    arrays.append(ivf.quantizer.reconstruct_n(0, ivf.nlist).ravel())
    if hasattr(ivf, "pq"):
        arrays.append(faiss.vector_to_array(ivf.pq.centroids))
    if hasattr(ivf, "sq"):
        arrays.append(faiss.vector_to_array(ivf.sq.trained))
    return arrays


class GpuSearchCopy:
    """A GPU copy of a CPU index for searching, made on first use and dropped when the CPU index
    changes (the CPU index stays the one that is changed and saved)."""

    def __init__(self):
        self._resources = None
        self._index = None
        self._unsupported = False

    def copy_of(self, cpu_index: faiss.Index) -> Any:
        """The GPU copy of ``cpu_index``; None where FAISS cannot put this kind of index on a GPU."""
        if self._index is None and not self._unsupported:
            if self._resources is None:
                self._resources = faiss.StandardGpuResources()
            try:
                self._index = faiss.index_cpu_to_gpu(self._resources, 0, cpu_index)
            except RuntimeError as e:
                self._unsupported = True
                warnings.warn(f"FAISS cannot search a {describe_index(cpu_index)} index on the GPU ({e}); using the CPU")
        return self._index

    def drop(self) -> None:
        self._index = None


def unit_rows(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """float32 (N, dim) C-contiguous, L2-normalised copy of ``vectors``; clear errors for bad input."""
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().cpu().numpy()
    x = np.array(vectors, dtype=np.float32, copy=True)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape (N, {dim}), got {np.shape(vectors)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf")
    if (np.linalg.norm(x, axis=1) == 0).any():
        raise ValueError(f"{what} contain an all-zero row, which has no direction to normalise")
    x = np.ascontiguousarray(x)
    faiss.normalize_L2(x)
    return x


def search_cpu(index: faiss.Index, q: np.ndarray, k: int, nprobe: int | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search of a CPU index: visiting ``nprobe`` inverted lists (IVF only; None: the index's
    own setting), and only the ``allowed`` ids where given (an ``IDSelectorBatch`` inside FAISS).
    The caller holds the index's lock: an nprobe override is set on the index and restored."""
    ivf = ivf_of(index)
    if allowed is not None:
        selector = faiss.IDSelectorBatch(allowed)
        if ivf is not None:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=int(nprobe if nprobe is not None else ivf.nprobe))
        else:
            params = faiss.SearchParameters(sel=selector)
        return index.search(q, k, params=params)
    if ivf is None or nprobe is None:
        return index.search(q, k)
    default = ivf.nprobe
    ivf.nprobe = nprobe
    try:
        return index.search(q, k)
    finally:
        ivf.nprobe = default
