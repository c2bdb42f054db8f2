"""One Predictor and one SearchEngine shared by many threads, as the HTTP API's workers share them:
every thread gets exactly what a single thread gets.

The Predictor here runs the real OpenCV face detector on real portraits (its collar points are made
unsure, so every photo is checked for a face and cut below it): OpenCV's cascade is not thread-safe,
and one shared between threads raised errors, returned other threads' faces, or crashed.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageOps

from fashionnet.inference.faces import FaceDetector
from fashionnet.inference.predictor import Predictor
from fashionnet.models import FashionNetConfig, create_model
from tests.test_faces import box_in_input, grace_hopper
from tests.test_localisation import flat_heatmaps, force_box

THREADS = 8
PER_THREAD = 6  # predictions per thread
SIDE = 96
SIZE = (512, 600)  # every photo is this size, so one forced garment box starts at each forehead
SHEET = Path(__file__).resolve().parents[1] / "docs" / "real_portraits.jpg"  # 2 x 2 panels of two real people

pytestmark = pytest.mark.skipif(not FaceDetector.available(), reason="OpenCV is not installed")


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def portraits() -> dict[str, Image.Image]:
    """Head-and-shoulders photos, each with one face the cascade finds at the top of the garment."""
    hopper = grace_hopper()  # 512 x 600
    sheet = Image.open(SHEET).convert("RGB")
    return {
        "hopper": hopper,
        "hopper mirrored": ImageOps.mirror(hopper),
        "hopper, left panel": sheet.crop((0, 20, 307, 380)).resize(SIZE),
        "hopper, right panel": sheet.crop((360, 20, 667, 380)).resize(SIZE),
        "collins, left panel": sheet.crop((0, 405, 360, 764)).resize(SIZE),
        "collins, right panel": sheet.crop((360, 405, 720, 764)).resize(SIZE),
        "collins, close": sheet.crop((40, 405, 300, 710)).resize(SIZE),
        "hopper, blurred": hopper.resize((256, 300)).resize(SIZE),
    }


def jpeg(photo: Image.Image) -> bytes:
    """The photo as an upload's bytes: each call decodes its own image, as the API's do."""
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def in_threads(work, jobs_per_thread: list[list]) -> list[list]:
    """``work(job)`` for each thread's jobs, all threads started together; each thread's results in
    order. A thread's exception is raised here."""
    start = threading.Barrier(len(jobs_per_thread))

    def run(jobs):
        start.wait()
        return [work(job) for job in jobs]

    with ThreadPoolExecutor(len(jobs_per_thread)) as pool:
        futures = [pool.submit(run, jobs) for jobs in jobs_per_thread]
        return [f.result(timeout=120) for f in futures]


def rotations(n_items: int, per_thread: int) -> list[list[int]]:
    """Each thread's item numbers, starting at a different item, so threads look at different photos at once."""
    return [[(t + k) % n_items for k in range(per_thread)] for t in range(THREADS)]


class CountingDetector(FaceDetector):
    """The real detector, counting the photos it looked at, the faces it found and the threads it ran in."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self.calls, self.with_face, self.threads = 0, 0, set()

    def find(self, image):
        found = super().find(image)
        with self._lock:
            self.calls += 1
            self.with_face += len(found) > 0
            self.threads.add(threading.get_ident())
        return found


def face_checking_predictor(detector: FaceDetector) -> Predictor:
    """A tiny model whose collar points are unsure (so every photo is checked for a face) and whose
    garment box starts at the forehead: each portrait's box is cut below the face found."""
    torch.manual_seed(0)
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=SIDE)).eval()
    force_box(model, box_in_input((4, 100, 508, 596), size=SIZE))
    flat_heatmaps(model)
    return Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": SIDE}, "test",
                     device="cpu", fold_batch_norms=False, face_detector=detector, flip_average=True, runtime="torch")


def test_face_detector_from_eight_threads_finds_what_one_thread_finds():
    photos = list(portraits().values())
    detector = FaceDetector()
    expected = [detector.find(photo) for photo in photos]
    assert all(len(found) == 1 for found in expected), expected
    got = in_threads(lambda i: (i, detector.find(photos[i])), rotations(len(photos), 2 * len(photos)))
    for results in got:
        for i, found in results:
            np.testing.assert_array_equal(found, expected[i], err_msg=f"photo {i}")


def test_one_predictor_shared_by_eight_threads_predicts_what_one_thread_predicts():
    names, photos = zip(*portraits().items())
    uploads = [jpeg(photo) for photo in photos]
    detector = CountingDetector()
    predictor = face_checking_predictor(detector)
    n = len(uploads)
    expected = [predictor.predict(upload) for upload in uploads]
    assert detector.calls == n and detector.with_face == n  # one look per photo; the mirror image reuses it
    assert all(p.below_face and p.cropped for p in expected), [name for name, p in zip(names, expected) if not p.below_face]

    started = time.perf_counter()
    got = in_threads(lambda i: (i, predictor.predict(uploads[i])), rotations(n, PER_THREAD))
    seconds = time.perf_counter() - started
    assert detector.calls == n + THREADS * PER_THREAD and detector.with_face == detector.calls, "threads saw no face where one thread saw one"
    assert len(detector.threads) == THREADS + 1, "the face detector ran in every thread"
    for results in got:
        for i, prediction in results:
            want = expected[i]
            assert prediction.as_dict() == want.as_dict(), names[i]  # landmarks, box, below_face, cropped, category
            np.testing.assert_array_equal(prediction.embedding, want.embedding, err_msg=names[i])
    assert seconds < 60


def test_each_thread_uses_its_own_cascade_and_available_stays_cheap():
    from fashionnet.inference import faces

    mine = faces._cascade()
    assert faces._cascade() is mine and FaceDetector.available()
    theirs = in_threads(lambda _: faces._cascade(), [[0, 0]] * 2)
    assert theirs[0][0] is theirs[0][1] and theirs[0][0] is not theirs[1][0]
    assert theirs[0][0] is not mine and theirs[1][0] is not mine
    started = time.perf_counter()
    for _ in range(1000):
        assert FaceDetector.available()
    assert time.perf_counter() - started < 0.5


# ----------------------------------------------------------------------------- runtimes


def test_onnx_sessions_are_made_once_per_thread_count_however_many_threads_ask(monkeypatch, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from fashionnet.runtimes.onnx_runtime import OnnxForward

    made = []

    class SlowSession:  # a session takes a while to make, which is when a second thread would ask
        def __init__(self, path, options, providers):
            made.append(options.intra_op_num_threads)
            time.sleep(0.05)

        def get_outputs(self):
            return [SimpleNamespace(name="embedding")]

    monkeypatch.setattr(ort, "InferenceSession", SlowSession)
    forward = OnnxForward(tmp_path / "model.onnx")
    got = in_threads(lambda _: forward.session(threads=3), [[0]] * THREADS)
    assert sorted(made) == [1, 3]
    assert all(sessions[0] is got[0][0] for sessions in got)


def test_openvino_compiles_once_per_thread_count_however_many_threads_ask(monkeypatch, tmp_path):
    ov = pytest.importorskip("openvino")
    from fashionnet.runtimes.openvino_runtime import OpenVinoForward

    compiled = []

    class SlowCore:
        def read_model(self, path):
            return path

        def compile_model(self, model, device, config):
            compiled.append(config["INFERENCE_NUM_THREADS"])
            time.sleep(0.05)
            return SimpleNamespace(outputs=[])

    monkeypatch.setattr(ov, "Core", SlowCore)
    forward = OpenVinoForward(tmp_path / "model.onnx", output_names=())
    got = in_threads(lambda _: forward.compiled(threads=3), [[0]] * THREADS)
    assert sorted(compiled) == [1, 3]
    assert all(models[0] is got[0][0] for models in got)


# ----------------------------------------------------------------------------- search


DIM = 8


def gallery(n: int, seed: int):
    """An in-memory index of n images of 3 clothes types and 4 categories."""
    from indexer.store import EmbeddingIndex

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = pd.DataFrame({"image_path": [f"/shop/{seed}/{i}.jpg" for i in range(n)], "item_id": [f"{seed}-{i}" for i in range(n)],
                         "clothes_type": rng.integers(1, 4, n), "category": rng.choice(["Tees", "Skirts", "Dresses", "Jackets"], n)})
    index = EmbeddingIndex.create(DIM, model_checksum="test", device="cpu")
    index.add(vectors, rows, show_progress=False)
    return index, vectors


def engine_over(index):
    from indexer.search import SearchEngine

    predictor = SimpleNamespace(embedding_dim=DIM, model_checksum="test", flip_average=False, match_reference=None)
    return SearchEngine(index, predictor)


def every_filter():
    from indexer.search import Filters

    return [Filters(clothes_type=t, category=c) for t in (None, 1, 2, 3) for c in (None, "Tees", "Skirts", "Dresses", "Jackets")
            if t is not None or c is not None]


def test_filtered_searches_from_eight_threads_match_one_thread():
    index, vectors = gallery(300, seed=0)
    filters = every_filter()  # 19 filters: the cache is read and written by every thread
    jobs = [(f, q) for f in filters for q in range(0, 300, 37)]
    expected = [engine_over(index).search_embedding(vectors[q], k=10, filters=f)["id"].tolist() for f, q in jobs]
    for _ in range(3):  # each round on a fresh engine, so threads fill an empty cache together
        engine = engine_over(index)
        got = in_threads(lambda j: (j, engine.search_embedding(vectors[jobs[j][1]], k=10, filters=jobs[j][0])["id"].tolist()),
                         rotations(len(jobs), 40))
        for results in got:
            for j, ids in results:
                assert ids == expected[j], jobs[j]


def test_ids_a_filter_allowed_in_one_index_are_never_used_with_another():
    """A refresh swaps the index, then the version the cache was keyed by: a search between the two
    once took the old index's allowed ids for the new index."""
    from indexer.search import Filters

    old, _ = gallery(60, seed=1)
    fresh, fresh_vectors = gallery(60, seed=2)
    fresh.remove_where("clothes_type", 2)  # the new index's ids of type 1 are not the old one's
    engine = engine_over(old)
    tees = Filters(clothes_type=1)
    engine.search_embedding(fresh_vectors[0], k=5, filters=tees)  # remembers the old index's type-1 ids
    engine.index = fresh  # what refresh() does first; the cache is not cleared yet
    rows = engine.search_embedding(fresh_vectors[0], k=60, filters=tees)
    wanted = set(fresh.metadata.index[fresh.metadata["clothes_type"] == 1])
    assert set(rows["id"]) == wanted
