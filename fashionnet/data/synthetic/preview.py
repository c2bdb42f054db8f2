"""Preview contact sheet of a generated benchmark: shop and consumer photos of the same items, in-style
and style-shift, landmarks coloured by visibility, read back through :mod:`fashionnet.data.readers`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fashionnet.landmarks import NUM_LANDMARKS, OCCLUDED, TRUNCATED, VISIBLE

VIS_COLOURS = {VISIBLE: (40, 200, 60), OCCLUDED: (255, 150, 0), TRUNCATED: (230, 30, 30)}


def _labels_by_image(root: Path) -> dict[str, tuple[str, str, str, list[tuple[int, float, float]], tuple[float, ...]]]:
    """image -> (source, item id, category, landmark (visibility, x, y) per slot, bbox), in partition order."""
    from fashionnet.data import schema
    from fashionnet.data.readers import read_consumer2shop

    frame = read_consumer2shop(root, verify_images=False)
    vis = frame[schema.LANDMARK_VIS_COLUMNS].to_numpy(np.int64)
    xs = frame[schema.LANDMARK_X_COLUMNS].to_numpy(np.float64, na_value=np.nan)
    ys = frame[schema.LANDMARK_Y_COLUMNS].to_numpy(np.float64, na_value=np.nan)
    boxes = frame[schema.BBOX_COLUMNS].to_numpy(np.float64, na_value=np.nan)
    out = {}
    for i, (name, source, item, category) in enumerate(frame[["image_path", "source", "item_id", "category"]].itertuples(index=False)):
        triples = [(int(vis[i, j]), float(xs[i, j]), float(ys[i, j])) for j in range(NUM_LANDMARKS)]
        out[str(name)] = (str(source), str(item), str(category), triples, tuple(boxes[i]))
    return out


def _styles(out_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(dataset, image) -> style factors, from styles.csv when the generator wrote one."""
    from fashionnet.data.synthetic.style_shift import STYLES_FILE, read_styles_csv

    path = out_dir / STYLES_FILE
    return {(r["dataset"], r["image_name"]): r for r in read_styles_csv(path)} if path.is_file() else {}


def _pick_pairs(root: Path, dataset: str, styles: dict, n_pairs: int) -> list[tuple[str, str, dict]]:
    """(image, caption, labels) cells of ``n_pairs`` items: a shop photo and a consumer photo each,
    walking the categories in turn and preferring presentation modes shown least so far."""
    labels = _labels_by_image(root)
    by_item: dict[str, dict[str, list[str]]] = {}
    category_of: dict[str, str] = {}
    for name, (source, item, category, _, _) in labels.items():
        by_item.setdefault(item, {"shop": [], "consumer": []})[source].append(name)
        category_of.setdefault(item, category)
    by_cat: dict[str, list[str]] = {}
    for item, imgs in sorted(by_item.items()):
        if imgs["shop"] and imgs["consumer"]:
            by_cat.setdefault(category_of[item], []).append(item)
    shown: dict[str, int] = {}

    def mode(name):
        return styles.get((dataset, name), {}).get("presentation", "")

    cells = []
    while len(cells) < 2 * n_pairs and any(by_cat.values()):
        for cat in sorted(by_cat):
            if by_cat[cat] and len(cells) < 2 * n_pairs:
                imgs = by_item[by_cat[cat].pop(0)]
                pair = [min(imgs["shop"], key=lambda n: shown.get(mode(n), 0)), min(imgs["consumer"], key=lambda n: shown.get(mode(n), 0))]
                for name in pair:
                    shown[mode(name)] = shown.get(mode(name), 0) + 1
                    st = styles.get((dataset, name), {})
                    where = f" {st['presentation']}/{st['scene']}" if st else ""
                    cells.append((name, f"{labels[name][0]}{where}", labels[name]))
    return cells


def write_preview(out_dir, png_path, rows: int = 5, cols: int = 8, thumb: int = 150, shift_rows: int = 1) -> Path:
    """Contact sheet: pairs of a shop photo and a consumer photo of one item side by side, landmarks
    coloured by visibility (green visible, orange occluded, red truncated), captions with the
    presentation mode and scene; the last ``shift_rows`` rows (red captions) are style-shift pairs."""
    from fashionnet.data.images import load_image

    out_dir = Path(out_dir)
    styles = _styles(out_dir)
    has_shift = (out_dir / "style_shift" / "Eval" / "list_eval_partition.txt").is_file()
    shift_rows = min(shift_rows, rows - 1) if has_shift else 0
    sections = [("consumer2shop", (rows - shift_rows) * cols // 2)]
    if shift_rows:
        sections.append(("style_shift", shift_rows * cols // 2))
    legend_h = 26
    sheet = Image.new("RGB", (cols * thumb, rows * thumb + legend_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    i = 0
    for dataset, n_pairs in sections:
        root = out_dir / dataset
        for name, caption, (source, item, _, triples, box) in _pick_pairs(root, dataset, styles, n_pairs):
            img = load_image(root / name)
            scale = thumb / max(img.size)
            tw, th = max(1, round(img.width * scale)), max(1, round(img.height * scale))
            ox, oy = (i % cols) * thumb + (thumb - tw) // 2, (i // cols) * thumb + (thumb - th) // 2
            sheet.paste(img.resize((tw, th), Image.Resampling.BILINEAR), (ox, oy))
            x1, y1, x2, y2 = (v * scale for v in box)
            draw.rectangle([ox + x1, oy + y1, ox + x2, oy + y2], outline=(60, 120, 255))
            for v, x, y in triples:
                if v in VIS_COLOURS:
                    cx_, cy_ = ox + x * scale, oy + y * scale
                    draw.ellipse([cx_ - 3, cy_ - 3, cx_ + 3, cy_ + 3], fill=VIS_COLOURS[v], outline=(0, 0, 0))
            shift = dataset == "style_shift"
            text = ("SHIFT " if shift else "") + caption
            tx, ty = (i % cols) * thumb + 2, (i // cols) * thumb + 1
            draw.rectangle([tx - 1, ty, tx + 6 * len(text) + 2, ty + 11], fill=(255, 255, 255))
            draw.text((tx, ty), text, fill=(200, 0, 0) if shift else (0, 0, 0), font=font)
            i = i + 1
        i = -(-i // cols) * cols  # each section starts on a new row
    y = rows * thumb + 7
    x = 6
    for v, label in ((VISIBLE, "visible"), (OCCLUDED, "occluded"), (TRUNCATED, "truncated")):
        draw.ellipse([x, y + 2, x + 10, y + 12], fill=VIS_COLOURS[v], outline=(0, 0, 0))
        draw.text((x + 14, y + 1), label, fill=(0, 0, 0), font=font)
        x += 90
    draw.rectangle([x, y + 2, x + 10, y + 12], outline=(60, 120, 255))
    draw.text((x + 14, y + 1), "garment box   pairs: shop | consumer photo of one item   SHIFT (red): style-shift test split", fill=(0, 0, 0), font=font)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(png_path)
    return png_path
