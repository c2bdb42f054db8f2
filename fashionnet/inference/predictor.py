"""Predictor: image in, landmarks (original pixels), category, attributes and embedding out.

This is the one path from pixels to features that the indexer, the evaluation script and the web
page share, so a query and the gallery it is searched against are always embedded the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from fashionnet.calibration.close_match import MatchReference
from fashionnet.calibration.landmark_prior import BoxLayoutPrior
from fashionnet.calibration.ood import FeatureDensity, trunk_features
from fashionnet.data.images import ImageInput, load_image
from fashionnet.data.transforms import build_transforms, to_original_coords
from fashionnet.device import resolve_device
from fashionnet.inference.faces import FaceDetector, default_face_detector, mirrored_boxes
from fashionnet.inference.garment_type_prior import GarmentTypePrior, PendingTypePrior, default_type_prior, reweighed_categories
from fashionnet.inference.localisation import CROP_BELOW_AREA, CROP_MARGIN, boxes_to_original, second_pass
from fashionnet.inference.prediction import Landmark, Prediction
from fashionnet.inference.retrieval_time import average_views
from fashionnet.landmarks import LANDMARK_NAMES, VISIBILITY_NAMES, present_mask
from fashionnet.models.batchnorm_folding import folded_for_inference
from fashionnet.models.checkpoint import CheckpointError, input_side, load_checkpoint, model_from_checkpoint
from fashionnet.models.config import FashionNetConfig
from fashionnet.runtimes.selection import RUNTIMES, exported_forward_or_none, resolve_runtime


def _stored_part(ckpt: dict, key: str, from_state, path, what: str, refit: str = "scripts/calibrate_ood.py"):
    """A calibration part a checkpoint may carry (None when absent); CheckpointError naming the file
    when it is there but unusable. ``refit`` fits it again."""
    if ckpt.get(key) is None:
        return None
    try:
        return from_state(ckpt[key])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: its {what} is unusable ({exc}); refit it with {refit}") from None


def _embeddings(out: dict[str, torch.Tensor]) -> np.ndarray:
    return out["embedding"].float().cpu().numpy()


class Predictor:
    """Runs a trained FashionNet on images of any size or mode.

    One Predictor may serve many threads at once (the HTTP API's workers share one): a call keeps
    its caches to itself, and what calls share is read-only or thread-safe (the model in eval mode,
    the face detector's per-thread cascades, the ONNX / OpenVINO runtimes).

    >>> p = Predictor.from_checkpoint("runs/default/checkpoint.pt")
    >>> pred = p.predict("photo.jpg")
    >>> pred.landmarks[0].name, pred.category, pred.embedding.shape
    """

    # held-out photos an index fits its close-match score on (fashionnet.calibration.close_match)
    match_reference: MatchReference | None = None

    def __init__(self, model: torch.nn.Module, config: FashionNetConfig, label_maps: dict, preprocessing: dict,
                 model_checksum: str, device: str | torch.device = "auto", top_attributes: int = 5, fold_batch_norms: bool = True,
                 density: FeatureDensity | None = None, runtime: str = "auto", onnx_cache_dir: str | os.PathLike | None = None,
                 category_temperature: float = 1.0, crop_below: float = CROP_BELOW_AREA, crop_margin: float = CROP_MARGIN,
                 landmark_prior: BoxLayoutPrior | None = None, face_detector: FaceDetector | None | str = "auto",
                 flip_average: bool = True, type_prior: GarmentTypePrior | None | str = "auto"):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.preprocessing = dict(preprocessing)
        self.input_side = input_side(preprocessing, config)  # square side, in pixels, photos are letterboxed to
        self.folded_batch_norms = 0
        if fold_batch_norms:  # same outputs, less time per query on CPU (scripts/benchmark_query.py measures it)
            example = torch.randn(1, 3, self.input_side, self.input_side, generator=torch.Generator().manual_seed(0)).to(self.device)
            self.model, self.folded_batch_norms = folded_for_inference(self.model, example)
        self.config = config
        self.model_checksum = model_checksum
        self.category_names: list[str] = list(label_maps.get("categories", []))
        self.attribute_names: list[str] = list(label_maps.get("attributes", []))
        # category -> clothes type, learned from the training annotations (absent in older checkpoints)
        self.category_clothes_types: dict[str, int] = {k: int(v) for k, v in label_maps.get("category_clothes_types", {}).items()}
        self.transform = build_transforms(train=False, size=self.input_side)
        # a photo whose garment box covers less than crop_below of it is cut to the box (plus
        # crop_margin of it on each side) and run again (fashionnet.inference.localisation); 0 never crops
        self.crop_below = float(crop_below)
        self.crop_margin = float(crop_margin)
        self.crop_transform = build_transforms(train=False, size=self.input_side, crop_to_bbox=True, crop_margin=self.crop_margin)
        self.top_attributes = top_attributes
        self.density = density
        # unsure landmarks are pulled towards their place in the garment box (fashionnet.calibration.landmark_prior)
        self.landmark_prior = landmark_prior
        # the box of a worn garment whose neckline was missed is cut below the wearer's face
        # (fashionnet.inference.faces); "auto": OpenCV's face cascade when it is installed, None: never
        self.face_detector = default_face_detector() if face_detector == "auto" else face_detector
        # the embedding is the mean of the photo's and its mirror image's (both passes each): a
        # garment and its mirror image are the same garment, and the mean retrieves better on
        # photos unlike the training ones (docs/experiments/flip_averaging.md); it costs a second forward pass
        self.flip_average = bool(flip_average)
        # category logits are divided by it, so probabilities match held-out accuracy (fashionnet.calibration.temperature)
        self.category_temperature = float(category_temperature)
        if not self.category_temperature > 0:
            raise ValueError(f"category_temperature must be positive, got {category_temperature}")
        # "onnx" / "openvino": the exported forward pass runs in ONNX Runtime / OpenVINO
        # (fashionnet.runtimes), falling back when it cannot.
        # "auto": the fastest one installed on a CPU, else torch.
        runtime = resolve_runtime(runtime, self.device)
        self._onnx, self.runtime = None, "torch"
        if runtime != "torch":
            self._onnx, self.runtime = exported_forward_or_none(self.model, self.input_side, model_checksum, self.device, onnx_cache_dir,
                                                                runtime=runtime)
        # an ImageNet classifier's opinion of the clothes type, multiplied into the category
        # (fashionnet.inference.garment_type_prior), in the same runtime; "auto": when its weights
        # are installed, None: never
        self.type_prior = (default_type_prior(str(self.device), self.runtime, None if onnx_cache_dir is None else str(onnx_cache_dir))
                           if type_prior == "auto" else type_prior)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto", **kwargs) -> "Predictor":
        return cls.from_loaded(load_checkpoint(path), path, device=device, **kwargs)

    @classmethod
    def from_loaded(cls, ckpt: dict, path: str | os.PathLike, model: torch.nn.Module | None = None,
                    device: str | torch.device = "auto", **kwargs) -> "Predictor":
        """A Predictor from a checkpoint already loaded (``path`` names it in errors), with the
        calibration it carries; ``model``: the checkpoint's model when the caller has built it."""
        built, config = model_from_checkpoint(ckpt, path) if model is None else (model, model.config)
        kwargs.setdefault("density", _stored_part(ckpt, "ood", FeatureDensity.from_state, path, "out-of-distribution density"))
        kwargs.setdefault("landmark_prior", _stored_part(ckpt, "landmark_prior", BoxLayoutPrior.from_state, path, "landmark box layout"))
        kwargs.setdefault("category_temperature", float(ckpt.get("category_temperature", 1.0)))
        predictor = cls(built, config, ckpt["label_maps"], ckpt["preprocessing"], ckpt["model_checksum"], device=device, **kwargs)
        reference = _stored_part(ckpt, "close_match", MatchReference.from_state, path, "close-match reference",
                                 "scripts/fit_close_match.py")
        # one fitted before the weights last changed (e.g. a refitted whitening) scored another model
        predictor.match_reference = reference if reference is not None and reference.model_checksum == predictor.model_checksum else None
        return predictor

    @property
    def embedding_dim(self) -> int:
        """Length of the search embedding (the fusion feature, plus the appearance where appended)."""
        return int(self.model.search_dim)

    def preprocess(self, image: ImageInput):
        """Load (any mode, size, EXIF orientation) and letterbox; returns (tensor, geometry, (w, h))."""
        pil = load_image(image)
        tensor, _, _, geometry = self.transform(pil)
        return tensor, geometry, pil.size

    @torch.inference_mode()
    def forward_batch(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model outputs for an already-preprocessed (B, 3, S, S) batch."""
        if self._onnx is not None:
            return self._onnx(images)
        return self.model(images.to(self.device, non_blocking=True))

    @torch.inference_mode()
    def embed_batch(self, images: torch.Tensor) -> np.ndarray:
        """(B, D) float32 L2-normalised embeddings of a preprocessed batch, one pass: no crop (the
        indexer and the queries go through :meth:`localise`)."""
        return _embeddings(self.forward_batch(images))

    @torch.inference_mode()
    def localise(self, out: dict, geometries: Sequence, image_of, crop_below: float | None = None) -> tuple[dict, list, list[bool]]:
        """The second pass on crops of the rows of a first-pass ``out`` whose garment is small
        (:func:`fashionnet.inference.localisation.second_pass`): (outputs, geometries, cropped) to :meth:`decode`.
        With ``flip_average`` the embedding is averaged with the mirror images' (:meth:`mirrored_outputs`)."""
        n = len(geometries)
        image_of = functools.lru_cache(maxsize=None)(image_of)
        faces_of = self._faces_of(image_of, n)
        out, geometries, cropped = second_pass(self, out, geometries, image_of, crop_below, faces_of)
        if self.flip_average:
            mirrored = self.mirrored_outputs([image_of(i) for i in range(n)], crop_below,
                                             None if faces_of is None else (lambda i: faces_of(n + i)))
            out = {**out, "embedding": torch.from_numpy(average_views(_embeddings(out), _embeddings(mirrored)))}
        return self._with_type_prior(out, geometries, image_of), geometries, cropped

    def _with_type_prior(self, out: dict, geometries: Sequence, image_of: Callable[[int], Image.Image]) -> dict:
        """``out`` with ``type_prior``: the clothes-type prior's opinion of each photo's garment box,
        which :meth:`category_probs` multiplies in (unchanged without a prior)."""
        if self.type_prior is None:
            return out
        return {**out, "type_prior": PendingTypePrior(self.type_prior, image_of, boxes_to_original(out, geometries))}

    def embed_photos(self, images: Sequence[ImageInput], crop_below: float | None = None) -> np.ndarray:
        """(B, D) embeddings of photos as :meth:`predict_batch` computes them, without the rest of
        the prediction (so without the clothes-type prior's cost)."""
        return _embeddings(self.forward_photos(images, crop_below)[0]) if images else np.zeros((0, self.embedding_dim), np.float32)

    @torch.inference_mode()
    def mirrored_outputs(self, photos: Sequence[Image.Image], crop_below: float | None = None,
                         faces_of: Callable[[int], np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        """Both passes over the photos' mirror images, without flip averaging (``faces_of``: the
        mirror images' faces where already known). Landmark slots follow the image sides
        (fashionnet.data.transforms), so the pooled parts line up with the unmirrored photo's."""
        mirrored = [ImageOps.mirror(photo) for photo in photos]
        return self._both_passes(mirrored, crop_below, faces_of)[0]

    def mirrored_embeddings(self, photos: Sequence[Image.Image], crop_below: float | None = None) -> np.ndarray:
        """(B, D) embeddings of the photos' mirror images (:meth:`mirrored_outputs`)."""
        return _embeddings(self.mirrored_outputs(photos, crop_below))

    def _faces_of(self, photo_of: Callable[[int], Image.Image], n: int) -> Callable[[int], np.ndarray] | None:
        """Faces of rows 0..n-1 (the photos) and n..2n-1 (their mirror images), each photo looked at
        once; None without a face detector."""
        if self.face_detector is None:
            return None
        found = functools.lru_cache(maxsize=None)(lambda i: self.face_detector.find(photo_of(i)))
        return lambda i: found(i) if i < n else mirrored_boxes(found(i - n), photo_of(i - n).width)

    def _both_passes(self, photos: Sequence[Image.Image], crop_below: float | None = None,
                     faces_of: Callable[[int], np.ndarray] | None = None) -> tuple[dict, list, list[bool]]:
        """Letterbox, the first pass and the second (:func:`fashionnet.inference.localisation.second_pass`) over
        decoded photos in one batch, without flip averaging."""
        prepared = [self.preprocess(photo) for photo in photos]
        out = self.forward_batch(torch.stack([t for t, _, _ in prepared]))
        return second_pass(self, out, [g for _, g, _ in prepared], photos.__getitem__, crop_below, faces_of)

    def _photos_and_mirrors(self, images: Sequence[ImageInput], crop_below: float | None = None) -> tuple[dict, list, list[bool], int]:
        """Both passes over the photos and, with ``flip_average``, their mirror images after them in
        the same batch (one forward call: a query is a batch of one): (outputs of every row,
        geometries, cropped, number of photos)."""
        photos = [load_image(im) for im in images]
        n = len(photos)
        views = photos + [ImageOps.mirror(photo) for photo in photos] if self.flip_average else photos
        return (*self._both_passes(views, crop_below, self._faces_of(photos.__getitem__, n)), n)

    def forward_photos(self, images: Sequence[ImageInput], crop_below: float | None = None) -> tuple[dict, list, list[bool]]:
        """Both passes over photos: (outputs, geometries, cropped), as :meth:`localise` returns them,
        with ``flip_average`` the embedding averaged with the mirror images'."""
        photos = [load_image(im) for im in images]
        out, geometries, cropped, n = self._photos_and_mirrors(photos, crop_below)
        if self.flip_average:
            embedding = _embeddings(out)
            out = {key: value[:n] if isinstance(value, torch.Tensor) and len(value) == 2 * n else value for key, value in out.items()}
            out["embedding"] = torch.from_numpy(average_views(embedding[:n], embedding[n:]))
            geometries, cropped = geometries[:n], cropped[:n]
        return self._with_type_prior(out, geometries, photos.__getitem__), geometries, cropped

    def predict(self, image: ImageInput) -> Prediction:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageInput], crop_below: float | None = None) -> list[Prediction]:
        """Predictions of photos of any size, two-pass (``crop_below`` overrides the predictor's)."""
        if not images:
            return []
        out, geometries, cropped = self.forward_photos(images, crop_below)
        return self.decode(out, [(g, (g.orig_w, g.orig_h)) for g in geometries], cropped)

    @torch.inference_mode()
    def score_parts(self, query_embedding: np.ndarray, images: Sequence[ImageInput]) -> list[dict[str, float]]:
        """Each image's similarity to the query split into what its global branch, its landmark-pooled
        local branch, the fusion bias and (where the embedding appends it) the pooled appearance
        contribute. The embedding is [fusion / |fusion|, w * appearance / |appearance|] / sqrt(1 + w^2)
        with the fusion one linear layer over [global, local], so the parts add up to the score exactly.
        A whitened embedding (FashionNetConfig.whiten_dim) is linear in its descriptor too: there the
        landmark windows count as local, the whitening's mean subtracted as bias, and where it leaves
        the fusion feature out (whitened part by part) there is no global part.
        With ``flip_average`` each part is the photo's and its mirror image's, summed and divided by
        the norm of the two embeddings' sum, as the averaged embedding is."""
        if not images:
            return []
        out, _, _, n = self._photos_and_mirrors(images)  # the crops the index embedded
        scores = self._parts(out, query_embedding)
        if self.flip_average:
            embedding = _embeddings(out)
            norm = np.linalg.norm(embedding[:n] + embedding[n:], axis=1)
            scores = {name: (values[:n] + values[n:]) / norm for name, values in scores.items()}
        return [{name: float(values[i]) for name, values in scores.items()} for i in range(len(images))]

    @torch.inference_mode()
    def _parts(self, out: dict[str, torch.Tensor], query_embedding: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`score_parts` of each row of ``out``, each part (B,)."""
        q = np.asarray(query_embedding, dtype=np.float32)
        config = self.model.config
        return self._whitened_parts(out, q) if config.whiten_dim else self._plain_parts(out, q)

    def _whitened_parts(self, out: dict[str, torch.Tensor], q: np.ndarray) -> dict[str, np.ndarray]:
        """The parts of whitened(descriptor) . q (FashionNet._whitened): z = (descriptor - mean) @ projection
        is linear in the descriptor, and each row's normalisation scales z's dimensions (all alike, or
        part by part), so the score is descriptor . v - mean . v with v = projection @ (q x scale) per row.
        The descriptor is [fusion / |fusion|, appearance / |appearance|, windows, colours], and the
        fusion splits as in :meth:`_plain_parts`."""
        model = self.model
        projection = model.whiten_projection.float()
        descriptor = out["descriptor"].float()
        scale = model.whitening_scales((descriptor - model.whiten_mean.float()) @ projection)
        v = (torch.as_tensor(q).to(projection.device) * scale) @ projection.T  # (B, D): what each descriptor entry adds per unit
        fusion_dim = model.fusion.out_features
        weight = model.fusion.weight.float()
        global_dim = out["global_feature"].shape[1]
        f_norm = out["fusion_feature"].float().norm(dim=1).clamp_min(1e-12)
        v_fusion = v[:, :fusion_dim]
        bias = model.fusion.bias.float() if model.fusion.bias is not None else torch.zeros(fusion_dim, device=v.device)
        after_appearance = fusion_dim + model.appearance_dim
        parts = {
            "global": ((out["global_feature"].float() @ weight[:, :global_dim].T) * v_fusion).sum(dim=1) / f_norm,
            "local": ((out["local_feature"].float() @ weight[:, global_dim:].T) * v_fusion).sum(dim=1) / f_norm
                     + (descriptor[:, after_appearance:] * v[:, after_appearance:]).sum(dim=1),
            "bias": (v_fusion @ bias) / f_norm - v @ model.whiten_mean.float(),
        }
        if model.appearance_dim:
            parts["appearance"] = (descriptor[:, fusion_dim:after_appearance] * v[:, fusion_dim:after_appearance]).sum(dim=1)
        if not bool(projection[:fusion_dim].any()):
            # whitened part by part beside the appearance, the fusion feature is not searched at all
            # (FashionNet.whitening_parts): no global part to show, rather than one always 0
            del parts["global"]
        return {name: value.cpu().numpy() for name, value in parts.items()}

    def _plain_parts(self, out: dict[str, torch.Tensor], query_embedding: np.ndarray) -> dict[str, np.ndarray]:
        """The parts of the plain embedding (fusion, with the appearance where it is appended) . query_embedding."""
        fusion = self.model.fusion
        global_dim = out["global_feature"].shape[1]
        fusion_dim = fusion.out_features
        weight = fusion.weight.float()
        w = float(self.model.appearance_weight) if self.model.appearance_dim else 0.0
        scale = 1.0 / np.sqrt(1.0 + w * w)  # the norm of the joined vector before its normalisation
        q = torch.as_tensor(np.asarray(query_embedding, dtype=np.float32)).to(weight.device)
        q_fusion = q[:fusion_dim]
        norm = out["fusion_feature"].float().norm(dim=1, keepdim=True).clamp_min(1e-12) / scale
        bias = fusion.bias.float() if fusion.bias is not None else torch.zeros_like(q_fusion)
        scores = {
            "global": ((out["global_feature"].float() @ weight[:, :global_dim].T) / norm) @ q_fusion,
            "local": ((out["local_feature"].float() @ weight[:, global_dim:].T) / norm) @ q_fusion,
            "bias": (bias[None, :] / norm) @ q_fusion,
        }
        if w > 0:
            appearance = out["appearance_feature"].float()
            appearance = w * scale * appearance / appearance.norm(dim=1, keepdim=True).clamp_min(1e-12)
            scores["appearance"] = appearance @ q[fusion_dim:]
        return {name: value.cpu().numpy() for name, value in scores.items()}

    def category_probs(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, C) calibrated category probabilities (logits divided by the checkpoint's temperature)."""
        probs = (out["category_logits"].float() / self.category_temperature).softmax(-1).cpu()
        if "type_prior" not in out or not probs.shape[1] or not self.category_names:
            return probs
        return reweighed_categories(probs, out["type_prior"].probabilities(),
                                    [self.category_clothes_types.get(name) for name in self.category_names])

    def predicted_clothes_types(self, category_probs: torch.Tensor) -> list[int | None]:
        """Each row's clothes type from its most likely category (None where unknown)."""
        if not category_probs.shape[1] or not self.category_names:
            return [None] * len(category_probs)
        return [self.category_clothes_types.get(self.category_names[int(c)]) for c in category_probs.argmax(dim=1)]

    def landmark_pixels(self, out: dict[str, torch.Tensor], geometries: Sequence, boxes: Sequence | None = None,
                        clothes_types: Sequence[int | None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmarks in each photo's pixels: ((B, 8, 2) the heatmaps' points, (B, 8, 2) the points
        given, (B, 8) the share of each taken from the box layout). The given points pull the unsure
        ones towards their place in the predicted garment box where the checkpoint has a box layout
        (fashionnet.calibration.landmark_prior); ``boxes`` and ``clothes_types`` are computed when not passed."""
        landmarks = out["landmarks"].float().cpu()
        xy = np.stack([to_original_coords(landmarks[i], g, normalized=True).numpy() for i, g in enumerate(geometries)]).astype(np.float64)
        if self.landmark_prior is None or "landmark_confidence" not in out:
            return xy, xy, np.zeros(xy.shape[:2])
        boxes = boxes_to_original(out, geometries) if boxes is None else boxes
        if any(b is None for b in boxes):
            return xy, xy, np.zeros(xy.shape[:2])
        if clothes_types is None:
            clothes_types = self.predicted_clothes_types(self.category_probs(out))
        confidence = out["landmark_confidence"].float().cpu().numpy()
        placed = self.landmark_prior.place(xy, confidence, np.asarray(boxes, dtype=np.float64), clothes_types)
        return xy, placed, 1.0 - np.clip(confidence / self.landmark_prior.threshold, 0.0, 1.0)

    def decode(self, out: dict[str, torch.Tensor], geometries: Iterable, cropped: Sequence[bool] | None = None) -> list[Prediction]:
        """Turn a model output batch into Predictions, landmarks and box mapped back to original
        pixels. ``cropped`` marks rows that came from a second pass (:meth:`localise`)."""
        geometries = list(geometries)
        boxes = boxes_to_original(out, [g for g, _ in geometries])
        confidence = out["landmark_confidence"].float().cpu() if "landmark_confidence" in out else None
        vis_prob = out["visibility_logits"].float().softmax(-1).cpu()
        cat_prob = self.category_probs(out)
        clothes_types = self.predicted_clothes_types(cat_prob)
        _, xy_all, from_layout = self.landmark_pixels(out, [g for g, _ in geometries], boxes, clothes_types)
        attr_prob = out["attribute_logits"].float().sigmoid().cpu()
        emb = _embeddings(out)
        below_face = out["below_face"].tolist() if "below_face" in out else [False] * len(geometries)
        # the photo as given is judged, not a crop of it: a crop of noise around a box the model
        # imagined can look like a garment
        stats = out.get("trunk_stats_first", out["trunk_stats"])
        unfamiliarity = self.density.score(trunk_features(stats)) if self.density is not None else None
        results = []
        for i, (geometry, size) in enumerate(geometries):
            xy = xy_all[i]
            lms = [
                Landmark(name, float(xy[j, 0]), float(xy[j, 1]), VISIBILITY_NAMES[int(vis_prob[i, j].argmax())], float(vis_prob[i, j, 0]),
                         None if confidence is None else float(confidence[i, j]), float(from_layout[i, j]))
                for j, name in enumerate(LANDMARK_NAMES)
            ]
            category, category_p, scores = None, 0.0, {}
            if cat_prob.shape[1] and self.category_names:
                c = int(cat_prob[i].argmax())
                category, category_p = self.category_names[c], float(cat_prob[i, c])
                scores = {n: float(cat_prob[i, k]) for k, n in enumerate(self.category_names)}
            clothes_type = clothes_types[i]
            if clothes_type is not None:
                present = present_mask(clothes_type)
                lms = [lm if present[j] else dataclasses.replace(lm, visibility="absent") for j, lm in enumerate(lms)]
            attrs: list[tuple[str, float]] = []
            if attr_prob.shape[1] and self.attribute_names:
                order = torch.argsort(attr_prob[i], descending=True)[: self.top_attributes]
                attrs = [(self.attribute_names[int(a)], float(attr_prob[i, a])) for a in order]
            results.append(Prediction(lms, category, category_p, attrs, emb[i], tuple(size), scores, clothes_type,
                                      None if unfamiliarity is None else float(unfamiliarity[i]),
                                      None if unfamiliarity is None else bool(unfamiliarity[i] > self.density.threshold),
                                      boxes[i], bool(cropped[i]) if cropped is not None else False, bool(below_face[i])))
        return results
