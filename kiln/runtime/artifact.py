"""The `.kiln` artifact: one zip file.

    manifest.json          kiln version, target, CPU features the code needs, inputs/outputs,
                           kernels and the graph nodes each covers, host ops, sizes
    graph.kir              the graph IR text (large constants as @references)
    weights.safetensors    the referenced constants; every member is stored uncompressed, so
                           loading maps the weights straight from the .kiln file (no copy) and
                           the C runtime (kiln/runtime/c) reads the archive without a zip library
    strings.json           constants holding strings (safetensors has no string type)
    libkiln_model.so       target "cpu": the compiled library

Loading re-lowers the graph (fast, deterministic) to recover the program's layout, checks it
against the source hash recorded at save time, and uses the saved library without compiling.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from ..errors import KilnError
from .weights import dump, load_mapped

FORMAT = 2
RELEVANT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                  "avx512dq", "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "sve")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def source_hash(sources: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return h.hexdigest()


def save(module, path) -> None:
    from .. import __version__
    weights = module.graph.weights()
    numeric = {k: v for k, v in weights.items() if v.dtype != object}
    strings = {k: {"shape": list(v.shape), "items": v.reshape(-1).tolist()}
               for k, v in weights.items() if v.dtype == object}
    manifest = dict(module.manifest, kiln_version=__version__, format=FORMAT)
    native = module._native
    if native is not None:
        manifest["source_hash"] = source_hash(native.program.sources)
        manifest["cpu_features"] = sorted(cpu_flags() & set(RELEVANT_FLAGS)) if native.lib_path else []
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:      # stored: C maps it directly
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        z.writestr("graph.kir", str(module.graph))
        z.writestr("weights.safetensors", dump(numeric))
        z.writestr("strings.json", json.dumps(strings))
        if native is not None and native.lib_path:
            z.write(native.lib_path, "libkiln_model.so")
    os.replace(tmp, path)


def _member_offset(path: str, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored member's data inside the zip file."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
        if head[:4] != b"PK\x03\x04":
            raise KilnError(f"{path}: damaged zip entry {info.filename}")
        name_len = int.from_bytes(head[26:28], "little")
        extra_len = int.from_bytes(head[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


def load(path):
    from .. import __version__
    from ..api import Module
    from ..ir.parser import parse_ir
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KilnError(f"artifact not found: {path}")
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            text = z.read("graph.kir").decode("utf-8")
            strings = json.loads(z.read("strings.json"))
            winfo = z.getinfo("weights.safetensors")
            if winfo.compress_type != zipfile.ZIP_STORED:
                raise KilnError(f"{path}: weights must be stored uncompressed")
            z.testzip()
            lib_bytes = z.read("libkiln_model.so") if "libkiln_model.so" in z.namelist() else None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise KilnError(f"{path} is not a valid .kiln artifact (corrupt or truncated): {e}") from None
    if manifest.get("format") != FORMAT or manifest.get("kiln_version") != __version__:
        raise KilnError(f"{path} was written by kiln {manifest.get('kiln_version')} (format "
                        f"{manifest.get('format')}); this is kiln {__version__}: recompile the model")
    missing = set(manifest.get("cpu_features", [])) - cpu_flags()
    if missing:
        raise KilnError(f"{path} was compiled for a CPU with {', '.join(sorted(missing))}, which this "
                        "machine lacks: recompile the model here")
    weights = load_mapped(path, _member_offset(path, winfo))
    for k, s in strings.items():
        weights[k] = np.array(s["items"], dtype=object).reshape(s["shape"])
    graph = parse_ir(text, weights)
    graph.meta["source"] = os.path.basename(path)
    target = manifest["target"]
    if target == "interpret":
        return Module(graph, target)
    from ..compiler import module_from_library
    return module_from_library(graph, lib_bytes, manifest, path)
