"""Exact inner-product search of a single query, read straight from a flat FAISS index's storage.

FAISS scans a flat index for a small batch with its own kernel, one thread per query. For the one
query a page or an API call asks, numpy's BLAS product over the same memory (viewed, not copied)
is quicker, on one thread. One thread on purpose: a multi-threaded OpenBLAS leaves its workers
spinning after each call, and on a small CPU they take the cores from the model's next forward
pass. From two queries on, FAISS's threads over the queries pay off, so batches stay with FAISS
(docs/experiments/exact_search_one_query.md). The results are the same neighbours.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np
from threadpoolctl import ThreadpoolController

_blas = None  # the loaded BLAS libraries, found once (a scan of the process's libraries)
_blas_lock = threading.Lock()  # one limit at a time, so concurrent searches restore the same count


def flat_storage(index: faiss.Index) -> tuple[np.ndarray, np.ndarray] | None:
    """(vectors (N, d), ids (N,)) as views of an ``IndexIDMap(IndexFlatIP)``'s memory, or None for
    any other kind of index. Valid only until the index next changes: use them under its lock."""
    if not isinstance(index, faiss.IndexIDMap):  # IndexIDMap2 is one too
        return None
    flat = faiss.downcast_index(index.index)
    if type(flat) is not faiss.IndexFlatIP:
        return None
    n, d = int(flat.ntotal), int(flat.d)
    if n == 0:
        return None
    vectors = faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)
    ids = faiss.rev_swig_ptr(index.id_map.data(), n)
    return vectors, ids


def search_one_flat(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(1, k) scores and ids for a single query on an ID-mapped ``IndexFlatIP`` (k <= its size); None
    for more queries or another kind of index, which FAISS searches."""
    storage = flat_storage(index) if len(queries) == 1 else None
    return None if storage is None else top_k_inner_product(*storage, queries, k)


def top_k_inner_product(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) scores and ids of the k largest inner products of each query, best first; k <= N."""
    global _blas
    n = len(vectors)
    with _blas_lock:
        _blas = _blas or ThreadpoolController().select(user_api="blas")
        with _blas.limit(limits=1):
            products = vectors @ queries.T  # (N, Q): one BLAS call
    scores = np.empty((len(queries), k), np.float32)
    found = np.empty((len(queries), k), np.int64)
    for j in range(len(queries)):
        column = products[:, j]
        best = np.argpartition(column, n - k)[n - k:] if k < n else np.arange(n)
        best = best[np.argsort(-column[best], kind="stable")]
        scores[j], found[j] = column[best], ids[best]
    return scores, found
