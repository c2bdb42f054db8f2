"""The HTTP API's answers as pydantic models: FastAPI writes them into ``/openapi.json``, so the
document describes the bodies the server really sends, errors included.

Answers allow fields beyond those declared (``extra="allow"``): a newer server may say more, and a
client reading the document still finds every field it names. Requests are the opposite: a field
the endpoint does not take is refused (:mod:`indexer.api_errors`).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Source = Optional[Literal["catalogue", "predicted"]]


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(Answer):
    code: str = Field(description="short machine-readable reason, e.g. invalid_request, unknown_item")
    message: str = Field(description="a sentence for people")
    details: Any = Field(None, description="more about it where there is more, e.g. the allowed values of a filter")


class ErrorBody(Answer):
    """Every error answer: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


class Landmark(Answer):
    name: str
    x: float
    y: float
    visibility: str
    visible_prob: float
    confidence: Optional[float] = None
    low_confidence: bool


class AttributeScore(Answer):
    name: str
    prob: float


class CategoryScore(Answer):
    name: str
    prob: float


class Prediction(Answer):
    landmarks: list[Landmark]
    category: Optional[str]
    category_prob: float
    category_sure: bool = Field(description="the category is likelier right than wrong; when false, show likely_categories")
    likely_categories: list[CategoryScore] = Field(description="the most probable categories, most probable first")
    landmarks_placed: Optional[bool] = Field(description="at least half of the garment's landmarks are sure; "
                                                         "false: the model cannot place them (null: no heatmap confidence)")
    attributes: list[AttributeScore]
    original_size: list[int]
    clothes_type: Optional[int]
    unfamiliarity: Optional[float]
    unfamiliar: Optional[bool]
    garment_box: Optional[list[float]]
    cropped: bool
    below_face: bool


class GalleryImage(Answer):
    id: int
    item_id: Optional[str]
    category: Optional[str] = Field(description="the shop's category where the image has one, else the predicted one")
    category_source: Source = Field(description="catalogue: the shop's own label (or an annotation); predicted: the model's")
    clothes_type: Optional[int] = Field(description="1 upper, 2 lower, 3 full body")
    clothes_type_source: Source
    attributes: list[str]
    attributes_source: Source
    fields: dict[str, Any] = Field(description="the shop's free fields for this image: title, price, seller, ...")
    image_url: str
    image_path: Optional[str] = Field(description="relative to the catalogue's image root, or to the index (uploads/...)")
    unfamiliar: Optional[bool] = Field(None, description="the photo did not look like a garment photo when it was added "
                                                         "(null: the model has no such check)")


class SearchResult(GalleryImage):
    rank: int = Field(description="1 for the best match; continues across pages (offset)")
    score: float = Field(description="cosine similarity of the query and this image, -1 to 1")
    match: Optional[bool] = Field(None, description="a close match: the score reaches close_match_score and the query "
                                                    "looks like a garment photo (null: the index has no close-match score)")


class SearchFilters(Answer):
    clothes_type: Optional[int]
    category: Optional[str]
    attributes: list[str]


class QueryEcho(Answer):
    file: str
    k: int
    offset: int
    min_score: Optional[float]
    per_item: bool
    exclude_unfamiliar: bool = False
    filters: SearchFilters


class SearchAnswer(Answer):
    query: QueryEcho
    prediction: Prediction
    results: list[SearchResult]
    next_offset: Optional[int] = Field(description="the offset of the next page; null when this page was the last")
    match: Optional[bool] = Field(None, description="is any result on this page a close match? false: say 'no close match'")
    close_match_score: Optional[float] = Field(None, description="the score from which a result is a close match in this catalogue")
    unfamiliar: Optional[bool] = Field(None, description="the query photo does not look like a garment photo")


class BatchEntry(Answer):
    """One photo's answer in a batch: its results, or its own error."""

    index: int = Field(description="position of the photo in the request, from 0")
    file: str
    prediction: Optional[Prediction] = None
    results: Optional[list[SearchResult]] = None
    next_offset: Optional[int] = None
    match: Optional[bool] = None
    close_match_score: Optional[float] = None
    unfamiliar: Optional[bool] = None
    error: Optional[ErrorDetail] = Field(None, description="why this photo got no results; the others are answered")


class BatchAnswer(Answer):
    query: QueryEcho
    count: int
    answers: list[BatchEntry]


class Health(Answer):
    status: Literal["ok"]
    count: int


class ModelVersion(Answer):
    checksum: str
    backbone: str
    checkpoint_name: Optional[str] = Field(description="the file name of the checkpoint the index was built with")


class IndexVersion(Answer):
    format_version: Optional[int] = Field(description="format of the index served")
    newest_format_readable: int


class Version(Answer):
    package_version: str
    api: str
    index: IndexVersion
    model: ModelVersion


class Info(Answer):
    index: dict[str, Any]
    description: str
    model: dict[str, Any]
    filters: dict[str, list]
    known_values: dict[str, list[str]] = Field(description="every category and attribute a filter may name")
    max_upload_bytes: int
    access: dict[str, bool]


class ItemImages(Answer):
    item_id: str
    count: int
    images: list[GalleryImage]


class FileProblem(Answer):
    file: str
    problem: str


class Added(Answer):
    item_id: str
    added: int
    count: int
    images: list[GalleryImage]
    skipped: list[FileProblem] = Field(description="photos not added: unreadable, or refused as not garment photos (reject_unfamiliar)")
    duplicates: list[FileProblem]
    flagged: list[str] = Field([], description="photos added but flagged as not looking like garment photos")


class Removed(Answer):
    item_id: str
    removed: int
    count: int


class Updated(ItemImages):
    updated: int


class CatalogueUpdate(BaseModel):
    """The shop's data for every image of an item; a field left out is unchanged, null clears it
    (filters then read the prediction). ``fields`` merges: a key set to null is removed."""

    model_config = ConfigDict(extra="forbid")
    category: Optional[str] = None
    clothes_type: Optional[int | str] = Field(None, description="1, 2, 3, upper, lower or full")
    attributes: Optional[list[str]] = None
    fields: Optional[dict[str, Any]] = Field(None, description="free fields: title, price, seller, ...")


def error_responses(*statuses: int) -> dict:
    """OpenAPI ``responses`` entries for these error statuses, each with the real error body."""
    said = {400: "bad request", 401: "an API key is needed", 403: "refused by the access rules", 404: "not found",
            409: "conflict: nothing changed", 413: "the request body is over the upload limit",
            422: "invalid request: a bad field, an unknown field or filter value (details list the allowed values), "
                 "or an unreadable image", 503: "the index cannot be read"}
    return {status: {"model": ErrorBody, "description": said.get(status, "error")} for status in statuses}


def document_real_errors(app) -> None:
    """``/openapi.json`` with this server's error body wherever FastAPI wrote its own validation
    error (``{"detail": ...}``, which this server never sends), and without that schema."""
    generate = app.openapi
    real = error_responses(422)[422]

    def openapi() -> dict:
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                said = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(said):
                    operation["responses"]["422"] = {"description": real["description"],
                                                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    app.openapi = openapi
