"""A Milvus collection of gallery images: its schema, the model record it carries, and the reads
and writes the Milvus index (:mod:`indexer.milvus_store`) and its build (:mod:`indexer.milvus_build`) make.

One entity per gallery image: the primary key ``pk``, the image's ``id`` (what results and the
metadata table call it), the embedding, and the scalar fields filters run on inside Milvus:
``clothes_type``, ``category`` (lower case), ``attributes`` (lower case), ``unfamiliar``, with
``item_id`` and ``image_path`` (relative to the gallery's root where the index has one) and ``row``,
the image's whole metadata row as JSON, so the collection alone describes its images.

Keys: ``pk = generation << 40 | n``. A build writes a new generation and an index searches one
generation only, so a rebuild never touches the rows a running index serves; within a generation
``n`` counts up and is never reused (:mod:`indexer.milvus_store` says which keys are committed).
The collection's properties record the model whose embeddings it holds (its checksum, embedding
size and flip averaging): a different model is refused from the collection alone.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from indexer.errors import IndexLoadError, IndexMismatchError, IndexStoreError
from indexer.gallery_labels import familiar_mask, gallery_attributes, gallery_column

GENERATION_BITS = 40  # up to 2**40 keys per build generation
MAX_TOPK = 16384  # the most results one Milvus search returns
WRITE_BATCH = 1000  # entities per upsert request
READ_WINDOW = 10000  # keys per query when reading rows back
MODEL_PROPERTY = "fashionnet.model"
BUILD_PROPERTY = "fashionnet.build"  # the last build started: its generation and what it embeds
OWNER_PROPERTY = "fashionnet.index"  # the index the collection belongs to
ROW_MAX_BYTES = 65535
_TEXT_LIMITS = {"item_id": 1024, "image_path": 4096, "category": 512}
_ATTRIBUTE_LIMITS = {"max_capacity": 4096, "max_length": 512}
_VIEWS = {True: "averaged with their mirror images", False: "of the photos alone"}


def first_key(generation: int) -> int:
    return int(generation) << GENERATION_BITS


def model_record(model_checksum: Optional[str], embedding_dim: int, flip_average: bool, model_config: Optional[dict] = None,
                 input_side: Optional[int] = None) -> dict:
    """What a collection records of the model that embedded its images."""
    return {"model_checksum": model_checksum, "embedding_dim": int(embedding_dim), "flip_average": bool(flip_average),
            "input_side": input_side, "model_config": model_config or {}}


# -------------------------------------------------------------------------------- expressions


def text_literal(value: str) -> str:
    """A string as a Milvus expression literal (quoted, its quotes and backslashes escaped)."""
    return json.dumps(str(value), ensure_ascii=False)


def visible_expression(generation: int, next_key: int, retired: Sequence[int] = ()) -> str:
    """The committed entities of an index: its generation's keys below ``next_key``, less ``retired``."""
    start = first_key(generation)
    expression = f"pk >= {start} and pk < {start + int(next_key)}"
    if len(retired):
        expression += f" and pk not in [{', '.join(str(first_key(generation) + int(k)) for k in retired)}]"
    return expression


def filter_expression(clothes_type: Optional[int] = None, category: Optional[str] = None, attributes: Sequence[str] = (),
                      familiar_only: bool = False) -> Optional[str]:
    """The search filters as a Milvus expression on the scalar fields (None: no filter)."""
    parts = []
    if clothes_type is not None:
        parts.append(f"clothes_type == {int(clothes_type)}")
    if category:
        parts.append(f"category == {text_literal(category.lower())}")
    parts += [f"array_contains(attributes, {text_literal(name.lower())})" for name in attributes]
    if familiar_only:
        parts.append("unfamiliar == false")
    return " and ".join(parts) or None


# ------------------------------------------------------------------------------------ entities


def _plain(value: Any) -> Any:
    """A metadata value as JSON takes it (NA as null, numpy scalars as Python's)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return value


def row_text(row: dict) -> str:
    text = json.dumps({str(k): _plain(v) for k, v in row.items()}, ensure_ascii=False, default=str)
    if len(text.encode()) > ROW_MAX_BYTES:
        raise ValueError(f"the metadata of {row.get('image_path')} takes {len(text.encode())} bytes as JSON; a Milvus "
                         f"row holds at most {ROW_MAX_BYTES}: shorten its catalogue fields")
    return text


def entities(keys: np.ndarray, ids: np.ndarray, vectors: np.ndarray, rows: pd.DataFrame) -> list[dict]:
    """One entity per row: the filterable fields computed as :mod:`indexer.gallery_labels` reads them."""
    rows = rows.reset_index(drop=True)
    types = gallery_column(rows, "clothes_type")
    categories = gallery_column(rows, "category")
    attributes = gallery_attributes(rows)
    familiar = familiar_mask(rows).to_numpy(bool)
    paths = rows["image_relpath"].where(rows["image_relpath"].notna(), rows["image_path"]) if "image_relpath" in rows \
        else rows.get("image_path", pd.Series([None] * len(rows)))
    items = rows.get("item_id", pd.Series([None] * len(rows)))
    out = []
    for i, record in enumerate(rows.to_dict("records")):
        out.append({
            "pk": int(keys[i]), "id": int(ids[i]), "vector": vectors[i].astype(np.float32).tolist(),
            "clothes_type": None if pd.isna(types[i]) else int(types[i]),
            "category": None if pd.isna(categories[i]) else str(categories[i]).lower()[:_TEXT_LIMITS["category"]],
            "attributes": sorted(attributes[i]), "unfamiliar": not familiar[i],
            "item_id": None if pd.isna(items[i]) else str(items[i])[:_TEXT_LIMITS["item_id"]],
            "image_path": None if pd.isna(paths[i]) else str(paths[i])[:_TEXT_LIMITS["image_path"]],
            "row": row_text(record),
        })
    return out


# ---------------------------------------------------------------------------------- collection


class MilvusError(IndexStoreError):
    """Milvus refused or failed a request on a collection."""


class _Reported:
    """A MilvusClient whose failures name the collection and the URI (one line, no traceback)."""

    def __init__(self, client, where: str):
        self._client, self._where = client, where

    def __getattr__(self, name: str):
        method = getattr(self._client, name)

        def call(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except Exception as e:
                if type(e).__module__.split(".")[0] not in ("pymilvus", "grpc"):
                    raise
                message = str(getattr(e, "message", "") or e).strip().splitlines()
                raise MilvusError(f"{self._where}: Milvus could not {name.replace('_', ' ')}: "
                                  f"{message[0] if message else type(e).__name__}") from None
        return call


class GalleryCollection:
    """One collection on one Milvus (``client``), as the index uses it."""

    def __init__(self, client, name: str, uri: str):
        self.name, self.uri = name, uri
        self.raw_client = client._client if isinstance(client, _Reported) else client
        self.client = _Reported(self.raw_client, self.where)

    @property
    def where(self) -> str:
        return f"the Milvus collection {self.name!r} at {self.uri}"

    @classmethod
    def open(cls, client, name: str, uri: str) -> "GalleryCollection":
        """The existing collection, loaded for searches; IndexLoadError naming it when it is missing."""
        collection = cls(client, name, uri)
        if not collection.client.has_collection(name):
            raise IndexLoadError(f"there is no Milvus collection {name!r} at {uri}: it was dropped, or the index's "
                                 "collection is elsewhere (give it with --milvus-uri); rebuild the index to make it again")
        return collection.loaded()

    def loaded(self) -> "GalleryCollection":
        """Searches and queries need the collection loaded into memory (a new one, or one a server released, is not)."""
        state = str(self.client.get_load_state(self.name).get("state", ""))
        if not state.endswith("Loaded"):
            self.client.load_collection(self.name)
        return self

    @classmethod
    def open_or_create(cls, client, name: str, uri: str, record: dict) -> "GalleryCollection":
        """The collection for a build by the model ``record`` describes: made if missing, refused
        if it holds another model's embeddings."""
        if _Reported(client, f"the Milvus at {uri}").has_collection(name):
            collection = cls.open(client, name, uri)
            collection.check_model(record, "this build's model")
            return collection
        from pymilvus import DataType

        schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description="fashionnet gallery images")
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("id", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(record["embedding_dim"]))
        schema.add_field("clothes_type", DataType.INT64, nullable=True)
        schema.add_field("category", DataType.VARCHAR, max_length=_TEXT_LIMITS["category"], nullable=True)
        schema.add_field("attributes", DataType.ARRAY, element_type=DataType.VARCHAR, **_ATTRIBUTE_LIMITS)
        schema.add_field("unfamiliar", DataType.BOOL)
        schema.add_field("item_id", DataType.VARCHAR, max_length=_TEXT_LIMITS["item_id"], nullable=True)
        schema.add_field("image_path", DataType.VARCHAR, max_length=_TEXT_LIMITS["image_path"], nullable=True)
        schema.add_field("row", DataType.VARCHAR, max_length=ROW_MAX_BYTES)
        index_params = client.prepare_index_params()
        index_params.add_index("vector", index_type="FLAT", metric_type="IP")  # exact, as the FAISS default
        collection = cls(client, name, uri)
        collection.client.create_collection(name, schema=schema, consistency_level="Strong",
                                            properties={MODEL_PROPERTY: json.dumps(record, sort_keys=True)})
        collection.client.create_index(name, index_params)
        return collection.loaded()

    # ------------------------------------------------------------------------- the model record

    def model_record(self) -> dict:
        properties = self.client.describe_collection(self.name).get("properties") or {}
        try:
            return json.loads(properties[MODEL_PROPERTY])
        except (KeyError, TypeError, json.JSONDecodeError):
            raise IndexLoadError(f"{self.where} records no fashionnet model: it was not made by `indexer build`") from None

    def check_model(self, expected: dict, whose: str) -> None:
        """IndexMismatchError unless the collection holds embeddings of the model ``expected``
        describes (checksum, size, flip averaging); ``whose`` names that model in the message."""
        held = self.model_record()
        sides = (held.get("input_side"), expected.get("input_side"))
        same = (held.get("model_checksum") == expected.get("model_checksum")
                and int(held.get("embedding_dim") or 0) == int(expected.get("embedding_dim") or 0)
                and bool(held.get("flip_average")) == bool(expected.get("flip_average"))
                and (None in sides or int(sides[0]) == int(sides[1])))  # the photo side the model letterboxes to

        def described(record: dict) -> str:
            side = f", {record['input_side']}px" if record.get("input_side") else ""
            return (f"model {record.get('model_checksum') or '(unrecorded)'} ({record.get('embedding_dim')}-d{side}, "
                    f"{_VIEWS[bool(record.get('flip_average'))]})")

        if not same:
            raise IndexMismatchError(f"{self.where} holds embeddings of {described(held)}, but {whose} is {described(expected)}, "
                                     "so their embeddings are not comparable; build into another collection "
                                     "(--milvus-collection NAME) or drop that one")

    def _property(self, name: str) -> Optional[dict]:
        properties = self.client.describe_collection(self.name).get("properties") or {}
        try:
            return json.loads(properties[name]) or None
        except (KeyError, TypeError, json.JSONDecodeError):
            return None

    def _set_property(self, name: str, value: Optional[dict]) -> None:
        self.client.alter_collection_properties(self.name, properties={name: json.dumps(value or {}, sort_keys=True)})

    def owner(self) -> Optional[dict]:
        """The index the collection belongs to: its id and the folder it was first built in."""
        return self._property(OWNER_PROPERTY)

    def set_owner(self, owner: dict) -> None:
        self._set_property(OWNER_PROPERTY, owner)

    def build_record(self) -> Optional[dict]:
        """The last build started: its generation and the fingerprint of what it embeds."""
        return self._property(BUILD_PROPERTY)

    def set_build_record(self, record: Optional[dict]) -> None:
        self._set_property(BUILD_PROPERTY, record)

    # ------------------------------------------------------------------------------- writing

    def write(self, keys: np.ndarray, ids: np.ndarray, vectors: np.ndarray, rows: pd.DataFrame) -> None:
        """Upsert one entity per row (an upsert replaces an entity with the same key: a retried
        write never duplicates), then make the writes durable."""
        for start in range(0, len(keys), WRITE_BATCH):
            end = start + WRITE_BATCH
            self.client.upsert(self.name, entities(keys[start:end], ids[start:end], vectors[start:end], rows.iloc[start:end]))
        self.client.flush(self.name)

    def delete(self, expression: str) -> None:
        self.client.delete(self.name, filter=expression)

    def flush(self) -> None:
        self.client.flush(self.name)

    # ------------------------------------------------------------------------------- reading

    def search(self, queries: np.ndarray, limit: int, expression: str) -> tuple[np.ndarray, np.ndarray]:
        """(Q, limit) scores and ids of the nearest entities matching ``expression``, best first;
        id -1 and score -inf where fewer match."""
        limit = min(int(limit), MAX_TOPK)
        scores = np.full((len(queries), limit), -np.inf, np.float32)
        ids = np.full((len(queries), limit), -1, np.int64)
        found = self.client.search(self.name, data=[q.tolist() for q in queries], limit=limit, filter=expression,
                                   output_fields=["id"], anns_field="vector", search_params={"metric_type": "IP"})
        for i, hits in enumerate(found):
            for j, hit in enumerate(hits):
                scores[i, j] = hit["distance"]
                ids[i, j] = hit["entity"]["id"]
        return scores, ids

    def count(self, expression: str = "") -> int:
        found = self.client.query(self.name, filter=expression, output_fields=["count(*)"])
        return int(found[0]["count(*)"]) if found else 0

    def rows_between(self, start: int, stop: int, fields: Sequence[str] = ("pk", "row")) -> list[dict]:
        """Every entity with ``start <= pk < stop`` (only ``fields``), in key order."""
        out: list[dict] = []
        for low in range(int(start), int(stop), READ_WINDOW):
            high = min(low + READ_WINDOW, int(stop))
            out += self.client.query(self.name, filter=f"pk >= {low} and pk < {high}", output_fields=list(fields),
                                     limit=READ_WINDOW)
        return sorted(out, key=lambda entity: entity["pk"])

    def vectors_of(self, keys: Sequence[int]) -> np.ndarray:
        """The stored embeddings of these keys, in their order."""
        keys = [int(k) for k in keys]
        found: dict[int, list] = {}
        for start in range(0, len(keys), WRITE_BATCH):
            chunk = keys[start:start + WRITE_BATCH]
            for entity in self.client.query(self.name, filter=f"pk in [{', '.join(map(str, chunk))}]", output_fields=["pk", "vector"]):
                found[int(entity["pk"])] = entity["vector"]
        missing = [k for k in keys if k not in found]
        if missing:
            raise IndexLoadError(f"{self.where} lacks the entities {missing[:10]} its index names; rebuild the index")
        return np.asarray([found[k] for k in keys], dtype=np.float32)
