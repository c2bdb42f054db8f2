"""FashionNet: landmark-pooled clothing features for image retrieval (Liu et al., CVPR 2016)."""

__version__ = "0.1.0"
