"""What the model gives for each photo of a dataset: embeddings, landmarks and head outputs, through
the bare model or through the Predictor as the product runs it (crop, mirror image)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fashionnet.data.dataset import DeepFashionDataset, collate_skip_none
from fashionnet.data.images import load_image
from fashionnet.data.transforms import letterbox_geometry, to_original_coords
from fashionnet.inference.localisation import boxes_to_original
from fashionnet.inference.predictor import Predictor


@torch.inference_mode()
def embed_dataset(model, dataset, device, batch_size, workers, fn, desc, progress) -> dict[str, np.ndarray]:
    """Run ``fn(model, batch, device) -> dict of tensors`` over a dataset; returns the concatenated
    arrays plus each row's dataset "index" and "original_size" (width, height; unreadable images skipped)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_none)
    parts: dict[str, list] = {}
    for batch in tqdm(loader, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
        if batch is None:
            continue
        for key, value in fn(model, batch, device).items():
            parts.setdefault(key, []).append(value.float().cpu() if value.is_floating_point() else value.cpu())
        parts.setdefault("index", []).append(batch["index"])
        parts.setdefault("original_size", []).append(batch["original_size"])
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def fashionnet_outputs(model, batch, device, ground_truth: bool = False) -> dict[str, torch.Tensor]:
    """Embedding, normalised global feature, landmarks and head logits of a batch; pooling at the
    ground-truth landmarks when ``ground_truth``, else at the predicted ones."""
    images = batch["image"].to(device)
    if ground_truth:
        out = model(images, batch["landmarks"].to(device), batch["visibility"].to(device))
    else:
        out = model(images)
    return {
        "embedding": out["embedding"],
        "global": torch.nn.functional.normalize(out["global_feature"].float(), dim=1),
        "landmarks": out["landmarks"],
        "category_logits": out["category_logits"],
        "attribute_logits": out["attribute_logits"],
    }


def predicted_landmark_outputs(model, batch, device) -> dict[str, torch.Tensor]:
    return fashionnet_outputs(model, batch, device, ground_truth=False)


def _photo_loader(dataset: DeepFashionDataset, batch: dict):
    def photo(i: int) -> Image.Image:
        return load_image(dataset.root / dataset.image_paths[int(batch["index"][i])])
    return photo


def localised_outputs(predictor: Predictor, dataset: DeepFashionDataset, batch: dict) -> dict[str, torch.Tensor]:
    """What the product computes for a batch: the first pass, then a second pass on a crop around
    the garment where it is small (``Predictor.localise``). Landmarks and the garment box come back
    in original pixels."""
    first = predictor.forward_batch(batch["image"])
    geometries = [letterbox_geometry(int(w), int(h), predictor.input_side) for w, h in batch["original_size"].tolist()]
    out, geometries, cropped = predictor.localise(first, geometries, _photo_loader(dataset, batch))
    boxes = boxes_to_original(out, geometries)
    clothes_types = predictor.predicted_clothes_types(predictor.category_probs(out))
    heatmap_only, pixels, _ = predictor.landmark_pixels(out, geometries, boxes, clothes_types)
    extra = {} if "landmark_confidence" not in out else {"landmark_confidence": out["landmark_confidence"]}
    return {
        "embedding": out["embedding"],
        "global": torch.nn.functional.normalize(out["global_feature"].float(), dim=1),
        "landmarks_px": torch.from_numpy(pixels),
        "landmarks_px_heatmap": torch.from_numpy(heatmap_only),
        "category_logits": out["category_logits"],
        "attribute_logits": out["attribute_logits"],
        "cropped": torch.as_tensor(cropped),
        # Prediction.garment_box and Prediction.clothes_type, NaN / -1 where there is none
        "garment_box": torch.tensor([[float("nan")] * 4 if b is None else list(b) for b in boxes], dtype=torch.float32),
        "clothes_type": torch.tensor([-1 if t is None else int(t) for t in clothes_types], dtype=torch.int64),
        **extra,
    }


def mirrored_outputs(predictor: Predictor, dataset: DeepFashionDataset, batch: dict) -> dict[str, torch.Tensor]:
    """The embedding of each photo's mirror image, both passes (landmark slots follow the image
    sides, so the pooled parts line up with the unmirrored photo's)."""
    photos = _photo_loader(dataset, batch)
    return {"embedding": torch.from_numpy(predictor.mirrored_embeddings([photos(i) for i in range(len(batch["index"]))]))}


def landmarks_to_original_pixels(landmarks_norm: np.ndarray, sizes: np.ndarray, input_side: int) -> np.ndarray:
    """Map (N, 8, 2) landmarks normalised to the letterboxed input back to original pixels; sizes (N, 2) = w, h."""
    out = np.empty_like(landmarks_norm)
    for i, (w, h) in enumerate(sizes):
        out[i] = to_original_coords(landmarks_norm[i], letterbox_geometry(int(w), int(h), input_side), normalized=True)
    return out
