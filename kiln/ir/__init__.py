"""kiln's graph IR: dtypes, types with symbolic dims, SSA graphs, text printer and parser."""
from . import dtypes
from .dtypes import DType
from .graph import Graph, MissingData, Node, Value
from .parser import parse_ir
from .printer import print_graph
from .verify import verify
from .types import UNKNOWN, OptionalType, SequenceType, TensorType, tensor

__all__ = ["dtypes", "DType", "Graph", "MissingData", "Node", "Value", "parse_ir", "print_graph",
           "UNKNOWN", "OptionalType", "SequenceType", "TensorType", "tensor", "verify"]
