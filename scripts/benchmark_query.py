#!/usr/bin/env python
"""End-to-end query latency: decode a photo, run FashionNet, search a 100k-vector gallery.

One query at a time, as the web page serves them. Stages are timed separately and compared, in the
same run, with the backbone's bare forward pass and with numpy brute-force search over the same
vectors. The gallery is the real embeddings of the synthetic shop images, padded with clustered
synthetic vectors up to --gallery-size. Prints figures; it is not a test.

    python scripts/benchmark_query.py --checkpoint runs/synthetic_default/checkpoint.pt \
        --data-root data/synth/consumer2shop --gallery-size 100000 --queries 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fashionnet  # noqa: E402,F401  (first: it sets the OpenMP wait policy before torch and faiss load)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fashionnet.images import load_image  # noqa: E402
from fashionnet.inference import Predictor  # noqa: E402
from fashionnet.models import BareBackbone, get_backbone  # noqa: E402
from indexer.build import build_index, gallery_rows  # noqa: E402
from indexer.search import SearchEngine  # noqa: E402
from indexer.store import EmbeddingIndex  # noqa: E402


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):7.1f} ms | p95 {np.percentile(a, 95):7.1f} ms | mean {a.mean():7.1f} ms"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-root", default="data/synth/consumer2shop")
    p.add_argument("--gallery-size", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp) / "real"
        build_index(predictor, gallery_rows(args.data_root, split="all"), real, workers=0, device="cpu", checkpoint_path=args.checkpoint)
        index = EmbeddingIndex.load(real, device="cpu")
    n_real = index.ntotal
    filler = args.gallery_size - n_real
    if filler > 0:  # clustered vectors around the real ones, like more photos of more items
        centres = rng.standard_normal((max(1, filler // 8), index.dim)).astype(np.float32)
        x = centres[rng.integers(0, len(centres), filler)] + 0.3 * rng.standard_normal((filler, index.dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        import pandas as pd

        index.add(x, pd.DataFrame({"image_path": ["synthetic"] * filler, "item_id": [f"filler_{i // 4}" for i in range(filler)]}),
                  show_progress=False)
    engine = SearchEngine(index, predictor)
    all_vectors = index.export_vectors()[0]  # numpy brute force searches the same vectors

    frame_root = Path(args.data_root)
    photos = sorted(frame_root.glob("img/*/*/*/comsumer_*.jpg"))
    photos = [photos[i] for i in rng.choice(len(photos), size=min(args.queries, len(photos)), replace=False)]
    bare = BareBackbone(get_backbone(predictor.config.backbone, pretrained=False)).eval()

    for photo in photos[:5]:  # warm-up
        engine.query(photo, k=args.k)
    decode_ms, prep_ms, model_ms, search_ms, total_ms, bare_ms, numpy_ms, hits = [], [], [], [], [], [], [], 0
    for photo in photos:
        t0 = time.perf_counter()
        data = photo.read_bytes()
        image = load_image(data, source=str(photo))
        t1 = time.perf_counter()
        tensor, geometry, size = predictor.preprocess(image)
        t2 = time.perf_counter()
        out = predictor.forward_batch(tensor[None])
        pred = predictor.decode(out, [(geometry, size)])[0]
        t3 = time.perf_counter()
        matches = engine.search_embedding(pred.embedding, args.k)
        t4 = time.perf_counter()
        decode_ms.append(1e3 * (t1 - t0))
        prep_ms.append(1e3 * (t2 - t1))
        model_ms.append(1e3 * (t3 - t2))
        search_ms.append(1e3 * (t4 - t3))
        total_ms.append(1e3 * (t4 - t0))
        hits += photo.parent.name in set(matches["item_id"])
        with torch.inference_mode():
            t5 = time.perf_counter()
            bare(tensor[None])
            bare_ms.append(1e3 * (time.perf_counter() - t5))
        t6 = time.perf_counter()
        scores = all_vectors @ pred.embedding
        np.argpartition(-scores, args.k)[: args.k]
        numpy_ms.append(1e3 * (time.perf_counter() - t6))

    print(f"gallery: {index.ntotal:,} vectors ({n_real} real shop images + {max(filler, 0):,} synthetic), dim {index.dim}, "
          f"{index.index_factory}; {len(photos)} consumer photos, one at a time, {args.threads} threads, "
          f"{predictor.config.backbone} at {predictor.image_size} px")
    print(f"  decode (read + PIL)          {percentiles(decode_ms)}")
    print(f"  letterbox + normalise        {percentiles(prep_ms)}")
    print(f"  FashionNet forward + decode  {percentiles(model_ms)}")
    print(f"  bare backbone forward        {percentiles(bare_ms)}   (same input, same run)")
    print(f"  FAISS search (k={args.k})        {percentiles(search_ms)}")
    print(f"  numpy brute force (k={args.k})   {percentiles(numpy_ms)}   (reference)")
    print(f"  END TO END                   {percentiles(total_ms)}")
    print(f"  queries whose item is in the top {args.k}: {hits}/{len(photos)}")


if __name__ == "__main__":
    main()
