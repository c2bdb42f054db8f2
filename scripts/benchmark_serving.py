#!/usr/bin/env python
"""Query latency as a server sees it: idle, under another process's CPU load, and with concurrent clients.

For each torch/FAISS thread count in --threads, runs --queries sequential queries through
SearchEngine.query (decode, model, search) with no other load, then again while --load busy-loop
processes compete for the CPU, then with --clients concurrent client threads sharing one engine.
Prints p50/p95 per setting. Prints figures; it is not a test.

    python scripts/benchmark_serving.py --index indexes/demo --photos data/synth/consumer2shop \
        --threads 1 2 --load 1 --clients 8
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fashionnet  # noqa: E402,F401  (first: it sets the OpenMP wait policy before torch and faiss load)
import numpy as np  # noqa: E402

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import device_option, runtime_option  # noqa: E402
from fashionnet.data.images import load_image  # noqa: E402
from fashionnet.device import set_threads  # noqa: E402
from indexer.embedding import list_image_files  # noqa: E402
from indexer.search import SearchEngine  # noqa: E402


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def _percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):7.1f} ms | p95 {np.percentile(a, 95):7.1f} ms | p95/p50 {np.percentile(a, 95) / np.percentile(a, 50):4.1f}"


def sequential(engine: SearchEngine, photos: list, n: int) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        engine.query(photos[i % len(photos)], k=20)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def concurrent(engine: SearchEngine, photos: list, clients: int, per_client: int) -> tuple[list[float], float]:
    times: list[float] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for i in range(per_client):
            t0 = time.perf_counter()
            engine.query(photos[(c * per_client + i) % len(photos)], k=20)
            with lock:
                times.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, clients * per_client / (time.perf_counter() - start)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", default="indexes/demo", help="index to search (read only)")
    p.add_argument("--photos", default="data/synth/consumer2shop", help="folder of query photos (searched recursively)")
    p.add_argument("--queries", type=int, default=100, help="queries per run")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch/FAISS intra-op threads to compare")
    p.add_argument("--load", type=int, default=1, help="busy-loop processes competing for the CPU in the loaded runs")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads in the concurrency run")
    device_option(p, "where the model and the search run: auto (default: the GPU when present), cpu or cuda")
    runtime_option(p)
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)

    files = [path for path, _ in list_image_files([args.photos])][:50]
    photos = [load_image(f) for f in files]  # decoded once: the figures are about the model and search
    engine = SearchEngine.open(args.index, device=args.device, runtime=args.runtime)
    print(f"index {args.index}: {engine.index.ntotal} vectors; {len(photos)} photos; {args.queries} queries per run")
    for threads in args.threads:
        set_threads(threads)
        sequential(engine, photos, 10)  # warm up
        idle = sequential(engine, photos, args.queries)
        ctx = mp.get_context("spawn")
        hogs = [ctx.Process(target=_busy, args=(time.time() + 600,)) for _ in range(args.load)]
        for h in hogs:
            h.start()
        time.sleep(1.0)
        try:
            loaded = sequential(engine, photos, args.queries)
        finally:
            for h in hogs:
                h.terminate()
                h.join()
        times, qps = concurrent(engine, photos, args.clients, max(1, args.queries // args.clients))
        print(f"threads {threads}: idle            {_percentiles(idle)}")
        print(f"threads {threads}: {args.load} busy process(es) {_percentiles(loaded)}")
        print(f"threads {threads}: {args.clients} clients       {_percentiles(times)} | {qps:5.1f} queries/s")


if __name__ == "__main__":
    sys.exit(run_main(main))
