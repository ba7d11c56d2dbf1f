"""PyTorch -> kiln graph IR, directly from ATen (no ONNX in between).

    ep = torch.export.export(module, (x,), dynamic_shapes={"x": {0: torch.export.Dim("N")}})
    g = kiln.import_torch(ep)          # runs ep.run_decompositions() (core ATen) first

- Parameters, buffers and lifted constants become constants (their data copied); user inputs
  become graph inputs named as the signature names them (the forward's argument names).
- Symbolic dims (`torch.export.Dim`) become kiln symbols named after the Dim ("N"); a dim that is
  an expression of symbols (2*N) becomes unknown (`?`), which the runtime resolves per shape.
- Every ATen op goes through one table (`HANDLERS`, in torch_aten.py) to one kiln op or a small
  composition of them.
  SymInt arithmetic (sizes, `x.shape[0] * x.shape[1]`) becomes Shape / Mul / Concat over i64
  vectors, which kiln's type inference and planner evaluate from input shapes alone; reshape and
  expand targets use 0 / -1 / 1 where that keeps them constant.
- An ATen op without a mapping raises `UnsupportedError` (a `KilnError`) naming the op and the
  source line of the model that produced it (from the node's stack trace).

The same converter (`FXImporter`) serves the torch.compile backend (`torch_backend.py`), which
hands it the ATen graph aot_autograd produced for a Dynamo graph.
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np

from ..errors import KilnError, OpError, UnsupportedError
from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ..ir.types import UNKNOWN, TensorType
from ..ops import REGISTRY
from ..passes.infer_types import infer_node

INT64_MAX = 2 ** 63 - 1


# --- dtypes and tensors --------------------------------------------------------------------
def _torch():
    try:
        import torch
        return torch
    except ImportError as e:   # pragma: no cover - only reached when handed torch objects
        raise UnsupportedError("importing PyTorch models needs torch: pip install 'kiln[models]'") from e


_DTYPE_NAMES = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16",
                "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
                "uint16": "u16", "uint32": "u32", "uint64": "u64", "bool": "bool",
                "complex64": "c64", "complex128": "c128", "float8_e4m3fn": "f8e4m3fn",
                "float8_e5m2": "f8e5m2", "float8_e4m3fnuz": "f8e4m3fnuz",
                "float8_e5m2fnuz": "f8e5m2fnuz"}


def kiln_dtype(tdt) -> dtypes.DType:
    """kiln's DType for a torch.dtype."""
    name = str(tdt).replace("torch.", "")
    if name not in _DTYPE_NAMES:
        raise UnsupportedError(f"torch dtype {tdt} has no kiln equivalent")
    return dtypes.from_name(_DTYPE_NAMES[name])


def to_numpy(t, copy: bool = True) -> np.ndarray:
    """A torch tensor's data as numpy (a copy unless copy=False and the memory allows a view)."""
    torch = _torch()
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    dt = kiln_dtype(t.dtype)
    if t.dtype in (torch.bfloat16,) or dt.name.startswith("f8"):
        raw = t.view(torch.int16 if t.dtype == torch.bfloat16 else torch.uint8).numpy()
        a = raw.view(dt.numpy)
    else:
        a = t.numpy()
    return np.array(a, copy=True) if copy else a


# --- source locations ------------------------------------------------------------------------
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n?([^\n]*)')


def source_line(fx_node) -> str:
    """The model's source line behind an FX node: the innermost frame of its stack trace that is
    outside torch itself ("file.py:12 in forward: y = x.cummax(0)"), or "" when none is recorded."""
    st = fx_node.meta.get("stack_trace") or ""
    frames = _FRAME.findall(st)
    if not frames:
        return ""
    torch_dir = os.path.dirname(_torch().__file__) + os.sep
    user = [f for f in frames if not os.path.abspath(f[0]).startswith(torch_dir)]
    path, line, fn, code = (user or frames)[-1]
    return f"{path}:{line} in {fn}: {code.strip()}"


def op_name(target) -> str:
    if isinstance(target, str):
        return target
    name = getattr(target, "__name__", None)
    mod = getattr(target, "__module__", "")
    if hasattr(target, "_schema") or mod.startswith("torch._ops"):
        return str(target)                               # aten.add.Tensor
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    return f"{mod}.{name}" if name else str(target)


# --- symbolic ints ---------------------------------------------------------------------------
class Sym:
    """A SymInt of the program: its value (int, or sympy expression) and, once asked for, the
    kiln i64[1] value that computes it at run time."""

    def __init__(self, expr, value: Value | None = None):
        self.expr = expr
        self.value = value

    @property
    def static(self) -> int | None:
        e = self.expr
        if isinstance(e, (int, np.integer)):
            return int(e)
        if getattr(e, "is_Integer", False):
            return int(e)
        return None


def _expr_of(x):
    """The sympy expression (or int) of a SymInt / int."""
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    node = getattr(x, "node", None)
    if node is not None and hasattr(node, "expr"):
        e = node.expr
        return int(e) if getattr(e, "is_Integer", False) else e
    return None


def _is_symint(x) -> bool:
    return type(x).__name__ == "SymInt"


class Multi(list):
    """The tuple result of a multi-output ATen op (indexed by operator.getitem)."""


# --- the converter ---------------------------------------------------------------------------
class FXImporter:
    """Builds a kiln Graph from an FX graph of core ATen ops.

    Callers bind every placeholder first (`bind_input`, `bind_const`, `bind_symint`), then call
    `convert(output_args, output_names)`."""

    def __init__(self, gm, name: str = "main", source: str = "<torch>"):
        self.gm = gm
        self.graph = Graph(name)
        self.source = source
        self.env: dict[Any, Any] = {}            # fx.Node -> Value | Sym | Multi | python value
        self.taken: set[str] = set()
        self.known: dict = {}                    # symbolic shape values for type inference
        self.symbols: dict = {}                  # sympy Symbol -> kiln symbol name
        self.sym_src: dict = {}                  # sympy Symbol -> (input Value, axis)
        self.sym_vals: dict = {}                 # sympy Symbol -> kiln i64[1] Value
        self.small_consts: dict = {}
        self.tensor_consts: dict = {}            # (data_ptr, shape, stride, dtype) -> Value
        self.cur = None                          # the fx.Node being converted
        self.shape_env = None                    # torch's ShapeEnv (names of Dims)

    # --- names -----------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_./-]", "_", base) or "v"
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def where(self, fx_node=None) -> str:
        n = fx_node if fx_node is not None else self.cur
        if n is None:
            return self.source
        loc = source_line(n)
        return f"{self.source}: node {n.name!r} ({op_name(n.target)})" + (f" at {loc}" if loc else "")

    # --- placeholders ----------------------------------------------------------------------
    def symbol_name(self, sym) -> str:
        if sym in self.symbols:
            return self.symbols[sym]
        name = None
        try:
            env = self.shape_env
            if env is not None:
                for src in env.var_to_sources.get(sym, []):
                    debug = env.source_name_to_debug_name.get(src.name)
                    if debug:
                        name = debug
                        break
        except Exception:
            name = None
        name = re.sub(r"\W", "_", name or str(sym))
        if name[0].isdigit():
            name = "s" + name
        self.symbols[sym] = name
        return name

    def type_of(self, val) -> Any:
        """A kiln TensorType from a FakeTensor (symbolic dims named, expressions unknown)."""
        torch = _torch()
        if not isinstance(val, torch.Tensor):
            return UNKNOWN
        dims = []
        for d in val.shape:
            e = _expr_of(d)
            if isinstance(e, int):
                dims.append(e)
            elif e is not None and getattr(e, "is_Symbol", False):
                dims.append(self.symbol_name(e))
            else:
                dims.append(None)
        return TensorType(kiln_dtype(val.dtype), tuple(dims))

    def bind_input(self, fx_node, name: str) -> Value:
        val = fx_node.meta.get("val")
        torch = _torch()
        if not isinstance(val, torch.Tensor):
            raise UnsupportedError(f"{self.source}: input {name!r} is a {type(val).__name__}, "
                                   "not a tensor; kiln takes tensor inputs only")
        v = Value(self.fresh(name), self.type_of(val))
        self.graph.inputs.append(v)
        self.env[fx_node] = v
        for axis, d in enumerate(val.shape):
            e = _expr_of(d)
            if e is not None and getattr(e, "is_Symbol", False) and e not in self.sym_src:
                self.sym_src[e] = (v, axis)
        return v

    def bind_const(self, fx_node, name: str, tensor) -> Value:
        key = None
        try:
            key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), str(tensor.dtype))
        except Exception:
            pass
        if key is not None and key[0] and key in self.tensor_consts:
            v = self.tensor_consts[key]
        else:
            data = to_numpy(tensor)
            v = self.graph.add_const(self.fresh(name), data)
            if key is not None and key[0]:
                self.tensor_consts[key] = v
        self.env[fx_node] = v
        return v

    def bind_symint(self, fx_node, value=None):
        val = fx_node.meta.get("val", value)
        self.env[fx_node] = Sym(_expr_of(val))

    def bind_value(self, fx_node, value):
        self.env[fx_node] = value

    # --- building --------------------------------------------------------------------------
    def const(self, data, hint: str = "c", dtype=None) -> Value:
        a = np.asarray(data, dtype=dtype)
        small = a.size <= 16 and a.dtype != object
        key = (a.dtype.str, a.shape, a.tobytes()) if small else None
        if key is not None and key in self.small_consts:
            return self.small_consts[key]
        v = self.graph.add_const(self.fresh(hint), a)
        if key is not None:
            self.small_consts[key] = v
        return v

    def i64(self, values) -> Value:
        return self.const(np.asarray(values, np.int64), "shape" if np.ndim(values) else "k")

    def emit(self, op: str, inputs, attrs=None, n_out: int = 1, hint: str | None = None):
        """Append a node; returns its output (or the list of outputs when n_out != 1)."""
        d = REGISTRY.get(op)
        attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
        ins = list(inputs)
        while ins and ins[-1] is None:
            ins.pop()
        try:
            d.resolve_attrs(attrs, op)           # validates; the node keeps what was given
            d.check_arity(len(ins), n_out, op)
        except KilnError as e:
            raise OpError(f"{self.where()}: {e}") from None
        base = hint or (self.cur.name if self.cur is not None else op)
        outs = [Value(self.fresh(base)) for _ in range(n_out)]
        node = Node(op, ins, outs, attrs, self.cur.name if self.cur is not None else "")
        self.graph.nodes.append(node)
        infer_node(node, REGISTRY, known=self.known)
        return outs[0] if n_out == 1 else outs

    def dtype(self, v: Value) -> dtypes.DType | None:
        t = v.type
        return t.dtype if isinstance(t, TensorType) else None

    def rank(self, v: Value) -> int | None:
        t = v.type
        return t.rank if isinstance(t, TensorType) else None

    def cast(self, v: Value, dt: dtypes.DType) -> Value:
        if self.dtype(v) == dt:
            return v
        return self.emit("Cast", [v], {"to": dt.onnx_id})

    # --- arguments -------------------------------------------------------------------------
    def val(self, x):
        """The FakeTensor / SymInt / python value torch recorded for an FX argument."""
        if hasattr(x, "meta"):
            return x.meta.get("val")
        return x

    def out_val(self):
        return self.cur.meta.get("val")

    def out_dtype(self) -> dtypes.DType:
        v = self.out_val()
        if isinstance(v, (list, tuple)):
            v = v[0]
        return kiln_dtype(v.dtype)

    def get(self, x):
        """What an FX argument converted to (Value, Sym, Multi, or python data)."""
        if hasattr(x, "op") and hasattr(x, "meta"):
            if x not in self.env:
                raise KilnError(f"{self.where()}: argument {x.name!r} is not converted yet")
            return self.env[x]
        if isinstance(x, (list, tuple)):
            return type(x)(self.get(e) for e in x)
        if _is_symint(x):
            return Sym(_expr_of(x))
        return x

    def tensor(self, x, dtype: dtypes.DType | None = None) -> Value:
        """An FX argument as a kiln tensor Value (python scalars and SymInts as 0-d constants or
        values), cast to dtype when given."""
        g = self.get(x)
        if isinstance(g, Value):
            return self.cast(g, dtype) if dtype is not None else g
        if isinstance(g, Sym):
            s = g.static
            if s is None:
                v = self.emit("Squeeze", [self.sym_value(g), self.i64([0])])
                return self.cast(v, dtype) if dtype is not None else v
            g = s
        if isinstance(g, (bool, int, float, np.number)):
            if dtype is None:
                dtype = dtypes.boolean if isinstance(g, bool) else dtypes.i64 if isinstance(g, int) \
                    else dtypes.f32
            return self.const(np.asarray(g).astype(dtype.numpy), "scalar")
        if g is None:
            raise OpError(f"{self.where()}: expected a tensor argument, got None")
        raise OpError(f"{self.where()}: cannot use a {type(g).__name__} as a tensor")

    def sym_value(self, s: Sym) -> Value:
        """The i64[1] value of a SymInt."""
        if s.value is not None:
            return s.value
        st = s.static
        if st is not None:
            s.value = self.i64([st])
            return s.value
        e = s.expr
        if getattr(e, "is_Symbol", False):
            if e not in self.sym_vals:
                if e not in self.sym_src:
                    raise UnsupportedError(f"{self.where()}: symbolic size {e} is not a dim of any "
                                           "input; kiln cannot compute it")
                v, axis = self.sym_src[e]
                self.sym_vals[e] = self.emit("Shape", [v], {"start": axis, "end": axis + 1},
                                             hint=f"{self.symbol_name(e)}_size")
            s.value = self.sym_vals[e]
            return s.value
        s.value = self.sym_expr(e)
        return s.value

    def sym_expr(self, e) -> Value:
        """An i64[1] value computing a sympy expression of input symbols (sums, products,
        floor division) -- for SymInts that reached us without their FX node."""
        import sympy
        if e.is_Integer:
            return self.i64([int(e)])
        if e.is_Symbol:
            return self.sym_value(Sym(e))
        if isinstance(e, sympy.Mul):
            acc = None
            for a in e.args:
                v = self.sym_expr(a)
                acc = v if acc is None else self.emit("Mul", [acc, v])
            return acc
        if isinstance(e, sympy.Add):
            acc = None
            for a in e.args:
                v = self.sym_expr(a)
                acc = v if acc is None else self.emit("Add", [acc, v])
            return acc
        if type(e).__name__ == "FloorDiv":
            return self.emit("Div", [self.sym_expr(e.args[0]), self.sym_expr(e.args[1])])
        raise UnsupportedError(f"{self.where()}: symbolic size expression {e} is not supported")

    def int_list(self, items):
        """A list of ints / SymInts as ("static", [ints]) or ("dynamic", i64[k] Value)."""
        g = self.get(list(items))
        static = []
        for x in g:
            if isinstance(x, Sym):
                s = x.static
                if s is None:
                    break
                static.append(s)
            elif isinstance(x, (int, np.integer)):
                static.append(int(x))
            else:
                break
        else:
            return "static", static
        pieces, run = [], []
        for x in g:
            s = x.static if isinstance(x, Sym) else int(x) if isinstance(x, (int, np.integer)) else None
            if s is not None:
                run.append(s)
                continue
            if run:
                pieces.append(self.i64(run))
                run = []
            if isinstance(x, Sym):
                pieces.append(self.sym_value(x))
            else:
                raise OpError(f"{self.where()}: expected ints, got {type(x).__name__}")
        if run:
            pieces.append(self.i64(run))
        v = pieces[0] if len(pieces) == 1 else self.emit("Concat", pieces, {"axis": 0})
        return "dynamic", v

    def exprs(self, items) -> list:
        """The sympy expression / int of each entry of an int list (None when unknown)."""
        out = []
        for x in items:
            if hasattr(x, "meta"):
                out.append(_expr_of(x.meta.get("val")))
            else:
                out.append(_expr_of(x))
        return out

    def in_shape_exprs(self, x) -> list | None:
        val = self.val(x)
        if val is None or not hasattr(val, "shape"):
            return None
        return [_expr_of(d) for d in val.shape]

    # --- conversion ------------------------------------------------------------------------
    def run_node(self, n):
        self.cur = n
        if n.op == "get_attr":
            t = getattr_path(self.gm, n.target)
            torch = _torch()
            if isinstance(t, torch.Tensor):
                self.bind_const(n, n.target, t)
                return
            raise UnsupportedError(f"{self.where(n)}: attribute {n.target!r} is a "
                                   f"{type(t).__name__}, not a tensor")
        if n.op != "call_function":
            raise UnsupportedError(f"{self.where(n)}: FX {n.op} nodes are not supported")
        name = op_name(n.target)
        from .torch_aten import HANDLERS        # the ATen table (imports this module)
        h = HANDLERS.get(name)
        if h is None and hasattr(n.target, "overloadpacket"):
            h = HANDLERS.get(str(n.target.overloadpacket) + ".*")
        if h is None:
            loc = source_line(n)
            kind = "ATen op" if name.startswith("aten.") else "op"
            raise UnsupportedError(
                f"{self.source}: {kind} {name} is not supported by kiln (node {n.name!r}"
                + (f", from {loc}" if loc else "") + ")")
        a = bind_args(n)
        try:
            r = h(self, a)
        except KilnError:
            raise
        except Exception as e:
            raise OpError(f"{self.where(n)}: cannot convert: {type(e).__name__}: {e}") from e
        self.env[n] = r
        self.check_types(n, r)

    def check_types(self, n, r):
        """Compare kiln's inferred shape with the one torch recorded: a mismatch is a converter
        bug, better caught here than as wrong numbers later. Fill what kiln left unknown."""
        val = n.meta.get("val")
        if not isinstance(r, Value) or val is None:
            return
        torch = _torch()
        if not isinstance(val, torch.Tensor):
            return
        want = self.type_of(val)
        have = r.type
        if isinstance(have, TensorType) and have.shape is not None:
            if len(have.shape) != len(want.shape) or any(
                    isinstance(a, int) and isinstance(b, int) and a != b
                    for a, b in zip(have.shape, want.shape)):
                raise OpError(f"{self.where(n)}: kiln infers shape {have} but torch has {want}")
            if have.dtype is not None and have.dtype != want.dtype:
                raise OpError(f"{self.where(n)}: kiln infers dtype {have} but torch has {want}")
        if r.producer is not None:
            from ..passes.infer_types import merge_types
            r.type = merge_types(r.type, want)

    def convert(self, fx_graph, outputs, output_names) -> Graph:
        for n in fx_graph.nodes:
            if n.op in ("placeholder", "output") or n in self.env:
                continue
            self.run_node(n)
        self.cur = None
        return self.finish(outputs, output_names)

    def finish(self, outputs, output_names) -> Graph:
        g = self.graph
        used_names = set()
        for x, name in zip(outputs, output_names):
            r = self.get(x)
            if isinstance(r, Sym):
                r = self.sym_value(r)
            if isinstance(r, (bool, int, float)):
                r = self.tensor(r)
            if not isinstance(r, Value):
                raise UnsupportedError(f"{self.source}: output {name!r} is a {type(r).__name__}; "
                                       "kiln returns tensors only")
            if r.producer is None or r in g.outputs:
                r = self.emit("Identity", [r], hint=name)
            self.taken.discard(r.name)
            r.name = name if name not in used_names else self.fresh(name)
            self.taken.add(r.name)
            used_names.add(r.name)
            g.outputs.append(r)
        prune(g)
        return g


def prune(g: Graph) -> None:
    """Drop nodes and constants nothing reads (the importer makes some it may not need)."""
    live = {v for v in g.outputs}
    keep = []
    for n in reversed(g.nodes):
        if any(v is not None and v in live for v in n.outputs):
            keep.append(n)
            live.update(v for v in n.inputs if v is not None)
    g.nodes = keep[::-1]
    g.constants = [c for c in g.constants if c in live or c.feedable]


def getattr_path(obj, target: str):
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def find_shape_env(fx_graph):
    """The ShapeEnv behind the graph's symbolic sizes (None when every size is static)."""
    for n in fx_graph.nodes:
        val = n.meta.get("val")
        dims = list(getattr(val, "shape", ())) + ([val] if _is_symint(val) else [])
        for d in dims:
            if _is_symint(d):
                return d.node.shape_env
    return None


def bind_args(n) -> dict:
    """An FX call's arguments by schema name, with the schema's defaults filled in."""
    schema = getattr(n.target, "_schema", None)
    if schema is None:
        return {"args": list(n.args), **n.kwargs}
    out = {}
    pos = list(n.args)
    for i, arg in enumerate(schema.arguments):
        if i < len(pos) and not arg.kwarg_only:
            out[arg.name] = pos[i]
        elif arg.name in n.kwargs:
            out[arg.name] = n.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


# --- ExportedProgram ---------------------------------------------------------------------------
def _output_names(n: int, out_spec) -> list[str]:
    """Names for the program's outputs: dict keys / dataclass fields where the output structure
    has them, else "output" (one) or "output_0", "output_1", ..."""
    names = None
    try:
        from torch.utils import _pytree as pytree
        leaves = pytree.tree_unflatten(list(range(n)), out_spec)
        paths, _ = pytree.tree_flatten_with_path(leaves)
        keyed = []
        for path, _leaf in paths:
            parts = []
            for k in path:
                key = getattr(k, "key", None)
                if isinstance(key, str):
                    parts.append(key)
                elif hasattr(k, "name"):
                    parts.append(str(k.name))
                else:
                    parts.append(str(getattr(k, "idx", key)))
            keyed.append("_".join(parts))
        if all(re.match(r"^[A-Za-z_]", s) for s in keyed) and len(set(keyed)) == n:
            names = keyed
    except Exception:
        names = None
    if names is None:
        names = ["output"] if n == 1 else [f"output_{i}" for i in range(n)]
    return names


def import_torch(exported_program, *, decompose: bool = True, output_names=None,
                 name: str | None = None) -> Graph:
    """Convert a `torch.export` ExportedProgram into kiln's graph IR.

    decompose: run `exported_program.run_decompositions()` first (core ATen); pass False for a
    program that is already decomposed. output_names: names for the graph outputs (default: from
    the output structure, else "output" / "output_0", ...)."""
    torch = _torch()
    ep = exported_program
    if not isinstance(ep, torch.export.ExportedProgram):
        raise KilnError(f"import_torch takes a torch.export.ExportedProgram, got {type(ep).__name__}")
    if decompose:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            ep = ep.run_decompositions()
    gm = ep.graph_module
    sig = ep.graph_signature
    from torch.export.graph_signature import InputKind, OutputKind
    imp = FXImporter(gm, name or "main", source=name or type(ep).__name__)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    imp.shape_env = find_shape_env(gm.graph)
    specs = sig.input_specs
    state = ep.state_dict
    consts = ep.constants
    user = [(n, s) for n, s in zip(placeholders, specs) if s.kind == InputKind.USER_INPUT]
    for n, s in user:                        # inputs first: their symbols name the dims
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor):
            imp.bind_input(n, s.arg.name)
        elif _is_symint(val) or isinstance(val, int):
            imp.bind_symint(n)
        else:
            imp.bind_value(n, val)
    for n, s in zip(placeholders, specs):
        if s.kind == InputKind.USER_INPUT:
            continue
        if s.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            t = state[s.target] if s.target in state else consts[s.target]
            if isinstance(t, torch.Tensor):
                imp.bind_const(n, s.target, t)
            else:
                imp.bind_value(n, t)
        else:
            raise UnsupportedError(f"{imp.source}: input kind {s.kind.name} ({s.arg.name}) "
                                   "is not supported")
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    flat = list(out_node.args[0])
    user_out = [x for x, s in zip(flat, sig.output_specs) if s.kind == OutputKind.USER_OUTPUT]
    if len(user_out) != len(flat):
        raise UnsupportedError(f"{imp.source}: the program mutates its inputs or buffers "
                               "(in-place updates); kiln compiles pure functions only")
    names = list(output_names) if output_names is not None else \
        _output_names(len(user_out), ep.call_spec.out_spec)
    if len(names) != len(user_out):
        raise KilnError(f"{imp.source}: {len(user_out)} outputs but {len(names)} output_names")
    g = imp.convert(gm.graph, user_out, names)
    g.meta["source"] = name or "torch.export"
    g.meta["producer"] = f"torch {torch.__version__}"
    return g


def export_module(module, example_inputs, dynamic_shapes=None, strict: bool = False):
    """torch.export.export of module in inference mode (no_grad), as kiln.compile does it."""
    torch = _torch()
    if not isinstance(example_inputs, tuple):
        example_inputs = tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,)
    args = tuple(torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
                 for x in example_inputs)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            return torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=strict)
    except KilnError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise UnsupportedError(f"torch.export could not export {type(module).__name__}: "
                               f"{type(e).__name__}: {msg[0] if msg else ''}") from e
