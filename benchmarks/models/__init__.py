"""The benchmark model set: six models with random weights from a fixed seed, exported to ONNX.

    from benchmarks import models
    path = models.get("resnet50")                 # .cache/models/resnet50.N.onnx, exported once
    feeds = models.example_inputs("bert", batch=4, seq=128)

Every model has a symbolic batch dim (named by `batch`, "N" by default) and BERT/GPT-2 also a
symbolic sequence dim (named by `seq`, "S" by default); pass an int instead to fix that dim.
Models are built in PyTorch (the `models` extra: `pip install -e ".[models]"`), exported with the
TorchScript ONNX exporter at opset 17, and cached under `<repo>/.cache/models/` (or
$KILN_MODEL_CACHE); nothing is ever downloaded. `python -m benchmarks.models` builds them all.
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

OPSET = 17
SEED = 0
# Bump when a builder changes in a way that changes the exported graph or its weights: the
# version is part of the cache file name, so stale files are never reused.
BUILD_VERSION = 1

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Spec:
    name: str
    family: str                                      # "vision" | "text"
    inputs: tuple[tuple[str, str, tuple], ...]       # (name, numpy dtype, shape with "B"/"S")
    outputs: tuple[tuple[str, tuple], ...]           # (name, shape with "B"/"S")
    build: Callable[[], "object"]                    # -> torch.nn.Module in eval mode
    vocab: int = 0                                   # text models: token ids are in [0, vocab)
    max_seq: int = 0


def _cnn(fn_name: str, calib_shape):
    def build():
        from . import cnn
        model = getattr(cnn, fn_name)()
        return cnn.init_weights(model, SEED, calib_shape)
    return build


def _text(fn_name: str):
    def build():
        from . import transformer
        return getattr(transformer, fn_name)(SEED)
    return build


_IMG = ("input", "float32", ("B", 3, 224, 224))
SPECS: dict[str, Spec] = {s.name: s for s in [
    Spec("mlp", "vision", (("input", "float32", ("B", 784)),), (("output", ("B", 10)),),
         _cnn("mlp", None)),
    Spec("resnet18", "vision", (_IMG,), (("output", ("B", 1000)),),
         _cnn("resnet18", (8, 3, 224, 224))),
    Spec("resnet50", "vision", (_IMG,), (("output", ("B", 1000)),),
         _cnn("resnet50", (8, 3, 224, 224))),
    Spec("mobilenetv2", "vision", (_IMG,), (("output", ("B", 1000)),),
         _cnn("mobilenetv2", (8, 3, 224, 224))),
    Spec("bert", "text",
         (("input_ids", "int64", ("B", "S")), ("attention_mask", "int64", ("B", "S"))),
         (("last_hidden_state", ("B", "S", 768)), ("pooler_output", ("B", 768))),
         _text("bert"), vocab=30522, max_seq=512),
    Spec("gpt2", "text", (("input_ids", "int64", ("B", "S")),),
         (("logits", ("B", "S", 50257)),),
         _text("gpt2"), vocab=50257, max_seq=1024),
]}
NAMES: tuple[str, ...] = tuple(SPECS)


def _spec(name: str) -> Spec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMES)}") from None


def cache_dir() -> Path:
    return Path(os.environ.get("KILN_MODEL_CACHE") or REPO_ROOT / ".cache" / "models")


def _check_dim(what: str, d) -> None:
    if isinstance(d, bool) or not (isinstance(d, str) and d.isidentifier()
                                   or isinstance(d, int) and d > 0):
        raise ValueError(f"{what} must be a symbol name (e.g. 'N') or a positive int, got {d!r}")


def model_path(name: str, batch="N", seq="S") -> Path:
    """Where `get` keeps the model (whether or not it is there yet)."""
    spec = _spec(name)
    key = f"{name}.{batch}" + (f".{seq}" if spec.family == "text" else "")
    return cache_dir() / f"{key}.v{BUILD_VERSION}.opset{OPSET}.onnx"


def get(name: str, batch="N", seq="S") -> str:
    """Path to `name` as ONNX, exporting it on the first call (later calls reuse the file)."""
    path = model_path(name, batch, seq)
    if not path.exists():
        export(name, batch, seq)
    return str(path)


def torch_model(name: str):
    """The PyTorch module behind `name` (eval mode; the same weights as the exported model)."""
    return _spec(name).build()


def _shape(template, batch: int, seq: int) -> tuple[int, ...]:
    return tuple(batch if d == "B" else seq if d == "S" else d for d in template)


def example_inputs(name: str, batch: int = 1, seq: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid random inputs: N(0,1) images/features; token ids in range; for BERT an attention
    mask of ones with trailing zeros (padding) in every row but full rows where seq is 1."""
    spec = _spec(name)
    if spec.family == "text" and not 1 <= seq <= spec.max_seq:
        raise ValueError(f"{name}: seq must be in [1, {spec.max_seq}], got {seq}")
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for in_name, dtype, template in spec.inputs:
        shape = _shape(template, batch, seq)
        if in_name == "input_ids":
            feeds[in_name] = rng.integers(0, spec.vocab, size=shape, dtype=np.int64)
        elif in_name == "attention_mask":
            mask = np.ones(shape, np.int64)
            for row in range(batch):
                lo = max(1, seq // 2)
                hi = max(lo, seq - max(1, seq // 8))     # row 0 the longest, all leave some padding
                length = hi if row == 0 else int(rng.integers(lo, hi + 1))
                mask[row, length:] = 0
            feeds[in_name] = mask
        else:
            feeds[in_name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds


def _stamp(path: str, name: str, batch, seq) -> None:
    """Record how the file was made in its metadata_props (kiln.* keys)."""
    import onnx
    import torch
    props = {"kiln.model": name, "kiln.batch": str(batch), "kiln.seed": str(SEED),
             "kiln.build_version": str(BUILD_VERSION), "kiln.torch": torch.__version__}
    if _spec(name).family == "text":
        import transformers
        props["kiln.seq"] = str(seq)
        props["kiln.transformers"] = transformers.__version__
    model = onnx.load(path)
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)


def export(name: str, batch="N", seq="S") -> tuple[str, float]:
    """Build `name` in PyTorch and export it to ONNX (atomically), whether or not it is cached.
    Returns (path, seconds spent exporting, building included)."""
    spec = _spec(name)
    _check_dim("batch", batch)
    if spec.family == "text":
        _check_dim("seq", seq)
    try:
        import torch
    except ImportError as e:
        raise ImportError("benchmarks.models needs PyTorch: pip install -e '.[models]'") from e
    t0 = time.perf_counter()
    module = spec.build()
    # Trace with sizes that are neither 1 nor equal to each other, so nothing symbolic gets
    # specialised to a constant by accident.
    b = batch if isinstance(batch, int) else 2
    s = seq if isinstance(seq, int) else 16
    sample = example_inputs(name, b, s, seed=SEED)
    args = tuple(torch.from_numpy(v) for v in sample.values())
    dynamic_axes: dict[str, dict[int, str]] = {}
    for io_name, template in [(n, t) for n, _, t in spec.inputs] + list(spec.outputs):
        axes = {}
        for i, d in enumerate(template):
            if d == "B" and isinstance(batch, str):
                axes[i] = batch
            elif d == "S" and isinstance(seq, str):
                axes[i] = seq
        if axes:
            dynamic_axes[io_name] = axes

    path = model_path(name, batch, seq)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, args, tmp,
                input_names=[n for n, _, _ in spec.inputs],
                output_names=[n for n, _ in spec.outputs],
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,                    # TorchScript exporter: no onnxscript needed
            )
        _stamp(tmp, name, batch, seq)
        os.chmod(tmp, 0o644)                     # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path), time.perf_counter() - t0
