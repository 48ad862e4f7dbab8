"""zoo: a multimodal model zoo on one shared Transformer backbone."""

__version__ = "0.1.0"

from zoo.models import list_models, load  # noqa: E402

__all__ = ["__version__", "list_models", "load"]
