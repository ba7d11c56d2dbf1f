"""The loop IR: a kernel is a loop nest over flat buffers.

Expressions are immutable dataclasses with a dtype (kiln dtype names: "f32", "i64", "bool", ...);
statements are loops, stores, local variables and conditionals. Extents may be runtime dims
(`Dim(k)`: slot k of the dims array every kernel receives), so one kernel serves every input shape.

    Kernel k_relu_3 (sources: ['relu1'])
      for i0 in 0..(d[0] * 64) parallel:
        Y[i0] = max(X[i0], 0.0f)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


# --- expressions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Const:
    value: Union[int, float, bool]
    dtype: str = "i64"


@dataclass(frozen=True)
class Var:
    name: str
    dtype: str = "i64"


@dataclass(frozen=True)
class Dim:
    """A runtime dim: slot `slot` of the kernel's dims array."""
    slot: int
    dtype: str = "i64"


@dataclass(frozen=True)
class Load:
    buf: str
    index: "Expr"
    dtype: str


@dataclass(frozen=True)
class Bin:
    op: str            # + - * / % min max < <= > >= == != && || & | ^ << >> floordiv
    a: "Expr"
    b: "Expr"
    dtype: str


@dataclass(frozen=True)
class Un:
    op: str            # neg not bitnot
    a: "Expr"
    dtype: str


@dataclass(frozen=True)
class Call:
    fn: str            # a math function by its generic name: exp, log, sqrt, tanh, erf, pow, ...
    args: tuple
    dtype: str


@dataclass(frozen=True)
class Select:
    cond: "Expr"
    a: "Expr"
    b: "Expr"
    dtype: str


@dataclass(frozen=True)
class Cast:
    a: "Expr"
    dtype: str


@dataclass(frozen=True)
class Ref:
    """The address `&buf[index]`: only as an argument of `CallC` (a pointer into a buffer)."""
    buf: str
    index: "Expr"
    dtype: str


Expr = Union[Const, Var, Dim, Load, Bin, Un, Call, Select, Cast, Ref]


# --- statements ----------------------------------------------------------------------------
@dataclass
class For:
    var: str
    extent: Expr
    body: list
    kind: str = "serial"          # serial | parallel | vector | unroll
    start: Expr = Const(0)
    # vector loops that fold into scalars: (("+", "s"), ("max", "m")): each lane keeps its own
    # partial result, combined after the loop (reassociates: float sums and maxima only)
    reduce: tuple = ()


@dataclass
class Store:
    buf: str
    index: Expr
    value: Expr


@dataclass
class Let:
    """Declare a local: `dtype var = value;` (mutable; `Assign` updates it)."""
    var: str
    value: Expr
    dtype: str


@dataclass
class Assign:
    var: str
    value: Expr


@dataclass
class If:
    cond: Expr
    then: list
    orelse: list = field(default_factory=list)


@dataclass
class Comment:
    text: str


@dataclass
class CallC:
    """Call a C support function (kiln/backend/microkernel.py: GEMM packing, micro-kernels) for its
    effect: `fn(args...);`. Arguments are expressions (ints, floats) or `Ref`s (pointers into the
    kernel's buffers). The backend emits the support code of every function a unit calls; a
    parallel loop whose body makes such calls is taken to have enough work to run in parallel."""
    fn: str
    args: tuple


Stmt = Union[For, Store, Let, Assign, If, Comment, CallC]


def c_calls(stmts) -> set:
    """Names of the C support functions `stmts` call (at any depth)."""
    out = set()
    for s in stmts:
        if isinstance(s, CallC):
            out.add(s.fn)
        elif isinstance(s, For):
            out |= c_calls(s.body)
        elif isinstance(s, If):
            out |= c_calls(s.then) | c_calls(s.orelse)
    return out


@dataclass
class Param:
    name: str
    dtype: str
    role: str                     # "in" | "out"


@dataclass
class Kernel:
    name: str
    params: list                  # [Param]: the buffers it reads and writes, in call order
    body: list                    # [Stmt]
    sources: list                 # names of the graph nodes it computes
    ops: list = field(default_factory=list)

    def __str__(self) -> str:
        return format_kernel(self)


# --- helpers to build expressions -------------------------------------------------------------
def const(v, dtype: str = "i64") -> Const:
    return Const(v, dtype)


def add(a: Expr, b: Expr) -> Expr:
    if isinstance(a, Const) and a.value == 0:
        return b
    if isinstance(b, Const) and b.value == 0:
        return a
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value + b.value, a.dtype)
    return Bin("+", a, b, a.dtype)


def mul(a: Expr, b: Expr) -> Expr:
    if isinstance(a, Const) and a.value == 1:
        return b
    if isinstance(b, Const) and b.value == 1:
        return a
    if (isinstance(a, Const) and a.value == 0) or (isinstance(b, Const) and b.value == 0):
        return Const(0, "i64")
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value * b.value, a.dtype)
    return Bin("*", a, b, a.dtype)


def sub(a: Expr, b: Expr) -> Expr:
    if isinstance(b, Const) and b.value == 0:
        return a
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value - b.value, a.dtype)
    return Bin("-", a, b, a.dtype)


def product(exprs) -> Expr:
    out: Expr = Const(1)
    for e in exprs:
        out = mul(out, e)
    return out


# --- text form -------------------------------------------------------------------------------
def format_expr(e: Expr) -> str:
    if isinstance(e, Const):
        if isinstance(e.value, bool):
            return "true" if e.value else "false"
        return repr(e.value)
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Dim):
        return f"d[{e.slot}]"
    if isinstance(e, Load):
        return f"{e.buf}[{format_expr(e.index)}]"
    if isinstance(e, Bin):
        if e.op in ("min", "max", "floordiv"):
            return f"{e.op}({format_expr(e.a)}, {format_expr(e.b)})"
        return f"({format_expr(e.a)} {e.op} {format_expr(e.b)})"
    if isinstance(e, Un):
        return f"{e.op}({format_expr(e.a)})"
    if isinstance(e, Call):
        return f"{e.fn}({', '.join(format_expr(a) for a in e.args)})"
    if isinstance(e, Select):
        return f"select({format_expr(e.cond)}, {format_expr(e.a)}, {format_expr(e.b)})"
    if isinstance(e, Cast):
        return f"{e.dtype}({format_expr(e.a)})"
    if isinstance(e, Ref):
        return f"&{e.buf}[{format_expr(e.index)}]"
    raise TypeError(f"not a loop IR expression: {e!r}")


def format_stmts(stmts, indent: str = "  ") -> list[str]:
    out = []
    for s in stmts:
        if isinstance(s, For):
            kind = "" if s.kind == "serial" else f" {s.kind}"
            if s.reduce:
                kind += " reduce(" + ", ".join(f"{op}:{v}" for op, v in s.reduce) + ")"
            out.append(f"{indent}for {s.var} in {format_expr(s.start)}..{format_expr(s.extent)}{kind}:")
            out += format_stmts(s.body, indent + "  ")
        elif isinstance(s, Store):
            out.append(f"{indent}{s.buf}[{format_expr(s.index)}] = {format_expr(s.value)}")
        elif isinstance(s, Let):
            out.append(f"{indent}{s.dtype} {s.var} = {format_expr(s.value)}")
        elif isinstance(s, Assign):
            out.append(f"{indent}{s.var} = {format_expr(s.value)}")
        elif isinstance(s, If):
            out.append(f"{indent}if {format_expr(s.cond)}:")
            out += format_stmts(s.then, indent + "  ")
            if s.orelse:
                out.append(f"{indent}else:")
                out += format_stmts(s.orelse, indent + "  ")
        elif isinstance(s, Comment):
            out.append(f"{indent}# {s.text}")
        elif isinstance(s, CallC):
            out.append(f"{indent}call {s.fn}({', '.join(format_expr(a) for a in s.args)})")
        else:
            raise TypeError(f"not a loop IR statement: {s!r}")
    return out


def format_kernel(k: Kernel) -> str:
    params = ", ".join(f"{p.role} {p.name}: {p.dtype}*" for p in k.params)
    head = f"kernel {k.name}({params})  # from {', '.join(k.sources)}"
    return "\n".join([head] + format_stmts(k.body))
