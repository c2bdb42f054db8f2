#!/usr/bin/env python
"""The HTTP API under load: concurrent search clients while items are added and removed.

Starts ``indexer serve`` on a free loopback port over a temporary copy of --index (the given index
is never changed), then runs --clients client threads of --queries POST /search each, while one
thread adds --adds new photos (POST /items) and another removes --removes items (DELETE /items).
Prints client-side p50/p95 latency, queries/s, error responses, and the final vector count beside
the expected one. Prints figures; it is not a test.

The queries are worn photos by default (--query-photos worn): the consumer photos under the index's
data root, people wearing the garments, and mirrored, cropped and rescaled copies of a real
portrait (matplotlib's sample photo of Grace Hopper), so that concurrent searches go through the
face check that cuts a worn garment's box below the wearer's face. ``gallery`` queries with the
shop photos the index holds, which rarely reach that check.

    python scripts/benchmark_api.py --index indexes/demo --clients 8 --queries 40
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import device_option  # noqa: E402
from indexer.embedding import file_sha256, list_image_files  # noqa: E402
from indexer.store import EmbeddingIndex  # noqa: E402

LAUNCHER = """
import argparse, sys
from indexer.api import add_serve_parser, cmd_serve
parser = argparse.ArgumentParser(prog="indexer")
add_serve_parser(parser.add_subparsers(dest="command", required=True))
sys.exit(cmd_serve(parser.parse_args(sys.argv[1:])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_PIDS: dict[str, int] = {}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def oversized_post(url: str, total: int) -> tuple[int, int]:
    """POST ``total`` bytes chunked while declaring ``Content-Length: 100`` (a false length); returns
    (the answer's status, the bytes sent before the server stopped reading)."""
    host, port = url.split("//")[1].split(":")
    block = b"x" * (1 << 20)
    chunk = b"%x\r\n" % len(block) + block + b"\r\n"
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=120) as s:
        s.sendall(f"POST /search HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                  "Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < total:
                s.sendall(chunk)
                sent += len(block)
            s.sendall(b"0\r\n\r\n")
        with contextlib.suppress(ConnectionResetError, socket.timeout):
            while b"\r\n\r\n" not in answer:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
    return (int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.1 ") else 0), sent


@contextlib.contextmanager
def server(index_dir: Path, device: str, log_path: Path, start_timeout: float = 300):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "serve", str(index_dir), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", device, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/health", timeout=5).ok:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not answer within {start_timeout} s")
            time.sleep(0.2)
        SERVER_PIDS[url] = proc.pid
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def new_photos(data_root: Path | None, gallery, n: int) -> list[Path]:
    """Photos under ``data_root`` that the index does not hold (by path and by content)."""
    if data_root is None or not data_root.is_dir() or n == 0:
        return []
    indexed_paths = set(gallery["image_path"].astype(str))
    indexed_content = set(gallery["image_sha256"].dropna()) if "image_sha256" in gallery else set()
    found = []
    for path, _ in list_image_files([data_root]):
        if str(path.resolve()) not in indexed_paths and file_sha256(path) not in indexed_content:
            found.append(path)
            if len(found) == n:
                break
    return found


def worn_photos(data_root: Path | None, folder: Path) -> list[Path]:
    """Consumer photos under ``data_root`` (Consumer-to-shop names them comsumer_*), and variants of a
    real portrait written into ``folder``."""
    consumers = sorted(data_root.rglob("comsumer_*.jpg")) if data_root is not None and data_root.is_dir() else []
    found = consumers[:: max(1, len(consumers) // 24)][:24]  # spread over the items
    try:
        from matplotlib import cbook
        from PIL import Image, ImageOps

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            portrait = Image.open(f).convert("RGB")
    except ImportError:
        return found
    w, h = portrait.size
    variants = [portrait, ImageOps.mirror(portrait), portrait.resize((w // 2, h // 2)), portrait.crop((0, 0, w, h * 3 // 4)),
                portrait.crop((w // 8, 0, w * 7 // 8, h)), ImageOps.mirror(portrait).resize((w * 3 // 4, h * 3 // 4)),
                ImageOps.expand(portrait, border=60, fill=(235, 235, 235)), portrait.rotate(4, expand=True, fillcolor=(200, 200, 200))]
    folder.mkdir(parents=True, exist_ok=True)
    for n, variant in enumerate(variants):
        variant.save(folder / f"portrait_{n}.jpg", quality=92)
        found.insert(min(len(found), 4 * n + 3), folder / f"portrait_{n}.jpg")  # every fourth query, so each client meets them
    return found


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", default="indexes/demo", help="index to serve (a temporary copy of it)")
    p.add_argument("--clients", type=int, default=8, help="concurrent search clients")
    p.add_argument("--queries", type=int, default=50, help="searches per client")
    p.add_argument("-k", type=int, default=20, help="results per search")
    p.add_argument("--adds", type=int, default=10, help="photos added (one POST /items each) during the searches")
    p.add_argument("--removes", type=int, default=5, help="items removed during the searches")
    p.add_argument("--new-photos", help="folder of photos to add (default: the index's data root, photos it does not hold)")
    p.add_argument("--query-photos", default="worn", choices=["worn", "gallery"],
                   help="worn: consumer photos and real portraits (default); gallery: the shop photos the index holds")
    device_option(p, "where the server runs the model and the search: auto (default: the GPU when present), cpu or cuda")
    p.add_argument("--oversized", type=int, nargs="*", default=[25, 200, 1024], metavar="MIB",
                   help="after the load, bodies of these sizes with a false Content-Length: the answer and the server's memory")
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="benchmark_api.") as tmp:
        index_dir = Path(tmp) / "index"
        shutil.copytree(args.index, index_dir)
        index = EmbeddingIndex.load(index_dir, device="cpu")
        gallery = index.metadata
        root = Path(args.new_photos) if args.new_photos else Path((index.extra or {}).get("data_root") or "")
        adds = new_photos(root if str(root) else None, gallery, args.adds)
        items = gallery["item_id"].astype(str).drop_duplicates().tolist()
        doomed = items[-args.removes:] if args.removes else []
        if args.query_photos == "worn":
            queries = [str(p) for p in worn_photos(Path(root) if str(root) else None, Path(tmp) / "portraits")]
        else:
            queries = gallery.loc[~gallery["item_id"].astype(str).isin(doomed), "image_path"].astype(str).tolist()
        if not queries:
            raise SystemExit("no query photos: none left after choosing the items to remove, or no worn photos found")
        expected = index.ntotal + len(adds) - int(gallery["item_id"].astype(str).isin(doomed).sum())
        photos = {path: Path(path).read_bytes() for path in queries}
        print(f"index {args.index} ({index.ntotal} images) copied to {index_dir}; {args.clients} clients x {args.queries} searches "
              f"(k={args.k}) of {len(queries)} {args.query_photos} photos, {len(adds)} adds and {len(doomed)} removes alongside")

        with server(index_dir, args.device, Path(tmp) / "server.log") as url:
            latencies: list[float] = []
            errors: list[str] = []
            below_face = [0]
            lock = threading.Lock()

            def client(c: int) -> None:
                session = requests.Session()
                for i in range(args.queries):
                    path = queries[(c * args.queries + i) % len(queries)]
                    start = time.perf_counter()
                    try:
                        response = session.post(f"{url}/search", files={"image": (Path(path).name, photos[path])}, data={"k": args.k}, timeout=120)
                        problem = None if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"
                        cut = problem is None and bool(response.json()["prediction"].get("below_face"))
                    except requests.RequestException as exc:
                        problem, cut = f"{type(exc).__name__}: {exc}", False
                    elapsed = (time.perf_counter() - start) * 1000
                    with lock:
                        latencies.append(elapsed)
                        below_face[0] += cut
                        if problem:
                            errors.append(f"search: {problem}")

            def changes(kind: str) -> None:
                session = requests.Session()
                for n, target in enumerate(adds if kind == "add" else doomed):
                    if kind == "add":
                        response = session.post(f"{url}/items", files={"images": (target.name, target.read_bytes())},
                                                data={"item_id": f"benchmark-{n}"}, timeout=300)
                    else:
                        response = session.delete(f"{url}/items/{target}", timeout=300)
                    if response.status_code != 200:
                        with lock:
                            errors.append(f"{kind} {target}: {response.status_code} {response.text[:200]}")

            threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
            threads += [threading.Thread(target=changes, args=("add",)), threading.Thread(target=changes, args=("remove",))]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads[: args.clients]:
                t.join()
            search_seconds = time.perf_counter() - start
            for t in threads[args.clients:]:
                t.join()
            final = requests.get(f"{url}/health", timeout=60).json()["count"]
            oversized = []
            baseline = rss_mib(SERVER_PIDS[url])
            for mib in args.oversized:
                status, sent = oversized_post(url, mib << 20)
                oversized.append((mib, status, sent / 2**20, rss_mib(SERVER_PIDS[url]) - baseline))

        a = np.asarray(latencies)
        print(f"searches: {len(a)} in {search_seconds:.1f} s = {len(a) / search_seconds:.1f} queries/s | "
              f"p50 {np.percentile(a, 50):.0f} ms | p95 {np.percentile(a, 95):.0f} ms | max {a.max():.0f} ms")
        print(f"searches whose garment box was cut below a face: {below_face[0]}")
        print(f"error responses: {len(errors)}")
        for line in errors[:10]:
            print(f"  {line}")
        saved = EmbeddingIndex.load(index_dir, device="cpu").ntotal
        print(f"final count: {final} served, {saved} saved, {expected} expected -> {'OK' if final == saved == expected else 'MISMATCH'}")
        if oversized:
            print(f"bodies with 'Content-Length: 100' sent chunked (server RSS before them: {baseline:.0f} MiB):")
            for mib, status, sent, grown in oversized:
                print(f"  {mib} MiB: answer {status}, {sent:.0f} MiB sent before the server stopped reading, RSS {grown:+.1f} MiB")


if __name__ == "__main__":
    sys.exit(run_main(main))
