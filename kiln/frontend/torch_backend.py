"""`torch.compile(model, backend="kiln")`: kiln as a TorchDynamo backend.

Registered through the `torch_dynamo_backends` entry point (pyproject.toml), so torch finds it by
name without `import kiln` importing torch. For each FX graph Dynamo hands over:

1. aot_autograd (under no_grad: an inference graph) functionalizes it and decomposes it to core
   ATen, the same op set `torch.export` gives; parameters and buffers arrive as graph inputs.
2. `FXImporter` (torch_import.py) converts that ATen graph with parameters and buffers as
   constants (their values when the graph is compiled: weights are frozen into the compiled code),
   user tensors as inputs and Dynamo's symbolic sizes as kiln symbols.
3. `kiln.compile` builds it; the result is cached in-process by IR text and weight digest (the C
   library is also cached on disk by kiln's toolchain), so the same graph compiles once.
4. At run time contiguous CPU tensors go in as numpy views (`tensor.numpy()`, no copy) and the
   outputs come back as `torch.from_numpy` views of kiln's freshly allocated output arrays.

Anything kiln cannot compile (an ATen op without a mapping, autograd through the inputs, a
data-dependent shape) falls back to running the graph eagerly, with one `KilnFallbackWarning`
per distinct reason. `stats` counts graphs, compiles, cache hits and fallbacks.
"""
from __future__ import annotations

import hashlib
import threading
import warnings
from typing import Any

import numpy as np

from ..errors import KilnError


class KilnFallbackWarning(UserWarning):
    """A graph torch.compile handed to kiln runs eagerly in PyTorch instead."""


stats = {"graphs": 0, "compiled": 0, "cache_hits": 0, "fallbacks": 0}
last_error: list = []                      # the exceptions behind fallbacks, newest last
_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()
_WARNED: set[str] = set()

_OPTIONS = ("target", "opt_level", "threads", "native_only")


def kiln_backend(gm, example_inputs, options: dict | None = None, **_ignored):
    """The Dynamo backend: `torch.compile(model, backend="kiln", options={"threads": 2})`.
    options: target ("cpu" | "interpret"), opt_level, threads, native_only."""
    stats["graphs"] += 1
    opts = {k: v for k, v in dict(options or {}).items() if k in _OPTIONS}
    unknown = set(options or {}) - set(_OPTIONS)
    if unknown:
        raise KilnError(f"unknown kiln backend option(s) {sorted(unknown)}; known: {list(_OPTIONS)}")
    try:
        return _compile_dynamo_graph(gm, example_inputs, opts)
    except Exception as e:
        if _is_dynamo_control(e):
            raise
        return _fallback(gm.forward, e)


def _is_dynamo_control(e) -> bool:
    """Dynamo's own restart/skip signals pass through a backend untouched."""
    from torch._dynamo import exc
    return isinstance(e, (exc.RestartAnalysis, exc.SkipFrame))


def _fallback(fn, err):
    stats["fallbacks"] += 1
    last_error.append(err)
    del last_error[:-8]
    msg = f"{type(err).__name__}: {err}" if not isinstance(err, KilnError) else str(err)
    if msg not in _WARNED:
        _WARNED.add(msg)
        warnings.warn(f"kiln: running a graph eagerly in PyTorch: {msg}", KilnFallbackWarning,
                      stacklevel=2)
    return fn


def _is_weight(x, ph) -> bool:
    """A parameter or buffer of the module (frozen into the compiled code), not a user input."""
    import torch
    if isinstance(x, torch.nn.Parameter) or getattr(x, "_dynamo_static_input_type", None):
        return True
    ga = ph.meta.get("grapharg") if ph is not None else None
    src = getattr(getattr(ga, "source", None), "name", "") or ""
    src = src() if callable(src) else src
    return "._parameters[" in src or "._buffers[" in src


def _input_name(ph, i: int) -> str:
    if ph is None:
        return f"input_{i}"
    name = ph.name
    if name.startswith("l_"):
        name = name[2:]
    return name.strip("_") or f"input_{i}"


def _compile_dynamo_graph(gm, example_inputs, opts):
    import torch
    from torch._decomp import core_aten_decompositions
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    params = dict(gm.named_parameters(remove_duplicate=False))
    buffers = dict(gm.named_buffers(remove_duplicate=False))
    lifted = list(params.values()) + list(buffers.values())
    full = lifted + list(example_inputs)
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    names = list(params) + list(buffers) + [_input_name(phs[i] if i < len(phs) else None, i)
                                            for i in range(len(example_inputs))]
    weight = [True] * len(lifted) + [
        isinstance(x, torch.Tensor) and _is_weight(x, phs[i] if i < len(phs) else None)
        for i, x in enumerate(example_inputs)]
    if torch.is_grad_enabled() and any(isinstance(x, torch.Tensor) and x.requires_grad and not w
                                       for x, w in zip(full, weight)):
        raise KilnError("inputs require grad: kiln compiles inference graphs only (no autograd "
                        "through kiln-compiled code)")

    def fw_compiler(fw_gm, fake_inputs):
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        try:
            with unset_fake_temporarily():      # aot_autograd calls us inside its fake mode
                run = _compile_aten(fw_gm, full, weight, names, opts)
        except Exception as e:
            if _is_dynamo_control(e):
                raise
            return _fallback(make_boxed_func(fw_gm.forward), e)
        return make_boxed_func(run)

    with torch.no_grad():
        return aot_autograd(fw_compiler=fw_compiler, inference_compiler=fw_compiler,
                            decompositions=core_aten_decompositions())(gm, example_inputs)


def _digest(graph) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(str(graph).encode())
    for v in graph.constants:
        a = v.data
        if isinstance(a, np.ndarray):
            h.update(v.name.encode())
            h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data if a.size else b"")
    return h.hexdigest()


def _compile_aten(fw_gm, full, weight, names, opts):
    """A callable running the aot_autograd ATen graph `fw_gm` through kiln."""
    import torch

    from .. import api
    from .torch_import import FXImporter, _is_symint, find_shape_env

    phs = [n for n in fw_gm.graph.nodes if n.op == "placeholder"]
    if len(phs) != len(full):
        raise KilnError(f"the ATen graph takes {len(phs)} inputs where {len(full)} were expected")
    imp = FXImporter(fw_gm, "dynamo", source=f"torch.compile graph {fw_gm.__class__.__name__}")
    imp.shape_env = find_shape_env(fw_gm.graph)
    user = []
    for i, (n, x, w) in enumerate(zip(phs, full, weight)):      # inputs first: they name symbols
        if isinstance(x, torch.Tensor) and not w:
            imp.bind_input(n, names[i])
            user.append(i)
    for i, (n, x, w) in enumerate(zip(phs, full, weight)):
        if isinstance(x, torch.Tensor):
            if w:
                imp.bind_const(n, names[i], x)
        elif _is_symint(x) or isinstance(x, int):
            imp.bind_symint(n, x)
        else:
            imp.bind_value(n, x)
    out_node = next(n for n in fw_gm.graph.nodes if n.op == "output")
    outs = list(out_node.args[0])
    kinds = []
    for o in outs:
        val = o.meta.get("val") if hasattr(o, "meta") else o
        kinds.append(None if o is None else "t" if isinstance(val, torch.Tensor) else "i")
    present = [o for o in outs if o is not None]
    graph = imp.convert(fw_gm.graph, present, [f"output_{i}" for i in range(len(present))])

    key = _digest(graph) + repr(sorted(opts.items()))
    with _LOCK:
        km = _CACHE.get(key)
        if km is not None:
            stats["cache_hits"] += 1
        else:
            km = api.compile(graph, **opts)
            _CACHE[key] = km
            stats["compiled"] += 1
    in_names = [graph.inputs[k].name for k in range(len(user))]
    pairs = list(zip(in_names, user))

    def run(*args):
        feeds = {name: _to_numpy_view(args[i]) for name, i in pairs}
        res = iter(km.run(feeds))
        out = []
        for k in kinds:
            if k is None:
                out.append(None)
            elif k == "t":
                out.append(_to_torch(next(res)))
            else:
                out.append(int(np.asarray(next(res)).reshape(-1)[0]))
        return out

    run.kiln_module = km
    return run


def _to_numpy_view(t):
    """A numpy array sharing t's memory when t is a contiguous CPU tensor numpy can hold."""
    import torch
    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    if t.requires_grad:
        t = t.detach()
    if t.device.type == "cpu" and t.is_contiguous() and t.dtype != torch.bfloat16:
        return t.numpy()
    from .torch_import import to_numpy
    return to_numpy(t, copy=False)


def _to_torch(a):
    import torch
    a = np.asarray(a)
    if a.dtype.kind == "V" or a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


def modules() -> list:
    """The kiln Modules this process compiled for torch.compile (for their host_ops, manifest)."""
    with _LOCK:
        return list(_CACHE.values())


def register() -> None:
    """Register the backend by name in this process (the entry point makes this unnecessary
    where kiln is pip-installed)."""
    from torch._dynamo.backends.registry import _BACKENDS, register_backend
    if "kiln" not in _BACKENDS:
        register_backend(kiln_backend, name="kiln")
