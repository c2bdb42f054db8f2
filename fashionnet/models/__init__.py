"""Model registry: backbones (``get_backbone``) and FashionNet (``get_model`` / ``create_model``)."""

from fashionnet.models.backbones import (
    Backbone,
    BareBackbone,
    PretrainedWeightsNotFound,
    get_backbone,
    list_backbones,
)
from fashionnet.models.config import FashionNetConfig
from fashionnet.models.fashionnet import FashionNet, create_model, get_model, list_models
from fashionnet.models.landmark_pooling import LandmarkPooling

__all__ = [
    "Backbone",
    "BareBackbone",
    "FashionNet",
    "FashionNetConfig",
    "LandmarkPooling",
    "PretrainedWeightsNotFound",
    "create_model",
    "get_backbone",
    "get_model",
    "list_backbones",
    "list_models",
]
