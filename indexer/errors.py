"""Errors raised by the embedding index store.

They carry plain messages meant for the person running ``indexer`` or the web page: each names the
index directory (and file) involved and, where there is one, the way out.
"""

from __future__ import annotations


class IndexStoreError(Exception):
    """Base class of every error the index store raises on purpose."""


class IndexLoadError(IndexStoreError):
    """An index directory is missing, incomplete or damaged and cannot be loaded."""


class IndexMismatchError(IndexStoreError):
    """A readable index was built by another model (checksum) or for another embedding size."""


class IndexSaveError(IndexStoreError):
    """Saving failed; any index previously at the target directory is left untouched."""


class IndexDeviceError(IndexStoreError):
    """A GPU was asked for (device="cuda") but FAISS sees none."""
