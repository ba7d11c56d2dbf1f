"""Test-only fault injection: corrupt one generated kernel on purpose, so the tests can check that
`kiln compare` (kiln/tools/compare.py) finds it.

    KILN_INJECT_FAULT=<substring> kiln compare model.onnx

picks the first kernel, in graph order, whose name (`k3_fused_conv_relu`), op (`Conv`) or graph node
name (`/1/Relu`) contains the substring, and makes its C add 1 to the kernel's first output element
(a bool output is negated) after everything else it computes. The C source changes, so the library
cache never hands back the clean build; with the variable unset, lowering reads it once and
emits exactly the C it always does. Never set it outside tests: an artifact saved with a fault
fails to load without it (its source hash no longer matches).
"""
from __future__ import annotations

import os

from .c import CTYPE

ENV = "KILN_INJECT_FAULT"


def fault_target(native: dict) -> int | None:
    """The node index of the kernel to corrupt (native: node index -> NodeKernel), None when unset
    or when no kernel matches."""
    want = os.environ.get(ENV)
    if not want:
        return None
    for i in sorted(native):
        nk = native[i]
        if want in nk.kernel.name or want == nk.node.op or (nk.node.name and want in nk.node.name):
            return i
    return None


def corrupt(c_text: str, kernel) -> str:
    """The C of `kernel` (as CRenderer.kernel writes it) with its first output element changed."""
    out = next(p for p in kernel.params if p.role == "out")
    if out.dtype == "bool":
        line = f"  {out.name}[0] = !{out.name}[0];  /* {ENV} */"
    else:
        line = f"  {out.name}[0] = ({CTYPE[out.dtype]})({out.name}[0] + 1);  /* {ENV} */"
    head, close = c_text.rstrip().rsplit("\n", 1)
    assert close == "}", "a kernel's C ends with its closing brace"
    return f"{head}\n{line}\n}}"
