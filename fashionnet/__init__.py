"""FashionNet: landmark-pooled clothing features for image retrieval (Liu et al., CVPR 2016).

    from fashionnet import Predictor
    prediction = Predictor.from_checkpoint("runs/demo/checkpoint.pt").predict("photo.jpg")

The public names load on first use, so ``import fashionnet`` stays light (no torch).
"""

import os

# torch and FAISS each keep an OpenMP thread pool. With the default (active) wait policy, FAISS's
# idle threads spin after every search and slow the next model forward on a small CPU
# (docs/experiments/query_latency_fixes.md). Passive threads sleep and leave the cores to the model; it
# only takes effect when set before torch or faiss is first imported, and a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_PUBLIC = {
    "Predictor": "fashionnet.inference.predictor",
    "Prediction": "fashionnet.inference.prediction",
    "Landmark": "fashionnet.inference.prediction",
    "create_model": "fashionnet.models",
    "get_backbone": "fashionnet.models",
    "FashionNetConfig": "fashionnet.models",
    "load_checkpoint": "fashionnet.models.checkpoint",
    "read_benchmark": "fashionnet.data.readers",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'fashionnet' has no attribute {name!r}")
