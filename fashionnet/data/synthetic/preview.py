"""Preview contact sheet of a generated benchmark: shop and consumer photos of the same items,
landmarks coloured by visibility, read back through :mod:`fashionnet.data.readers`."""

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


def write_preview(out_dir, png_path, rows: int = 4, cols: int = 8, thumb: int = 150) -> Path:
    """Contact sheet of Consumer-to-shop items: a shop photo and a consumer photo of the same item
    side by side, landmarks coloured by visibility (green visible, orange occluded, red truncated)."""
    from fashionnet.images import load_image

    root = Path(out_dir) / "consumer2shop"
    labels = _labels_by_image(root)
    by_item: dict[str, dict[str, list[str]]] = {}
    category_of: dict[str, str] = {}
    for name, (source, item, category, _, _) in labels.items():
        by_item.setdefault(item, {"shop": [], "consumer": []})[source].append(name)
        category_of.setdefault(item, category)
    # Prefer variety: walk the items category by category.
    by_cat: dict[str, list[str]] = {}
    for item, imgs in sorted(by_item.items()):
        if imgs["shop"] and imgs["consumer"]:
            by_cat.setdefault(category_of[item], []).append(item)
    picked: list[str] = []
    pairs_needed = rows * cols // 2
    while len(picked) < pairs_needed and any(by_cat.values()):
        for cat in sorted(by_cat):
            if by_cat[cat] and len(picked) < pairs_needed:
                picked.append(by_cat[cat].pop(0))
    legend_h = 26
    sheet = Image.new("RGB", (cols * thumb, rows * thumb + legend_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    cells = []
    for item in picked:
        imgs = by_item[item]
        cells += [imgs["shop"][0], imgs["consumer"][0]]
    for i, name in enumerate(cells):
        img = load_image(root / name)
        source, item, _, triples, box = labels[name]
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
        caption = f"{source} {item[-4:]}"
        draw.text(((i % cols) * thumb + 3, (i // cols) * thumb + 2), caption, fill=(0, 0, 0), font=font)
    y = rows * thumb + 7
    x = 6
    for v, label in ((VISIBLE, "visible"), (OCCLUDED, "occluded"), (TRUNCATED, "truncated")):
        draw.ellipse([x, y + 2, x + 10, y + 12], fill=VIS_COLOURS[v], outline=(0, 0, 0))
        draw.text((x + 14, y + 1), label, fill=(0, 0, 0), font=font)
        x += 90
    draw.rectangle([x, y + 2, x + 10, y + 12], outline=(60, 120, 255))
    draw.text((x + 14, y + 1), "garment box   (pairs: shop | consumer photo of one item)", fill=(0, 0, 0), font=font)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(png_path)
    return png_path
