#!/usr/bin/env python
"""Model forward time on CPU: torch eager against ONNX Runtime (Predictor(runtime="onnx")).

One photo at a time, as a query is served, at 1 and at 2 intra-op threads, for
  - the bare backbone forward (trunk + conv5 + global pooling, as scripts/benchmark_query.py
    defines it: the speed reference a query is held to),
  - the torch Predictor forward (FashionNet with BatchNorms folded),
  - the ONNX Runtime Predictor forward (the same FashionNet exported),
  - the OpenVINO Predictor forward (the same export, float32), where openvino is installed,
  - with --int8, the export with int8 convolutions (ONNX Runtime static quantisation, QDQ, weights
    per channel, activation ranges calibrated on 64 synthetic shop photos rendered on the spot),
  - with --bf16, OpenVINO in bfloat16 (what it runs by default on CPUs with AMX),
then batch throughput at --batch-size. With --retrieval, every variant also embeds the Consumer-to-shop
test queries and gallery of --data-root, and the top-k of each is printed side by side (one pass,
no crop), so a quantised model's accuracy is measured, not only its cosine to torch. Variants take turns in --rounds rounds, so a change in the
machine's load hits all of them alike. The model is an ImageNet EfficientNet-Lite0 FashionNet
(untrained heads) unless --checkpoint names one. Prints figures; it is not a test.

    python scripts/benchmark_runtime.py --queries 100 --rounds 3 --int8

--int8 and --bf16 are here to measure, not offered to the Predictor: int8 lost retrieval accuracy
and was no faster than float32 ONNX Runtime, and bfloat16 embeddings drift from float32's. Results:
docs/experiments/cpu_runtimes.md and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fashionnet  # noqa: E402,F401  (first: it sets the OpenMP wait policy before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import data_root_option, hidden_alias  # noqa: E402
from fashionnet.inference.predictor import Predictor  # noqa: E402
from fashionnet.models import BareBackbone, FashionNetConfig, create_model, get_backbone  # noqa: E402
from fashionnet.models.checkpoint import state_dict_checksum  # noqa: E402
from fashionnet.runtimes.onnx_runtime import OnnxForward  # noqa: E402
from fashionnet.runtimes.openvino_runtime import OpenVinoForward  # noqa: E402


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):7.2f} ms | p95 {np.percentile(a, 95):7.2f} ms | mean {a.mean():7.2f} ms"


def photos_as_tensors(predictor: Predictor, data_root: str, n: int, seed: int) -> list[torch.Tensor]:
    photos = sorted(Path(data_root).glob("img/*/*/*/*.jpg"))
    if not photos:  # no benchmark data: random images of the right shape
        gen = torch.Generator().manual_seed(seed)
        return [torch.randn(1, 3, predictor.input_side, predictor.input_side, generator=gen) for _ in range(n)]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(photos), size=n, replace=len(photos) < n)
    return [predictor.preprocess(photos[i])[0][None] for i in chosen]


def quantize_int8(float_path: Path, out_path: Path, predictor: Predictor, photos: int = 64) -> Path:
    """An int8 (QDQ) copy of the float export: convolutions with int8 weights per output channel and
    uint8 activations whose ranges are calibrated on ``photos`` synthetic shop photos, preprocessed as
    the Predictor does."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fashionnet.data.synthetic import make_items, render_shop_image

    items = make_items("default", seed=0)
    picks = np.random.default_rng(11).choice(len(items), size=photos, replace=False)
    tensors = torch.stack([predictor.preprocess(render_shop_image(items[int(i)], "front", np.random.default_rng([12, int(i)])).image)[0]
                           for i in picks]).numpy()

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([tensors[i:i + 16] for i in range(0, len(tensors), 16)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    prepared = out_path.with_suffix(".prepared.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out_path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, op_types_to_quantize=["Conv"],
                    calibrate_method=CalibrationMethod.MinMax)
    return out_path


DEFAULT_DATA_ROOT = "data/synth/consumer2shop"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a trained FashionNet (default: ImageNet EfficientNet-Lite0, untrained heads)")
    p.add_argument("--image-size", type=int, default=224, help="side of the square input images, in pixels (without --checkpoint)")
    data_root_option(p, several=False, type=str, help=f"photos to feed (default {DEFAULT_DATA_ROOT}; random images when absent)")
    p.add_argument("--queries", type=int, default=100, help="single-photo forwards per variant per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds the variants take turns in")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts to compare")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch in the throughput runs")
    hidden_alias(p, "--batch", dest="batch_size", type=int)
    p.add_argument("--batches", type=int, default=3, help="batches per variant per thread count")
    p.add_argument("--int8", action="store_true", help="also time an int8 export, calibrated on synthetic shop photos")
    p.add_argument("--bf16", action="store_true", help="also time OpenVINO in bfloat16")
    p.add_argument("--retrieval", action="store_true", help="also compare the variants' Consumer-to-shop retrieval (needs --data-root)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    args.data_root = args.data_root or DEFAULT_DATA_ROOT
    cache = tempfile.mkdtemp(prefix="fashionnet-onnx-bench-")

    if args.checkpoint:
        def make(runtime):
            return Predictor.from_checkpoint(args.checkpoint, device="cpu", runtime=runtime, onnx_cache_dir=cache)
    else:
        torch.manual_seed(args.seed)
        config = FashionNetConfig(backbone="efficientnet_lite0", pretrained=True, num_categories=9, num_attributes=12,
                                  image_size=args.image_size)
        model = create_model(config).eval()
        labels = {"categories": [f"c{i}" for i in range(9)], "attributes": [f"a{i}" for i in range(12)]}
        common = (model, config, labels, {"image_size": args.image_size}, state_dict_checksum(model.state_dict()))

        def make(runtime):
            return Predictor(*common, device="cpu", runtime=runtime, onnx_cache_dir=cache)
    torch_pred, onnx_pred = make("torch"), make("onnx")
    if onnx_pred.runtime != "onnx":
        sys.exit("the ONNX runtime is unavailable (see the warning above)")
    backbone = torch_pred.config.backbone
    bare = BareBackbone(get_backbone(backbone, pretrained=False)).eval()
    variants = {
        "bare backbone forward (torch)": lambda x: bare(x),
        "Predictor forward, torch": torch_pred.forward_batch,
        "Predictor forward, ONNX Runtime": onnx_pred.forward_batch,
    }
    openvino_pred = make("openvino")
    if openvino_pred.runtime == "openvino":
        variants["Predictor forward, OpenVINO"] = openvino_pred.forward_batch
    onnx_file = onnx_pred._onnx.path
    if args.int8:
        started = time.perf_counter()
        int8_path = quantize_int8(onnx_file, Path(cache) / "int8.onnx", torch_pred)
        print(f"int8 model calibrated and quantised in {time.perf_counter() - started:.1f} s")
        variants["ONNX Runtime, int8 static"] = OnnxForward(int8_path)
    if args.bf16:
        variants["OpenVINO, bfloat16"] = OpenVinoForward(onnx_file, output_names=onnx_pred._onnx.keys, precision="bf16")

    tensors = photos_as_tensors(torch_pred, args.data_root, args.queries, args.seed)
    batch = torch.cat([tensors[i % len(tensors)] for i in range(args.batch_size)])

    with torch.inference_mode():
        reference = torch_pred.forward_batch(batch)["embedding"].numpy()
        agreement = {}
        for name in list(variants)[2:]:
            emb = variants[name](batch)["embedding"].numpy()
            cos = (emb * reference).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(reference, axis=1))
            agreement[name] = (float(np.abs(emb - reference).max()), float(cos.min()))

        single: dict[tuple[int, str], list[float]] = {}
        throughput: dict[tuple[int, str], list[float]] = {}
        for threads in args.threads:
            torch.set_num_threads(threads)
            for name, fn in variants.items():  # warm-up (ONNX Runtime makes its session for this thread count)
                for x in tensors[:5]:
                    fn(x)
            for _ in range(args.rounds):
                for name, fn in variants.items():
                    times = single.setdefault((threads, name), [])
                    for x in tensors:
                        t = time.perf_counter()
                        fn(x)
                        times.append(1e3 * (time.perf_counter() - t))
            for name, fn in list(variants.items())[1:]:
                fn(batch)
                for _ in range(args.batches):
                    t = time.perf_counter()
                    fn(batch)
                    throughput.setdefault((threads, name), []).append(args.batch_size / (time.perf_counter() - t))

    print(f"{backbone} at {torch_pred.input_side} px, {torch_pred.folded_batch_norms} BatchNorms folded in the torch Predictor; "
          f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}; "
          f"{args.queries} photos x {args.rounds} rounds per variant; load average {os.getloadavg()[0]:.2f} at the end "
          f"on {os.cpu_count()} CPUs")
    for threads in args.threads:
        print(f"  [{threads} thread{'s' if threads > 1 else ''}] one photo per forward")
        base = np.percentile(single[(threads, "bare backbone forward (torch)")], 50)
        for name in variants:
            ms = single[(threads, name)]
            print(f"    {name:34s} {stats(ms)} | p50 {np.percentile(ms, 50) / base:4.2f}x bare backbone")
        print(f"  [{threads} thread{'s' if threads > 1 else ''}] batch {args.batch_size}")
        for name in list(variants)[1:]:
            print(f"    {name:34s} {np.median(throughput[(threads, name)]):7.1f} images/s")
    print(f"  agreement with the torch Predictor on a batch of {args.batch_size} photos:")
    for name, (diff, cos) in agreement.items():
        print(f"    {name:34s} embedding max abs diff {diff:.2e}, min cosine {cos:.6f}")
    if args.retrieval:
        print_retrieval(torch_pred, dict(list(variants.items())[1:]), args.data_root, args.batch_size)


def print_retrieval(predictor: Predictor, variants: dict, data_root: str, batch: int) -> None:
    """Consumer-to-shop top-k of each variant's embeddings, on the same preprocessed photos."""
    from fashionnet.data.readers import read_benchmark
    from fashionnet.evaluation.protocols import protocol_frames
    from fashionnet.evaluation.retrieval_metrics import retrieval_metrics

    queries, gallery = protocol_frames(read_benchmark(data_root), "consumer2shop")
    ks = (1, 5, 20)

    def embed(fn, frame):
        tensors = [predictor.preprocess(Path(data_root) / p)[0] for p in frame["image_path"]]
        with torch.inference_mode():
            return np.concatenate([fn(torch.stack(tensors[i:i + batch]))["embedding"].numpy() for i in range(0, len(tensors), batch)])

    print(f"  Consumer-to-shop retrieval, {len(queries)} queries against {len(gallery)} shop images (one pass, no crop):")
    for name, fn in variants.items():
        r = retrieval_metrics(embed(fn, queries), queries["item_id"].to_numpy(), embed(fn, gallery), gallery["item_id"].to_numpy(),
                              ks=ks, show_progress=False)
        print(f"    {name:34s} " + " | ".join(f"top-{k} {100 * r['top_k'][k]:5.1f}" for k in ks) + f" | mAP@R {100 * r['map_at_r']:5.1f}")


if __name__ == "__main__":
    sys.exit(run_main(main))
