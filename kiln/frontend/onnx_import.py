"""ONNX -> kiln graph IR.

- Accepts a path, bytes or an onnx.ModelProto; external-data files are read from the model's folder.
- Every node is mapped by (domain, op_type) to one kiln op; an op's `upgrade` hook rewrites nodes
  from older opsets into the op's current form (attributes that became inputs, changed defaults).
- Initializers become constants. An initializer that is also listed as a graph input (older
  exporters do this) becomes a `param`: a constant the caller may override by feeding its name.
- `Constant` nodes become constants; subgraphs (If/Loop/Scan bodies) are imported recursively and
  may refer to values of the graphs around them.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import KilnError, ModelLoadError, OpError, UnsupportedError
from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ..ir.types import UNKNOWN, OptionalType, SequenceType, TensorType
from ..ops import REGISTRY
from ..passes.infer_types import infer_types

# Domains kiln reads, and the newest opset of each it knows.
DOMAINS = {"": "ai.onnx", "ai.onnx": "ai.onnx", "ai.onnx.ml": "ai.onnx.ml",
           "ai.onnx.preview.training": "ai.onnx.preview.training",
           "ai.onnx.preview": "ai.onnx.preview"}
MIN_OPSET = 1


def _onnx():
    try:
        import onnx
        return onnx
    except ImportError as e:  # pragma: no cover - onnx is a core dependency
        raise UnsupportedError("reading ONNX models needs the `onnx` package") from e


def load_model(src, base_dir: str | None = None):
    """Read a ModelProto from a path, bytes or ModelProto, with clear errors for bad files."""
    onnx = _onnx()
    if isinstance(src, onnx.ModelProto):
        model = src
        if base_dir:
            _load_external(model, base_dir)
        return model, "<ModelProto>"
    if isinstance(src, (bytes, bytearray)):
        return _parse_bytes(bytes(src), "<bytes>"), "<bytes>"
    path = os.fspath(src)
    if not os.path.exists(path):
        raise ModelLoadError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ModelLoadError(f"model path is a directory, not a file: {path}")
    with open(path, "rb") as f:
        data = f.read()
    model = _parse_bytes(data, path)
    _load_external(model, base_dir or os.path.dirname(os.path.abspath(path)))
    return model, path


def _parse_bytes(data: bytes, where: str):
    onnx = _onnx()
    if not data:
        raise ModelLoadError(f"{where}: file is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:
        raise ModelLoadError(f"{where}: not a valid ONNX model (truncated or another format): "
                             f"{type(e).__name__}") from None
    if not model.HasField("graph") or not model.opset_import:
        raise ModelLoadError(f"{where}: not an ONNX model (no graph or no opset_import)")
    return model


def _load_external(model, base_dir: str):
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data
    if any(uses_external_data(t) for t in _all_initializers(model.graph)):
        try:
            load_external_data_for_model(model, base_dir)
        except Exception as e:        # OSError, ValueError, onnx's ValidationError
            raise ModelLoadError(f"cannot read external data of the model from {base_dir}: {e}") from None


def _all_initializers(g):
    yield from g.initializer
    for n in g.node:
        for a in n.attribute:
            if a.HasField("g"):
                yield from _all_initializers(a.g)
            for sg in a.graphs:
                yield from _all_initializers(sg)


# --- types -----------------------------------------------------------------------------------
def convert_type(tp) -> Any:
    which = tp.WhichOneof("value")
    if which == "tensor_type" or which == "sparse_tensor_type":
        tt = getattr(tp, which)
        dt = dtypes.from_onnx(tt.elem_type) if tt.elem_type else None
        if not tt.HasField("shape"):
            return TensorType(dt, None)
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(None)
        return TensorType(dt, tuple(dims))
    if which == "sequence_type":
        return SequenceType(convert_type(tp.sequence_type.elem_type))
    if which == "optional_type":
        return OptionalType(convert_type(tp.optional_type.elem_type))
    return UNKNOWN


def to_array(t, where: str = "") -> np.ndarray:
    from onnx import numpy_helper
    try:
        a = numpy_helper.to_array(t)
    except Exception as e:
        raise ModelLoadError(f"{where}: cannot read tensor {t.name!r}: {e}") from None
    if t.data_type == 8:   # strings: numpy_helper gives bytes objects
        a = np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b,
                         otypes=[object])(a) if a.size else a.astype(object)
    return a


# --- nodes as the upgrade hooks see them -------------------------------------------------------
class ImportedNode:
    """A node being imported: what an op's `upgrade` hook reads and rewrites."""

    def __init__(self, op_type, domain, opset, inputs, n_outputs, attrs, name, graph, fresh):
        self.op_type, self.domain, self.opset = op_type, domain, opset
        self._fresh = fresh
        self.inputs: list[Value | None] = inputs
        self.n_outputs = n_outputs
        self.attrs: dict[str, Any] = attrs
        self.name = name
        self.graph = graph

    def fresh(self, base: str) -> str:
        """A name no other value in the model has (for values an upgrade hook creates)."""
        return self._fresh(base)

    def const(self, data, hint: str = "c") -> Value:
        """A new constant input (e.g. an attribute that later opsets take as an input)."""
        return self.graph.add_const(self._fresh(f"{self.name or self.op_type}_{hint}"),
                                    np.asarray(data))

    def add_node(self, op: str, inputs, attrs=None, hint: str = "") -> Value:
        """Insert a helper node before this one (e.g. an Unsqueeze an old opset implied);
        returns its (single) output."""
        out = Value(self._fresh(f"{self.name or self.op_type}_{hint or op}"))
        self.graph.nodes.append(Node(op, inputs, [out], attrs or {}, f"{self.name}/{op}" if self.name else ""))
        return out

    def move_attr_to_input(self, attr: str, index: int, dtype=np.int64):
        """Older opsets gave this operand as attribute `attr`; newer ones take it as input `index`."""
        if attr in self.attrs:
            value = self.attrs.pop(attr)
            while len(self.inputs) < index:
                self.inputs.append(None)
            v = self.const(np.asarray(value, dtype=dtype), attr)
            if len(self.inputs) == index:
                self.inputs.append(v)
            else:
                self.inputs[index] = v

    def describe(self) -> str:
        return f"{self.op_type} {self.name!r}" if self.name else self.op_type


class Importer:
    def __init__(self, model, where: str, registry=REGISTRY):
        self.model, self.where, self.registry = model, where, registry
        self.taken: set[str] = set()     # SSA names are unique across the graph and its subgraphs
        self.opsets: dict[str, int] = {}
        for o in model.opset_import:
            dom = o.domain or ""
            if dom in DOMAINS:       # other domains are an error only where a node uses them
                self.opsets[DOMAINS[dom]] = int(o.version)
        onnx = _onnx()
        newest = onnx.defs.onnx_opset_version()
        v = self.opsets.get("ai.onnx")
        if v is not None and not MIN_OPSET <= v <= newest:
            raise UnsupportedError(f"{where}: ai.onnx opset {v} is not supported "
                                   f"(kiln reads opsets {MIN_OPSET} to {newest})")

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def run(self) -> Graph:
        g = self.graph(self.model.graph, None, root=True)
        g.meta["source"] = self.where
        g.meta["opsets"] = dict(self.opsets)
        g.meta["producer"] = f"{self.model.producer_name} {self.model.producer_version}".strip()
        infer_types(g, self.registry)
        return g

    def graph(self, gp, parent_scope, root=False) -> Graph:
        g = Graph(gp.name or "main")
        scope = _Scope(parent_scope, self)
        inits = {t.name: t for t in gp.initializer}
        for sp in gp.sparse_initializer:
            inits[sp.values.name] = sp
        declared = {vi.name: convert_type(vi.type) for vi in list(gp.value_info) + list(gp.output)}
        input_names = {vi.name for vi in gp.input}
        order = []
        for vi in gp.input:
            order.append(vi.name)
            if vi.name in inits:
                continue
            v = Value(vi.name, convert_type(vi.type))
            g.inputs.append(v)
            scope.define(vi.name, v)
        for name, t in inits.items():
            data = self.tensor(t)
            declared_t = TensorType(dtypes.from_onnx(t.data_type) if hasattr(t, "data_type")
                                    else dtypes.from_numpy(data.dtype), data.shape)
            v = g.add_const(name, data, declared_t, feedable=root and name in input_names)
            scope.define(name, v)
        if root:
            g.meta["onnx_inputs"] = order
        for n in gp.node:
            self.node(n, g, scope, declared)
        for vi in gp.output:
            v = scope.lookup(vi.name)
            if v is None:
                raise KilnError(f"{self.where}: graph {g.name!r} output {vi.name!r} is never produced")
            g.outputs.append(v)
        return g

    def tensor(self, t) -> np.ndarray:
        if hasattr(t, "indices"):     # SparseTensorProto
            from onnx import numpy_helper
            values = to_array(t.values, self.where)
            idx = numpy_helper.to_array(t.indices)
            dense = np.zeros(int(np.prod(t.dims)), dtype=values.dtype)
            if idx.ndim == 2:
                idx = np.ravel_multi_index(idx.T, tuple(t.dims))
            dense[idx] = values
            return dense.reshape(tuple(t.dims))
        return to_array(t, self.where)

    def node(self, n, g: Graph, scope, declared):
        where = f"{self.where}: node {n.name!r} ({n.op_type})" if n.name else f"{self.where}: {n.op_type} node"
        dom = DOMAINS.get(n.domain or "")
        if dom is None:
            raise UnsupportedError(f"{where}: operator domain {n.domain!r} is not supported "
                                   f"(kiln reads {', '.join(sorted(set(DOMAINS.values())))})")
        opset = self.opsets.get(dom)
        if opset is None:
            raise KilnError(f"{where}: the model imports no opset for domain {dom!r}")
        if n.op_type == "Constant" and dom == "ai.onnx":
            out = n.output[0]
            v = g.add_const(out, self.constant_value(n, where))
            scope.define(out, v)
            return
        d = self.registry.by_onnx.get(("" if dom == "ai.onnx" else dom, n.op_type))
        if d is None:
            raise UnsupportedError(f"{where}: op {n.op_type!r} of domain {dom!r} is not supported by kiln")
        inputs = []
        for name in n.input:
            if not name:
                inputs.append(None)
                continue
            v = scope.lookup(name)
            if v is None:
                raise KilnError(f"{where}: input {name!r} is not defined before this node")
            inputs.append(v)
        attrs = {a.name: self.attr(a, scope, where) for a in n.attribute}
        imp = ImportedNode(n.op_type, dom, opset, inputs, len(n.output), attrs, n.name, g, self.fresh)
        if d.upgrade is not None:
            try:
                d.upgrade(imp)
            except KilnError:
                raise
            except Exception as e:
                raise OpError(f"{where}: cannot read this node at opset {opset}: {e}") from None
        while imp.inputs and imp.inputs[-1] is None:
            imp.inputs.pop()
        d.check_arity(len(imp.inputs), len(n.output), where)
        d.resolve_attrs(imp.attrs, where)
        outs = []
        for name in n.output:
            if not name:
                outs.append(None)
                continue
            v = Value(name, declared.get(name, UNKNOWN))
            scope.define(name, v, where)
            outs.append(v)
        while outs and outs[-1] is None:
            outs.pop()
        g.nodes.append(Node(d.name, imp.inputs, outs, imp.attrs, n.name))

    def constant_value(self, n, where):
        for a in n.attribute:
            if a.name == "value":
                return to_array(a.t, where)
            if a.name == "sparse_value":
                return self.tensor(a.sparse_tensor)
            if a.name == "value_float":
                return np.array(a.f, np.float32)
            if a.name == "value_floats":
                return np.array(list(a.floats), np.float32)
            if a.name == "value_int":
                return np.array(a.i, np.int64)
            if a.name == "value_ints":
                return np.array(list(a.ints), np.int64)
            if a.name == "value_string":
                return np.array(a.s.decode("utf-8", "replace"), dtype=object)
            if a.name == "value_strings":
                return np.array([s.decode("utf-8", "replace") for s in a.strings], dtype=object)
        raise OpError(f"{where}: Constant has no value attribute")

    def attr(self, a, scope, where):
        from onnx import AttributeProto as A
        t = a.type
        if t == A.FLOAT:
            return float(np.float32(a.f))
        if t == A.INT:
            return int(a.i)
        if t == A.STRING:
            return a.s.decode("utf-8", "replace")
        if t == A.TENSOR:
            return to_array(a.t, where)
        if t == A.SPARSE_TENSOR:
            return self.tensor(a.sparse_tensor)
        if t == A.GRAPH:
            return self.graph(a.g, scope)
        if t == A.FLOATS:
            return [float(np.float32(x)) for x in a.floats]
        if t == A.INTS:
            return [int(x) for x in a.ints]
        if t == A.STRINGS:
            return [s.decode("utf-8", "replace") for s in a.strings]
        if t == A.TENSORS:
            return [to_array(x, where) for x in a.tensors]
        if t == A.GRAPHS:
            return [self.graph(x, scope) for x in a.graphs]
        if t == A.TYPE_PROTO:
            return convert_type(a.tp)
        if t == A.TYPE_PROTOS:
            return [convert_type(x) for x in a.type_protos]
        raise OpError(f"{where}: attribute {a.name!r} has unsupported type {t}")


class _Scope:
    """ONNX names in nested graphs; a name defined again (shadowing) gets a fresh SSA name."""

    def __init__(self, parent, importer):
        self.parent, self.names, self.importer = parent, {}, importer

    def define(self, name, v, where=""):
        v.name = self.importer.fresh(name)
        self.names[name] = v

    def lookup(self, name):
        s = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None


def import_onnx(src, base_dir: str | None = None) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) into kiln's graph IR."""
    model, where = load_model(src, base_dir)
    if model.functions:
        from .onnx_functions import inline_functions
        inline_functions(model)
    return Importer(model, os.path.basename(where) if where[0] != "<" else where).run()
