"""The evaluation's report: a markdown table, a top-k plot and the JSON figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from fashionnet.evaluation.benchmark import VARIANT_LABELS, VARIANTS
from fashionnet.landmarks import LANDMARK_NAMES


def _number(value: float, form: str) -> str:
    return "n/a" if value != value else format(value, form)


def real_photo_lines(rp: dict[str, Any], num_queries: int, which: str = "query photos") -> list[str]:
    """The markdown table of :func:`real_photo_measures`."""
    box = rp["garment_box"]
    lines = [f"| what the page shows, on the {num_queries} {which} | |", "|---|---:|",
             f"| garment box: mean IoU with the annotated box ({box['num_photos']} photos) | {_number(box['mean_iou'], '.3f')} |"]
    lines += [f"| garment box: IoU at least {key.rsplit('_', 1)[1]} | {_number(100 * value, '.1f')}% |"
              for key, value in box.items() if key.startswith("iou_at_least_")]
    if "clothes_type" in rp:
        ct = rp["clothes_type"]
        per_type = ", ".join(f"{name} {_number(100 * v, '.1f')}%" for name, v in ct["accuracy_per_type"].items())
        lines.append(f"| clothes type (upper / lower / full body) right, of {ct['num_photos']} photos ({per_type}) | "
                     f"{_number(100 * ct['accuracy'], '.1f')}% |")
    if "landmarks_by_confidence" in rp:
        c = rp["landmarks_by_confidence"]
        lines += [f"| landmark NE of the points marked sure ({c['num_sure']} visible points) | {_number(c['ne_sure'], '.4f')} |",
                  f"| landmark NE of the points marked unsure ({c['num_unsure']}) | {_number(c['ne_unsure'], '.4f')} |",
                  f"| visible points marked sure | {_number(100 * c['sure_share'], '.1f')}% |"]
    if "mean_layout_in_box" in rp:
        m = rp["mean_layout_in_box"]
        lines += [f"| landmark NE of the clothes type's mean layout placed in the predicted box ({m['num_photos']} photos) | "
                  f"{_number(m['ne_predicted_box'], '.4f')} |",
                  f"| ... placed in the annotated box | {_number(m['ne_annotated_box'], '.4f')} |",
                  f"| ... the model's own points, on the same photos | {_number(m['ne_model'], '.4f')} |"]
    notes = []
    if box["num_without_annotated_box"]:
        notes.append(f"{box['num_without_annotated_box']} photos without an annotated box are left out of the box figures")
    if box["num_without_predicted_box"]:
        notes.append(f"{box['num_without_predicted_box']} photos got no predicted box (IoU 0)")
    return lines + (["", "; ".join(notes)] if notes else [])


def markdown_table(results: dict[str, Any]) -> str:
    """One row per variant: top-k for each k, and mAP@R."""
    variants = [v for v in VARIANTS if v in results["variants"]]
    ks = sorted({k for v in variants for k in results["variants"][v]["top_k"]})
    split = results.get("split", results["benchmark"])
    title = split if split == results["benchmark"] else f"{split} ({results['benchmark']} layout)"
    lines = [f"**{title}**: {results['num_queries']} queries, {results['num_gallery']} gallery images, "
             f"{results['backbone']} at {results['input_side']} px", "",
             "| variant | " + " | ".join(f"top-{k}" for k in ks) + " | mAP@R |",
             "|---|" + "---:|" * (len(ks) + 1)]
    for v in variants:
        r = results["variants"][v]
        label = VARIANT_LABELS[v] + (", flip-averaged" if v == "fashionnet" and results.get("flip_average") else "")
        lines.append(f"| {label} | " + " | ".join(f"{100 * r['top_k'][k]:.1f}" for k in ks) + f" | {100 * r['map_at_r']:.1f} |")
    if "landmarks" in results:
        lm = results["landmarks"]
        lines += ["", "| landmark NE | " + " | ".join(LANDMARK_NAMES) + " | average | PDL (35 px @ 512) |",
                  "|---|" + "---:|" * (len(LANDMARK_NAMES) + 2),
                  "| (c) predicted | " + " | ".join("n/a" if lm["ne_per_landmark"][n] != lm["ne_per_landmark"][n] else f"{lm['ne_per_landmark'][n]:.4f}"
                                                      for n in LANDMARK_NAMES) + f" | {lm['ne']:.4f} | {100 * lm['pdl_35px_at_512']:.1f}% |"]
        if "mean_layout_ne" in lm:
            lines.append("| floor: mean layout of the clothes type | " + " | ".join(
                "n/a" if lm["mean_layout_ne_per_landmark"][n] != lm["mean_layout_ne_per_landmark"][n] else f"{lm['mean_layout_ne_per_landmark'][n]:.4f}"
                for n in LANDMARK_NAMES) + f" | {lm['mean_layout_ne']:.4f} | |")
            lines += ["", f"predicted NE is {lm['ne_over_mean_layout']:.2f} x the mean-layout floor"]
        if lm.get("ne_heatmap_only") is not None and lm["ne_heatmap_only"] != lm["ne"]:
            lines.append(f"(the heatmaps' points alone, without pulling unsure ones towards the garment box layout: NE {lm['ne_heatmap_only']:.4f})")
    if "real_photo" in results:
        lines += ["", *real_photo_lines(results["real_photo"], results["num_queries"])]
    if "all_photos" in results:
        a = results["all_photos"]
        lines += ["", f"On all {a['num_photos']} photos (queries and gallery): all-vs-all top-1 {_number(100 * a['all_vs_all_top1'], '.1f')}, "
                  f"landmark NE {_number(a['ne'], '.4f')} (floor {_number(a['mean_layout_ne'], '.4f')})", "",
                  *real_photo_lines(a, a["num_photos"], "photos")]
    if "retrieval_time" in results:
        rt = results["retrieval_time"]
        rks = sorted(rt["plain"]["top_k"])
        lines += ["", "| (c) at retrieval time | " + " | ".join(f"top-{k}" for k in rks) + " | mAP@R |", "|---|" + "---:|" * (len(rks) + 1)]
        for name, r in rt.items():
            lines.append(f"| {name} | " + " | ".join(f"{100 * r['top_k'][k]:.1f}" if k in r["top_k"] else "" for k in rks)
                         + f" | {100 * r['map_at_r']:.1f} |")
    extras = []
    if "cropped_share" in results:
        c = results["cropped_share"]
        extras.append(f"cropped to the garment and embedded again (box below {c['crop_below']:.2f} of the photo): "
                      f"{100 * c['queries']:.1f}% of queries, {100 * c['gallery']:.1f}% of gallery photos")
    if "category_accuracy" in results:
        extras.append("category accuracy " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in results["category_accuracy"].items()))
    if "attribute_recall" in results:
        extras.append("attribute recall " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in results["attribute_recall"].items()))
    if extras:
        lines += ["", "; ".join(extras)]
    return "\n".join(lines) + "\n"


def plot_topk(results: dict[str, Any], path: str | Path) -> None:
    """Top-k accuracy against k, one line per variant, as the paper plots it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for v in VARIANTS:
        if v in results["variants"]:
            topk = results["variants"][v]["top_k"]
            ks = sorted(topk)
            ax.plot(ks, [100 * topk[k] for k in ks], marker="o", label=VARIANT_LABELS[v])
    ax.set_xlabel("k (retrieved images)")
    ax.set_ylabel("top-k accuracy (%)")
    ax.set_title(f"{results.get('split', results['benchmark'])} retrieval ({results['num_queries']} queries)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: dict[str, Any], out_dir: str | Path, name: Optional[str] = None) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or results.get("split") or results["benchmark"]
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "plot": out_dir / f"{stem}_topk.png"}
    paths["json"].write_text(json.dumps(results, indent=2, default=float))
    paths["markdown"].write_text(markdown_table(results))
    plot_topk(results, paths["plot"])
    return paths
