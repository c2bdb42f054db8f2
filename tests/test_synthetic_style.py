"""Domain randomisation and the style-shift split of the synthetic generator: determinism, labels in
every presentation mode, held-out style factors, the style_shift layout, user backgrounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionnet.data import synthetic as synth
from fashionnet.data.readers import detect_benchmark, read_benchmark
from fashionnet.data.synthetic import presentation, style_shift
from fashionnet.data.synthetic.raster import _disc_coverage
from fashionnet.landmarks import CLOTHES_TYPE_SLOTS, FULL_BODY, LANDMARK_NAMES, LOWER_BODY, OCCLUDED, TRUNCATED, UPPER_BODY, VISIBLE

# Two in-style families and one style-shift family: every layout, a few seconds.
MINI = synth.SizeSpec(4, 2, inshop_views=(2, 2), shop_images=(1, 1), consumer_images=(1, 1),
                      style_shift_families=1, style_shift_shop=(1, 1), style_shift_consumer=(1, 2))


# Full domain randomisation (the session's "tiny" set is all plain catalogue shots, see SizeSpec).
VARIED = synth.SizeSpec(6, 2, inshop_views=(2, 2), shop_images=(1, 1), consumer_images=(2, 2),
                        style_shift_families=1, style_shift_shop=(1, 1), style_shift_consumer=(1, 2))


@pytest.fixture(scope="module")
def varied_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("varied") / "synth"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synth.SIZES, "varied", VARIED)
        synth.generate_synthetic_deepfashion(root, size="varied", seed=0, workers=1, progress=False)
    return root


@pytest.fixture
def mini(monkeypatch):
    monkeypatch.setitem(synth.SIZES, "mini", MINI)
    return "mini"


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != synth.MANIFEST_NAME}


def test_same_seed_same_bytes_in_every_layout_whatever_the_workers(mini, tmp_path):
    synth.generate_synthetic_deepfashion(tmp_path / "a", size=mini, seed=4, workers=1, progress=False)
    synth.generate_synthetic_deepfashion(tmp_path / "b", size=mini, seed=4, workers=2, progress=False)
    synth.generate_synthetic_deepfashion(tmp_path / "c", size=mini, seed=5, workers=1, progress=False)
    a, b, c = (_all_bytes(tmp_path / n) for n in "abc")
    assert any(k.startswith("style_shift/img/") for k in a) and "styles.csv" in a
    assert a == b
    assert a["styles.csv"] != c["styles.csv"] or a["style_shift/Anno/list_landmarks_consumer2shop.txt"] != c["style_shift/Anno/list_landmarks_consumer2shop.txt"]


@pytest.mark.parametrize("mode", presentation.IN_STYLE_MODES + presentation.HELD_OUT_MODES)
def test_visible_landmarks_lie_on_the_garment_mask_in_every_presentation_mode(mode):
    items = synth.make_items("tiny", seed=11)
    scenes = presentation.SCENES_FOR_MODE[mode][0]
    checked = present = 0
    for item in items[::4]:  # one item per family: every category of the tiny set
        for k, kind in enumerate(("shop", "consumer", "consumer")):
            rng = np.random.default_rng([k, item.index])
            r = synth.render_photo(item, rng, kind, mode=mode, scene=scenes[k % len(scenes)])
            assert r.style["presentation"] == mode and r.style["scene"] == scenes[k % len(scenes)]
            h, w = r.garment_mask.shape
            assert r.image.size == (w, h)
            for j in CLOTHES_TYPE_SLOTS[item.style.clothes_type]:
                present += 1
                x, y = (int(v) for v in r.landmarks[j])
                assert 0 <= x < w and 0 <= y < h
                if r.visibility[j] == VISIBLE:
                    assert r.garment_mask[y, x], (mode, item.style.category, j, x, y)
                    checked += 1
                elif r.visibility[j] == OCCLUDED:
                    assert r.occluder_mask[y, x] or r.garment_mask[y, x]
    assert checked > present * 0.6, (checked, present)


def test_supports_drawn_over_the_garment_occlude_by_their_mask():
    """Pegs and clips are drawn over the garment: where they cover a landmark it is labelled occluded."""
    items = synth.make_items("tiny", seed=2)
    for item in items:
        for k in range(3):
            r = synth.render_photo(item, np.random.default_rng([k, item.index, 9]), "shop", mode="pegs", scene="garden")
            assert r.occluder_mask.any(), "pegs are drawn over every garment"
            for j in CLOTHES_TYPE_SLOTS[item.style.clothes_type]:
                x, y = r.landmarks[j]
                # Shop photos have no other occluders: a landmark deep under a peg is occluded, and
                # an occluded one is under a peg.
                if _disc_coverage(r.occluder_mask, x, y, 6.0) >= 0.95:
                    assert r.visibility[j] == OCCLUDED, (item.style.category, j)
                if r.visibility[j] == OCCLUDED:
                    assert r.occluder_mask[int(y), int(x)], (item.style.category, j)


def test_held_out_styles_never_occur_in_the_in_style_datasets(varied_root):
    synth_root = varied_root
    manifest = json.loads((synth_root / synth.MANIFEST_NAME).read_text())
    held = {k: set(v) for k, v in manifest["held_out_styles"].items()}
    assert held == {k: set(v) for k, v in style_shift.HELD_OUT.items()}
    rows = style_shift.read_styles_csv(synth_root / manifest["styles_file"])
    by_dataset = {d: [r for r in rows if r["dataset"] == d] for d in ("inshop", "consumer2shop", "style_shift")}
    assert all(by_dataset.values()), {d: len(v) for d, v in by_dataset.items()}
    in_style = by_dataset["inshop"] + by_dataset["consumer2shop"]
    assert len({r["presentation"] for r in in_style}) >= 3 and len({r["scene"] for r in in_style}) >= 4, "in-style variety"
    assert len({r["palette"] for r in in_style}) >= 2 and len({r["framing"] for r in in_style}) >= 3
    for dataset in ("inshop", "consumer2shop"):
        for r in by_dataset[dataset]:
            for factor, values in held.items():
                assert r[factor] not in values, (dataset, r["image_name"], factor, r[factor])
    for r in by_dataset["style_shift"]:
        for factor, values in held.items():
            assert r[factor] in values, (r["image_name"], factor, r[factor])
    # Every image of every dataset has a row, and nothing else does.
    for dataset, dataset_rows in by_dataset.items():
        on_disk = {str(p.relative_to(synth_root / dataset)) for p in (synth_root / dataset / "img").rglob("*.jpg")}
        assert {r["image_name"] for r in dataset_rows} == on_disk


def test_style_shift_loads_as_consumer2shop_with_new_test_items(synth_root):
    root = synth_root / "style_shift"
    assert detect_benchmark(root) == "consumer2shop"
    frame = read_benchmark(root)
    assert set(frame["split"]) == {"test"}
    assert set(frame["source"]) == {"shop", "consumer"}
    in_style = set(read_benchmark(synth_root / "consumer2shop", verify_images=False)["item_id"])
    assert not set(frame["item_id"]) & in_style, "style-shift items are new items"
    manifest = json.loads((synth_root / synth.MANIFEST_NAME).read_text())
    assert set(frame["item_id"]) == set(manifest["style_shift"]["family_of_item"])
    assert len(frame) == manifest["images"]["style_shift_shop"] + manifest["images"]["style_shift_consumer"]
    for name in ("list_attr_cloth.txt", "list_category_cloth.txt"):
        assert (root / "Anno" / name).read_bytes() == (synth_root / "consumer2shop" / "Anno" / name).read_bytes()


def _background_dir(tmp_path: Path, good: int, bad: int) -> tuple[Path, list[Path]]:
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    for i in range(good):
        Image.new("RGB", (120, 90), (255, 0, 255)).save(folder / f"good_{i}.jpg")
    bad_files = []
    for i in range(bad):
        p = folder / f"broken_{i}.jpg"
        p.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        bad_files.append(p)
    return folder, bad_files


def test_backgrounds_skip_corrupt_files_with_a_warning_naming_them(mini, tmp_path):
    folder, bad = _background_dir(tmp_path, good=1, bad=1)
    photo = []
    for seed in range(3):  # the mini set is small: whether a user photo is drawn at all is down to the seed
        out = tmp_path / f"out{seed}"
        with pytest.warns(UserWarning, match=bad[0].name):
            summary = synth.generate_synthetic_deepfashion(out, size=mini, seed=seed, workers=1, progress=False, backgrounds=folder)
        manifest = json.loads((out / synth.MANIFEST_NAME).read_text())
        assert manifest["user_backgrounds"] == 1 and summary["images"]["total"] > 0
        rows = style_shift.read_styles_csv(out / synth.STYLES_FILE)
        assert all(r["dataset"] != "style_shift" for r in rows if r["scene"] == "photo"), "user photos in-style only"
        photo += [r for r in rows if r["scene"] == "photo"]
        if photo:
            break
    assert photo, "user photos appear"


def test_a_user_background_shows_behind_the_garment(tmp_path):
    folder, _ = _background_dir(tmp_path, good=1, bad=0)
    paths = synth.readable_backgrounds(folder)
    item = synth.make_items("tiny", seed=0)[0]
    r = synth.render_photo(item, np.random.default_rng(1), "consumer", mode="worn", scene="photo", framing="wide", backgrounds=paths, degrade=False)
    assert r.style["scene"] == "photo"
    pixels = np.asarray(r.image, np.float32)
    outside = ~r.garment_mask & ~r.occluder_mask
    magenta = np.abs(pixels - [255, 0, 255]).sum(-1) < 90
    assert magenta[outside].mean() > 0.3, "the user's photo fills the background"


def test_backgrounds_folder_without_a_readable_image_is_a_clear_error(mini, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable background image"):
        synth.generate_synthetic_deepfashion(tmp_path / "out", size=mini, workers=1, progress=False, backgrounds=empty)
    assert not (tmp_path / "out").exists()
    folder, _ = _background_dir(tmp_path, good=0, bad=2)
    with pytest.warns(UserWarning, match="broken_1.jpg"):
        code = synth.main(["--out", str(tmp_path / "cli"), "--size", mini, "--workers", "1", "--quiet", "--backgrounds", str(folder)])
    assert code == 2 and "no readable background image" in capsys.readouterr().err


def test_preview_labels_a_row_of_style_shift_pairs(synth_root, tmp_path):
    png = synth.write_preview(synth_root, tmp_path / "sheet.png", rows=2, cols=4, thumb=96)
    img = np.asarray(Image.open(png).convert("RGB"), np.int32)
    red = np.abs(img - [200, 0, 0]).sum(-1) < 20
    assert not red[:96].any() and red[96 : 2 * 96].any(), "only the last row is captioned as style shift"


def test_portraits_show_a_large_face_over_a_garment_that_runs_out_of_the_frame():
    """Head-and-shoulders photos, as people take of themselves: the garment fills the lower part of the
    frame, its hem is cut off (labelled truncated), and what the head covers is not garment."""
    items = [it for it in synth.make_items("tiny", seed=3) if it.style.clothes_type != LOWER_BODY]
    tops, hems_cut, shown = [], 0, 0
    for k, item in enumerate(items):
        r = synth.render_photo(item, np.random.default_rng([k, 5]), "consumer", mode="worn", scene="room", framing="portrait")
        assert r.style["framing"] == "portrait"
        h, w = r.garment_mask.shape
        if r.bbox is None:
            continue
        shown += 1
        tops.append(r.bbox[1] / h)
        hem = [j for j in CLOTHES_TYPE_SLOTS[item.style.clothes_type] if LANDMARK_NAMES[j].endswith("hem")]
        hems_cut += all(r.visibility[j] == TRUNCATED for j in hem)
        for j in CLOTHES_TYPE_SLOTS[item.style.clothes_type]:
            if r.visibility[j] == VISIBLE:
                x, y = (int(v) for v in r.landmarks[j])
                assert r.garment_mask[y, x]
    assert shown >= len(items) - 1
    assert np.median(tops) > 0.25, tops  # the head and neck above the garment
    assert hems_cut >= 0.6 * shown, (hems_cut, shown)


def test_portraits_are_drawn_for_worn_tops_and_dresses_only():
    rng = np.random.default_rng(0)
    by_type = {}
    for item in synth.make_items("tiny", seed=0):
        for _ in range(30):
            mode, _, framing = presentation.choose_presentation(rng, item, "consumer", "front", False, False, mode="worn")
            by_type.setdefault(item.style.clothes_type, set()).add(framing)
        _, _, framing = presentation.choose_presentation(rng, item, "shop", "front", False, False, mode="worn")
        assert framing == "garment"
    assert "portrait" not in by_type[LOWER_BODY]
    assert "portrait" in by_type[UPPER_BODY] | by_type.get(FULL_BODY, set())


def test_clipped_garments_hang_from_two_grips_at_their_top_corners_and_the_box_is_the_garments():
    """Clipped up by two holders: the grips cover the garment's top edge near both corners, and the
    labelled box is the garment mask's, not the holders' (they reach far outside it)."""
    items = synth.make_items("tiny", seed=5)
    for item in items[::3]:
        for k in range(2):
            r = synth.render_photo(item, np.random.default_rng([k, item.index, 21]), "shop", mode="clipped", scene="studio")
            x1, y1, x2, y2 = r.bbox
            ys, xs = np.nonzero(r.garment_mask)
            assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max(), ys.max())
            gy, gx = np.nonzero(r.occluder_mask)
            assert len(gx), (item.style.category, "no grips drawn")
            mid = (x1 + x2) / 2
            assert (gx < mid).any() and (gx > mid).any(), "one grip on each side"
            height = y2 - y1
            assert gy.min() < y1 + 0.1 * height and gy.max() < y1 + 0.35 * height, "grips at the top edge"
