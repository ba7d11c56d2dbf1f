"""Graph -> Graph passes."""
from . import fuse  # noqa: F401  (registers the pass)
from .infer_types import infer_types

__all__ = ["infer_types"]
