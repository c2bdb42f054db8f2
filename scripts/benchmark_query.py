#!/usr/bin/env python
"""End-to-end query latency: decode a photo, run FashionNet, search a 100k-vector gallery.

One query at a time, as the web page serves them. Stages are timed separately and compared, in the
same run, with the backbone's bare forward pass and with numpy brute-force search over the same
vectors. The gallery is the real embeddings of the synthetic shop images, padded with clustered
synthetic vectors up to --gallery-size, and the same vectors go into each --index-factory (exact
search first, then IVF), so the search figures compare like with like. With several --runtime
values each runtime answers every query against every index, and the report gives the share of
queries whose top k equals the first runtime's. Prints figures; it is not a test.

    python scripts/benchmark_query.py --checkpoint runs/synthetic_default/checkpoint.pt \
        --data-root data/synth/consumer2shop --gallery-size 100000 --queries 200
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fashionnet  # noqa: E402,F401  (first: it sets the OpenMP wait policy before torch and faiss load)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import RUNTIMES, data_root_option, hidden_alias  # noqa: E402
from fashionnet.data.images import load_image  # noqa: E402
from fashionnet.device import set_threads  # noqa: E402
from fashionnet.inference.predictor import Predictor  # noqa: E402
from fashionnet.models import BareBackbone, get_backbone  # noqa: E402
from fashionnet.models.batchnorm_folding import fold_batch_norms  # noqa: E402
from indexer.build import build_index, gallery_rows  # noqa: E402
from indexer.search import SearchEngine  # noqa: E402
from indexer.store import EmbeddingIndex  # noqa: E402


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):7.1f} ms | p95 {np.percentile(a, 95):7.1f} ms | mean {a.mean():7.1f} ms"


DEFAULT_DATA_ROOT = "data/synth/consumer2shop"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained FashionNet checkpoint")
    data_root_option(p, several=False, type=str, help=f"Consumer-to-shop layout whose photos are indexed and queried (default {DEFAULT_DATA_ROOT})")
    p.add_argument("--gallery-size", type=int, default=100_000, help="gallery vectors: the real ones padded with clustered synthetic ones")
    p.add_argument("--queries", type=int, default=200, help="consumer photos queried, one at a time")
    p.add_argument("-k", type=int, default=20, help="results per query")
    hidden_alias(p, "--k", dest="k", type=int)
    p.add_argument("--index-factory", nargs="+", default=["Flat", "IVF1024,Flat"],
                   help="FAISS factories to compare over the same vectors (Flat: exact, the indexer's default)")
    p.add_argument("--nprobe", type=int, default=16, help="inverted lists visited by IVF indexes")
    p.add_argument("--threads", type=int, default=2, help="torch and FAISS CPU threads")
    p.add_argument("--runtime", action="extend", nargs="+", default=None, choices=RUNTIMES,
                   help="how the Predictor runs the model (fashionnet.runtimes); several are "
                        "compared, the first embeds the gallery (default auto: on a CPU the fastest one installed)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic vectors and the query sample")
    p.add_argument("--no-flip-average", action="store_true", help="embed each photo once, not with its mirror image (the default)")
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    args.data_root = args.data_root or DEFAULT_DATA_ROOT
    args.runtime = args.runtime or ["auto"]
    set_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    predictors = {runtime: Predictor.from_checkpoint(args.checkpoint, device="cpu", runtime=runtime, flip_average=not args.no_flip_average)
                  for runtime in args.runtime}
    predictor = predictors[args.runtime[0]]  # embeds the gallery
    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp) / "real"
        build_index(predictor, gallery_rows(args.data_root, split="all"), real, workers=0, device="cpu", checkpoint_path=args.checkpoint)
        real_index = EmbeddingIndex.load(real, device="cpu")
    real_vectors, real_ids = real_index.export_vectors()
    real_rows = real_index.metadata.loc[real_ids].reset_index(drop=True)
    filler = max(0, args.gallery_size - len(real_vectors))
    # clustered vectors around random centres, like more photos of more items
    centres = rng.standard_normal((max(1, filler // 8), real_index.dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), filler)] + 0.3 * rng.standard_normal((filler, real_index.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    vectors = np.concatenate([real_vectors, x])
    rows = pd.concat([real_rows, pd.DataFrame({"image_path": ["synthetic"] * filler, "item_id": [f"filler_{i // 4}" for i in range(filler)]})],
                     ignore_index=True)

    engines, baseline = {}, {}  # baseline: the first runtime's pass over the same index
    for factory in args.index_factory:
        index = EmbeddingIndex.create(real_index.dim, factory, model_checksum=real_index.model_checksum,
                                      model_config=real_index.model_config, extra=real_index.extra, device="cpu")
        t = time.perf_counter()
        index.train(vectors)
        index.add(vectors, rows, show_progress=False)
        if index.nprobe is not None:
            index.nprobe = args.nprobe
            factory = f"{factory} nprobe={args.nprobe}"
        names = [factory if len(predictors) == 1 else f"{factory}, {runtime}" for runtime in predictors]
        for name, runtime_predictor in zip(names, predictors.values()):
            engines[name] = SearchEngine(index, runtime_predictor)
            baseline[name] = names[0]
        print(f"built {factory}: {index.ntotal:,} vectors in {time.perf_counter() - t:.1f} s, "
              f"{index.info()['bytes_per_vector_estimate']:.0f} bytes/vector", flush=True)
    exact_name = next(iter(engines))

    photos = sorted(Path(args.data_root).glob("img/*/*/*/comsumer_*.jpg"))
    photos = [photos[i] for i in rng.choice(len(photos), size=min(args.queries, len(photos)), replace=False)]

    # One pass per index, each query exactly as the page serves it: nothing else runs in between
    # (a numpy or bare-backbone call between queries leaves BLAS/OpenMP threads busy for the next).
    passes = {}
    for name, engine in engines.items():
        predictor = engine.predictor
        for photo in photos[:5]:  # warm-up
            engine.query(photo, k=args.k)
        stages = {"decode": [], "model": [], "search": [], "total": []}
        found, hits = [], 0
        for photo in photos:
            t0 = time.perf_counter()
            image = load_image(photo.read_bytes(), source=str(photo))
            t1 = time.perf_counter()
            # as served (SearchEngine.query -> Predictor.predict): letterbox, the first pass, the
            # second on a crop where the garment is small or below a face, the mirror image's passes
            # (in one batch with the photo's), and the decoding of landmarks and category
            pred = predictor.predict_batch([image])[0]
            t3 = time.perf_counter()
            matches = engine.search_embedding(pred.embedding, args.k)
            t4 = time.perf_counter()
            for key, (a, b) in zip(stages, ((t0, t1), (t1, t3), (t3, t4), (t0, t4))):
                stages[key].append(1e3 * (b - a))
            found.append(tuple(matches["id"]))
            hits += photo.parent.name in set(matches["item_id"])
        passes[name] = (stages, found, hits)

    # References over the same inputs, in their own passes.
    predictor = predictors[args.runtime[0]]
    tensors = [predictor.preprocess(photo)[0][None] for photo in photos]
    embeddings = predictor.embed_batch(torch.cat(tensors))
    bare = BareBackbone(get_backbone(predictor.config.backbone, pretrained=False)).eval()
    bare_folded = copy.deepcopy(bare)
    fold_batch_norms(bare_folded)
    bare_ms, bare_folded_ms, numpy_ms = [], [], []
    with torch.inference_mode():
        for net, times in ((bare, bare_ms), (bare_folded, bare_folded_ms)):
            for tensor in tensors[:5]:
                net(tensor)
            for tensor in tensors:
                t = time.perf_counter()
                net(tensor)
                times.append(1e3 * (time.perf_counter() - t))
    # the clothes-type prior alone (part of "FashionNet as served"), on each photo's garment box
    prior_ms = []
    if predictor.type_prior is not None:
        photos_and_boxes = [(load_image(photo), predictor.predict(photo).garment_box) for photo in photos]
        for image, box in photos_and_boxes:
            t = time.perf_counter()
            predictor.type_prior.type_probabilities([image], [box])
            prior_ms.append(1e3 * (time.perf_counter() - t))
    for e in embeddings:
        t = time.perf_counter()
        np.argpartition(-(vectors @ e), args.k)[: args.k]
        numpy_ms.append(1e3 * (time.perf_counter() - t))
    faiss_ms = {}
    for name, engine in engines.items():
        faiss_ms[name] = []
        for e in embeddings:
            t = time.perf_counter()
            engine.index._index.search(e[None, :], args.k)  # the FAISS call alone, no metadata rows
            faiss_ms[name].append(1e3 * (time.perf_counter() - t))

    n = len(photos)
    print(f"gallery: {len(vectors):,} vectors ({len(real_vectors)} real shop images + {filler:,} synthetic), dim {real_index.dim}; "
          f"{n} consumer photos, one at a time, {args.threads} threads, {predictor.config.backbone} at {predictor.input_side} px, "
          f"{predictor.folded_batch_norms} BatchNorms folded")
    exact_found = passes[exact_name][1]
    for name, (stages, found, hits) in passes.items():
        overlap = sum(len(set(f) & set(e)) for f, e in zip(found, exact_found))
        same = sum(f == e for f, e in zip(found, passes[baseline[name]][1]))
        print(f"  [{name}]")
        print(f"    decode (read + PIL)            {percentiles(stages['decode'])}")
        print(f"    FashionNet as served           {percentiles(stages['model'])}")
        print(f"    search + metadata rows         {percentiles(stages['search'])}")
        print(f"    END TO END                     {percentiles(stages['total'])}")
        print(f"    recall@{args.k} against {exact_name:8s}  {overlap / (n * args.k):.3f}")
        print(f"    queries whose item is in the top {args.k}: {hits}/{n}")
        if len(predictors) > 1:
            print(f"    same top {args.k} (ids and order) as [{baseline[name]}]: {same}/{n} queries")
    print(f"  references, same inputs, same run (embeddings by {args.runtime[0]}):")
    print(f"    bare backbone forward          {percentiles(bare_ms)}")
    print(f"    bare backbone, BatchNorms folded {percentiles(bare_folded_ms)}")
    if prior_ms:
        print(f"    clothes-type prior alone       {percentiles(prior_ms)}")
    print(f"    numpy brute force (k={args.k})     {percentiles(numpy_ms)}")
    for name in engines:
        print(f"    FAISS search alone [{name}] {percentiles(faiss_ms[name])}")


if __name__ == "__main__":
    sys.exit(run_main(main))
