"""`indexer` command paths the main CLI tests leave out: --shard validation, --trained-index shards,
query --clothes-type, and add with a checkpoint that did not build the index.

Only user-visible outcomes are checked: exit codes, what the messages mention, what queries return
and how many images an index holds (through the public EmbeddingIndex API and `indexer info`).
"""

from __future__ import annotations

import json

import pytest

from fashionnet.models.checkpoint import load_checkpoint, save_checkpoint
from indexer.cli import main as indexer
from tests.cli_helpers import run_cli
from indexer.store import EmbeddingIndex


def count(capsys, index) -> int:
    code, out, err = run_cli(capsys, "info", index, "--json")
    assert code == 0, err
    return json.loads(out)["count"]


@pytest.mark.parametrize("spec,words", [("2/2", ["--shard", "2/2"]), ("-1/3", ["--shard", "-1/3"]), ("half", ["--shard", "i/n", "half"]),
                                        ("1/2/3", ["--shard", "i/n"]), ("0/0", ["--shard", "0/0"])])
def test_bad_shard_is_refused_before_anything_is_written(capsys, tiny_checkpoint, synth_root, tmp_path, spec, words):
    out = tmp_path / "idx"
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--data-root", synth_root / "inshop", f"--shard={spec}",
                           "--out", out, "--workers", 0, "--device", "cpu")
    assert code != 0
    for word in words:
        assert word in err, (word, err)
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_shards_of_one_trained_index_merge_and_separately_trained_ones_do_not(capsys, tiny_checkpoint, synth_root, tmp_path):
    root = synth_root / "inshop"
    common = ["--checkpoint", tiny_checkpoint, "--data-root", root, "--workers", 0, "--device", "cpu"]
    trained = tmp_path / "trained"
    code, _, err = run_cli(capsys, "build", *common, "--split", "all", "--index-factory", "IVF4,Flat", "--nprobe", "4", "--out", trained)
    assert code == 0, err
    shards = []
    for i in range(2):
        shard = tmp_path / f"shard{i}"
        code, _, err = run_cli(capsys, "build", *common, "--trained-index", trained, "--shard", f"{i}/2", "--out", shard)
        assert code == 0, err
        shards.append(shard)
    full = tmp_path / "full"
    assert run_cli(capsys, "build", *common, "--out", full)[0] == 0
    merged = tmp_path / "merged"
    code, _, err = run_cli(capsys, "merge", merged, *shards)
    assert code == 0, err
    assert count(capsys, shards[0]) + count(capsys, shards[1]) == count(capsys, merged) == count(capsys, full)
    info = EmbeddingIndex.load(merged, device="cpu").info()
    assert info["nlist"] == 4
    assert sorted(EmbeddingIndex.load(merged, device="cpu").metadata["image_path"]) == \
        sorted(EmbeddingIndex.load(full, device="cpu").metadata["image_path"])
    # The merged IVF index finds a gallery image itself (every list is probed: nprobe = nlist).
    path = EmbeddingIndex.load(full, device="cpu").metadata["image_path"].iloc[2]
    code, out, _ = run_cli(capsys, "query", merged, path, "-k", 1, "--json", "--nprobe", 4, "--device", "cpu")
    assert code == 0 and json.loads(out)["results"][0]["image_path"] == path

    # A shard that trained its own quantizer cannot be joined list by list with the others.
    own = tmp_path / "own"
    assert run_cli(capsys, "build", *common, "--index-factory", "IVF4,Flat", "--shard", "1/2", "--out", own)[0] == 0
    code, _, err = run_cli(capsys, "merge", tmp_path / "bad", shards[0], own)
    assert code != 0 and "trained" in err and "Traceback" not in err


def test_query_clothes_type_filter_from_the_cli(capsys, tiny_index):
    gallery = EmbeddingIndex.load(tiny_index, device="cpu").metadata
    type_of = dict(zip(gallery["image_path"], gallery["clothes_type"]))
    query = gallery["image_path"].iloc[0]
    code, out, err = run_cli(capsys, "query", tiny_index, query, "-k", len(gallery), "--json", "--device", "cpu")
    assert code == 0, err
    everything = [r["image_path"] for r in json.loads(out)["results"]]
    for clothes_type in (1, 2, 3):
        wanted = [p for p in everything if type_of[p] == clothes_type]
        code, out, err = run_cli(capsys, "query", tiny_index, query, "-k", 3, "--clothes-type", clothes_type, "--json", "--device", "cpu")
        assert code == 0, err
        results = json.loads(out)["results"]
        assert [r["image_path"] for r in results] == wanted[:3], clothes_type
        assert [r["rank"] for r in results] == list(range(1, len(results) + 1))


def test_query_clothes_type_outside_1_to_3_is_refused(capsys, tiny_index):
    query = EmbeddingIndex.load(tiny_index, device="cpu").metadata["image_path"].iloc[0]
    with pytest.raises(SystemExit) as exc:
        indexer(["query", str(tiny_index), query, "--clothes-type", "4"])
    assert exc.value.code == 2 and "--clothes-type" in capsys.readouterr().err


def test_add_with_another_models_checkpoint_is_refused(capsys, index_copy, tiny_checkpoint, synth_root, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    other = tmp_path / "other.pt"
    state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    save_checkpoint(other, model_state=state, model_config=ckpt["model_config"], label_maps=ckpt["label_maps"],
                    preprocessing=ckpt["preprocessing"], epoch=0)
    before = count(capsys, index_copy)
    new_image = sorted((synth_root / "inshop" / "img").rglob("*.jpg"))[0]
    code, _, err = run_cli(capsys, "add", index_copy, new_image, "--checkpoint", other, "--workers", 0, "--device", "cpu")
    assert code != 0
    assert "model" in err and "Traceback" not in err
    assert count(capsys, index_copy) == before


def test_add_with_a_checkpoint_of_another_dimension_is_refused(capsys, index_copy, tiny_checkpoint, synth_root, tmp_path):
    from fashionnet.models import FashionNetConfig, create_model

    ckpt = load_checkpoint(tiny_checkpoint)
    config = FashionNetConfig.from_dict({**ckpt["model_config"], "embedding_dim": 48})
    wide = tmp_path / "wide.pt"
    save_checkpoint(wide, model_state=create_model(config).state_dict(), model_config=config.to_dict(), label_maps=ckpt["label_maps"],
                    preprocessing=ckpt["preprocessing"], epoch=0)
    before = count(capsys, index_copy)
    new_image = sorted((synth_root / "inshop" / "img").rglob("*.jpg"))[0]
    code, _, err = run_cli(capsys, "add", index_copy, new_image, "--checkpoint", wide, "--workers", 0, "--device", "cpu")
    assert code != 0 and f"{48 + 64}-d" in err and "Traceback" not in err  # 48 fusion + 64 pooled appearance
    assert count(capsys, index_copy) == before
