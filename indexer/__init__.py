"""An index of shop images embedded by FashionNet (FAISS files or a Milvus collection), and search over it.

    from indexer import SearchEngine, build_index
    engine = SearchEngine.open("indexes/demo")
    result = engine.query("photo.jpg", k=20, clothes_type=1)

The public names load on first use, so ``import indexer`` stays light (no torch, no FAISS).
"""

_PUBLIC = {
    "SearchEngine": "indexer.search",
    "Filters": "indexer.search",
    "QueryResult": "indexer.search",
    "build_index": "indexer.build",
    "add_images": "indexer.build",
    "gallery_rows": "indexer.build",
    "folder_catalogue": "indexer.embedding",
    "EmbeddingIndex": "indexer.store",
    "MilvusIndex": "indexer.milvus_store",
    "open_index": "indexer.backends",
    "locked_update": "indexer.updates",
    "merge": "indexer.updates",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
