"""Graph -> Graph passes. Importing this package registers every pass with the pass manager."""
from . import (cse, dce, fold_batchnorm, fold_constants, fuse, layout, pack_weights, pointwise_depthwise,
               simplify, winograd)
from .infer_types import infer_types
from .manager import PASSES, PassManager, graph_pass

__all__ = ["infer_types", "PASSES", "PassManager", "graph_pass", "cse", "dce", "fold_batchnorm",
           "fold_constants", "fuse", "layout", "pack_weights", "pointwise_depthwise", "simplify", "winograd"]
