"""FashionNet: landmark-pooled clothing features for image retrieval (Liu et al., CVPR 2016)."""

import os

# torch and FAISS each keep an OpenMP thread pool. With the default (active) wait policy, FAISS's
# idle threads spin after every search and slow the next model forward on a small CPU
# (scripts/benchmark_query.py measured it). Passive waiting costs nothing measurable; it only takes
# effect when set before torch or faiss is first imported, and a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
