"""A shop's own catalogue data (``indexer build/add --metadata``): the file format and its errors,
filters that read the shop's labels before the model's predictions, unknown filter values, clothes
types by name, and the data surviving save, load, remove, add, merge and format versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from indexer.catalogue_metadata import ATTRIBUTES_COLUMN, FIELDS_COLUMN, CatalogueFileError, read_catalogue
from indexer.errors import IndexLoadError
from indexer.filter_values import UnknownFilterValue, parse_clothes_type
from indexer.search import Filters, SearchEngine
from indexer.store import EmbeddingIndex
from tests.catalogue_helpers import SHAPE_WORD, SHOP_ATTRIBUTE, build_shop
from tests.cli_helpers import run_cli


@pytest.fixture(scope="module")
def shop(synth_root, tiny_checkpoint, tmp_path_factory):
    return build_shop(synth_root, tiny_checkpoint, tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="module")
def engine(shop):
    return SearchEngine.open(shop.index, device="cpu", runtime="torch")


def own_category(shop, gallery) -> list:
    """Each gallery row's category as the test's own CSV says (None where it gives none)."""
    return [shop.category_of.get(item) for item in gallery["item_id"]]


# ----------------------------------------------------------------------------- the file format

MALFORMED = [
    ("items.csv", "title,price\nA,1\n", 1, "no key column"),
    ("items.csv", "image,category\na.jpg,Tops,extra\n", 2, "3 cells for 2 columns"),
    ("items.csv", "image,clothes_type\na.jpg,upper\nb.jpg,sideways\n", 3, "clothes_type must be 1, 2, 3, upper, lower or full"),
    ("items.csv", "image,item_id,category\n,,Tops\n", 2, "no key"),
    ("items.csv", "image,category\na.jpg,A\nb.jpg,B\n./a.jpg,C\n", 4, "given again (first on line 2)"),
    ("items.csv", "image,image\na.jpg,b.jpg\n", 1, "appears twice"),
    ("items.csv", "", 1, "no header row"),
    ("items.csv", b"image,title\na.jpg,ok\nb.jpg,\xff\xfe\n", 3, "not UTF-8"),
    ("items.jsonl", '{"image": "a.jpg"}\n{"image": \n', 2, "not valid JSON"),
    ("items.jsonl", '\n["a.jpg"]\n', 2, "expected a JSON object"),
    ("items.jsonl", '{"image": "a.jpg", "attributes": {"x": 1}}\n', 1, "attributes must be names"),
    ("items.jsonl", '{"image": "a.jpg", "price": NaN}\n', 1, "cannot be stored as JSON"),
]


@pytest.mark.parametrize("name,content,line,problem", MALFORMED)
def test_malformed_metadata_files_name_the_file_line_and_problem(tmp_path, name, content, line, problem):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(CatalogueFileError) as refused:
        read_catalogue(path)
    message = str(refused.value)
    assert message.startswith(f"{path}, line {line}: ") and problem in message, message


def test_other_metadata_file_problems_and_the_command_line(tmp_path, capsys, tiny_checkpoint, shop):
    for path, problem in ((tmp_path / "items.xlsx", "must be .csv or .jsonl"), (tmp_path / "missing.csv", "no such file")):
        if path.suffix == ".xlsx":
            path.write_text("image\n")
        with pytest.raises(CatalogueFileError, match=problem):
            read_catalogue(path)
    header_only = tmp_path / "empty.csv"
    header_only.write_text("image,category\n")
    with pytest.raises(CatalogueFileError, match="holds no rows"):
        read_catalogue(header_only)

    bad = tmp_path / "bad.csv"
    bad.write_text("image,clothes_type\nitem/a.jpg,7\n")
    out = tmp_path / "never"
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", shop.photos, "--metadata", bad, "--out", out)
    assert code == 2 and f"{bad}, line 2: clothes_type must be" in err and not out.exists()
    code, _, err = run_cli(capsys, "add", shop.index, shop.photos, "--metadata", bad)
    assert code == 2 and f"{bad}, line 2" in err


def test_build_reports_rows_that_match_no_photo_and_keeps_the_rest(shop):
    lines = shop.csv.read_text().splitlines()
    for key in shop.unmatched_keys:
        line = next(n for n, text in enumerate(lines, start=1) if key in text)
        assert f"{shop.csv}, line {line}: {key}" in shop.build_err
    assert "2 row(s)" in shop.build_err
    gallery = EmbeddingIndex.load(shop.index).metadata
    given = {i for i, own in zip(gallery.index, own_category(shop, gallery)) if own} | set(
        gallery.index[gallery["image_relpath"].isin(shop.stitched)])
    assert f"catalogue data given to {len(given)} photos" in shop.build_out


# ----------------------------------------------------------------------------- filters

def test_filtering_by_the_shops_category_returns_every_item_the_unfiltered_search_ranks_in_its_top_k(shop, engine):
    gallery = engine.index.metadata
    item_category = shop.category_of
    assert set(item_category.values()) == {"Tops", "Bottoms"}
    assert not set(item_category.values()) & set(engine.predictor.category_names)  # only the shop's labels can match
    k = 6
    # photos of items of either category and of neither: the unfiltered top k mixes the three
    own = own_category(shop, gallery)
    queries = [gallery["image_path"][[o == c for o in own]].iloc[n] for c in ("Tops", "Bottoms", None) for n in (0, -1)]
    seen = {"Tops": 0, "Bottoms": 0}
    for photo in queries:
        unfiltered = engine.query(photo, k=k).matches
        for category in ("Tops", "Bottoms"):
            filtered = engine.query(photo, k=k, category=category.lower()).matches  # any case
            wanted = [item for item in unfiltered["item_id"] if item_category.get(item) == category]
            assert set(wanted) <= set(filtered["item_id"]), (photo, category)
            seen[category] += len(wanted)
            if Path(photo).parent.name in wanted:
                assert filtered["item_id"].iloc[0] == Path(photo).parent.name  # the photo's own item still first
            assert len(filtered) == min(k, sum(1 for c in item_category.values() if c == category))
            assert {item_category.get(item) for item in filtered["item_id"]} == {category}
            assert list(filtered["score"]) == sorted(filtered["score"], reverse=True)
    assert min(seen.values()) >= 2  # the check above was not vacuous


def test_filters_read_the_shop_labels_where_given_and_predictions_elsewhere(shop, engine):
    gallery = engine.index.metadata
    own = own_category(shop, gallery)
    unlabelled = [p for p, o in zip(gallery["predicted_category"], own) if o is None]
    predicted = max(set(unlabelled), key=unlabelled.count)
    expected = {i for i, o, p in zip(gallery.index, own, gallery["predicted_category"]) if o == predicted or (o is None and p == predicted)}
    assert set(SearchEngine.allowed_ids(Filters(category=predicted), engine.index)) == expected
    assert any(p == predicted for p, o in zip(gallery["predicted_category"], own) if o is not None)  # ... and those are left out

    stitched = set(gallery.index[gallery["image_relpath"].isin(shop.stitched)])
    assert set(SearchEngine.allowed_ids(Filters(attributes=(SHOP_ATTRIBUTE.upper(),)), engine.index)) == stitched
    others = gallery.drop(index=list(stitched))
    names = [a for text in others["predicted_attributes"].dropna() for a in text.split("|") if a]
    common = max(set(names), key=names.count)
    expected = {i for i, text in others["predicted_attributes"].items() if isinstance(text, str) and common in text.split("|")}
    if common == SHAPE_WORD:
        expected |= stitched
    assert set(SearchEngine.allowed_ids(Filters(attributes=(common,)), engine.index)) == expected and expected


def test_unknown_filter_values_are_errors_that_list_the_known_ones(shop, engine, capsys):
    photo = engine.index.metadata["image_path"].iloc[0]
    with pytest.raises(UnknownFilterValue) as refused:
        engine.query(photo, k=3, category="Nope")
    assert {"Tops", "Bottoms"} | set(engine.predictor.category_names) <= set(refused.value.allowed)
    with pytest.raises(UnknownFilterValue) as refused:
        engine.query(photo, k=3, attributes=["sparkly"])
    assert SHOP_ATTRIBUTE in refused.value.allowed and "sparkly" not in refused.value.allowed
    code, _, err = run_cli(capsys, "query", shop.index, photo, "--category", "Nope", "--device", "cpu")
    assert code == 2 and "Nope" in err and "Tops" in err and "Bottoms" in err


def test_clothes_types_by_name_or_number(shop, capsys):
    assert [parse_clothes_type(v) for v in (1, "2", " full ", "Upper", "LOWER", "full body", None, "")] == [1, 2, 3, 1, 2, 3, None, None]
    for bad in ("4", "sideways", 0, True):
        with pytest.raises(ValueError, match="upper, lower or full"):
            parse_clothes_type(bad)
    photo = EmbeddingIndex.load(shop.index).metadata["image_path"].iloc[0]
    answers = []
    for spelling in ("1", "upper", "UPPER"):
        code, out, err = run_cli(capsys, "query", shop.index, photo, "-k", 5, "--clothes-type", spelling, "--json", "--device", "cpu")
        assert code == 0, err
        answers.append(json.loads(out)["results"])
    assert answers[0] == answers[1] == answers[2]
    with pytest.raises(SystemExit):
        run_cli(capsys, "query", shop.index, photo, "--clothes-type", "sideways")
    assert "upper, lower or full" in capsys.readouterr().err


def test_query_says_where_each_label_came_from_and_prints_the_shops_fields(shop, capsys):
    gallery = EmbeddingIndex.load(shop.index).metadata
    relpath = shop.stitched[0]  # a photo with its own row: attributes, title, price
    photo = gallery.loc[gallery["image_relpath"] == relpath, "image_path"].iloc[0]
    code, out, err = run_cli(capsys, "query", shop.index, photo, "-k", 3, "--json", "--device", "cpu")
    assert code == 0, err
    first = json.loads(out)["results"][0]
    assert first["image_path"] == photo
    assert first["attributes_source"] == "catalogue" and SHOP_ATTRIBUTE in first["attributes"]
    assert first["fields"]["title"] == shop.fields_of[relpath]["title"] and first["fields"]["price"] == shop.fields_of[relpath]["price"]
    item = first["item_id"]
    assert first["category_source"] == ("catalogue" if item in shop.category_of else "predicted")
    code, out, err = run_cli(capsys, "query", shop.index, photo, "-k", 3, "--device", "cpu")
    assert code == 0 and f"title={shop.fields_of[relpath]['title']}" in out


# ----------------------------------------------------------------------------- keeping it

def catalogue_values(gallery) -> dict:
    """image path -> (category, clothes type, catalogue attributes, free fields) as stored."""
    columns = [c for c in ("category", "clothes_type", ATTRIBUTES_COLUMN, FIELDS_COLUMN) if c in gallery]
    return {rel: tuple(None if pd.isna(v) else v for v in row) for rel, row in zip(gallery["image_relpath"], gallery[columns].itertuples(index=False))}


def test_metadata_is_stored_as_given_and_survives_load_remove_and_add(shop, tmp_path, capsys):
    index_dir = tmp_path / "idx"
    shutil.copytree(shop.index, index_dir)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and {ATTRIBUTES_COLUMN, FIELDS_COLUMN} <= set(manifest["metadata_columns"])
    gallery = EmbeddingIndex.load(index_dir).metadata
    for rel, item, category, attributes, fields in zip(gallery["image_relpath"], gallery["item_id"], gallery["category"],
                                                       gallery[ATTRIBUTES_COLUMN], gallery[FIELDS_COLUMN]):
        assert (category if isinstance(category, str) else None) == shop.category_of.get(item)
        if rel in shop.stitched:
            assert attributes == f"{SHAPE_WORD}|{SHOP_ATTRIBUTE}" and json.loads(fields) == shop.fields_of[rel]
        elif item in shop.category_of:
            assert json.loads(fields) == shop.item_fields[item] and not isinstance(attributes, str)
        else:
            assert not isinstance(attributes, str) and not isinstance(fields, str)

    doomed = sorted(shop.category_of)[0]
    before = catalogue_values(gallery)
    code, _, err = run_cli(capsys, "remove", index_dir, "--item", doomed)
    assert code == 0, err
    after = EmbeddingIndex.load(index_dir).metadata
    assert catalogue_values(after) == {rel: v for rel, v in before.items() if not rel.startswith(f"{doomed}/")}

    # an add with a JSON Lines file: typed values kept; a row for a photo not in the add is reported
    new = tmp_path / "new"
    source = next(shop.photos.rglob("consumer_*.jpg"))
    (new / "sku-new").mkdir(parents=True)
    (new / "sku-new" / "a.png").write_bytes(_mirrored_png(source))
    kept_item = sorted(shop.category_of)[1]
    (new / kept_item).mkdir()
    (new / kept_item / "extra.png").write_bytes(_mirrored_png(source, size=(90, 120)))
    lines = [{"image": "sku-new/a.png", "category": "Tops", "clothes_type": "lower", "price": 12.5, "in_stock": True,
              "attributes": [SHAPE_WORD]}, {"image": "sku-new/missing.jpg", "title": "gone"}]
    metadata = tmp_path / "more.jsonl"
    metadata.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    code, out, err = run_cli(capsys, "add", index_dir, new, "--metadata", metadata, "--workers", 0, "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert f"{metadata}, line 2: sku-new/missing.jpg" in err and "catalogue data given to 1 photos" in out
    final = EmbeddingIndex.load(index_dir).metadata
    added = final[final["item_id"] == "sku-new"].iloc[0]
    assert added["category"] == "Tops" and int(added["clothes_type"]) == 2 and added[ATTRIBUTES_COLUMN] == SHAPE_WORD
    assert json.loads(added[FIELDS_COLUMN]) == {"price": 12.5, "in_stock": True}
    extra = final[final["image_path"].str.endswith("extra.png")].iloc[0]
    assert extra["category"] == shop.category_of[kept_item]  # a new photo of a known item keeps the item's data
    assert catalogue_values(final.drop(index=final.index[final["image_path"].str.contains("/new/")])) == catalogue_values(after)


def _mirrored_png(source: Path, size=None) -> bytes:
    import io

    from PIL import Image, ImageOps

    image = ImageOps.mirror(Image.open(source).convert("RGB"))
    if size:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_metadata_survives_sharded_builds_and_their_merge(shop, tiny_checkpoint, tmp_path, capsys):
    shards = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", shop.photos, "--metadata", shop.csv,
                               "--out", out, "--shard", f"{i}/2", "--workers", 0, "--no-progress", "--device", "cpu")
        assert code == 0, err
        shards.append(out)
    code, _, err = run_cli(capsys, "merge", tmp_path / "merged", *shards)
    assert code == 0, err
    merged = EmbeddingIndex.load(tmp_path / "merged").metadata
    assert catalogue_values(merged) == catalogue_values(EmbeddingIndex.load(shop.index).metadata)


def test_indexes_without_metadata_keep_format_1_and_filter_by_predictions(tiny_index, tmp_path):
    index_dir = tmp_path / "plain"
    shutil.copytree(tiny_index, index_dir)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and ATTRIBUTES_COLUMN not in manifest["metadata_columns"]
    index = EmbeddingIndex.load(index_dir)
    index.remove_ids(index.ids[:1])
    index.save(index_dir)  # saved again without catalogue data: still readable by older versions
    assert json.loads((index_dir / "manifest.json").read_text())["format_version"] == 1
    gallery = index.metadata
    attribute = next(a for text in gallery["predicted_attributes"].dropna() for a in text.split("|") if a)
    expected = {i for i, text in gallery["predicted_attributes"].items() if isinstance(text, str) and attribute in text.split("|")}
    assert set(SearchEngine.allowed_ids(Filters(attributes=(attribute,)), index)) == expected

    manifest = json.loads((index_dir / "manifest.json").read_text())
    manifest["format_version"] = 3
    (index_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match="format version 3; .* reads up to 2"):
        EmbeddingIndex.load(index_dir)


def test_set_metadata_refuses_unknown_ids_and_reserved_columns(shop, tmp_path):
    index = EmbeddingIndex.load(shop.index)
    with pytest.raises(KeyError):
        index.set_metadata([int(np.max(index.ids)) + 99], {"category": ["x"]})
    with pytest.raises(ValueError, match="cannot be set"):
        index.set_metadata(index.ids[:1], {"item_id": ["x"]})
    index.set_metadata(index.ids[:2], {"category": ["Tops", None], "clothes_type": [3, None]})
    assert index.metadata.loc[index.ids[0], "category"] == "Tops" and index.metadata["category"].isna().loc[index.ids[1]]
    assert int(index.metadata.loc[index.ids[0], "clothes_type"]) == 3 and index.unsaved_changes == 1
