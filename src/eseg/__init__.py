"""eseg: ESeg semantic segmentation (Meng et al., arXiv 2203.12683) on timm backbones."""
from .inference import Segmenter
from .models import ESeg, ESegConfig, create_model, get_config, list_models, load_model

__version__ = "0.1.0"
__all__ = ["ESeg", "ESegConfig", "create_model", "get_config", "list_models", "load_model", "Segmenter", "__version__"]
