"""The HTTP API a marketplace expects, against a real uvicorn server on an index built with the
shop's catalogue data: pages and a score threshold, batch searches, /version, the shop's data in
results and adds, refused unknown fields and filter values, and an OpenAPI document that validates
and describes every body the tests receive."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import requests

import fashionnet
from indexer.store import EmbeddingIndex
from tests.catalogue_helpers import SHAPE_WORD, SHOP_ATTRIBUTE, build_shop
from tests.test_api import REQUEST_TIMEOUT, consumer_photos, serving


class Api:
    """Requests to one server; every answer is checked against the server's own /openapi.json."""

    def __init__(self, url: str):
        from openapi_spec_validator import validate

        self.url = url
        self.spec = requests.get(f"{url}/openapi.json", timeout=REQUEST_TIMEOUT).json()
        validate(self.spec)
        self.checked = 0

    def __call__(self, method: str, path: str, template: str | None = None, **kwargs) -> requests.Response:
        response = requests.request(method, f"{self.url}{path}", timeout=REQUEST_TIMEOUT, **kwargs)
        self.check(response, method, template or path.split("?")[0])
        return response

    def check(self, response: requests.Response, method: str, template: str) -> None:
        documented = self.spec["paths"][template][method.lower()]["responses"]
        entry = documented.get(str(response.status_code))
        assert entry is not None, f"{method} {template} answered {response.status_code}, which its document does not list"
        if not response.headers.get("content-type", "").startswith("application/json"):
            assert "application/json" not in entry.get("content", {}), response.headers
            return
        schema = entry["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**schema, "components": self.spec["components"]}, cls=jsonschema.Draft202012Validator)
        self.checked += 1

    def search(self, photo: Path, path: str = "/search", **fields) -> requests.Response:
        with open(photo, "rb") as f:
            return self("POST", path, files={"image": (photo.name, f, "image/jpeg")}, data=fields)

    def batch(self, photos: list[tuple[str, bytes]], **fields) -> requests.Response:
        return self("POST", "/search/batch", files=[("images", (name, body, "image/jpeg")) for name, body in photos], data=fields)


def error_of(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]["code"] == code, response.text
    return response.json()["error"]


@pytest.fixture(scope="module")
def shop(synth_root, tiny_checkpoint, tmp_path_factory):
    return build_shop(synth_root, tiny_checkpoint, tmp_path_factory.mktemp("market"))


@pytest.fixture(scope="module")
def api(shop, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("market_read") / "idx"
    shutil.copytree(shop.index, index_dir)
    with serving(index_dir, index_dir.parent / "server.log") as url:
        yield Api(url)


@pytest.fixture(scope="module")
def gallery(shop):
    return EmbeddingIndex.load(shop.index).metadata


def test_the_openapi_document_validates_and_declares_the_real_error_body(api):
    spec = api.spec
    text = json.dumps(spec)
    assert "HTTPValidationError" not in text and '"detail"' not in text
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    expected = {("/search", "post"), ("/search/batch", "post"), ("/items", "post"), ("/items/{item_id}", "get"), ("/items/{item_id}", "patch"),
                ("/items/{item_id}", "delete"), ("/images/{image_id}", "get"), ("/health", "get"), ("/info", "get"), ("/version", "get")}
    operations = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert operations == expected
    for path, method in operations:
        responses = spec["paths"][path][method]["responses"]
        assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (path, method)
        ok = responses["200"]["content"]
        if path != "/images/{image_id}":
            assert ok["application/json"]["schema"].get("$ref", "").startswith("#/components/schemas/"), (path, method)


def test_pages_and_a_score_threshold(api, gallery):
    photo = Path(gallery["image_path"].iloc[0])
    whole = api.search(photo, k=6).json()
    assert [r["rank"] for r in whole["results"]] == list(range(1, 7)) and whole["next_offset"] == 6
    first, second = api.search(photo, k=3).json(), api.search(photo, k=3, offset=3).json()
    assert [r["id"] for r in first["results"] + second["results"]] == [r["id"] for r in whole["results"]]
    assert [r["rank"] for r in second["results"]] == [4, 5, 6] and first["next_offset"] == 3 and second["query"]["offset"] == 3
    items = gallery["item_id"].nunique()
    last = api.search(photo, k=5, offset=items - 2).json()
    assert len(last["results"]) == 2 and last["next_offset"] is None

    scores = [r["score"] for r in whole["results"]]
    threshold = (scores[3] + scores[4]) / 2
    above = api.search(photo, k=6, min_score=threshold).json()
    assert [r["id"] for r in above["results"]] == [r["id"] for r in whole["results"][:4]] and above["next_offset"] is None
    assert above["query"]["min_score"] == pytest.approx(threshold)
    assert api.search(photo, k=6, min_score=1.0001).status_code == 422
    for field, value in (("offset", -1), ("offset", 10_001), ("k", 0), ("min_score", "high")):
        assert field in error_of(api.search(photo, **{field: value}), 422, "invalid_request")["message"]


def test_a_batch_answers_each_photo_in_order_and_a_bad_photo_alone(api, gallery, synth_root):
    good = [Path(gallery["image_path"].iloc[0]), consumer_photos(synth_root)[0]]
    body = api.batch([(good[0].name, good[0].read_bytes()), ("notes.jpg", b"not pixels"), (good[1].name, good[1].read_bytes())],
                     k=4, category="Tops").json()
    assert body["count"] == 3 and [a["index"] for a in body["answers"]] == [0, 1, 2]
    assert [a["file"] for a in body["answers"]] == [good[0].name, "notes.jpg", good[1].name]
    bad = body["answers"][1]
    assert bad["results"] is None and bad["error"]["code"] == "invalid_image" and "notes.jpg" in bad["error"]["message"]
    for answer, photo in zip([body["answers"][0], body["answers"][2]], good):
        alone = api.search(photo, k=4, category="Tops").json()
        assert answer["error"] is None and [r["id"] for r in answer["results"]] == [r["id"] for r in alone["results"]]
        assert answer["prediction"]["category"] == alone["prediction"]["category"]
    error_of(api.batch([(good[0].name, good[0].read_bytes())], category="Nope"), 422, "unknown_filter_value")
    too_many = [(f"{n}.jpg", good[0].read_bytes()) for n in range(33)]
    assert "at most 32" in error_of(api.batch(too_many), 422, "invalid_request")["message"]


def test_version_names_the_package_the_index_format_and_the_model(api, shop):
    body = api("GET", "/version").json()
    manifest = json.loads((shop.index / "manifest.json").read_text())
    assert body["package_version"] == fashionnet.__version__
    assert body["index"]["format_version"] == manifest["format_version"] == 2
    assert body["model"]["checksum"] == manifest["model_checksum"] and body["model"]["checkpoint_name"] == "checkpoint.pt"


def test_unknown_fields_are_refused_wherever_they_come(api, gallery):
    photo = Path(gallery["image_path"].iloc[0])
    error = error_of(api.search(photo, min_scor=0.5), 422, "unknown_field")
    assert error["details"][0]["field"] == "min_scor" and "min_score" in error["message"]
    error = error_of(api.search(photo, path="/search?offset=2"), 422, "unknown_field")
    assert error["details"] == [{"field": "offset", "problem": error["details"][0]["problem"]}] and "query parameter" in error["message"]
    assert "verbose" in error_of(api("GET", "/health?verbose=1"), 422, "unknown_field")["message"]
    item = gallery["item_id"].iloc[0]
    error = error_of(api("PATCH", f"/items/{item}", "/items/{item_id}", json={"category": "Tops", "colour": "red"}), 422, "unknown_field")
    assert [d["field"] for d in error["details"]] == ["colour"]
    assert "title" in error_of(api("POST", "/items", files=[("images", ("a.jpg", photo.read_bytes()))], data={"titel": "x"}),
                               422, "unknown_field")["message"]


def test_unknown_filter_values_list_the_known_ones_and_clothes_types_take_names(api, gallery):
    photo = Path(gallery["image_path"].iloc[0])
    info = api("GET", "/info").json()
    error = error_of(api.search(photo, category="Nope"), 422, "unknown_filter_value")
    assert error["details"]["field"] == "category" and {"Tops", "Bottoms"} <= set(error["details"]["allowed"])
    assert set(info["filters"]["category"]) <= set(error["details"]["allowed"]) == set(info["known_values"]["category"])
    error = error_of(api.search(photo, attributes="boxy,sparkly"), 422, "unknown_filter_value")
    assert error["details"]["value"] == "sparkly" and {SHAPE_WORD, SHOP_ATTRIBUTE} <= set(error["details"]["allowed"])

    types = sorted({r["clothes_type"] for r in api.search(photo, k=1000, per_item="false").json()["results"]} - {None})
    names = {1: "upper", 2: "lower", 3: "full"}
    for number in types:
        by_number = api.search(photo, k=5, clothes_type=number).json()["results"]
        by_name = api.search(photo, k=5, clothes_type=names[number].upper()).json()["results"]
        assert by_number and [r["id"] for r in by_number] == [r["id"] for r in by_name]
        assert {r["clothes_type"] for r in by_name} == {number}
    assert "upper, lower or full" in error_of(api.search(photo, clothes_type="sideways"), 422, "invalid_request")["message"]


def test_results_carry_the_shop_data_and_its_category_filter_keeps_the_unfiltered_top_k(api, shop, gallery):
    k = 5
    tops = [item for item, category in shop.category_of.items() if category == "Tops"]
    photo = Path(gallery.loc[gallery["item_id"] == tops[0], "image_path"].iloc[0])
    unfiltered = api.search(photo, k=k).json()["results"]
    filtered = api.search(photo, k=k, category="Tops").json()["results"]
    wanted = [r["item_id"] for r in unfiltered if shop.category_of.get(r["item_id"]) == "Tops"]
    assert wanted and set(wanted) <= {r["item_id"] for r in filtered}
    assert {(r["category"], r["category_source"]) for r in filtered} == {("Tops", "catalogue")}

    every = api.search(photo, k=1000, per_item="false").json()["results"]
    assert len(every) == len(gallery)
    for result in every:
        own = shop.category_of.get(result["item_id"])
        assert result["category_source"] == ("catalogue" if own else "predicted")
        assert result["category"] == (own or gallery.loc[result["id"], "predicted_category"])
        if result["image_path"] in shop.stitched:
            assert result["attributes"] == [SHAPE_WORD, SHOP_ATTRIBUTE] and result["attributes_source"] == "catalogue"
            assert result["fields"] == shop.fields_of[result["image_path"]]
        else:
            assert result["attributes_source"] in ("predicted", None)
            assert result["fields"] == shop.item_fields.get(result["item_id"], {})
    item = api("GET", f"/items/{tops[0]}", "/items/{item_id}").json()
    assert {image["category"] for image in item["images"]} == {"Tops"}
    assert item["count"] == len(item["images"]) == int((gallery["item_id"] == tops[0]).sum())


def test_adds_carry_the_shop_data_and_patch_changes_it(shop, synth_root, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(shop.index, index_dir)
    photo = consumer_photos(synth_root)[-1]
    with serving(index_dir, tmp_path / "server.log") as url:
        api = Api(url)
        added = api("POST", "/items", files=[("images", (photo.name, photo.read_bytes()))],
                    data={"item_id": "sku-9", "category": "Bottoms", "clothes_type": "lower", "attributes": "boxy, Hand-stitched",
                          "title": "A skirt", "price": "20.00", "fields": json.dumps({"brand": "Zed", "sizes": [36, 38]})})
        assert added.status_code == 200, added.text
        image = added.json()["images"][0]
        assert (image["category"], image["category_source"], image["clothes_type"], image["clothes_type_source"]) == \
               ("Bottoms", "catalogue", 2, "catalogue")
        assert image["attributes"] == [SHAPE_WORD, SHOP_ATTRIBUTE]
        assert image["fields"] == {"brand": "Zed", "sizes": [36, 38], "title": "A skirt", "price": "20.00"}
        found = api.search(photo, k=3, category="bottoms", clothes_type="lower").json()["results"][0]
        assert found["item_id"] == "sku-9" and found["fields"]["title"] == "A skirt"

        patched = api("PATCH", "/items/sku-9", "/items/{item_id}", json={"category": "Tops", "fields": {"price": None, "colour": "red"}})
        assert patched.status_code == 200, patched.text
        assert patched.json()["updated"] == 1
        image = api("GET", "/items/sku-9", "/items/{item_id}").json()["images"][0]
        assert image["category"] == "Tops" and image["fields"] == {"brand": "Zed", "sizes": [36, 38], "title": "A skirt", "colour": "red"}
        assert image["attributes"] == [SHAPE_WORD, SHOP_ATTRIBUTE]  # left out: unchanged
        assert api.search(photo, k=3, category="Tops").json()["results"][0]["item_id"] == "sku-9"
        cleared = api("PATCH", "/items/sku-9", "/items/{item_id}", json={"category": None}).json()["images"][0]
        row = EmbeddingIndex.load(index_dir).metadata.query("item_id == 'sku-9'").iloc[0]
        assert cleared["category_source"] == "predicted" and cleared["category"] == row["predicted_category"]

        error_of(api("PATCH", "/items/no-such-item", "/items/{item_id}", json={"category": "Tops"}), 404, "unknown_item")
        error_of(api("PATCH", "/items/sku-9", "/items/{item_id}", json={"clothes_type": 7}), 422, "invalid_request")
        for data in ({"fields": "{not json"}, {"fields": "[1, 2]"}, {"clothes_type": "sideways"}):
            error_of(api("POST", "/items", files=[("images", ("b.jpg", photo.read_bytes()))], data={"item_id": "sku-10", **data}),
                     422, "invalid_request")
        error_of(api("GET", "/items/sku-10", "/items/{item_id}"), 404, "unknown_item")
        removed = api("DELETE", "/items/sku-9", "/items/{item_id}").json()
        assert removed["removed"] == 1
        assert api.checked >= 10  # every answer above was checked against the document
