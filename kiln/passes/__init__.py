"""Graph -> Graph passes."""
from .infer_types import infer_types

__all__ = ["infer_types"]
