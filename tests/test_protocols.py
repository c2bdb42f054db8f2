"""Who is a query and who is in the gallery, for both retrieval benchmarks, checked image by image
against the official list files read here with plain string splitting.

Consumer-to-shop: consumer images of the test items query the shop images of the test items (a
consumer photo must never be in the gallery). In-shop: the `query` and `gallery` rows of
Eval/list_eval_partition.txt, and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fashionnet.data.readers import read_benchmark
from fashionnet.evaluation.protocols import protocol_frames
from indexer.cli import main as indexer
from indexer.store import EmbeddingIndex


def _records(path: Path) -> list[list[str]]:
    """Records of a DeepFashion list file: a count line and a header line, then whitespace-separated fields."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert int(lines[0]) == len(lines) - 2
    return [line.split() for line in lines[2:]]


def official_consumer2shop(root: Path) -> tuple[set[str], set[str]]:
    pairs = _records(root / "Eval" / "list_eval_partition.txt")  # consumer shop item status
    queries = {consumer for consumer, shop, item, status in pairs if status == "test"}
    gallery = {shop for consumer, shop, item, status in pairs if status == "test"}
    # The bbox file's source_type must agree: 1 shop, 2 consumer.
    source = {r[0]: r[2] for r in _records(root / "Anno" / "list_bbox_consumer2shop.txt")}
    assert {source[g] for g in gallery} == {"1"} and {source[q] for q in queries} == {"2"}
    return queries, gallery


def official_inshop(root: Path) -> tuple[set[str], set[str]]:
    rows = _records(root / "Eval" / "list_eval_partition.txt")  # image item status
    return {r[0] for r in rows if r[2] == "query"}, {r[0] for r in rows if r[2] == "gallery"}


OFFICIAL = {"consumer2shop": official_consumer2shop, "inshop": official_inshop}


@pytest.mark.parametrize("benchmark", ["consumer2shop", "inshop"])
def test_evaluation_queries_and_gallery_are_the_official_ones(synth_root, benchmark):
    root = synth_root / benchmark
    want_queries, want_gallery = OFFICIAL[benchmark](root)
    assert want_queries and want_gallery and not want_queries & want_gallery
    queries, gallery = protocol_frames(read_benchmark(root, benchmark), benchmark)
    assert set(queries["image_path"]) == want_queries and len(queries) == len(want_queries)
    assert set(gallery["image_path"]) == want_gallery and len(gallery) == len(want_gallery)
    if benchmark == "consumer2shop":
        assert set(gallery["source"]) == {"shop"} and set(queries["source"]) == {"consumer"}


def test_consumer2shop_gallery_index_holds_exactly_the_test_shop_images(synth_root, tiny_index):
    root = synth_root / "consumer2shop"
    _, want = official_consumer2shop(root)
    stored = EmbeddingIndex.load(tiny_index, device="cpu").metadata["image_path"]
    assert sorted(stored) == sorted(str((root / p).resolve()) for p in want)


def test_inshop_gallery_index_holds_exactly_the_gallery_split(synth_root, tiny_checkpoint, tmp_path, capsys):
    root = synth_root / "inshop"
    want_queries, want = official_inshop(root)
    out = tmp_path / "inshop_gallery"
    code = indexer(["build", "--checkpoint", str(tiny_checkpoint), "--data-root", str(root), "--out", str(out),
                    "--workers", "0", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    stored = EmbeddingIndex.load(out, device="cpu").metadata["image_path"]
    assert sorted(stored) == sorted(str((root / p).resolve()) for p in want)
    assert not {str((root / p).resolve()) for p in want_queries} & set(stored)
