"""Query-by-photo page: photograph a garment, see its landmarks and the closest shop items.

Serve it with ``python -m webui`` (``make demo``; ``webui/__main__.py``), or ``streamlit run
webui/app.py``. The path a query takes:

    this page -> indexer.search.SearchEngine (FAISS index of shop images + the model that built it)
              -> fashionnet.inference.Predictor (decode, letterbox, run the model, map landmarks back)
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
  moved to another machine); ``FASHIONNET_IMAGE_ROOT``: where its gallery images are now.
- ``FASHIONNET_THREADS``: CPU threads per query (default 1: steady under other load; see
  ``fashionnet.runtime``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
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

from webui.settings import DEFAULT_INDEX, MAX_UPLOAD_MB, configured_index, index_choice_allowed

# Streamlit's upload handler reads server.maxUploadSize on every request: hold it to the page's
# limit even where the server was started with more. This holds from the page's first run on
# (before the model's imports); `python -m webui` and webui/.streamlit/config.toml set it at start.
if streamlit_config.get_option("server.maxUploadSize") > MAX_UPLOAD_MB:
    streamlit_config.set_option("server.maxUploadSize", MAX_UPLOAD_MB)

from fashionnet.checkpoint import CheckpointError
from fashionnet.data.readers import AnnotationError, detect_benchmark, read_benchmark
from fashionnet.images import MAX_IMAGE_BYTES, ImageLoadError, load_image
from fashionnet.inference import Landmark, Prediction
from fashionnet.landmarks import CLOTHES_TYPE_NAMES, LANDMARK_NAMES
from fashionnet.protocols import query_frame
from indexer.errors import IndexLoadError, IndexMismatchError
from indexer.search import SearchEngine
from indexer.layout import MANIFEST_FILE
from webui.render import VISIBILITY_STYLES, display_copy, draw_box, draw_landmarks, legend, thumbnail

DEFAULT_K = 20
# Our own limit, checked on the bytes we receive; the uploader tells the browser Streamlit's
# server.maxUploadSize, held to MAX_UPLOAD_MB above.
MAX_UPLOAD_BYTES = min(MAX_UPLOAD_MB * 1024 * 1024, MAX_IMAGE_BYTES)
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp"]
RESULT_COLUMNS = 5
QUERY_DISPLAY_SIDE = 440  # px, long side of the query photo as shown
MAX_EXAMPLES = 24
# Checkpoints without an out-of-distribution density (fashionnet.ood) fall back to a simpler rule:
# "no clothing" when both signals are near chance. No landmark is visible with this probability ...
NO_CLOTHING_LANDMARK_PROB = 0.05
# ... and the top category is barely above a uniform guess (this factor x 1 / number of categories).
NO_CLOTHING_CATEGORY_FACTOR = 1.2
SOURCES = ("Upload a photo", "Take a photo", "Use an example")
BUILD_HINT = (
    "make demo                      # synthetic data + tiny model + index at indexes/demo\n"
    "indexer build --checkpoint runs/<run>/checkpoint.pt --data-root <DeepFashion root> --out {index}"
)
# An absolute path in a message (not inside a relative path, a URL or the index's own path, which
# for_visitors marks with NUL); its last part is kept.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\x00-])/(?:[^\s/'\"`\x00]+/)*([^\s/'\"`\x00]+)")
LOG = logging.getLogger("webui")


# ------------------------------------------------------------------------------------ loading


@st.cache_resource(show_spinner=False, max_entries=2)
def open_engine(index_dir: str, manifest_stamp: int, device: str, checkpoint: Optional[str] = None,
                image_root: Optional[str] = None, runtime: str = "auto") -> SearchEngine:
    """Load the index and its model once per (directory, manifest version, device, overrides).

    ``manifest_stamp`` (the manifest's mtime) makes a rebuilt index replace the cached one.
    Failures raise and are not cached, so the page recovers as soon as the index is fixed.
    """
    return SearchEngine.open(index_dir, checkpoint=checkpoint, device=device, image_root=image_root, runtime=runtime)


def resolve_index_dir(text: str) -> Path:
    """The index directory the user means; a relative path missing here is tried from the repo root."""
    path = Path(text.strip() or DEFAULT_INDEX).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return path


def for_visitors(message: str, index_dir: Path, name: str) -> str:
    """``message`` as visitors may read it: the index's path on the server written as ``name`` (as
    the operator, or the visitor, gave it) and any other absolute path cut to its last part."""
    for path in sorted({str(index_dir.resolve()), str(index_dir.absolute())}, key=len, reverse=True):
        if path != index_dir.anchor:
            message = re.sub(re.escape(path) + r"(?![\w-])", "\0", message)
    return ABSOLUTE_PATH.sub(r"…/\1", message).replace("\0", name)


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
                               os.environ.get("FASHIONNET_RUNTIME") or "auto")
    except IndexMismatchError as exc:
        problem, message = exc, "The index at `{name}` does not match its model: {exc}"
    except IndexLoadError as exc:
        problem, message = exc, "The index at `{name}` is damaged or incomplete: {exc}"
    except CheckpointError as exc:
        problem, message = exc, "The model checkpoint this index was built with cannot be loaded: {exc}"
    except ValueError as exc:  # e.g. the index records no checkpoint
        problem, message = exc, "The index at `{name}` cannot be used: {exc}"
    LOG.warning("index %s: %s", index_dir, problem)
    st.error(message.format(name=name, exc=for_visitors(str(problem), index_dir, name)))
    st.markdown("Rebuild the index with:")
    st.code(hint, language="bash")
    return None


@st.cache_data(show_spinner=False)
def example_photos(source: str, limit: int = MAX_EXAMPLES) -> list[str]:
    """Example query photos: the test-split consumer photos of a DeepFashion root (In-shop: its
    query photos), one per item, or the images of a plain folder."""
    root = Path(source)
    try:
        benchmark = detect_benchmark(root)
    except (AnnotationError, OSError):
        benchmark = None
    if benchmark in ("consumer2shop", "inshop"):
        rows = query_frame(read_benchmark(root, benchmark, verify_images=False), benchmark)
        rows = rows.drop_duplicates("item_id").sort_values("image_path")
        return [str(root / p) for p in rows["image_path"].head(limit)]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower().lstrip(".") in UPLOAD_TYPES)
    return [str(p) for p in files[:limit]]


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


def query_photo(examples: list[str]) -> tuple[Optional[bytes], str]:
    """The query photo's bytes and a name for it, from the upload box, the camera or an example."""
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
    common = os.path.commonpath(examples) if len(examples) > 1 else str(Path(examples[0]).parent)
    chosen = st.selectbox("Example consumer photo", examples, key="example", format_func=lambda p: os.path.relpath(p, common))
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


def no_clothing_found(prediction: Prediction, num_categories: int) -> bool:
    """True when the photo looks unlike the garment photos the model was trained on (the
    checkpoint's calibrated out-of-distribution check). For checkpoints without one: when the
    model sees neither a landmark nor a category, both near chance. The page only warns: a real
    garment photo unlike the training photos is still searched."""
    if prediction.unfamiliar is not None:
        return prediction.unfamiliar
    best_landmark = max((lm.visible_prob for lm in prediction.landmarks), default=0.0)
    if best_landmark >= NO_CLOTHING_LANDMARK_PROB:
        return False
    if num_categories and prediction.category is not None:
        return prediction.category_prob < NO_CLOTHING_CATEGORY_FACTOR / num_categories
    return True


# ------------------------------------------------------------------------------------ output


def show_prediction(photo: Image.Image, prediction: Prediction) -> None:
    """The photo with its garment box and landmarks drawn (unsure ones marked), a legend, next to
    the predicted category and attributes."""
    left, right = st.columns([1, 1])
    with left:
        shown, scale = display_copy(photo, QUERY_DISPLAY_SIDE)
        scaled = [dataclasses.replace(lm, x=lm.x * scale, y=lm.y * scale) for lm in prediction.present_landmarks]
        box = None if prediction.garment_box is None else [v * scale for v in prediction.garment_box]
        with st.container(key="query"):
            st.image(draw_landmarks(draw_box(shown, box), scaled), caption="Detected garment and landmarks", width="content")
        st.caption("Legend: " + " · ".join(f"{mark}: {meaning}" for mark, meaning in legend()
                                            if prediction.garment_box is not None or mark != "white frame"))
        unsure = [lm for lm in prediction.present_landmarks if lm.low_confidence]
        if unsure:
            st.caption(f"The model is unsure of {len(unsure)} of {len(prediction.present_landmarks)} landmarks "
                       f"({', '.join(lm.name.replace('_', ' ') for lm in unsure)}): their places are guesses.")
        if prediction.below_face:
            st.caption("A face sits at the top of the garment: the model looked again below it, "
                       "and its landmarks and search come from that closer look.")
        elif prediction.cropped:
            st.caption("The garment is small in this photo: the model looked again at the framed part, "
                       "and its landmarks and search come from that closer look.")
    with right:
        st.subheader("What the model sees")
        if prediction.category is not None:
            st.markdown(f"**Category:** {prediction.category} ({prediction.category_prob:.0%})")
        else:
            st.markdown("**Category:** this model has no category head")
        if prediction.attributes:
            st.markdown("**Top attributes**")
            for name, prob in prediction.attributes:
                st.progress(min(max(prob, 0.0), 1.0), text=f"{name} ({prob:.0%})")
        st.markdown("**Landmarks**")
        st.dataframe(
            pd.DataFrame([{"landmark": lm.name.replace("_", " "), "visibility": lm.visibility, "P(visible)": lm.visible_prob,
                           "confidence": lm.confidence, "unsure": lm.low_confidence}
                          for lm in prediction.present_landmarks]),
            hide_index=True,
            column_config={"P(visible)": st.column_config.NumberColumn(format="%.2f"),
                           "confidence": st.column_config.NumberColumn(format="%.2f", help="how sure the landmark's heatmap is (0 to 1)")},
        )


def show_matches(matches: pd.DataFrame, explained: bool = False) -> None:
    """The top-k shop items in a grid, each at its best-matching image: image, rank, item id,
    similarity score, category; when ``explained``, each with its predicted landmarks drawn and its
    score split into parts. (Every image of an item: :func:`show_item_detail`.)"""
    st.subheader(f"Top {len(matches)} shop matches")
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
                    if explained:
                        parts = f"global {row['score_global']:.3f} + local {row['score_local']:.3f} + bias {row['score_bias']:.3f}"
                        if pd.notna(row.get("score_appearance")):
                            parts += f" + appearance {row['score_appearance']:.3f}"
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
    examples: list[str] = []
    if examples_source and Path(examples_source).is_dir():
        try:
            examples = example_photos(str(examples_source))
        except (AnnotationError, OSError) as exc:  # examples are optional: say why, keep the page
            LOG.warning("example photos in %s: %s", examples_source, exc)
            folder = Path(examples_source)
            st.sidebar.warning(f"Example photos unavailable: {for_visitors(str(exc), folder, folder.name or 'examples')}")

    data, name = query_photo(examples)
    if data is None:
        st.info("Upload a photo of a garment, take one with the camera, or pick an example to search the shop.")
        st.stop()
    photo = decode_photo(data, name)
    if photo is None:
        st.stop()

    with st.spinner("Searching ..."):
        result = engine.query(photo, k=k, clothes_type=clothes_type, category=category, attributes=attributes)
        matches = engine.explain(result.prediction, result.matches) if explain and not result.matches.empty else result.matches
    if no_clothing_found(result.prediction, engine.category_count):
        # Flag, do not refuse: a real garment photo unlike the training data still gets its matches.
        score = result.prediction.unfamiliarity
        st.warning(f"**Unfamiliar photo:** **{name}** looks unlike the photos this model was trained on"
                   + (f" (unfamiliarity {score:.2f}; its training photos score about 1)" if score is not None else "")
                   + ". The landmarks and matches below may be wrong; if the photo shows no garment, they mean nothing.",
                   icon="⚠️")

    show_prediction(photo, result.prediction)
    show_matches(matches, explained=explain and not matches.empty)
    show_item_detail(engine, matches)


if __name__ == "__main__":
    main()
