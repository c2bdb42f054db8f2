"""Faces above the garment: cut the garment box below a worn garment's face.

The synthetic people the model learns from have drawn faces, and real ones do not look like them.
On a real head-and-shoulders photo the model's garment box starts on the forehead and its collar
points land on the face, unsure. A garment never covers the wearer's face, so when the collar
points are unsure and a face sits at the top of the garment box, the box is cut below the face
and the photo is looked at again on that crop (``fashionnet.inference.localisation.second_pass``), which is
the framing the model was trained on.

Faces are found by OpenCV's frontal-face Haar cascade, which ships inside the opencv package (no
download). Without OpenCV installed the cut is skipped and everything else works as before.
A face counts only where a wearer's face would be (see :func:`box_below_face`): it must sit at
the top of the box, over its middle, and be narrower than the garment. That keeps the cut away
from the cascade's false detections on prints and hangers.
"""

from __future__ import annotations

import functools
import threading
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from fashionnet.landmarks import LOWER_BODY

Box = tuple[float, float, float, float]

# the cascade looks at the photo shrunk to this longer side, where its 24-pixel window finds faces
# of an eighth of the photo's longer side and larger: the head of a worn top's wearer, cheaply,
# since the cost grows with the side (docs/experiments/face_cut.md)
DETECT_SIDE = 192
# a face counts when its top lies above this share of the box's height from the box's top ...
FACE_TOP_WITHIN = 0.15
# ... its bottom above this share (enough of the garment is left below it) ...
FACE_BOTTOM_WITHIN = 0.6
# ... and it is at most this share of the box's width (a face as wide as the "garment" is a
# detection on the garment itself)
MAX_FACE_WIDTH = 0.6
# landmark slots that tell whether the model found the neckline (fashionnet.landmarks.LANDMARK_NAMES)
COLLAR_SLOTS = (0, 1)


@functools.lru_cache(maxsize=1)
def _cascade_file() -> str:
    import cv2  # optional: the cut is skipped without it

    cv2.setNumThreads(1)  # one small photo at a time: a thread pool would only compete with the model's threads
    return cv2.data.haarcascades + "haarcascade_frontalface_default.xml"


# OpenCV's CascadeClassifier is not thread-safe: threads in detectMultiScale at once raise errors,
# get each other's faces or crash the process. The server's worker threads share one Predictor, so
# each thread loads its own cascade (once; docs/experiments/face_cut.md).
_per_thread = threading.local()


def _cascade():
    """This thread's frontal-face cascade (ImportError without OpenCV)."""
    cascade = getattr(_per_thread, "cascade", None)
    if cascade is None:
        import cv2

        cascade = cv2.CascadeClassifier(_cascade_file())
        if cascade.empty():
            raise RuntimeError("OpenCV's frontal-face cascade did not load")
        _per_thread.cascade = cascade
    return cascade


class FaceDetector:
    """Frontal faces in a photo, as (x1, y1, x2, y2) boxes in its pixels. Safe to share between
    threads (each uses its own cascade)."""

    def __init__(self, detect_side: int = DETECT_SIDE):
        self.detect_side = int(detect_side)
        _cascade()  # fails now, not at the first photo, when OpenCV is missing

    @staticmethod
    def available() -> bool:
        """Whether OpenCV and its cascade are installed."""
        try:
            _cascade()
        except (ImportError, RuntimeError, AttributeError):
            return False
        return True

    def find(self, image: Image.Image) -> np.ndarray:
        """(K, 4) float boxes of the faces found, in ``image``'s pixels (K may be 0)."""
        import cv2

        gray = np.asarray(image.convert("L"))
        scale = min(1.0, self.detect_side / max(gray.shape))
        if scale < 1:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = _cascade().detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5)
        if len(found) == 0:
            return np.zeros((0, 4))
        found = np.asarray(found, dtype=np.float64)
        return np.concatenate([found[:, :2], found[:, :2] + found[:, 2:]], axis=1) / scale


def mirrored_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """(K, 4) boxes of a ``width``-pixel photo, in the pixels of its mirror image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)


def default_face_detector() -> Optional[FaceDetector]:
    """A detector when OpenCV is installed, else None (the cut is then skipped)."""
    return FaceDetector() if FaceDetector.available() else None


def box_below_face(box: Optional[Box], faces: np.ndarray) -> Optional[Box]:
    """The garment ``box`` cut below the lowest face that sits where a wearer's face would be, or
    None when no face does (or there is no box)."""
    if box is None or len(faces) == 0:
        return None
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    top = None
    for fx1, fy1, fx2, fy2 in np.asarray(faces, dtype=np.float64).reshape(-1, 4):
        over_middle = x1 <= (fx1 + fx2) / 2 <= x2
        at_top = fy1 < y1 + FACE_TOP_WITHIN * height and y1 < fy2 < y1 + FACE_BOTTOM_WITHIN * height
        if over_middle and at_top and fx2 - fx1 <= MAX_FACE_WIDTH * width:
            top = fy2 if top is None else max(top, fy2)
    return None if top is None else (x1, float(top), x2, y2)


def wants_face_check(collar_confidence: Sequence[float], clothes_type: Optional[int], threshold: float) -> bool:
    """Look for a face only where the model did not find the neckline (both collar points below
    ``threshold``) and the garment is not a lower-body one (its box never reaches the face)."""
    return clothes_type != LOWER_BODY and float(np.mean(collar_confidence)) < threshold
