"""Retrieval-time improvements: flip averaging and item aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from fashionnet.evaluation.benchmark import evaluate_checkpoint
from fashionnet.evaluation.report import markdown_table
from fashionnet.evaluation.retrieval_metrics import retrieval_metrics
from fashionnet.inference.retrieval_time import best_view_ranking, average_views, item_centroids


def test_average_views_is_the_normalised_mean_of_unit_views():
    a = np.array([[3.0, 0.0], [0.0, 2.0]])
    b = np.array([[0.0, 5.0], [0.0, -1.0]])
    out = average_views(a, b)
    np.testing.assert_allclose(out[0], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(out[1], [0.0, 0.0], atol=1e-6)  # opposite views cancel
    with pytest.raises(ValueError, match="shape"):
        average_views(a, b[:1])


def test_item_centroids_average_each_items_views():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -3.0]])
    ids, centroids = item_centroids(gallery, ["b", "b", "a"])
    assert list(ids) == ["a", "b"]
    np.testing.assert_allclose(centroids, [[0.0, -1.0], [np.sqrt(0.5), np.sqrt(0.5)]], atol=1e-6)


def test_evaluation_measures_each_improvement_on_the_same_photos(tiny_checkpoint, synth_root):
    from PIL import Image, ImageOps

    from fashionnet.data.readers import read_benchmark
    from fashionnet.evaluation.protocols import protocol_frames
    from fashionnet.inference.predictor import Predictor

    root = synth_root / "consumer2shop"
    results = evaluate_checkpoint(tiny_checkpoint, root, variants=("fashionnet",), workers=0, progress=False, retrieval_time=True)
    rt = results["retrieval_time"]
    assert set(rt) == {f"{view}{trick}" for view in ("plain", "flip", "flip_gallery") for trick in ("", "+items", "+best_view")}
    # (c) is flip-averaged, as the product embeds by default; without it, it is the plain row
    assert results["flip_average"] and rt["flip"] == results["variants"]["fashionnet"] != rt["plain"]
    plain = evaluate_checkpoint(tiny_checkpoint, root, variants=("fashionnet",), workers=0, progress=False, flip_average=False)
    assert not plain["flip_average"] and plain["variants"]["fashionnet"] == rt["plain"]
    assert "flip-averaged" in markdown_table(results) and "flip-averaged" not in markdown_table(plain)
    for name, r in rt.items():
        rates = [r["top_k"][k] for k in sorted(r["top_k"])]
        assert rates == sorted(rates) and 0 <= rates[0] <= rates[-1] <= 1, name
    # flip averaging and item aggregation recomputed from the Predictor's own answers
    queries, gallery = protocol_frames(read_benchmark(root), "consumer2shop")
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", fold_batch_norms=False, flip_average=False, runtime="torch")

    def flipped(rows):
        photos = [Image.open(root / p).convert("RGB") for p in rows["image_path"]]
        plain = np.stack([p.embedding for p in predictor.predict_batch(photos)])
        mirrored = np.stack([p.embedding for p in predictor.predict_batch([ImageOps.mirror(p) for p in photos])])
        return average_views(plain, mirrored)

    q, g = flipped(queries), flipped(gallery)
    ks = tuple(rt["flip"]["top_k"])
    expected = retrieval_metrics(q, queries["item_id"].to_numpy(), g, gallery["item_id"].to_numpy(), ks=ks, show_progress=False)
    assert rt["flip"]["top_k"] == pytest.approx(expected["top_k"], abs=1e-9)
    # the gallery flip-averaged, the queries one view
    one_view = np.stack([p.embedding for p in predictor.predict_batch([Image.open(root / x).convert("RGB") for x in queries["image_path"]])])
    expected = retrieval_metrics(one_view, queries["item_id"].to_numpy(), g, gallery["item_id"].to_numpy(), ks=ks, show_progress=False)
    assert rt["flip_gallery"]["top_k"] == pytest.approx(expected["top_k"], abs=1e-9)
    ids, centroids = item_centroids(g, gallery["item_id"].to_numpy())
    item_ks = tuple(rt["flip+items"]["top_k"])
    expected = retrieval_metrics(q, queries["item_id"].to_numpy(), centroids, ids, ks=item_ks, show_progress=False)
    assert rt["flip+items"]["top_k"] == pytest.approx(expected["top_k"], abs=1e-9)
    assert "flip+items" in markdown_table(results)
    # best view per item: the same top-1 as the images (the best image's item is the best item),
    # and at any k at least the images' rate (k distinct items cover every item of the first k images)
    for view in ("plain", "flip"):
        by_item, by_image = rt[f"{view}+best_view"]["top_k"], rt[view]["top_k"]
        assert by_item[1] == pytest.approx(by_image[1], abs=1e-9)
        assert all(by_item[k] >= by_image[k] - 1e-9 for k in by_item)


def test_item_aggregation_counts_an_item_once():
    # two views of item x are the query's two nearest rows, item y third: with images, top-2 is all x;
    # with items, top-2 holds x and y
    gallery = np.array([[1.0, 0.0], [0.99, 0.14], [0.9, 0.43]])
    items = np.array(["x", "x", "y"])
    query = np.array([[1.0, 0.05]])
    by_image = retrieval_metrics(query, ["y"], gallery, items, ks=(2,), show_progress=False)
    ids, centroids = item_centroids(gallery, items)
    by_item = retrieval_metrics(query, ["y"], centroids, ids, ks=(2,), show_progress=False)
    assert by_image["top_k"][2] == 0.0 and by_item["top_k"][2] == 1.0


def test_best_view_ranking_lists_each_item_once_at_its_best_view():
    gallery = np.array([[1.0, 0.0], [0.99, 0.14], [0.9, 0.43], [-1.0, 0.0]])
    items = np.array(["x", "x", "y", "z"])
    query = np.array([[1.0, 0.05], [-1.0, 0.1]])
    ids, ranked = best_view_ranking(query, gallery, items, depth=3)
    assert [list(ids[r]) for r in ranked] == [["x", "y", "z"], ["z", "y", "x"]]
    # an item with a far view and a near one ranks by the near one
    ids, ranked = best_view_ranking(query[1:], gallery, np.array(["x", "x", "y", "x"]), depth=2)
    assert list(ids[ranked[0]]) == ["x", "y"]


def test_predictor_averages_each_photo_with_its_mirror_image(tiny_checkpoint, synth_root):
    """What the page, the API and the index embed by default: the normalised mean of the photo's
    and its mirror image's embeddings (both passes each); landmarks and category stay the photo's."""
    from PIL import Image, ImageOps

    from fashionnet.inference.predictor import Predictor

    photos = [Image.open(p).convert("RGB") for p in sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[:4]]
    flipped = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", fold_batch_norms=False, runtime="torch")
    plain = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", fold_batch_norms=False, flip_average=False, runtime="torch")
    assert flipped.flip_average and not plain.flip_average
    got = flipped.predict_batch(photos)
    one = plain.predict_batch(photos)
    mirrored = plain.predict_batch([ImageOps.mirror(p) for p in photos])
    expected = average_views(np.stack([p.embedding for p in one]), np.stack([p.embedding for p in mirrored]))
    np.testing.assert_allclose(np.stack([p.embedding for p in got]), expected, atol=1e-5)
    assert not np.allclose(expected, np.stack([p.embedding for p in one]), atol=1e-3)  # the mirror image counts
    np.testing.assert_allclose(plain.mirrored_embeddings(photos), np.stack([p.embedding for p in mirrored]), atol=1e-5)
    for g, o in zip(got, one):
        assert g.category == o.category and g.garment_box == o.garment_box
        np.testing.assert_allclose([(lm.x, lm.y) for lm in g.landmarks], [(lm.x, lm.y) for lm in o.landmarks], atol=1e-4)


def test_index_and_query_paths_give_the_same_flip_averaged_embedding(tiny_checkpoint, synth_root):
    """A query runs the photo and its mirror image as one batch; the indexer runs the gallery batch
    and then its mirror images. Both must give the same embedding, or a photo would not find itself."""
    from fashionnet.inference.predictor import Predictor
    from indexer.embedding import embed_images

    paths = [str(p) for p in sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[:6]]
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", fold_batch_norms=False, runtime="torch")
    indexed = embed_images(predictor, paths, batch_size=4, workers=0, progress=False).embeddings
    queried = np.stack([predictor.predict(path).embedding for path in paths])
    np.testing.assert_allclose(queried, indexed, atol=1e-5)
    assert (queried * indexed).sum(axis=1).min() > 1 - 1e-5
