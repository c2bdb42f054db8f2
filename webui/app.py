"""Query-by-photo page: photograph a garment, see its landmarks and the closest shop items.

Serve it with ``python -m webui`` (``make demo``; ``webui/__main__.py``), or ``streamlit run
webui/app.py``. The path a query takes:

    this page -> indexer.search.SearchEngine (FAISS or Milvus index of shop images + the model that built it)
              -> fashionnet.inference.predictor.Predictor (decode, letterbox, run the model, map landmarks back)
              -> fashionnet.models.FashionNet (landmarks -> landmark pooling -> fused embedding)

Settings come from the sidebar (results, filters) and from the server's environment:

- ``FASHIONNET_INDEX``: index directory (default ``indexes/demo``, what ``make demo`` builds).
  Visitors search this index; only with ``FASHIONNET_ALLOW_INDEX_CHOICE=1`` (``python -m webui
  --allow-index-choice``) does the sidebar offer a box to open another index directory.
- ``FASHIONNET_EXAMPLES_DIR``: example photos, either a DeepFashion root (its test-split consumer
  photos are used) or a plain folder of images. Default: the data root recorded in the index.
- ``FASHIONNET_DEVICE``: auto / cpu / cuda for the model and the index (default auto).
- ``FASHIONNET_RUNTIME``: auto / torch / onnx / openvino for the model (default auto).
- ``FASHIONNET_CHECKPOINT``: the model to use instead of the one the index records (an index
  moved to another machine); ``FASHIONNET_IMAGE_ROOT``: where its gallery images are now;
  ``FASHIONNET_MILVUS_URI``: where a Milvus index's collection is now (the page otherwise opens the
  backend and collection the index records).
- ``FASHIONNET_THREADS``: CPU threads per query (default 1: steady under other load; see
  ``fashionnet.device``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import fashionnet  # noqa: F401
except ImportError:  # `streamlit run webui/app.py` in a checkout that was not `pip install -e .`-ed
    sys.path.insert(0, str(REPO_ROOT))

import pandas as pd
import streamlit as st
from PIL import Image
from streamlit import config as streamlit_config

from webui.settings import DEFAULT_INDEX, MAX_UPLOAD_MB, MILVUS_URI_ENV, configured_index, index_choice_allowed

# Streamlit's upload handler reads server.maxUploadSize on every request: hold it to the page's
# limit even where the server was started with more. This holds from the page's first run on
# (before the model's imports); `python -m webui` and webui/.streamlit/config.toml set it at start.
if streamlit_config.get_option("server.maxUploadSize") > MAX_UPLOAD_MB:
    streamlit_config.set_option("server.maxUploadSize", MAX_UPLOAD_MB)

from fashionnet.data.images import MAX_IMAGE_BYTES, ImageLoadError, load_image
from fashionnet.data.readers import AnnotationError, detect_benchmark, read_benchmark
from fashionnet.evaluation.protocols import query_frame
from fashionnet.inference.prediction import Landmark, Prediction
from fashionnet.landmarks import CLOTHES_TYPE_NAMES, LANDMARK_NAMES
from fashionnet.models.checkpoint import CheckpointError
from indexer.errors import IndexLoadError, IndexMismatchError
from indexer.layout import MANIFEST_FILE
from indexer.milvus_connection import MilvusUnavailableError
from indexer.path_hiding import hide_server_paths
from indexer.search import QueryResult, SearchEngine
from webui.examples import example_photos as find_examples, first_good_example
from webui.render import VISIBILITY_STYLES, display_copy, draw_box, draw_landmarks, legend, thumbnail
from webui.trust import (NO_CLOTHING_CATEGORY_FACTOR, NO_CLOTHING_LANDMARK_PROB, all_unsure, matches_heading,  # noqa: F401
                         category_line, landmarks_note, no_clothing_found, no_close_match_note, not_a_garment_lead,
                         parts_caption)

DEFAULT_K = 20
# Our own limit, checked on the bytes we receive; the uploader tells the browser Streamlit's
# server.maxUploadSize, held to MAX_UPLOAD_MB above.
MAX_UPLOAD_BYTES = min(MAX_UPLOAD_MB * 1024 * 1024, MAX_IMAGE_BYTES)
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp"]
RESULT_COLUMNS = 5
QUERY_DISPLAY_SIDE = 440  # px, long side of the query photo as shown
MAX_EXAMPLES = 24
SOURCES = ("Upload a photo", "Take a photo", "Use an example")
BUILD_HINT = (
    "make demo                      # synthetic data + tiny model + index at indexes/demo\n"
    "indexer build --checkpoint runs/<run>/checkpoint.pt --data-root <DeepFashion root> --out {index}"
)
LOG = logging.getLogger("webui")


# ------------------------------------------------------------------------------------ loading


@st.cache_resource(show_spinner=False, max_entries=2)
def open_engine(index_dir: str, manifest_stamp: int, device: str, checkpoint: Optional[str] = None,
                image_root: Optional[str] = None, runtime: str = "auto", milvus_uri: Optional[str] = None) -> SearchEngine:
    """Load the index and its model once per (directory, manifest version, device, overrides).

    ``manifest_stamp`` (the manifest's mtime) makes a rebuilt index replace the cached one.
    Failures raise and are not cached, so the page recovers as soon as the index is fixed.
    """
    return SearchEngine.open(index_dir, checkpoint=checkpoint, device=device, image_root=image_root, runtime=runtime,
                             milvus_uri=milvus_uri)


def resolve_index_dir(text: str) -> Path:
    """The index directory the user means; a relative path missing here is tried from the repo root."""
    path = Path(text.strip() or DEFAULT_INDEX).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return path


def load_engine_or_explain(index_dir: Path, device: str, name: Optional[str] = None) -> Optional[SearchEngine]:
    """The SearchEngine, or None after telling the user what is wrong and how to build an index.
    Messages call the index ``name`` (default: its path); the server's log has them in full."""
    name = name or str(index_dir)
    manifest = index_dir / MANIFEST_FILE
    hint = BUILD_HINT.format(index=name)
    if not manifest.is_file():
        st.error(f"No search index at `{name}` yet. Build one, then reload this page:")
        st.code(hint, language="bash")
        return None
    try:
        with st.spinner("Loading the model and the index ..."):
            return open_engine(str(index_dir.resolve()), manifest.stat().st_mtime_ns, device,
                               os.environ.get("FASHIONNET_CHECKPOINT") or None, os.environ.get("FASHIONNET_IMAGE_ROOT") or None,
                               os.environ.get("FASHIONNET_RUNTIME") or "auto", os.environ.get(MILVUS_URI_ENV) or None)
    except IndexMismatchError as exc:
        problem, message = exc, "The index at `{name}` does not match its model: {exc}"
    except MilvusUnavailableError as exc:
        problem, message = exc, "The index at `{name}` keeps its vectors in Milvus, which cannot be opened now: {exc}"
    except IndexLoadError as exc:
        problem, message = exc, "The index at `{name}` is damaged or incomplete: {exc}"
    except CheckpointError as exc:
        problem, message = exc, "The model checkpoint this index was built with cannot be loaded: {exc}"
    except ValueError as exc:  # e.g. the index records no checkpoint
        problem, message = exc, "The index at `{name}` cannot be used: {exc}"
    LOG.warning("index %s: %s", index_dir, problem)
    st.error(message.format(name=name, exc=hide_server_paths(str(problem), {index_dir: name})))
    st.markdown("Rebuild the index with:")
    st.code(hint, language="bash")
    return None


@st.cache_data(show_spinner=False)
def example_photos(source: str, limit: int = MAX_EXAMPLES) -> list[tuple[str, Optional[str]]]:
    """Example query photos and their item ids (webui.examples)."""
    return find_examples(source, limit, UPLOAD_TYPES)


@st.cache_data(show_spinner=False, max_entries=8)
def default_example(index_dir: str, manifest_stamp: int, examples: tuple[tuple[str, Optional[str]], ...], _engine: SearchEngine) -> int:
    """Which example the page opens with (webui.examples.first_good_example), once per index version."""
    return first_good_example(_engine, examples)


@st.cache_data(show_spinner=False, max_entries=1024)
def gallery_thumbnail(path: str, mtime_ns: int) -> Image.Image:
    """A small copy of a gallery image (cached; ``mtime_ns`` refreshes a replaced file)."""
    return thumbnail(load_image(path), 320)


def show_gallery_image(path: str, caption: str, landmarks: Optional[list[Landmark]] = None) -> bool:
    """Show one gallery image (with ``landmarks`` drawn, if given); a missing or unreadable file
    becomes a warning, not a traceback."""
    try:
        if landmarks is None:
            shown = gallery_thumbnail(path, Path(path).stat().st_mtime_ns)
        else:
            shown, scale = display_copy(load_image(path), 320)
            shown = draw_landmarks(shown, [dataclasses.replace(lm, x=lm.x * scale, y=lm.y * scale) for lm in landmarks], show_names=False)
        st.image(shown, caption=caption, width="stretch")
        return True
    except (ImageLoadError, OSError) as exc:
        LOG.warning("gallery image %s: %s", path, exc)
        problem = exc.problem if isinstance(exc, ImageLoadError) else (exc.strerror or type(exc).__name__)
        st.warning(f"{caption}: image unavailable ({problem})")
        return False


# -------------------------------------------------------------------------------------- input


def sidebar_settings() -> tuple[Path, str, int, Optional[int]]:
    """Index directory and its name as given, k and clothes-type filter (None = any) from the
    sidebar. The index is the server's (FASHIONNET_INDEX); a box to type another is offered only
    where the operator allows it (it would let any visitor open any index and probe paths)."""
    with st.sidebar:
        st.header("Settings")
        index_name = configured_index()
        if index_choice_allowed():
            index_name = st.text_input("Index directory", value=index_name, key="index_dir").strip() or DEFAULT_INDEX
        k = int(st.number_input("Results (k)", min_value=1, max_value=200, value=DEFAULT_K, step=1, key="k"))
        names = {"Any": None, **{name: code for code, name in CLOTHES_TYPE_NAMES.items()}}
        choice = st.selectbox("Clothes type", list(names), key="clothes_type",
                              help="upper-body (tees, jackets ...), lower-body (skirts, trousers ...) or full-body (dresses, jumpsuits)")
    return resolve_index_dir(index_name), index_name, k, names[choice]


def gallery_filters(engine: SearchEngine) -> tuple[Optional[str], list[str], bool]:
    """Category and attribute filters offered from what this gallery holds (annotated or predicted),
    and whether to explain the results."""
    choices = engine.filter_choices()
    with st.sidebar:
        category = st.selectbox("Category", ["Any", *choices["category"]], key="category")
        attributes = st.multiselect("Attributes (all must hold)", choices["attributes"], key="attributes")
        explain = st.toggle("Explain results", key="explain",
                            help="draw each result's landmarks and split its score into global and local (landmark) parts")
    return (None if category == "Any" else category), attributes, explain


def query_photo(examples: list[tuple[str, Optional[str]]], engine: SearchEngine, index_dir: Path) -> tuple[Optional[bytes], str]:
    """The query photo's bytes and a name for it, from the upload box, the camera or an example
    (the first one the model answers well is offered first: webui.examples)."""
    source = st.radio("Query photo", SOURCES, horizontal=True, key="source", label_visibility="collapsed")
    if source == SOURCES[0]:
        # No type= here: Streamlit would reject other extensions with an exception before this page
        # runs; decode_photo checks the name and the content itself and explains the problem.
        upload = st.file_uploader("Photo of a garment (jpg, png, webp)", key="upload")
        return (upload.getvalue(), upload.name) if upload is not None else (None, "")
    if source == SOURCES[1]:
        shot = st.camera_input("Take a photo of a garment", key="camera")
        return (shot.getvalue(), "camera photo") if shot is not None else (None, "")
    if not examples:
        st.info("No example photos found: set FASHIONNET_EXAMPLES_DIR to a DeepFashion root or a folder of photos.")
        return None, ""
    paths = [photo for photo, _ in examples]
    common = os.path.commonpath(paths) if len(paths) > 1 else str(Path(paths[0]).parent)
    with st.spinner("Choosing an example the model gets right ..."):
        first = default_example(str(index_dir.resolve()), (index_dir / MANIFEST_FILE).stat().st_mtime_ns, tuple(examples), engine)
    chosen = st.selectbox("Example consumer photo", paths, index=first, key="example", format_func=lambda p: os.path.relpath(p, common))
    with open(chosen, "rb") as fh:
        return fh.read(), Path(chosen).name


def decode_photo(data: bytes, name: str) -> Optional[Image.Image]:
    """The photo as RGB, or None after a friendly error for empty, oversized, corrupt or non-image files."""
    if Path(name).suffix and Path(name).suffix.lower().lstrip(".") not in UPLOAD_TYPES:
        st.error(f"**{name}** is not a photo this page reads: please upload a jpg, png or webp file.")
        return None
    if len(data) > MAX_UPLOAD_BYTES:
        st.error(f"**{name}** is too large ({len(data) / 2**20:.1f} MB); the limit is {MAX_UPLOAD_BYTES // 2**20} MB. "
                 "Please upload a smaller photo.")
        return None
    try:
        return load_image(data, source=name)
    except ImageLoadError as exc:
        st.error(f"**{name}** cannot be used: {exc.problem}. Please upload a jpg, png or webp photo.")
        return None


# ------------------------------------------------------------------------------------ output


def show_prediction(photo: Image.Image, prediction: Prediction, flagged: bool = False) -> None:
    """The photo with its garment box and landmarks drawn (unsure ones marked), a legend, next to
    the predicted category and attributes. A ``flagged`` photo (not like a garment photo) names no
    category and attributes, and every landmark is drawn as a guess."""
    left, right = st.columns([1, 1])
    with left:
        shown, scale = display_copy(photo, QUERY_DISPLAY_SIDE)
        drawn = all_unsure(prediction.present_landmarks) if flagged else prediction.present_landmarks
        scaled = [dataclasses.replace(lm, x=lm.x * scale, y=lm.y * scale) for lm in drawn]
        box = None if prediction.garment_box is None else [v * scale for v in prediction.garment_box]
        with st.container(key="query"):
            st.image(draw_landmarks(draw_box(shown, box), scaled), caption="Detected garment and landmarks", width="content")
        st.caption("Legend: " + " · ".join(f"{mark}: {meaning}" for mark, meaning in legend()
                                            if prediction.garment_box is not None or mark != "white frame"))
        note = landmarks_note(prediction)
        if flagged:
            st.caption("No landmark is sure on a photo that does not look like a garment photo: all are drawn as guesses.")
        elif note:
            st.caption(note)
        if prediction.below_face:
            st.caption("A face sits at the top of the garment: the model looked again below it, "
                       "and its landmarks and search come from that closer look.")
        elif prediction.cropped:
            st.caption("The garment is small in this photo: the model looked again at the framed part, "
                       "and its landmarks and search come from that closer look.")
    with right:
        st.subheader("What the model sees")
        if flagged:
            st.markdown("**Category:** none named, as the photo does not look like a garment photo")
        elif prediction.category is not None:
            st.markdown(category_line(prediction))
        else:
            st.markdown("**Category:** this model has no category head")
        if prediction.attributes and not flagged:
            st.markdown("**Top attributes**")
            for name, prob in prediction.attributes:
                st.progress(min(max(prob, 0.0), 1.0), text=f"{name} ({prob:.0%})")
        st.markdown("**Landmarks**")
        st.dataframe(
            pd.DataFrame([{"landmark": lm.name.replace("_", " "), "visibility": lm.visibility, "P(visible)": lm.visible_prob,
                           "confidence": lm.confidence, "unsure": lm.low_confidence or flagged}
                          for lm in prediction.present_landmarks]),
            hide_index=True,
            column_config={"P(visible)": st.column_config.NumberColumn(format="%.2f"),
                           "confidence": st.column_config.NumberColumn(format="%.2f", help="how sure the landmark's heatmap is (0 to 1)")},
        )


def show_matches(result: QueryResult, matches: pd.DataFrame, explained: bool = False) -> None:
    """The top-k shop items in a grid, each at its best-matching image: image, rank, item id,
    similarity score, category; when ``explained``, each with its predicted landmarks drawn and its
    score split into parts. Under the index's close-match score the page says that the catalogue
    has no close match, and lists the nearest items all the same. (Every image of an item:
    :func:`show_item_detail`.)"""
    st.subheader(matches_heading(result))
    note = no_close_match_note(result)
    if note:
        st.info(note, icon="🔎")
    if matches.empty:
        st.info("No gallery image passes these filters.")
        return
    with st.container(key="results"):
        for start in range(0, len(matches), RESULT_COLUMNS):
            columns = st.columns(RESULT_COLUMNS)
            for column, row in zip(columns, matches.iloc[start : start + RESULT_COLUMNS].to_dict(orient="records")):
                with column:
                    caption = f"#{row['rank']} {row['item_id']} · score {row['score']:.3f}"
                    show_gallery_image(row["image_path"], caption, gallery_landmarks(row) if explained else None)
                    category = row.get("category") if pd.notna(row.get("category")) else row.get("predicted_category")
                    clothes = row.get("clothes_type") if pd.notna(row.get("clothes_type")) else row.get("predicted_clothes_type")
                    st.caption(f"{category if pd.notna(category) else 'unknown category'} · "
                               f"{CLOTHES_TYPE_NAMES.get(int(clothes), '?') if pd.notna(clothes) else '?'}")
                    parts = parts_caption(row) if explained else None
                    if parts:
                        st.caption(parts)


def gallery_landmarks(row: dict) -> list[Landmark]:
    """The landmarks the model predicted for a gallery image when it was indexed (original pixels)."""
    found = []
    for name in LANDMARK_NAMES:
        x, y, vis = row.get(f"pred_{name}_x"), row.get(f"pred_{name}_y"), row.get(f"pred_{name}_vis")
        if x is not None and pd.notna(x) and vis in VISIBILITY_STYLES:
            found.append(Landmark(name, float(x), float(y), vis, 1.0))
    return found


def show_item_detail(engine: SearchEngine, matches: pd.DataFrame) -> None:
    """Every gallery image of one item picked from the results."""
    items = list(dict.fromkeys(matches["item_id"].astype(str)))
    if not items:
        return
    st.subheader("All gallery images of an item")
    item = st.selectbox("Item", items, key="detail_item")
    rows = engine.item_images(item)
    with st.container(key="item_detail"):
        columns = st.columns(RESULT_COLUMNS)
        for i, row in enumerate(rows.itertuples()):
            with columns[i % RESULT_COLUMNS]:
                show_gallery_image(row.image_path, f"{item} · {Path(row.image_path).name}")


# -------------------------------------------------------------------------------------- page


def main() -> None:
    st.set_page_config(page_title="FashionNet clothes search", layout="wide")
    st.title("Find clothes by photo")
    st.caption("FashionNet: landmarks (collar, sleeves, waistline, hem) guide the features that are searched in the shop catalogue.")

    index_dir, index_name, k, clothes_type = sidebar_settings()
    engine = load_engine_or_explain(index_dir, os.environ.get("FASHIONNET_DEVICE", "auto"), index_name)
    if engine is None:
        st.stop()
    st.sidebar.caption(engine.describe())
    category, attributes, explain = gallery_filters(engine)

    examples_source = os.environ.get("FASHIONNET_EXAMPLES_DIR") or engine.data_root
    examples: list[tuple[str, Optional[str]]] = []
    if examples_source and Path(examples_source).is_dir():
        try:
            examples = example_photos(str(examples_source))
        except (AnnotationError, OSError) as exc:  # examples are optional: say why, keep the page
            LOG.warning("example photos in %s: %s", examples_source, exc)
            folder = Path(examples_source)
            st.sidebar.warning(f"Example photos unavailable: {hide_server_paths(str(exc), {folder: folder.name or 'examples'})}")

    data, name = query_photo(examples, engine, index_dir)
    if data is None:
        st.info("Upload a photo of a garment, take one with the camera, or pick an example to search the shop.")
        st.stop()
    photo = decode_photo(data, name)
    if photo is None:
        st.stop()

    with st.spinner("Searching ..."):
        result = engine.query(photo, k=k, clothes_type=clothes_type, category=category, attributes=attributes)
        matches = engine.explain(result.prediction, result.matches) if explain and not result.matches.empty else result.matches
    flagged = no_clothing_found(result.prediction, engine.category_count)
    if flagged:  # the answer leads with it; flag, do not refuse: a real garment photo unlike the training data still gets its matches
        st.warning(not_a_garment_lead(name, result.prediction), icon="⚠️")

    show_prediction(photo, result.prediction, flagged)
    show_matches(result, matches, explained=explain and not matches.empty)
    show_item_detail(engine, matches)


if __name__ == "__main__":
    main()
