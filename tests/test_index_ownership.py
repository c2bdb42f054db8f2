"""The index touches only what it owns: folders it marked, files named as it names them, and
photos uploaded into it. The user's files in or beside an index folder are never written or deleted.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from indexer import layout, ownership
from indexer.errors import IndexSaveError
from indexer.store import EmbeddingIndex
from indexer.uploads import UploadStore
from tests.cli_helpers import run_cli

FAST = ("--workers", 0, "--no-progress", "--device", "cpu", "--runtime", "torch")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def shop(synth_root, tmp_path) -> Path:
    """Six shop photos of three items, in item folders; beside them extra.jpg, a photo no gallery holds."""
    photos = sorted((synth_root / "consumer2shop" / "img").rglob("shop_*.jpg"))[:6]
    folder = tmp_path / "photos"
    for i, photo in enumerate(photos):
        (folder / f"item{i // 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / f"item{i // 2}" / f"{i}.jpg")
    shutil.copy(sorted((synth_root / "consumer2shop" / "img").rglob("comsumer_*.jpg"))[-1], tmp_path / "extra.jpg")
    return folder


@pytest.fixture()
def predictor(tiny_checkpoint):
    from fashionnet.inference.predictor import Predictor

    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")


def _photo_bytes(synth_root: Path, n: int) -> list[tuple[str, bytes]]:
    photos = sorted((synth_root / "consumer2shop" / "img").rglob("comsumer_*.jpg"))[:n]
    return [(p.name, p.read_bytes()) for p in photos]


def _upload(index_dir: Path, item_id: str, photos: list[tuple[str, bytes]]) -> list[Path]:
    """What POST /items writes before its add: the photos in a new upload folder."""
    store = UploadStore(index_dir)
    saved, refused = store.save(store.new_upload(), item_id, photos)
    assert saved and not refused
    return sorted(Path(p) for p in saved)


def _add_upload(index_dir: Path, predictor, item_id: str, photos: list[tuple[str, bytes]]) -> list[Path]:
    """An add through the uploads folder, as POST /items does it: under the writer lock, committed."""
    from indexer.build import add_images

    with UploadStore(index_dir).lock():
        paths = _upload(index_dir, item_id, photos)
        report = add_images(index_dir, predictor, [str(paths[0].parents[1])], workers=0, progress=False)
    assert report.added == len(paths)
    return paths


# --------------------------------------------------------------------------- build --out (defect 4)


@pytest.mark.parametrize("foreign", ["model/my_best.pt", "index.faiss", "metadata.parquet", "versions/notes.txt", "uploads/me.jpg"])
def test_build_refuses_a_folder_holding_files_with_the_index_s_names(capsys, tiny_checkpoint, shop, tmp_path, foreign):
    out = tmp_path / "out"
    (out / foreign).parent.mkdir(parents=True)
    (out / foreign).write_bytes(b"mine")
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", shop, "--out", out, *FAST)
    assert code == 2 and str(out) in err and foreign in err and "--force" in err, err
    assert _files(out) == {foreign: b"mine"}


def test_forced_builds_and_adds_keep_the_user_s_files_byte_for_byte(capsys, tiny_checkpoint, shop, tmp_path):
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    torch_like = b"\x80\x02my own weights" * 100
    (out / "model" / "my_best.pt").write_bytes(torch_like)
    (out / "index.faiss").write_bytes(b"my own faiss index")
    (out / "metadata.parquet").write_bytes(b"my own table")
    mine = _files(out)
    for copy_model in (("--copy-model",), (), ("--copy-model",)):
        code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", shop, "--out", out, "--force",
                               *copy_model, *FAST)
        assert code == 0, err
    code, _, err = run_cli(capsys, "add", out, shop.parent / "extra.jpg", *FAST)
    assert code == 0, err
    assert {name: _files(out)[name] for name in mine} == mine
    assert len(EmbeddingIndex.load(out, device="cpu")) == 7
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extra"]["checkpoint_in_index"].startswith("model/fashionnet-index-")
    assert (out / manifest["extra"]["checkpoint_in_index"]).is_file()
    assert not (out / "model" / ownership.MARKER_FILE).exists()  # the user's folder: the index only put its copy in it


def test_an_index_folder_the_index_made_holds_only_marked_or_named_entries(capsys, tiny_checkpoint, shop, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", shop, "--out", out, "--copy-model", *FAST)
    assert code == 0, err
    assert (out / "model" / ownership.MARKER_FILE).is_file()
    assert all((v / ownership.MARKER_FILE).is_file() for v in (out / layout.VERSIONS_DIR).iterdir())
    (out / "manifest.json").unlink()  # as if the first save died before its commit: still all the index's
    assert ownership.foreign_entries(out) == []
    ownership.check_save_target(out)


# ------------------------------------------------------------------ folders beside the index (defect 5)


def test_folders_beside_the_index_survive_info_and_add(capsys, tiny_index, shop, tmp_path):
    parent = tmp_path / "P"
    parent.mkdir()
    shutil.copytree(tiny_index, parent / "shop")
    for name in (".shop.old-1", ".shop.saving-x"):
        (parent / name).mkdir()
        (parent / name / "keep.txt").write_text(name)
    for args in (("info", parent / "shop"), ("add", parent / "shop", shop.parent / "extra.jpg", *FAST)):
        code, _, err = run_cli(capsys, *args)
        assert code == 0, err
        for name in (".shop.old-1", ".shop.saving-x"):
            assert (parent / name / "keep.txt").read_text() == name


# --------------------------------------------------------------------------- uploads (defect 6)


def test_an_add_killed_before_its_commit_leaves_files_the_next_open_deletes(tiny_index, synth_root, predictor, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    photos = _photo_bytes(synth_root, 3)
    committed = _add_upload(index_dir, predictor, "sku-kept", photos[:1])
    orphans = _upload(index_dir, "sku-lost", photos[1:])  # files written, the server killed before the add
    (index_dir / "uploads" / "notes.txt").write_text("not an upload")  # not in an upload folder: left alone
    assert all(p.is_file() for p in orphans)

    index = EmbeddingIndex.load(index_dir, device="cpu")
    assert not any(p.exists() for p in orphans) and not orphans[0].parents[1].exists()
    assert all(p.is_file() for p in committed) and (index_dir / "uploads" / "notes.txt").is_file()
    assert len(index) == len(EmbeddingIndex.load(tiny_index, device="cpu")) + 1


def test_an_upload_in_flight_under_the_lock_is_not_taken_for_an_orphan(tiny_index, synth_root, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    store = UploadStore(index_dir)
    with store.lock():
        in_flight = _upload(index_dir, "sku-1", _photo_bytes(synth_root, 1))
        EmbeddingIndex.load(index_dir, device="cpu")  # this thread's own reload (the engine's, after its add)
        other = threading.Thread(target=EmbeddingIndex.load, args=(index_dir,), kwargs={"device": "cpu"})
        other.start()
        other.join()  # a search thread's reload
        assert all(p.is_file() for p in in_flight)
    EmbeddingIndex.load(index_dir, device="cpu")  # never added: now it is an orphan
    assert not any(p.exists() for p in in_flight)


def test_remove_deletes_uploaded_photos_and_no_photo_outside_the_index(capsys, tiny_index, synth_root, predictor, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    uploaded = _add_upload(index_dir, predictor, "sku-up", _photo_bytes(synth_root, 2))
    gallery = EmbeddingIndex.load(index_dir, device="cpu").metadata
    shop_item = str(gallery["item_id"].iloc[0])
    shop_photos = [Path(p) for p in gallery.loc[gallery["item_id"] == shop_item, "image_path"]]
    photos_before = {p: p.read_bytes() for p in shop_photos}

    code, out, err = run_cli(capsys, "remove", index_dir, "--item", "sku-up")
    assert code == 0 and "removed 2 images" in out, err
    assert not any(p.exists() for p in uploaded) and not uploaded[0].parents[1].exists()
    assert (index_dir / "uploads" / ownership.MARKER_FILE).is_file()

    code, out, err = run_cli(capsys, "remove", index_dir, "--item", shop_item)
    assert code == 0, err
    assert {p: p.read_bytes() for p in shop_photos} == photos_before  # the shop's own photos stay
    assert len(EmbeddingIndex.load(index_dir, device="cpu")) == len(gallery) - 2 - len(shop_photos)


def test_an_uploads_folder_of_the_user_s_is_never_written_to(tiny_index, synth_root, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    (index_dir / "uploads").mkdir()
    (index_dir / "uploads" / "mine.jpg").write_bytes(b"mine")
    with pytest.raises(IndexSaveError, match="uploads is not the index's"):
        _upload(index_dir, "sku-1", _photo_bytes(synth_root, 1))
    EmbeddingIndex.load(index_dir, device="cpu")
    assert _files(index_dir / "uploads") == {"mine.jpg": b"mine"}


# --------------------------------------------------------------------------- leftovers of crashed saves


def test_only_marked_or_index_named_leftovers_are_removed_on_open(tiny_index, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    crashed = index_dir / "versions" / "000099-deadbeef"
    crashed.mkdir()
    ownership.mark(crashed)
    (crashed / "index.faiss").write_bytes(b"half written")
    look_alike = index_dir / "versions" / "000098-cafebabe"
    look_alike.mkdir()
    (look_alike / "index.faiss").write_bytes(b"the user's")
    (index_dir / "model").mkdir()
    for name in ("fashionnet-index-0123abcd.pt", "0123abcd.pt", "my_best.pt"):
        (index_dir / "model" / name).write_bytes(b"weights")
    (index_dir / ".manifest.json.0123abcd.tmp").write_text("{}")

    EmbeddingIndex.load(index_dir, device="cpu")
    assert not crashed.exists() and not (index_dir / "model" / "fashionnet-index-0123abcd.pt").exists()
    assert not (index_dir / ".manifest.json.0123abcd.tmp").exists()
    assert (look_alike / "index.faiss").read_bytes() == b"the user's"
    assert sorted(p.name for p in (index_dir / "model").iterdir()) == ["0123abcd.pt", "my_best.pt"]


def test_unmarked_version_folders_the_manifest_named_are_retired_by_later_saves(tiny_index, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    for marker in (index_dir / "versions").glob(f"*/{ownership.MARKER_FILE}"):
        marker.unlink()  # an index saved before folders were marked
    index = EmbeddingIndex.load(index_dir, device="cpu")
    for _ in range(3):
        index.remove_ids(index.ids[:1])
        index.save(index_dir)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert sorted(f"versions/{p.name}" for p in (index_dir / "versions").iterdir()) == \
        sorted([manifest["data_dir"], manifest["previous_data_dir"]])
