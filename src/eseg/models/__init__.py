from .eseg import ESeg, ESegConfig, load_model
from .registry import VARIANTS, create_model, get_config, list_models

__all__ = ["ESeg", "ESegConfig", "VARIANTS", "create_model", "get_config", "list_models", "load_model"]
