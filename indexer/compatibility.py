"""The model-compatibility rule: an index answers only photos embedded the way its gallery was.

That is by the model whose weights' checksum the index recorded when it was built, at the same
embedding size and, where the caller knows it, with or without each photo averaged with its mirror
image. An index this project builds always records the checksum, so an index without one is refused
wherever a model is expected: nothing says its vectors are comparable. Loading an index for an
expected model and opening a :class:`indexer.search.SearchEngine` both apply this one rule.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from indexer.errors import IndexMismatchError

_VIEWS = {True: "averaged with their mirror images", False: "of the photos alone"}


def check_index_fits_model(directory: Optional[str | os.PathLike], recorded: Mapping[str, Any], *,
                           model_checksum: Optional[str] = None, embedding_dim: Optional[int] = None,
                           flip_average: Optional[bool] = None) -> None:
    """Raise IndexMismatchError, naming the index folder, the problem and the way out, unless the model
    described by ``model_checksum``, ``embedding_dim`` and ``flip_average`` (None: not checked) built
    the index that ``recorded`` describes: what the index recorded of its build, under its manifest's
    keys ``model_checksum``, ``model_config``, ``embedding_dim`` and ``extra``."""
    where = f"the index at {directory}" if directory else "the index (not saved)"
    built_by = recorded.get("model_checksum")
    extra = recorded.get("extra") or {}
    rebuild = f"rebuild it with the current model: run `{extra.get('build_command') or 'indexer build'}`"
    if directory:
        rebuild += f" writing to {directory}"
    if embedding_dim is not None and int(recorded["embedding_dim"]) != int(embedding_dim):
        raise IndexMismatchError(f"{where} holds {recorded['embedding_dim']}-d embeddings (model {built_by or '(unrecorded)'}) "
                                 f"but the current model makes {embedding_dim}-d ones; {rebuild}")
    if model_checksum is not None and built_by != model_checksum:
        config = json.dumps(recorded.get("model_config") or {}, sort_keys=True)
        raise IndexMismatchError(f"{where} was built by model {built_by or '(unrecorded)'} (config {config}), not by the current "
                                 f"model {model_checksum}, so their embeddings are not comparable; {rebuild}")
    indexed_views = bool(extra.get("flip_average", False))  # indexes from before it was recorded hold one view
    if flip_average is not None and indexed_views != bool(flip_average):
        raise IndexMismatchError(f"{where} holds embeddings {_VIEWS[indexed_views]}, but the current model makes embeddings "
                                 f"{_VIEWS[bool(flip_average)]}; make its Predictor with flip_average={indexed_views}, or {rebuild}")
