"""The page's serving settings, shared by the page (webui/app.py) and its launcher (``python -m
webui``). Kept free of heavy imports so the launcher starts Streamlit without loading the model."""

from __future__ import annotations

import os
from collections.abc import Mapping

INDEX_ENV = "FASHIONNET_INDEX"
ALLOW_INDEX_CHOICE_ENV = "FASHIONNET_ALLOW_INDEX_CHOICE"
MILVUS_URI_ENV = "FASHIONNET_MILVUS_URI"  # where a Milvus index's collection is, if not where the index recorded it
DEFAULT_INDEX = "indexes/demo"
# Checked by the page on the bytes it receives, by the browser (the uploader's limit) and by
# Streamlit's upload handler (server.maxUploadSize, set by the launcher and the page).
MAX_UPLOAD_MB = 20
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
_TRUE = {"1", "true", "yes", "on"}


def configured_index(environ: Mapping[str, str] = os.environ) -> str:
    """The index directory the operator set (``FASHIONNET_INDEX``), as written."""
    return environ.get(INDEX_ENV, "").strip() or DEFAULT_INDEX


def index_choice_allowed(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether visitors may type another index directory (``FASHIONNET_ALLOW_INDEX_CHOICE=1``):
    it lets them open any index on the server and probe its paths, so it is off by default."""
    return environ.get(ALLOW_INDEX_CHOICE_ENV, "").strip().lower() in _TRUE
