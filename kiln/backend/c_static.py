"""The C entry points of a compiled model for callers without Python (kiln.h, kiln_runtime.c).

At compile time the model is planned once for fixed shapes (symbolic dims bound by `c_shapes`,
1 by default): the runtime dims, the arena offsets and each weight's offset inside the
safetensors data section are baked into `kiln_static_run`, which fills the buffer table and calls
`kiln_run`. Models with host ops or data-dependent shapes get stubs that report -1.
"""
from __future__ import annotations

import numpy as np

from ..ir.types import TensorType
from ..runtime.plan import NoStaticPlan, static_plan
from ..runtime.weights import layout
from .c import PRELUDE


def c_string(s: str) -> str:
    """A C string literal for any text: everything but plain characters as octal escapes."""
    out = []
    for b in s.encode("utf-8"):
        ch = chr(b)
        out.append(ch if (ch.isalnum() or ch in " _-.:/[]()") and b < 128 else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def static_entry(program, c_shapes: dict | None = None) -> str:
    g = program.graph
    why = _why_not(program, g)
    plan = None
    if why is None:
        shapes_in = {}
        for v in g.inputs:
            shapes_in[v] = tuple((c_shapes or {}).get(d, 1) if isinstance(d, str) else d
                                 for d in v.type.shape)
        try:
            plan = static_plan(program, shapes_in)
        except (NoStaticPlan, Exception) as e:   # any planning failure: no C entry, not an error
            why = f"no static plan: {e}"
    if plan is None:
        return PRELUDE + f"""/* no C entry: {why.replace('*/', '*_/')} */
KILN_EXPORT int64_t kiln_static_arena_bytes(void) {{ return -1; }}
KILN_EXPORT int kiln_static_run(const void* const* in, void* const* out, void* arena, const char* w) {{
  (void)in; (void)out; (void)arena; (void)w; return -1;
}}
KILN_EXPORT int kiln_static_io_count(int o) {{ (void)o; return 0; }}
KILN_EXPORT const char* kiln_static_io_name(int o, int i) {{ (void)o; (void)i; return 0; }}
KILN_EXPORT const char* kiln_static_io_dtype(int o, int i) {{ (void)o; (void)i; return 0; }}
KILN_EXPORT int kiln_static_io_rank(int o, int i) {{ (void)o; (void)i; return -1; }}
KILN_EXPORT const int64_t* kiln_static_io_shape(int o, int i) {{ (void)o; (void)i; return 0; }}
KILN_EXPORT int64_t kiln_static_io_bytes(int o, int i) {{ (void)o; (void)i; return -1; }}
"""
    weights = layout(g.weights())
    ins = {v: i for i, v in enumerate(g.inputs)}
    outs = {v: i for i, v in enumerate(g.outputs)}
    fill = []
    for v, bid in sorted(program.buffers.items(), key=lambda kv: kv[1]):
        if v in ins:
            fill.append(f"  b[{bid}] = (void*)in[{ins[v]}];")
        elif v in outs:
            fill.append(f"  b[{bid}] = out[{outs[v]}];")
        elif v.name in weights:
            fill.append(f"  b[{bid}] = (void*)(w + {weights[v.name]});")
        else:
            fill.append(f"  b[{bid}] = (char*)arena + {plan.offsets[v]};")
    dims = ", ".join(str(int(x)) for x in plan.dims)
    lines = [PRELUDE, "KILN_EXPORT int kiln_run(void** b, const int64_t* d);",
             f"static const int64_t kiln_static_dims[] = {{{dims}}};",
             f"KILN_EXPORT int64_t kiln_static_arena_bytes(void) {{ return {plan.arena_bytes}; }}",
             "KILN_EXPORT int kiln_static_run(const void* const* in, void* const* out, void* arena, const char* w) {",
             f"  void* b[{max(len(program.buffers), 1)}];", *fill,
             "  return kiln_run(b, kiln_static_dims);", "}"]
    lines += _io_tables(g, plan)
    return "\n".join(lines) + "\n"


def _why_not(program, g) -> str | None:
    if program.host:
        return "the model has host ops"
    for v in g.inputs:
        if not isinstance(v.type, TensorType) or v.type.shape is None or None in v.type.shape:
            return f"input {v.name!r} has an unknown rank or dim"
    for v in g.outputs:
        if v not in program.buffers or v.producer is None:
            return f"output {v.name!r} is not computed by a kernel"
    if len(set(g.outputs)) != len(g.outputs):
        return "an output is listed twice"
    return None


def _io_tables(g, plan) -> list[str]:
    lines = []
    for kind, values in (("in", g.inputs), ("out", g.outputs)):
        names = ", ".join(c_string(v.name) for v in values) or "0"
        dts = ", ".join(c_string(v.type.dtype.name) for v in values) or "0"
        ranks = ", ".join(str(len(plan.shapes[v])) for v in values) or "0"
        nbytes = ", ".join(str(int(np.prod(plan.shapes[v], dtype=np.int64)) * v.type.dtype.numpy.itemsize)
                           for v in values) or "0"
        for i, v in enumerate(values):
            dims = ", ".join(str(d) for d in plan.shapes[v]) or "0"
            lines.append(f"static const int64_t kiln_{kind}_shape_{i}[] = {{{dims}}};")
        shapes = ", ".join(f"kiln_{kind}_shape_{i}" for i in range(len(values))) or "0"
        lines += [f"static const char* const kiln_{kind}_names[] = {{{names}}};",
                  f"static const char* const kiln_{kind}_dtypes[] = {{{dts}}};",
                  f"static const int kiln_{kind}_ranks[] = {{{ranks}}};",
                  f"static const int64_t kiln_{kind}_bytes[] = {{{nbytes}}};",
                  f"static const int64_t* const kiln_{kind}_shapes[] = {{{shapes}}};"]
    n_in, n_out = len(g.inputs), len(g.outputs)
    for fn, ret, arr in (("name", "const char*", "names"), ("dtype", "const char*", "dtypes"),
                         ("rank", "int", "ranks"), ("shape", "const int64_t*", "shapes"),
                         ("bytes", "int64_t", "bytes")):
        lines.append(f"KILN_EXPORT {ret} kiln_static_io_{fn}(int o, int i) {{ "
                     f"return o ? (i >= 0 && i < {n_out} ? kiln_out_{arr}[i] : 0) "
                     f": (i >= 0 && i < {n_in} ? kiln_in_{arr}[i] : 0); }}")
    lines.append(f"KILN_EXPORT int kiln_static_io_count(int o) {{ return o ? {n_out} : {n_in}; }}")
    return lines
