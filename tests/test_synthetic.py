"""The synthetic DeepFashion generator: official layouts, honest labels, determinism, safety."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionnet.data import synthetic as synth
from fashionnet.data.synthetic import writers as synth_writers
from fashionnet.landmarks import ABSENT, CLOTHES_TYPE_SLOTS, OCCLUDED, TRUNCATED, VISIBLE

# A smaller size than "tiny" for the tests that only need *a* dataset (CLI, overwrite, seeds).
MICRO = synth.SizeSpec(families=4, family_size=2, inshop_views=(2, 2), shop_images=(1, 1), consumer_images=(1, 1))

ANNOTATION_FILES = {
    "inshop": [
        "Anno/list_attr_cloth.txt",
        "Anno/list_attr_items.txt",
        "Anno/list_bbox_inshop.txt",
        "Anno/list_category_cloth.txt",
        "Anno/list_category_img.txt",
        "Anno/list_description_inshop.json",
        "Anno/list_item_inshop.txt",
        "Anno/list_landmarks_inshop.txt",
        "Eval/list_eval_partition.txt",
    ],
    "consumer2shop": [
        "Anno/list_attr_cloth.txt",
        "Anno/list_attr_items.txt",
        "Anno/list_attr_type.txt",
        "Anno/list_bbox_consumer2shop.txt",
        "Anno/list_category_cloth.txt",
        "Anno/list_category_img.txt",
        "Anno/list_item_consumer2shop.txt",
        "Anno/list_landmarks_consumer2shop.txt",
        "Eval/list_eval_partition.txt",
    ],
}


@pytest.fixture(scope="module")
def tiny(synth_root) -> Path:
    """The session's tiny benchmark (size "tiny", seed 0; generated once in conftest.py). Read only."""
    return synth_root


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(synth.SIZES, "micro", MICRO)
    return "micro"


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _records(path: Path) -> list[list[str]]:
    """Records of a list file: count line and header line skipped, whitespace-separated."""
    lines = _lines(path)
    assert int(lines[0]) == len(lines) - 2, f"{path}: count line {lines[0]} but {len(lines) - 2} records"
    return [ln.split() for ln in lines[2:]]


def _annotation_bytes(root: Path) -> dict[str, bytes]:
    return {f"{layout}/{rel}": (root / layout / rel).read_bytes() for layout, files in ANNOTATION_FILES.items() for rel in files}


def _landmark_rows(root: Path, layout: str) -> dict[str, tuple[int, int, list[tuple[int, int, int]]]]:
    rows = {}
    for r in _records(root / layout / "Anno" / f"list_landmarks_{layout}.txt"):
        vals = [int(v) for v in r[3:]]
        rows[r[0]] = (int(r[1]), int(r[2]), [tuple(vals[i : i + 3]) for i in range(0, len(vals), 3)])
    return rows


def test_same_seed_gives_identical_files_whatever_the_worker_count(micro, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    synth.generate_synthetic_deepfashion(one, size=micro, seed=0, workers=1, progress=False)
    summary = synth.generate_synthetic_deepfashion(two, size=micro, seed=0, workers=2, progress=False)
    assert summary["workers"] == 2
    assert _annotation_bytes(one) == _annotation_bytes(two)
    images = sorted(p.relative_to(one) for p in one.rglob("*.jpg"))
    assert len(images) == 8 * 4 and images == sorted(p.relative_to(two) for p in two.rglob("*.jpg"))
    assert all((one / p).read_bytes() == (two / p).read_bytes() for p in images)


def test_different_seed_gives_a_different_benchmark(micro, tmp_path):
    synth.generate_synthetic_deepfashion(tmp_path / "s0", size=micro, seed=0, workers=1, progress=False)
    synth.generate_synthetic_deepfashion(tmp_path / "s1", size=micro, seed=1, workers=1, progress=False)
    a, b = _annotation_bytes(tmp_path / "s0"), _annotation_bytes(tmp_path / "s1")
    assert a["inshop/Anno/list_landmarks_inshop.txt"] != b["inshop/Anno/list_landmarks_inshop.txt"]
    assert a["inshop/Anno/list_attr_items.txt"] != b["inshop/Anno/list_attr_items.txt"]


def test_tiny_summary_covers_every_clothes_type_and_split(tiny):
    manifest = json.loads((tiny / synth.MANIFEST_NAME).read_text())
    assert manifest["items"] == 24 and manifest["families"] == 6
    types = {int(r[1]) for r in _records(tiny / "inshop/Anno/list_bbox_inshop.txt")}
    assert types == {1, 2, 3}
    assert {r[2] for r in _records(tiny / "inshop/Eval/list_eval_partition.txt")} == {"train", "query", "gallery"}
    assert {r[3] for r in _records(tiny / "consumer2shop/Eval/list_eval_partition.txt")} == {"train", "val", "test"}


def test_every_file_has_count_header_and_right_columns(tiny):
    n_attr = len(synth.ATTRIBUTES)
    for layout, files in ANNOTATION_FILES.items():
        root = tiny / layout
        for rel in files:
            assert (root / rel).is_file(), f"missing {layout}/{rel}"
        # list_item_*: count line then ids, no header.
        items = _lines(root / "Anno" / f"list_item_{layout}.txt")
        assert int(items[0]) == len(items) - 1 == 24 and all(i.startswith("id_") for i in items[1:])
        attr_cloth = _records(root / "Anno/list_attr_cloth.txt")
        assert len(attr_cloth) == n_attr >= 20
        assert all(r[-1] in {"1", "2", "3", "4", "5"} for r in attr_cloth)
        names = [" ".join(r[:-1]) for r in attr_cloth]  # names may contain spaces
        assert names == list(synth.ATTRIBUTE_NAMES) and any(" " in n for n in names)
        for r in _records(root / "Anno/list_attr_items.txt"):
            assert len(r) == 1 + n_attr and set(r[1:]) <= {"1", "-1"}
        cats = _records(root / "Anno/list_category_cloth.txt")
        assert [r[0] for r in cats] == [c.name for c in synth.CATEGORIES]
        images = [r[0] for r in _records(root / "Anno/list_category_img.txt")]
        for r in _records(root / "Anno/list_category_img.txt"):
            assert len(r) == 2 and 1 <= int(r[1]) <= len(cats)
            assert r[0].split("/")[2] == cats[int(r[1]) - 1][0]  # the category is the path component
        boxes = _records(root / "Anno" / f"list_bbox_{layout}.txt")
        assert [r[0] for r in boxes] == images and all(len(r) == 7 for r in boxes)
        landmarks = _records(root / "Anno" / f"list_landmarks_{layout}.txt")
        assert [r[0] for r in landmarks] == images
        for r in landmarks:
            assert len(r) == 3 + 3 * len(CLOTHES_TYPE_SLOTS[int(r[1])])
            assert 1 <= int(r[2]) <= 5
        for name in images:
            assert (root / name).is_file()
    inshop_part = _records(tiny / "inshop/Eval/list_eval_partition.txt")
    assert all(len(r) == 3 for r in inshop_part)
    c2s_part = _records(tiny / "consumer2shop/Eval/list_eval_partition.txt")
    assert all(len(r) == 4 and "/comsumer_" in r[0] and "/shop_" in r[1] for r in c2s_part)
    assert len(_records(tiny / "consumer2shop/Anno/list_attr_type.txt")) == 5
    desc = json.loads((tiny / "inshop/Anno/list_description_inshop.json").read_text())
    assert len(desc) == 24 and all(set(d) == {"item", "color", "description"} and d["description"] for d in desc)


def test_image_sizes_boxes_and_landmarks_agree_with_the_pixels(tiny):
    for layout in ("inshop", "consumer2shop"):
        root = tiny / layout
        boxes = {r[0]: (int(r[2]), [int(v) for v in r[3:]]) for r in _records(root / "Anno" / f"list_bbox_{layout}.txt")}
        for name, (ct, _, triples) in _landmark_rows(tiny, layout).items():
            w, h = Image.open(root / name).size
            source, (x1, y1, x2, y2) = boxes[name]
            if layout == "consumer2shop" and source == 2:
                assert 200 <= w <= 360 and 200 <= h <= 360
            else:
                assert (w, h) == (256, 256)
            assert 0 <= x1 <= x2 < w and 0 <= y1 <= y2 < h
            for vis, x, y in triples:
                assert vis in (VISIBLE, OCCLUDED, TRUNCATED)
                assert 0 <= x < w and 0 <= y < h
                if vis == VISIBLE:  # a visible landmark lies on the garment, hence in its box
                    assert x1 <= x <= x2 and y1 <= y <= y2, (name, x, y)


def test_visible_landmarks_lie_on_the_rendered_garment_mask():
    items = synth.make_items("tiny", seed=3)
    rng = np.random.default_rng(0)
    checked = 0
    for item in items[::4]:  # one item per family: all categories of the tiny set
        renders = [synth.render_shop_image(item, view, rng) for view in synth.VIEW_CODES]
        renders += [synth.render_consumer_image(item, rng) for _ in range(2)]
        for r in renders:
            for j in np.flatnonzero(r.visibility == VISIBLE):
                x, y = (int(v) for v in r.landmarks[j])
                assert r.garment_mask[y, x], (item.style.category, j, x, y)
                checked += 1
            absent = np.setdiff1d(np.arange(8), CLOTHES_TYPE_SLOTS[item.style.clothes_type])
            assert (r.visibility[absent] == ABSENT).all() and np.isnan(r.landmarks[absent]).all()
    assert checked > 100


def test_occluded_landmarks_lie_under_an_occluder_that_changed_the_pixels():
    items = synth.make_items("tiny", seed=5)
    occluded = 0
    for item in items[::2]:
        for k in range(2):
            with_occ = synth.render_consumer_image(item, np.random.default_rng([k, item.index]), degrade=False)
            without = synth.render_consumer_image(item, np.random.default_rng([k, item.index]), draw_occluders=False, degrade=False)
            np.testing.assert_array_equal(with_occ.garment_mask, without.garment_mask)  # same scene
            a, b = np.asarray(with_occ.image, np.float32), np.asarray(without.image, np.float32)
            # Landmarks hidden by the garment itself (turned bodies) are occluded in both renders.
            for j in np.flatnonzero((with_occ.visibility == OCCLUDED) & (without.visibility != OCCLUDED)):
                x, y = (int(v) for v in with_occ.landmarks[j])
                assert with_occ.occluder_mask[y, x]
                assert np.linalg.norm(a[y, x] - b[y, x]) > 30, "the occluder must visibly cover the landmark"
                occluded += 1
            unoccluded = with_occ.visibility == VISIBLE
            assert np.all(without.visibility[unoccluded] == VISIBLE)
    assert occluded >= 5


def test_truncated_landmarks_sit_on_the_frame_edge(tiny):
    truncated = 0
    for layout in ("inshop", "consumer2shop"):
        for name, (_, _, triples) in _landmark_rows(tiny, layout).items():
            w, h = Image.open(tiny / layout / name).size
            for vis, x, y in triples:
                if vis == TRUNCATED:
                    assert x in (0, w - 1) or y in (0, h - 1), (name, x, y)
                    truncated += 1
    assert truncated > 0


def test_consumer_photos_carry_occlusion_and_truncation(tiny):
    rows = _landmark_rows(tiny, "consumer2shop")
    consumer_vis = [v for name, (_, _, t) in rows.items() if "/comsumer_" in name for v, _, _ in t]
    assert consumer_vis.count(OCCLUDED) > 0 and consumer_vis.count(TRUNCATED) > 0
    assert consumer_vis.count(VISIBLE) > len(consumer_vis) / 2


def test_family_members_share_global_attributes_and_differ_in_a_detail(tiny):
    family_of = json.loads((tiny / synth.MANIFEST_NAME).read_text())["family_of_item"]
    names = [" ".join(r[:-1]) for r in _records(tiny / "inshop/Anno/list_attr_cloth.txt")]
    labels = {r[0]: np.array([int(v) for v in r[1:]]) for r in _records(tiny / "inshop/Anno/list_attr_items.txt")}
    category = {}
    for r in _records(tiny / "inshop/Anno/list_category_img.txt"):
        category.setdefault(r[0].split("/")[3], set()).add(r[1])
    detail = np.array([n in synth.DETAIL_ATTRIBUTES for n in names])
    members = defaultdict(list)
    for item, fam in family_of.items():
        members[fam].append(item)
    for fam, ids in members.items():
        assert len(ids) == 4
        assert len(set().union(*(category[i] for i in ids))) == 1
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                # Colour, pattern, fabric, cut: identical. Local details: not all identical.
                np.testing.assert_array_equal(labels[a][~detail], labels[b][~detail])
                assert (labels[a][detail] != labels[b][detail]).any(), (a, b)
        colours = [n for n in synth.COLOURS if labels[ids[0]][names.index(n)] == 1]
        assert len(colours) == 1


def test_splits_are_disjoint_by_item_and_keep_families_together(tiny):
    family_of = json.loads((tiny / synth.MANIFEST_NAME).read_text())["family_of_item"]
    inshop = defaultdict(set)
    for name, item, status in _records(tiny / "inshop/Eval/list_eval_partition.txt"):
        assert name.split("/")[3] == item
        inshop[item].add(status)
    for item, statuses in inshop.items():
        assert statuses == {"train"} or statuses == {"query", "gallery"}, (item, statuses)
    c2s = defaultdict(set)
    images = defaultdict(lambda: (set(), set()))
    for consumer, shop, item, status in _records(tiny / "consumer2shop/Eval/list_eval_partition.txt"):
        c2s[item].add(status)
        images[item][0].add(consumer)
        images[item][1].add(shop)
    assert all(len(s) == 1 for s in c2s.values())
    assert set(c2s) == set(inshop) == set(family_of)
    for item in family_of:
        assert 1 <= len(images[item][0]) <= 3 and len(images[item][1]) >= 1
        # In-shop train items are exactly Consumer-to-shop train items: no evaluation item leaks.
        assert ("train" in inshop[item]) == ("train" in c2s[item])
    split_of_family = defaultdict(set)
    for item, fam in family_of.items():
        split_of_family[fam] |= c2s[item]
    assert all(len(s) == 1 for s in split_of_family.values())


def test_preview_contact_sheet_is_written(tiny, tmp_path):
    png = synth.write_preview(tiny, tmp_path / "sheet.png", rows=2, cols=4, thumb=96)
    img = np.asarray(Image.open(png).convert("RGB"), np.float32)
    assert img.shape[1] == 4 * 96 and img.shape[0] > 2 * 96
    cells = img[: 2 * 96].reshape(2, 96, 4, 96, 3)
    assert all(cells[r, :, c].std() > 10 for r in range(2) for c in range(4)), "every cell shows a photo"
    legend = img[2 * 96 :]
    assert (np.abs(legend - [40, 200, 60]).sum(-1) < 30).any()  # green "visible" swatch


def test_cli_writes_dataset_and_preview(micro, tmp_path, capsys):
    out, png = tmp_path / "cli", tmp_path / "cli.png"
    assert synth.main(["--out", str(out), "--size", micro, "--seed", "2", "--workers", "1", "--preview", str(png), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 8 and summary["images"]["total"] == 8 * 4 and summary["images_per_second"] > 0
    assert png.is_file() and (out / "inshop/Anno/list_landmarks_inshop.txt").is_file()


def test_overwrites_only_its_own_output_and_never_leaves_half_a_dataset(micro, tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="foreign"):
        synth.generate_synthetic_deepfashion(foreign, size=micro, workers=1, progress=False)
    assert (foreign / "precious.txt").read_text() == "keep me"

    out = tmp_path / "data"
    synth.generate_synthetic_deepfashion(out, size=micro, seed=0, workers=1, progress=False)
    before = _annotation_bytes(out)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing the second layout

    monkeypatch.setattr(synth_writers, "_write_consumer2shop", boom)
    with pytest.raises(KeyboardInterrupt):
        synth.generate_synthetic_deepfashion(out, size=micro, seed=1, workers=1, progress=False)
    assert _annotation_bytes(out) == before  # the previous complete dataset is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "foreign"]  # no temp dirs left
    monkeypatch.undo()
    monkeypatch.setitem(synth.SIZES, "micro", MICRO)
    synth.generate_synthetic_deepfashion(out, size=micro, seed=1, workers=1, progress=False)
    assert _annotation_bytes(out) != before


def test_bad_size_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        synth.generate_synthetic_deepfashion(tmp_path / "x", size="huge")


def test_a_failing_item_is_named_and_leaves_no_output(micro, tmp_path, monkeypatch, capsys):
    """A drawing bug inside one item is reported with the item and seed to reproduce it, not as a
    bare library message, and no half-made dataset appears."""
    real = synth_writers.render_consumer_image
    bad = synth.make_items(MICRO, seed=3)[2]

    def fails_on_one_item(item, *args, **kwargs):
        if item.index == bad.index:
            raise ValueError("x1 must be greater than or equal to x0")
        return real(item, *args, **kwargs)

    monkeypatch.setattr(synth_writers, "render_consumer_image", fails_on_one_item)
    out = tmp_path / "data"
    assert synth.main(["--out", str(out), "--size", micro, "--seed", "3", "--workers", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"rendering item {bad.item_id}" in err and "seed 3" in err and "x1 must be" in err
    assert list(tmp_path.iterdir()) == []
