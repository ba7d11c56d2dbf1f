"""kiln: a deep learning compiler. See docs/ and ../shared/DESIGN.md for the picture."""
from .api import IOSpec, Module, compile, load
from .errors import KilnError
from .frontend.onnx_import import import_onnx
from .frontend.torch_import import import_torch
from .ir import Graph, parse_ir

__version__ = "0.1.0"

__all__ = ["compile", "load", "import_onnx", "import_torch", "parse_ir", "Graph", "Module", "IOSpec",
           "KilnError", "__version__"]
