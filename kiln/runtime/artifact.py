"""The `.kiln` artifact: one zip file holding the manifest, the graph and its weights.

    manifest.json   kiln version, target, inputs/outputs, ... (Module.manifest)
    graph.kir       the graph IR text (large constants as @references)
    weights.npz     the referenced constants (numeric)
    strings.json    the referenced constants holding strings

Compiled targets add their native library here; the interpreter needs only the graph.
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from ..errors import KilnError

FORMAT = 1


def save(module, path) -> None:
    from .. import __version__
    weights = module.graph.weights()
    numeric = {k: v for k, v in weights.items() if v.dtype != object}
    strings = {k: {"shape": list(v.shape), "items": v.reshape(-1).tolist()}
               for k, v in weights.items() if v.dtype == object}
    buf = io.BytesIO()
    np.savez(buf, **{f"w{i}": v for i, v in enumerate(numeric.values())})
    manifest = dict(module.manifest, kiln_version=__version__, format=FORMAT,
                    weight_names=list(numeric))
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        z.writestr("graph.kir", str(module.graph))
        z.writestr("weights.npz", buf.getvalue())
        z.writestr("strings.json", json.dumps(strings))
    os.replace(tmp, path)


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
            npz = np.load(io.BytesIO(z.read("weights.npz")), allow_pickle=False)
            strings = json.loads(z.read("strings.json"))
            weights = {name: npz[f"w{i}"] for i, name in enumerate(manifest["weight_names"])}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise KilnError(f"{path} is not a valid .kiln artifact (corrupt or truncated): {e}") from None
    if manifest.get("format") != FORMAT or manifest.get("kiln_version") != __version__:
        raise KilnError(f"{path} was written by kiln {manifest.get('kiln_version')} (format "
                        f"{manifest.get('format')}); this is kiln {__version__}: recompile the model")
    for k, s in strings.items():
        weights[k] = np.array(s["items"], dtype=object).reshape(s["shape"])
    graph = parse_ir(text, weights)
    graph.meta["source"] = os.path.basename(path)
    return Module(graph, manifest["target"])
