"""Loop IR -> C. Readable output: each kernel names the graph nodes it came from; model strings
only ever reach the source as sanitized identifiers or escaped comments."""
from __future__ import annotations

import dataclasses
import math
import re

from ..lower.loopir import (Assign, Bin, Call, CallC, Cast, Comment, Const, Dim, For, If, Kernel,
                            Let, Load, Ref, Select, Store, Un, Var, c_calls)

CTYPE = {"f32": "float", "f64": "double", "i8": "int8_t", "i16": "int16_t", "i32": "int32_t",
         "i64": "int64_t", "u8": "uint8_t", "u16": "uint16_t", "u32": "uint32_t",
         "u64": "uint64_t", "bool": "bool"}
FLOATS = ("f32", "f64")

PRELUDE = r"""#include <stdint.h>
#include <stdbool.h>
#include <math.h>
#include <string.h>
#if defined(_WIN32)
#define KILN_EXPORT __declspec(dllexport)
#else
#define KILN_EXPORT __attribute__((visibility("default")))
#endif
/* min/max that propagate NaN, as numpy and ONNX do */
/* (a is NaN, or the smaller/larger) ? a : b -- b when b is NaN, or a and b compare equal */
static inline float kiln_minf(float a, float b) { return (a != a || a < b) ? a : b; }
static inline float kiln_maxf(float a, float b) { return (a != a || a > b) ? a : b; }
static inline double kiln_min(double a, double b) { return (a != a || a < b) ? a : b; }
static inline double kiln_max(double a, double b) { return (a != a || a > b) ? a : b; }
static inline int64_t kiln_floordiv(int64_t a, int64_t b) { int64_t q = a / b; return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q; }
static inline int64_t kiln_floormod(int64_t a, int64_t b) { int64_t r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }
static inline float kiln_roundf(float x) { return nearbyintf(x); }
#ifdef _OPENMP
int omp_get_max_threads(void);
static inline int64_t kiln_threads(void) { return omp_get_max_threads(); }
#else
static inline int64_t kiln_threads(void) { return 1; }
#endif
/* f32 exp, erf and tanh without libm calls: branch-free, so `omp simd` loops vectorize them */
typedef union { float f; int32_t i; } kiln_fbits;
static inline float kiln_expf_in(float x) {
  /* exp(x) for x in [-103.97, 88.72] (no checks): exp(x) = 2^n exp(r), n = round(x / ln 2),
     r = x - n ln 2 (ln 2 in two parts), exp(r) by a polynomial; 2^n as two factors so results
     down to the subnormals stay right */
  float n = (x * 1.44269502162933349609f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.9826495554298162e-4f;
  p = p * r + 1.3946021208539605e-3f;
  p = p * r + 8.33342969417572e-3f;
  p = p * r + 4.1666269302368164e-2f;
  p = p * r + 0.1666666567325592f;
  p = p * r + 0.5f;
  p = p * (r * r) + r + 1.0f;
  int32_t ni = (int32_t)n, n1 = ni >> 1, n2 = ni - n1;
  kiln_fbits s1, s2;
  s1.i = (n1 + 127) << 23;
  s2.i = (n2 + 127) << 23;
  return p * s1.f * s2.f;
}
static inline float kiln_expf(float x) {
  const float hi = 88.72283935546875f, lo = -103.97208404541016f;
  float y = kiln_expf_in(x > hi ? hi : (x < lo ? lo : x));
  y = x > hi ? __builtin_inff() : y;
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}
static inline float kiln_erff(float x) {
  /* |x| < 0.875: x P(x^2); above: 1 - exp(Q(|x|)), Q fitted to log erfc; 1 from |x| = 4 on */
  float t = x < 0 ? -x : x;
  float s = x * x;
  float p = 8.671101386426017e-05f;
  p = p * s + -8.210109081119299e-04f;
  p = p * s + 5.206660833209753e-03f;
  p = p * s + -2.686155028641224e-02f;
  p = p * s + 0.11283732205629349f;
  p = p * s + -0.37612634897232056f;
  p = p * s + 1.128379225730896f;
  float small = x * p;
  float u = t > 4.0f ? 4.0f : t;
  float q = -5.846182915547615e-08f;
  q = q * u + 1.4034065998203005e-06f;
  q = q * u + -1.3194431630836334e-05f;
  q = q * u + 4.472398359212093e-05f;
  q = q * u + 2.4071507505141199e-04f;
  q = q * u + -3.8249497301876545e-03f;
  q = q * u + 2.475942112505436e-02f;
  q = q * u + -0.10810446739196777f;
  q = q * u + -0.6333292722702026f;
  q = q * u + -1.1295722723007202f;
  q = q * u + 1.924469688674435e-04f;
  float big = 1.0f - kiln_expf_in(q);                 /* q in [-17.3, -0.6] */
  big = t >= 4.0f ? 1.0f : big;
  big = x < 0 ? -big : big;
  return t < 0.875f ? small : (x != x ? x : big);
}
static inline float kiln_tanhf(float x) {
  /* |x| < 0.55: x + x^3 P(x^2); above: 1 - 2 / (exp(2|x|) + 1), with the sign of x */
  float t = x < 0 ? -x : x;
  float s = x * x;
  float p = 2.3921895772218704e-03f;
  p = p * s + -8.410617709159851e-03f;
  p = p * s + 2.1781671792268753e-02f;
  p = p * s + -5.395946651697159e-02f;
  p = p * s + 0.13333292305469513f;
  p = p * s + -0.3333333134651184f;
  float small = x + x * s * p;
  float big = 1.0f - 2.0f / (kiln_expf_in(t < 44.0f ? 2.0f * t : 88.0f) + 1.0f);
  big = x < 0 ? -big : big;
  return x == 0.0f ? x : (t < 0.55f ? small : (x != x ? x : big));
}
static inline double kiln_round(double x) { return nearbyint(x); }
"""

# generic math name -> (f32 C name, f64 C name)
MATH = {name: (f"{name}f", name) for name in (
    "exp", "log", "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
    "asinh", "acosh", "atanh", "erf", "floor", "ceil", "fabs", "pow", "fmod", "log1p", "expm1",
    "atan2", "exp2")}
MATH["round"] = ("kiln_roundf", "kiln_round")
for _name in ("exp", "erf", "tanh"):        # f32: kiln's own, so loops over them vectorize
    MATH[_name] = (f"kiln_{_name}f", _name)
MATH["min"] = ("kiln_minf", "kiln_min")
MATH["max"] = ("kiln_maxf", "kiln_max")


def _not_nan_const(e):
    """e when it is a constant number that is not NaN, else None."""
    return e if isinstance(e, Const) and isinstance(e.value, (int, float)) and e.value == e.value else None


def ident(s: str, prefix: str = "n") -> str:
    """A C identifier made from any string (model names are untrusted)."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", s)
    if not out or not (out[0].isalpha() or out[0] == "_"):
        out = f"{prefix}_{out}"
    return out[:60]


def comment(s: str) -> str:
    """Text safe inside a C block comment: no `*/`, no newlines or control characters."""
    s = "".join(c if 32 <= ord(c) < 127 else "?" for c in s)
    return s.replace("*/", "*_/").replace("/*", "/_*")


def literal(v, dtype: str) -> str:
    if dtype == "bool":
        return "true" if v else "false"
    if dtype in FLOATS:
        f = float(v)
        if math.isnan(f):
            return "NAN" if dtype == "f64" else "((float)NAN)"
        if math.isinf(f):
            s = "INFINITY" if dtype == "f64" else "((float)INFINITY)"
            return s if f > 0 else f"(-{s})"
        text = repr(f)
        return f"{text}f" if dtype == "f32" else text
    iv = int(v)
    if -2**31 < iv < 2**31:
        return str(iv)
    if dtype == "u64":
        return f"UINT64_C({iv})"
    if dtype == "i64" or dtype == "u32":
        return f"INT64_C({iv})" if iv != -(2 ** 63) else "INT64_MIN"
    return str(iv)


class CRenderer:
    def expr(self, e) -> str:
        if isinstance(e, Const):
            return literal(e.value, e.dtype)
        if isinstance(e, Var):
            return e.name
        if isinstance(e, Dim):
            return f"d[{e.slot}]"
        if isinstance(e, Load):
            return f"{e.buf}[{self.expr(e.index)}]"
        if isinstance(e, Bin):
            a, b = self.expr(e.a), self.expr(e.b)
            op, dt = e.op, e.a.dtype
            if op in ("min", "max"):
                if dt in FLOATS:
                    const = _not_nan_const(e.b) or _not_nan_const(e.a)
                    if const:
                        # against a number: one compare, the other operand when unordered, so a NaN
                        # still propagates (and vmaxps/vminps do it in one instruction)
                        x = a if const is e.b else b
                        c_ = self.expr(const)
                        return f"({c_} {'<' if op == 'min' else '>'} {x} ? {c_} : {x})"
                    return f"{MATH[op][dt == 'f64']}({a}, {b})"
                return f"(({a}) {'<' if op == 'min' else '>'} ({b}) ? ({a}) : ({b}))"
            if op == "%" and dt in FLOATS:
                return f"{MATH['fmod'][dt == 'f64']}({a}, {b})"
            if op == "floordiv":
                return f"kiln_floordiv({a}, {b})"
            if op == "floormod":
                return f"kiln_floormod({a}, {b})"
            return f"({a} {op} {b})"
        if isinstance(e, Un):
            sym = {"neg": "-", "not": "!", "bitnot": "~"}[e.op]
            return f"({sym}({self.expr(e.a)}))"
        if isinstance(e, Call):
            args = ", ".join(self.expr(a) for a in e.args)
            if e.fn in MATH and e.dtype in FLOATS:
                return f"{MATH[e.fn][e.dtype == 'f64']}({args})"
            if e.fn == "threads":          # the OpenMP team size a parallel loop will get
                return "kiln_threads()"
            if e.fn == "abs":
                return f"({args} < 0 ? -({args}) : ({args}))"
            raise ValueError(f"no C function for {e.fn} on {e.dtype}")
        if isinstance(e, Select):
            return f"({self.expr(e.cond)} ? {self.expr(e.a)} : {self.expr(e.b)})"
        if isinstance(e, Cast):
            return f"(({CTYPE[e.dtype]})({self.expr(e.a)}))"
        if isinstance(e, Ref):
            return f"({e.buf} + {self.expr(e.index)})"
        raise TypeError(f"cannot render {e!r}")

    def stmts(self, stmts, indent: str) -> list[str]:
        out = []
        for s in stmts:
            if isinstance(s, For):
                ext = self.expr(s.extent)
                if s.kind == "parallel":
                    if c_calls(s.body):
                        # calls of C support code (GEMM blocks, conv rows): heavy, split from 2
                        # iterations; handed out dynamically (a core taken by another process
                        # stalls less), in chunks of contiguous iterations, about 8 per thread
                        # (one atomic hand-out per iteration costs more than a conv row)
                        chunk = f"(({ext}) + 8 * kiln_threads() - 1) / (8 * kiln_threads())"
                        out.append(f"{indent}#pragma omp parallel for schedule(dynamic, {chunk}) "
                                   f"if({ext} > 1)")
                    else:
                        # rectangular serial loops right under it join the parallel loop, so a
                        # batch of one (an outer extent of 1) still splits over the threads
                        depth = _collapsible(s)
                        clause = f" collapse({depth})" if depth > 1 else ""
                        out.append(f"{indent}#pragma omp parallel for schedule(static){clause} "
                                   f"if({self.work(s)} > 32768)")
                elif s.kind == "vector":
                    red = "".join(f" reduction({op}:{v})" for op, v in s.reduce)
                    out.append(f"{indent}#pragma omp simd{red}")
                elif s.kind == "unroll":
                    out.append(f"{indent}#pragma GCC unroll 8")
                out.append(f"{indent}for (int64_t {s.var} = {self.expr(s.start)}; {s.var} < {ext}; ++{s.var}) {{")
                out += self.stmts(s.body, indent + "  ")
                out.append(f"{indent}}}")
            elif isinstance(s, Store):
                out.append(f"{indent}{s.buf}[{self.expr(s.index)}] = {self.expr(s.value)};")
            elif isinstance(s, Let):
                out.append(f"{indent}{CTYPE[s.dtype]} {s.var} = {self.expr(s.value)};")
            elif isinstance(s, Assign):
                out.append(f"{indent}{s.var} = {self.expr(s.value)};")
            elif isinstance(s, If):
                out.append(f"{indent}if ({self.expr(s.cond)}) {{")
                out += self.stmts(s.then, indent + "  ")
                if s.orelse:
                    out.append(f"{indent}}} else {{")
                    out += self.stmts(s.orelse, indent + "  ")
                out.append(f"{indent}}}")
            elif isinstance(s, Comment):
                out.append(f"{indent}/* {comment(s.text)} */")
            elif isinstance(s, CallC):
                out.append(f"{indent}{ident(s.fn)}({', '.join(self.expr(a) for a in s.args)});")
            else:
                raise TypeError(f"cannot render {s!r}")
        return out

    def work(self, loop: For) -> str:
        """Iterations of a loop times the work of one (a C expression): the extents of the perfectly
        nested loops under it, times a static estimate of the body where the nest ends (a row of
        a convolution, say, is worth many elements)."""
        parts = []
        s = loop
        while isinstance(s, For):
            parts.append(f"({self.expr(s.extent)})")
            inner = [b for b in s.body if not isinstance(b, Comment)]
            if len(inner) == 1 and isinstance(inner[0], For):
                s = inner[0]
                continue
            est = _static_work(inner)
            if est > 1:
                parts.append(str(est))
            break
        return " * ".join(parts)

    def kernel(self, k: Kernel, name: str | None = None) -> str:
        params = []
        for p in k.params:
            qual = "const " if p.role == "in" else ""
            params.append(f"{qual}{CTYPE[p.dtype]}* restrict {p.name}")
        params.append("const int64_t* restrict d")
        lines = [f"/* {comment(', '.join(k.sources))} */",
                 f"static void {name or k.name}({', '.join(params)}) {{",
                 "  (void)d;"]
        lines += self.stmts(k.body, "  ")
        lines.append("}")
        return "\n".join(lines)


def _static_work(stmts, unknown: int = 16) -> int:
    """A rough count of the statements `stmts` execute (loops of unknown extent count `unknown`
    iterations), capped: it only decides whether a loop is worth threads."""
    total = 0
    for s in stmts:
        if isinstance(s, For):
            n = s.extent.value if isinstance(s.extent, Const) else unknown
            total += max(n, 0) * _static_work(s.body, unknown)
        elif isinstance(s, If):
            total += 1 + max(_static_work(s.then, unknown), _static_work(s.orelse or [], unknown))
        elif not isinstance(s, Comment):
            total += 1
        if total > 1 << 20:
            return 1 << 20
    return total


def _vars(e) -> set:
    """Names of the loop-IR variables an expression reads."""
    if isinstance(e, Var):
        return {e.name}
    out = set()
    if dataclasses.is_dataclass(e):
        for f in dataclasses.fields(e):
            v = getattr(e, f.name)
            for x in (v if isinstance(v, (list, tuple)) else (v,)):
                if dataclasses.is_dataclass(x):
                    out |= _vars(x)
    return out


ROW_MAX = 4096


def _innermost_row(f: For) -> bool:
    """A loop with no loop inside and a constant extent of at most ROW_MAX: collapsed into the
    parallel loop it would index through divisions instead of vectorizing (a Split's rows of 768
    floats copied at a third of the speed)."""
    return (isinstance(f.extent, Const) and f.extent.value <= ROW_MAX and
            not any(isinstance(b, For) for b in f.body))


def _collapsible(loop: For, most: int = 3) -> int:
    """How many loops from `loop` down form a perfect, rectangular nest of serial loops (inner
    bounds not reading outer loop variables) that OpenMP may collapse into one."""
    depth, names, s = 1, {loop.var}, loop
    while depth < most:
        inner = [b for b in s.body if not isinstance(b, Comment)]
        if len(inner) != 1 or not isinstance(inner[0], For) or inner[0].kind != "serial":
            break
        f = inner[0]
        if (_vars(f.extent) | _vars(f.start)) & names:
            break
        if _innermost_row(f):
            break           # a contiguous row stays a plain loop the compiler vectorizes
        depth += 1
        names.add(f.var)
        s = f
    return depth
