#!/usr/bin/env python
"""Parity and cost of Milvus Lite against FAISS, measured on the same vectors in one run.

For each gallery size in --sizes: N clustered unit-normalised float32 vectors and --queries queries
from the same mixture (the generator of scripts/benchmark_index.py), then, each engine in a fresh
process of its own so that its memory is its own:

- FAISS exact (EmbeddingIndex, IndexFlatIP): the ground truth;
- the FAISS index `indexer build` picks at that size (indexer.build.default_index_factory, its
  nprobe rule) and, for each --milvus-index type, the FAISS index of the same kind and parameters;
- Milvus Lite with each --milvus-index type (vectors inserted in batches, flushed, indexed, loaded);
  a type Milvus Lite refuses is tried on a small scratch collection first and its error reported;
- numpy brute force (this process), a third reference.

For each: recall@k against FAISS exact; for Milvus, the top-k agreement with FAISS of the same type;
latency of one query per call (p50, p95, as a server sees them), batch throughput, build time
(insert + flush + index + load for Milvus), memory (the process's RSS after building less before,
and its peak; child processes counted if there are any) and bytes on disk. Prints a table; --out
writes the figures as JSON. It is not a test.

    python scripts/benchmark_milvus.py --sizes 100000        # every index type; 6 min on 2 busy cores
    python scripts/benchmark_milvus.py --sizes 1000000 --milvus-index FLAT IVF_FLAT IVF_SQ8   # 17 min
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark_index.py

from benchmark_index import make_data, numpy_top_k, recall_at_k, serialized_bytes_per_vector  # noqa: E402
from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import hidden_alias  # noqa: E402
from indexer.build import default_index_factory  # noqa: E402

COLLECTION = "bench"
TRAIN_SAMPLE = 100_000  # indexer build's default --train-sample
PROBE_ROWS = 2_000  # the scratch collection that tells whether Milvus Lite builds an index type


def project_nlist_nprobe(n: int) -> tuple[int | None, int | None]:
    """The IVF lists `indexer build` uses for n images and the nprobe it sets (None, None: exact)."""
    factory = default_index_factory(n)
    if factory is None:
        return None, None
    nlist = int(factory.split(",")[0][3:])
    return nlist, min(nlist, max(8, nlist // 64))  # as indexer/build.py sets it


def faiss_counterpart(milvus_type: str, nlist: int, args) -> dict | None:
    """The FAISS index of the same kind and parameters as a Milvus index type (None: none here)."""
    if milvus_type == "FLAT":
        return {"engine": "faiss", "factory": "Flat"}
    if milvus_type == "IVF_FLAT":
        return {"engine": "faiss", "factory": f"IVF{nlist},Flat"}
    if milvus_type == "IVF_SQ8":  # Milvus Lite's IVF_SQ8 is FAISS's 8-bit IVF scalar quantizer
        return {"engine": "faiss", "factory": f"IVF{nlist},SQ8"}
    if milvus_type == "IVF_PQ":
        return {"engine": "faiss", "factory": f"IVF{nlist},PQ{args.pq_m}"}
    if milvus_type == "HNSW":
        return {"engine": "faiss-hnsw", "factory": f"HNSW{args.hnsw_m}"}
    return None


def milvus_params(milvus_type: str, nlist: int, nprobe: int, args) -> tuple[dict, dict]:
    """(build params, search params) for a Milvus index type, matching the FAISS counterpart's."""
    if milvus_type.startswith("IVF"):
        build = {"nlist": nlist, **({"m": args.pq_m, "nbits": 8} if milvus_type == "IVF_PQ" else {})}
        return build, {"nprobe": nprobe}
    if milvus_type.startswith("HNSW"):
        return {"M": args.hnsw_m, "efConstruction": args.ef_construction}, {"ef": args.ef}
    if milvus_type == "DISKANN":
        return {}, {"search_list": max(args.ef, 2 * args.k)}
    return {}, {}


# ------------------------------------------------------------------------------ memory and load


def rss_bytes(pid: int | str = "self") -> tuple[int, int]:
    """(resident, peak resident) bytes of a process, from /proc (psutil is not a dependency)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (a server Milvus Lite may have started)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name may hold spaces: the fields after its closing parenthesis
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------ one engine, in its own process


def set_all_threads(threads: int) -> None:
    from fashionnet.device import set_threads  # imports torch: only where an engine runs

    set_threads(threads)  # torch and FAISS
    threadpool_limits(threads)  # numpy's BLAS


def build_faiss(spec: dict, gallery: np.ndarray, opts: dict, workdir: Path):
    """(search function over a query batch, function giving the index's bytes per vector) for a FAISS
    row; the size is taken after the memory reading, as saving allocates buffers of its own."""
    import faiss

    if spec["engine"] == "faiss-hnsw":  # raw FAISS: EmbeddingIndex does not expose efSearch
        index = faiss.IndexHNSWFlat(gallery.shape[1], opts["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = opts["ef_construction"]
        index.add(gallery)
        index.hnsw.efSearch = opts["ef"]
        return (lambda q: index.search(q, opts["k"])[1]), (lambda: len(faiss.serialize_index(index)) / len(gallery))

    from indexer.store import EmbeddingIndex

    index = EmbeddingIndex.create(gallery.shape[1], None if spec["factory"] == "Flat" else spec["factory"], device="cpu")
    index.train(gallery, max_train=TRAIN_SAMPLE, seed=opts["seed"])
    index.add(gallery, show_progress=False)
    if spec.get("nprobe") is not None:
        index.nprobe = spec["nprobe"]
    # nearest(): the index's search as the page calls it, without the metadata rows
    return (lambda q: index.nearest(q, opts["k"])[1]), (lambda: serialized_bytes_per_vector(index, workdir, "bench")[0])


def milvus_wait_for_background(db_path: Path) -> bool:
    """Wait for Milvus Lite's background compaction and index builds, so that the build time holds
    them. Milvus Lite has no public call for it; False where its internals differ from 3.2."""
    try:
        from milvus_lite.server_manager import server_manager_instance

        _, db, _ = server_manager_instance._servers[str(db_path.resolve())]
        db.get_collection(COLLECTION)._wait_for_bg()
        return True
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):
        return False


def milvus_collection(client, name: str, dim: int, milvus_type: str, build: dict, rows: np.ndarray, batch: int,
                      progress: bool) -> None:
    """Create a collection, insert ``rows`` in batches (one request has a size limit), flush, index, load."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection(name, schema=schema)
    for start in tqdm(range(0, len(rows), batch), desc=f"Milvus insert ({milvus_type})", unit="batch", disable=not progress):
        chunk = rows[start : start + batch]
        client.insert(name, [{"id": start + i, "vector": v} for i, v in enumerate(chunk)])
    client.flush(name)
    index_params = client.prepare_index_params()
    index_params.add_index(field_name="vector", index_type=milvus_type, metric_type="IP", params=build)
    client.create_index(name, index_params)
    client.load_collection(name)


def build_milvus(spec: dict, gallery: np.ndarray, opts: dict, workdir: Path, result: dict):
    """The search function over a query batch for a Milvus Lite row; its build time, segments and
    bytes on disk go into ``result``."""
    from pymilvus import MilvusClient

    db_path = workdir / "milvus.db"
    client = MilvusClient(str(db_path))
    # a refused index type is reported in the table, not as tracebacks (the loggers exist once the server runs)
    for name in [n for n in logging.root.manager.loggerDict if n.startswith(("pymilvus", "milvus_lite"))]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    result["milvus_children"] = len(child_pids(os.getpid()))  # 0: the server runs in this process
    # A small scratch collection first: an index type Milvus Lite refuses is then reported without
    # inserting the whole gallery.
    probe_build = {**spec["build"], **({"nlist": 16} if "nlist" in spec["build"] else {})}  # few rows: few lists
    milvus_collection(client, "probe", gallery.shape[1], spec["index_type"], probe_build, gallery[:PROBE_ROWS],
                      opts["insert_batch"], False)
    client.drop_collection("probe")
    result["rss_before"], _ = rss_bytes()  # the scratch collection's memory is not the gallery's
    start = time.perf_counter()
    milvus_collection(client, COLLECTION, gallery.shape[1], spec["index_type"], spec["build"], gallery,
                      opts["insert_batch"], True)
    result["waited_for_background"] = milvus_wait_for_background(db_path)
    result["build_s"] = time.perf_counter() - start
    result["segments"] = len(list(db_path.glob(f"collections/{COLLECTION}/partitions/*/data/*.parquet")))
    result["disk_bytes_per_vector"] = folder_bytes(db_path / "collections" / COLLECTION) / len(gallery)
    params = {"metric_type": "IP", "params": spec["search"]}

    def search(q: np.ndarray) -> np.ndarray:
        hits = client.search(COLLECTION, data=list(q), limit=opts["k"], anns_field="vector", search_params=params,
                             output_fields=["id"])
        out = np.full((len(q), opts["k"]), -1, dtype=np.int64)
        for row, found in zip(out, hits):
            ids = [h["id"] for h in found]
            row[: len(ids)] = ids
        return out

    return search


def measure(spec: dict, files: dict, opts: dict) -> dict:
    """Build one engine's index over the saved gallery and time it. Runs in a fresh process."""
    set_all_threads(opts["threads"])
    # imported before the memory baseline, so that a row's RSS is its index, not its libraries
    import faiss  # noqa: F401

    from indexer.store import EmbeddingIndex  # noqa: F401

    gallery = np.load(files["gallery"])
    queries = np.load(files["queries"])
    workdir = Path(files["workdir"]) / spec["name"].replace(" ", "_").replace(",", "_")
    workdir.mkdir(parents=True, exist_ok=True)
    result = {"name": spec["name"], "load_start": os.getloadavg()[0]}
    try:
        result["rss_before"], _ = rss_bytes()
        start = time.perf_counter()
        if spec["engine"] == "milvus":
            search = build_milvus(spec, gallery, opts, workdir, result)
        else:
            search, size = build_faiss(spec, gallery, opts, workdir)
            result["build_s"] = time.perf_counter() - start
        rss, peak = rss_bytes()
        children = [rss_bytes(pid) for pid in child_pids(os.getpid())]
        result["rss_delta"] = rss - result["rss_before"] + sum(c[0] for c in children)
        result["peak_delta"] = peak - result["rss_before"] + sum(c[1] for c in children)
        result["child_processes"] = len(children)
        if spec["engine"] != "milvus":
            result["index_bytes_per_vector"] = size()

        # batches: --batch-size queries per call, after one warm-up batch
        batch = opts["batch_size"]
        search(queries[:batch])
        found, start = [], time.perf_counter()
        for i in range(0, len(queries), batch):
            found.append(search(queries[i : i + batch]))
        result["batch_qps"] = len(queries) / (time.perf_counter() - start)
        batch_ids = np.concatenate(found)
        result["ids"] = batch_ids.tolist()

        # one query per call, as a server sees them (with the server's threads), after 5 warm-up queries
        set_all_threads(opts["query_threads"])
        single = queries[: opts["latency_queries"]]
        for q in single[:5]:
            search(q[None])
        times, single_ids = [], []
        for q in single:
            t = time.perf_counter()
            single_ids.append(search(q[None])[0])
            times.append(1e3 * (time.perf_counter() - t))
        result["p50_ms"], result["p95_ms"] = (float(np.percentile(times, p)) for p in (50, 95))
        result["single_equals_batch"] = float(np.mean([np.array_equal(s, b) for s, b in zip(single_ids, batch_ids)]))
    except Exception as exc:  # reported in the table, not hidden: e.g. an index type Milvus Lite refuses
        result["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    result["load_end"] = os.getloadavg()[0]
    shutil.rmtree(workdir, ignore_errors=True)
    return result


# ------------------------------------------------------------------------------ the run


def engines_for(n: int, args) -> list[dict]:
    """The rows measured at gallery size n: FAISS exact, the project's index, then each Milvus type
    followed by the FAISS index of the same type."""
    project = default_index_factory(n)
    project_nlist, project_nprobe = project_nlist_nprobe(n)
    nlist = args.nlist or project_nlist or 1024
    nprobe = args.nprobe or project_nprobe or min(nlist, max(8, nlist // 64))

    def faiss_row(spec: dict, probe: int | None, role: str) -> dict:
        extra = f" nprobe {probe}" if probe else f" ef {args.ef}" if spec["engine"] == "faiss-hnsw" else ""
        exact = " (exact)" if spec["factory"] == "Flat" else ""
        return {**spec, "name": f"FAISS {spec['factory']}{exact}{extra}", "nprobe": probe, "role": role}

    specs = [faiss_row({"engine": "faiss", "factory": "Flat"}, None, "ground truth")]
    if project is not None:
        specs.append(faiss_row({"engine": "faiss", "factory": project}, project_nprobe, "the project's index at this size"))
    for milvus_type in args.milvus_index:
        build, search = milvus_params(milvus_type, nlist, nprobe, args)
        twin = faiss_counterpart(milvus_type, nlist, args)
        if twin is not None:
            twin = faiss_row(twin, nprobe if twin["factory"].startswith("IVF") else None, f"same type as Milvus {milvus_type}")
        label = " ".join(f"{k} {v}" for k, v in {**build, **search}.items())
        specs.append({"name": f"Milvus Lite {milvus_type} {label}".strip(), "engine": "milvus", "index_type": milvus_type,
                      "build": build, "search": search, "twin": twin and twin["name"], "factory": milvus_type})
        # measured after the Milvus row, and only where Milvus Lite built that type
        if twin is not None and all(s["name"] != twin["name"] for s in specs):
            specs.append({**twin, "only_if_built": specs[-1]["name"]})
    return specs


def run_size(n: int, args, workdir: Path) -> dict:
    clusters = args.clusters or max(10, n // 100)
    print(f"\n== {n:,} x {args.dim} gallery, {args.queries:,} queries ({args.latency_queries} one at a time), "
          f"{clusters:,} clusters, noise {args.noise}; k={args.k}; {args.threads} threads, {args.query_threads} per single query; load {os.getloadavg()}", flush=True)
    gallery, queries = make_data(n, args.queries, args.dim, clusters, args.noise, args.seed)
    files = {"gallery": str(workdir / "gallery.npy"), "queries": str(workdir / "queries.npy"), "workdir": str(workdir)}
    np.save(files["gallery"], gallery)
    np.save(files["queries"], queries)

    # numpy brute force, the third reference, here: in batches, and one query at a time
    start = time.perf_counter()
    numpy_ids = numpy_top_k(queries, gallery, args.k)
    numpy_qps = len(queries) / (time.perf_counter() - start)
    times = []
    with threadpool_limits(args.query_threads):
        for q in queries[: args.latency_queries]:
            t = time.perf_counter()
            sims = gallery @ q
            top = np.argpartition(-sims, args.k)[: args.k]
            top[np.argsort(-sims[top])]
            times.append(1e3 * (time.perf_counter() - t))
    del gallery

    opts = {k: getattr(args, k) for k in ("k", "threads", "seed", "hnsw_m", "ef_construction", "ef", "insert_batch",
                                          "batch_size", "latency_queries", "query_threads")}
    rows = []
    ctx = multiprocessing.get_context("spawn")  # a fresh process per engine: its memory is its own
    failed = set()
    for spec in engines_for(n, args):
        if spec.get("only_if_built") in failed:
            continue
        print(f"-- {spec['name']}", flush=True)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            try:
                result = pool.submit(measure, spec, files, opts).result()
            except concurrent.futures.process.BrokenProcessPool as exc:  # e.g. killed for memory
                result = {"name": spec["name"], "error": f"process died: {exc}"}
        rows.append({**{k: v for k, v in spec.items() if k not in ("name",)}, **result})
        if "error" in result:
            failed.add(spec["name"])
            print(f"   refused / failed: {result['error']}", flush=True)
        else:
            print(f"   built in {result['build_s']:.1f} s, p50 {result['p50_ms']:.2f} ms", flush=True)

    ids = {r["name"]: np.array(r.pop("ids")) for r in rows if "ids" in r}
    truth = ids.get(rows[0]["name"], numpy_ids)  # FAISS exact; numpy's if that failed
    for r in rows:
        if r["name"] in ids:
            r["recall"] = recall_at_k(list(ids[r["name"]]), truth)
            if r.get("twin") in ids:
                r["agreement"] = recall_at_k(list(ids[r["name"]]), ids[r["twin"]])
    rows.insert(0, {"name": "numpy brute force", "engine": "numpy", "recall": recall_at_k(list(numpy_ids), truth),
                    "batch_qps": numpy_qps, "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
                    "rss_delta": 4 * args.dim * n})
    rows.sort(key=lambda r: r["engine"] == "milvus")  # FAISS and numpy first, each group in the order run
    return {"n": n, "dim": args.dim, "clusters": clusters, "queries": args.queries, "latency_queries": args.latency_queries,
            "k": args.k, "threads": args.threads, "query_threads": args.query_threads, "rows": rows}


def print_table(result: dict) -> None:
    n, k = result["n"], result["k"]
    print(f"\n{n:,} x {result['dim']}, k={k}, recall@{k} against FAISS exact; agreement: the Milvus top {k} against FAISS's of the same type")
    head = (f"{'engine / index':<46}{'build s':>9}{'seg':>5}{f'recall@{k}':>10}{'agree':>8}{'p50 ms':>9}{'p95 ms':>9}"
            f"{'batch q/s':>11}{'RSS B/vec':>11}{'peak B/vec':>11}{'disk B/vec':>11}{'load':>11}")
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        def f(key, fmt):
            return "" if r.get(key) is None else format(r[key], fmt)
        disk = r.get("disk_bytes_per_vector", r.get("index_bytes_per_vector"))
        load = f"{r['load_start']:.1f}-{r['load_end']:.1f}" if "load_start" in r else ""
        print(f"{r['name'][:45]:<46}{f('build_s', '.1f'):>9}{f('segments', 'd'):>5}{f('recall', '.4f'):>10}{f('agreement', '.4f'):>8}"
              f"{f('p50_ms', '.2f'):>9}{f('p95_ms', '.2f'):>9}{f('batch_qps', ',.0f'):>11}"
              f"{'' if r.get('rss_delta') is None else format(r['rss_delta'] / n, ',.0f'):>11}"
              f"{'' if r.get('peak_delta') is None else format(r['peak_delta'] / n, ',.0f'):>11}"
              f"{'' if disk is None else format(disk, ',.0f'):>11}{load:>11}")
        if "error" in r:
            print(f"    {r['error']}")
    milvus = [r for r in result["rows"] if r.get("engine") == "milvus" and "error" not in r]
    if milvus:
        children = {r.get("child_processes", 0) + r.get("milvus_children", 0) for r in milvus}
        print(f"Milvus Lite ran in-process (child processes seen: {sorted(children)}); background work waited for: "
              f"{sorted({r.get('waited_for_background') for r in milvus})}; one query per call returned the batch's "
              f"top {k} for {min(r['single_equals_batch'] for r in milvus):.3f} of queries or more")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="gallery sizes, each measured in turn")
    parser.add_argument("--queries", type=int, default=1_000, help="query vectors for recall, agreement and batch throughput")
    parser.add_argument("--latency-queries", type=int, default=200,
                        help="of those, how many are also sent one per call for p50 / p95 latency")
    parser.add_argument("-k", type=int, default=20, help="results per query")
    hidden_alias(parser, "--k", dest="k", type=int)
    parser.add_argument("--dim", type=int, default=128,
                        help="width of the synthetic vectors (128: the demo model's whitened embedding, indexes/demo/manifest.json)")
    parser.add_argument("--clusters", type=int, default=None, help="mixture components (default n / 100)")
    parser.add_argument("--noise", type=float, default=0.5, help="within-cluster std per axis, as in benchmark_index.py")
    parser.add_argument("--milvus-index", nargs="+", default=["FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "IVF_PQ", "DISKANN"],
                        type=str.upper, help="Milvus index types to try (one the installed Milvus Lite refuses is reported with its error)")
    parser.add_argument("--nlist", type=int, default=None,
                        help="IVF lists of the IVF rows, FAISS and Milvus alike (default: what indexer build picks at that size)")
    parser.add_argument("--nprobe", type=int, default=None,
                        help="IVF lists visited per query (default: indexer build's rule, nlist / 64 and at least 8)")
    parser.add_argument("--hnsw-m", type=int, default=16, help="HNSW graph degree M (Milvus Lite's default)")
    parser.add_argument("--ef-construction", type=int, default=200, help="HNSW efConstruction (Milvus Lite's default)")
    parser.add_argument("--ef", type=int, default=64, help="HNSW ef at search time (Milvus Lite's default)")
    parser.add_argument("--pq-m", type=int, default=32, help="IVF_PQ sub-quantizers (8 bits each)")
    parser.add_argument("--insert-batch", type=int, default=10_000,
                        help="rows per Milvus insert request (one request must stay under the gRPC message limit)")
    parser.add_argument("--batch-size", type=int, default=100, help="queries per call when timing batch throughput")
    parser.add_argument("--threads", type=int, default=2, help="torch, FAISS and BLAS threads for building and batch search")
    # A multi-threaded call on a busy 2-core machine waits for a thread that is not running (fashionnet/device.py)
    parser.add_argument("--query-threads", type=int, default=1,
                        help="threads while timing one query per call (the server's default, $FASHIONNET_THREADS)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic vectors")
    parser.add_argument("--workdir", type=Path, default=None, help="where vectors, indexes and Milvus data are written (a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file the results are written to")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.k < 1 or args.queries < 1 or args.latency_queries > args.queries:
        raise ValueError("need -k >= 1, --queries >= 1 and --latency-queries <= --queries")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)  # inherited by the engines' processes
    threadpool_limits(args.threads)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {"command": " ".join(["python", "scripts/benchmark_milvus.py", *(argv if argv is not None else sys.argv[1:])]),
               "cpu_count": os.cpu_count(), "load_start": os.getloadavg(), "sizes": []}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            result = run_size(n, args, Path(tmp))
        results["sizes"].append(result)
        print_table(result)
        if args.out is not None:  # after each size, so a later size that fails keeps the earlier ones
            results["load_end"], results["wall_s"] = os.getloadavg(), time.time() - started
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nload average at start {results['load_start']}, at end {os.getloadavg()}; {time.time() - started:.0f} s wall")


if __name__ == "__main__":
    sys.exit(run_main(main))
