"""The model family: a registry of named ModelConfigs and the networks that build them."""

from sagan.models.config import ModelConfig
from sagan.models.gan import GAN
from sagan.models.registry import MODELS, create_model, list_models, model_config, register

__all__ = ["GAN", "MODELS", "ModelConfig", "create_model", "list_models", "model_config", "register"]
