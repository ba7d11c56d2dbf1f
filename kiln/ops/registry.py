"""The op registry: every op is one `OpDef`, defined once, holding everything about it.

An op module defines its ops with the `op` decorator (or builds OpDefs in a loop) and the
registry is built explicitly from the list of modules in `kiln/ops/__init__.py`: every OpDef found
at module level, or in a module-level list named `OPS`, is registered. A name defined twice is an
error.

    @op("Gemm", inputs=["A", "B", "C?"], attrs=dict(alpha=1.0, beta=1.0, transA=0, transB=0),
        infer=infer_gemm)
    def gemm(A, B, C, *, alpha, beta, transA, transB):
        ...numpy...
        return Y

Signature conventions
- `inputs`/`outputs` name the operands: "X" required, "B?" optional, "inputs*" variadic (last).
- `attrs` maps each attribute to its default; `REQUIRED` marks one that must be given.
- The reference gets the inputs positionally (a missing optional input is None, a variadic one
  arrives as the remaining positional arguments) and every attribute as a keyword. It returns one
  array or a tuple of outputs (all of them; unused ones are dropped). Sequences are Python lists,
  an empty optional is None. A subgraph attribute arrives as a `Subgraph`: call it with the
  subgraph's inputs to get a list of its outputs. A reference that takes a keyword `n_outputs`
  receives the node's number of outputs.
- `infer(ctx: InferContext) -> list[Type]` gives the output types (see infer.py for helpers).
- `lower(ctx: LowerCtx) -> [Stmt]` gives the op's loop nest (kiln/lower/context.py); an
  elementwise op may give `scalar(ctx, *exprs) -> Expr` instead and share the generic loop nest.
  Without either, the op runs on the host through its reference.
- `upgrade(node: ImportedNode)` rewrites a node from an older opset into this op's current form
  (attributes that became inputs, changed defaults). It runs in the ONNX importer.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import OpError, UnsupportedError


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


@dataclass
class OpDef:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]
    reference: Callable
    infer: Callable | None = None
    upgrade: Callable | None = None
    domain: str = ""                       # ONNX domain the op is imported from
    doc: str = ""
    lower: Callable | None = None          # lower(ctx: LowerCtx) -> [loop IR Stmt]
    scalar: Callable | None = None         # elementwise ops: scalar(ctx, *exprs) -> loop IR Expr
    wants_n_outputs: bool = field(default=False, init=False)

    def __post_init__(self):
        self.inputs, self.outputs = tuple(self.inputs), tuple(self.outputs)
        try:
            self.wants_n_outputs = "n_outputs" in inspect.signature(self.reference).parameters
        except (TypeError, ValueError):
            self.wants_n_outputs = False
        if not self.doc:
            self.doc = (inspect.getdoc(self.reference) or "").split("\n")[0]

    # --- arity ----------------------------------------------------------------------------
    @property
    def variadic_inputs(self) -> bool:
        return bool(self.inputs) and self.inputs[-1].endswith("*")

    @property
    def variadic_outputs(self) -> bool:
        return bool(self.outputs) and self.outputs[-1].endswith("*")

    def min_inputs(self) -> int:
        n = 0
        for i, s in enumerate(self.inputs):
            if not s.endswith(("?", "*")):
                n = i + 1
        return n

    def max_inputs(self) -> float:
        return float("inf") if self.variadic_inputs else len(self.inputs)

    def max_outputs(self) -> float:
        return float("inf") if self.variadic_outputs else len(self.outputs)

    def check_arity(self, n_in: int, n_out: int, where: str):
        if n_in < self.min_inputs() or n_in > self.max_inputs():
            raise OpError(f"{where}: {self.name} takes {self._arity(self.inputs)} inputs, got {n_in}")
        if n_out < 1 or n_out > self.max_outputs():
            raise OpError(f"{where}: {self.name} has {self._arity(self.outputs)} outputs, got {n_out}")

    @staticmethod
    def _arity(names) -> str:
        lo = sum(1 for s in names if not s.endswith(("?", "*")))
        if names and names[-1].endswith("*"):
            return f"at least {lo}"
        return str(lo) if lo == len(names) else f"{lo} to {len(names)}"

    # --- attributes -----------------------------------------------------------------------
    def resolve_attrs(self, given: dict[str, Any], where: str) -> dict[str, Any]:
        """Given attributes plus defaults; unknown or missing required ones are errors."""
        unknown = sorted(set(given) - set(self.attrs))
        if unknown:
            raise OpError(f"{where}: {self.name} has no attribute {', '.join(map(repr, unknown))}"
                          f" (known: {', '.join(sorted(self.attrs)) or 'none'})")
        out = {}
        for k, default in self.attrs.items():
            if k in given:
                out[k] = given[k]
            elif default is REQUIRED:
                raise OpError(f"{where}: {self.name} needs attribute {k!r}")
            else:
                out[k] = default
        return out


def op(name: str, inputs=(), outputs=("Y",), attrs=None, infer=None, upgrade=None, domain="",
       lower=None, scalar=None):
    """Decorator: turn a numpy reference function into an OpDef."""
    def wrap(fn):
        return OpDef(name, tuple(inputs), tuple(outputs), dict(attrs or {}), fn, infer, upgrade,
                     domain, lower=lower, scalar=scalar)
    return wrap


class Registry:
    def __init__(self):
        self.ops: dict[str, OpDef] = {}
        self.by_onnx: dict[tuple[str, str], OpDef] = {}

    def add(self, d: OpDef, origin: str = ""):
        if d.name in self.ops:
            raise AssertionError(f"op {d.name} defined twice ({origin})")
        if d.infer is None:
            raise AssertionError(f"op {d.name} ({origin}) has no type inference")
        self.ops[d.name] = d
        onnx_name = d.name.split(".")[-1] if d.domain else d.name
        self.by_onnx[(d.domain, onnx_name)] = d

    def add_module(self, mod):
        found = [v for v in vars(mod).values() if isinstance(v, OpDef)]
        found += list(getattr(mod, "OPS", []))
        seen = set()
        for d in found:
            if id(d) not in seen:
                seen.add(id(d))
                self.add(d, mod.__name__)

    def get(self, name: str) -> OpDef:
        try:
            return self.ops[name]
        except KeyError:
            raise UnsupportedError(f"unknown op {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.ops

    def __iter__(self):
        return iter(sorted(self.ops.values(), key=lambda d: d.name))

    def __len__(self):
        return len(self.ops)
