"""The compiled CPU path: generated C, the cache, the runtime's input checks and host fallback."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper

import kiln
from kiln.backend import toolchain
from kiln.lower.program import lower_graph

pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


def make(nodes, inputs, outputs, opset=17, name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


EVIL = '*/ #include <stdlib.h>\nstatic int pwn = system("echo pwned"); /* "\\'


def test_names_from_the_model_cannot_inject_code():
    m = make([helper.make_node("Add", [EVIL + "a", "b"], [EVIL + "c"], name=EVIL, doc_string=EVIL),
              helper.make_node("Relu", [EVIL + "c"], ["y"], name="n2" + EVIL)],
             [f32(EVIL + "a", ["N", 4]), f32("b", [4])], [f32("y", None)], name=EVIL)
    graph = kiln.import_onnx(m)
    sources = lower_graph(graph).sources
    for text in sources.values():
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)      # what the compiler sees as code
        assert "system" not in code and "pwn" not in code and "#include <stdlib.h>" not in code
        assert "*/" not in re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    mod = kiln.compile(m, target="cpu")
    a = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    b = np.ones(4, np.float32)
    np.testing.assert_array_equal(mod.run({EVIL + "a": a, "b": b})[0], np.maximum(a + b, 0))
    assert mod.host_ops == []


def test_dynamic_batch_runs_without_recompiling():
    m = make([helper.make_node("Mul", ["a", "b"], ["c"]), helper.make_node("Sigmoid", ["c"], ["y"])],
             [f32("a", ["N", 3]), f32("b", [3])], [f32("y", ["N", 3])])
    mod = kiln.compile(m, target="cpu")
    lib_before = mod._native.lib
    b = np.array([1, -2, 3], np.float32)
    for n in (1, 3, 16):
        a = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
        np.testing.assert_allclose(mod(a, b), 1 / (1 + np.exp(-a * b)), rtol=1e-6, atol=1e-6)
    assert mod._native.lib is lib_before and len(mod._native.plans) == 3


def test_compiled_inputs_are_validated():
    m = make([helper.make_node("Relu", ["x"], ["y"])], [f32("x", ["N", 4])], [f32("y", None)])
    mod = kiln.compile(m, target="cpu")
    with pytest.raises(kiln.errors.InputError):
        mod.run({"x": np.zeros((2, 5), np.float32)})
    with pytest.raises(kiln.errors.InputError):
        mod.run({"x": np.zeros((2, 4), np.int32)})
    x = np.arange(16, dtype=np.float32).reshape(4, 4)[:, ::2].copy().reshape(2, 4)
    strided = np.arange(32, dtype=np.float32).reshape(2, 16)[:, ::4]     # non-contiguous view
    np.testing.assert_array_equal(mod(strided), np.maximum(strided, 0))
    np.testing.assert_array_equal(mod(x), np.maximum(x, 0))


def test_host_fallback_is_listed_and_correct():
    m = make([helper.make_node("Relu", ["x"], ["r"]),
              helper.make_node("CumSum", ["r", "ax"], ["c"]),
              helper.make_node("Neg", ["c"], ["y"])],
             [f32("x", [2, 3]), helper.make_tensor_value_info("ax", TensorProto.INT64, [])],
             [f32("y", None)])
    mod = kiln.compile(m, target="cpu")
    x = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)
    y = mod.run({"x": x, "ax": np.array(1)})[0]
    np.testing.assert_array_equal(y, -np.cumsum(np.maximum(x, 0), axis=1))
    if mod.host_ops:
        assert mod.host_ops == ["CumSum"]
        assert mod.manifest["host_nodes"][0]["op"] == "CumSum"
        with pytest.raises(kiln.KilnError, match="CumSum"):
            kiln.compile(m, target="cpu", native_only=True)


def test_cache_hit_and_corrupt_entry_rebuilds():
    m = make([helper.make_node("Relu", ["x"], ["y"])], [f32("x", [4])], [f32("y", None)])
    first = kiln.compile(m, target="cpu")
    assert first.manifest["cache_hit"] is False
    again = kiln.compile(m, target="cpu")
    assert again.manifest["cache_hit"] is True
    lib = next(p for p in _libs(os.environ["KILN_CACHE_DIR"]))
    with open(lib, "r+b") as f:                      # damage the cached library
        f.seek(100)
        f.write(b"\0" * 64)
    rebuilt = kiln.compile(m, target="cpu")
    assert rebuilt.manifest["cache_hit"] is False
    x = np.array([-1, 2, -3, 4], np.float32)
    np.testing.assert_array_equal(rebuilt(x), np.maximum(x, 0))


def _libs(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".so"):
                yield os.path.join(dirpath, f)


def test_missing_compiler_is_a_clear_error(monkeypatch):
    toolchain.find_toolchain.cache_clear()
    monkeypatch.setenv("KILN_CC", "no-such-cc-anywhere")
    m = make([helper.make_node("Relu", ["x"], ["y"])], [f32("x", [4])], [f32("y", None)])
    with pytest.raises(kiln.KilnError, match="no C compiler found"):
        kiln.compile(m, target="cpu")
    toolchain.find_toolchain.cache_clear()


def test_two_processes_compile_the_same_model_at_once(tmp_path):
    script = tmp_path / "c.py"
    script.write_text(
        "import numpy as np, kiln\n"
        "from onnx import helper, TensorProto as T\n"
        "g = helper.make_graph([helper.make_node('Tanh', ['x'], ['y'])], 'g',"
        " [helper.make_tensor_value_info('x', T.FLOAT, [8])], [helper.make_tensor_value_info('y', T.FLOAT, None)])\n"
        "m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])\n"
        "x = np.linspace(-2, 2, 8).astype(np.float32)\n"
        "assert np.allclose(kiln.compile(m, target='cpu')(x), np.tanh(x), atol=1e-6)\n")
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, str(script)], env=env)
             for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]


def test_artifact_save_load_and_damage(tmp_path):
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], rng.standard_normal(4).astype(np.float32).tolist())
    g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["m"]), helper.make_node("Tanh", ["m"], ["y"])],
                          "g", [f32("x", ["N", 4])], [f32("y", None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mod = kiln.compile(m, target="cpu")
    path = tmp_path / "m.kiln"
    mod.save(path)
    loaded = kiln.load(path)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), mod(x))
    assert loaded.manifest["kernels"] == mod.manifest["kernels"]
    import safetensors.numpy, zipfile
    with zipfile.ZipFile(path) as z:                 # the weights are a real safetensors file
        st = safetensors.numpy.load(z.read("weights.safetensors"))
    assert set(st) == {"w"}
    data = path.read_bytes()
    for bad in (data[: len(data) // 3], data[:-200], b"not a zip at all"):
        (tmp_path / "bad.kiln").write_bytes(bad)
        with pytest.raises(kiln.KilnError):
            kiln.load(tmp_path / "bad.kiln")
    manifest_changed = tmp_path / "other.kiln"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(manifest_changed, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item.filename)
            if item.filename == "manifest.json":
                body = body.replace(b'"cpu_features": [', b'"cpu_features": ["avx9000", ')
            zout.writestr(item, body)
    with pytest.raises(kiln.KilnError, match="avx9000"):
        kiln.load(manifest_changed)


def test_c_program_runs_an_artifact_without_python(tmp_path):
    from kiln.testing.models import small_cnn
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rt = os.path.join(root, "kiln", "runtime", "c")
    exe = tmp_path / "run_model"
    subprocess.run(["cc", "-O2", "-I", rt, os.path.join(root, "examples", "c", "run_model.c"),
                    os.path.join(rt, "kiln_runtime.c"), "-ldl", "-o", str(exe)], check=True)
    model = small_cnn()
    mod = kiln.compile(model, target="cpu", c_shapes={"N": 2})
    path = tmp_path / "cnn.kiln"
    mod.save(path)
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    (tmp_path / "x.bin").write_bytes(x.tobytes())
    r = subprocess.run([str(exe), str(path), str(tmp_path / "x.bin"), "--out", str(tmp_path / "y")],
                       capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                            if not k.startswith("PYTHON")})
    assert r.returncode == 0, r.stderr
    assert "output 0 probs f32 [2,10]" in r.stdout
    y = np.frombuffer((tmp_path / "y0.bin").read_bytes(), np.float32).reshape(2, 10)
    np.testing.assert_allclose(y, mod(x), rtol=1e-5, atol=1e-6)
    bad = subprocess.run([str(exe), str(tmp_path / "x.bin")], capture_output=True, text=True)
    assert bad.returncode == 1 and "not a kiln artifact" in bad.stderr


def test_reshapes_between_intermediates_are_views_of_their_input():
    """Relu -> Reshape -> Flatten -> Relu: both reshapes share the first Relu's arena bytes, run no
    kernel in the model's entry, and the root lives until its last view is read; a reshape of a
    graph input stays a copy (the caller owns that buffer)."""
    from kiln.runtime.plan import static_plan
    shape = helper.make_tensor("s", TensorProto.INT64, [3], [0, 4, 6])
    m = make([helper.make_node("Relu", ["x"], ["r"]),
              helper.make_node("Constant", [], ["shape"], value=shape),
              helper.make_node("Reshape", ["r", "shape"], ["v"]),
              helper.make_node("Flatten", ["v"], ["f"]),
              helper.make_node("Reshape", ["x", "shape"], ["xv"]),
              helper.make_node("Relu", ["f"], ["y"]),
              helper.make_node("Neg", ["xv"], ["z"])],
             [f32("x", ["N", 24])], [f32("y", None), f32("z", None)])
    mod = kiln.compile(m, target="cpu", opt_level=0)
    prog = mod._native.program
    views = {y.name: x.name for y, x in prog.views.items()}
    assert views == {"v": "r", "f": "v"}
    plan = static_plan(prog, {v: (2, 24) for v in prog.graph.inputs})
    by_name = {v.name: off for v, off in plan.offsets.items()}
    assert by_name["v"] == by_name["f"] == by_name["r"]
    entry = "".join(prog.sources.values())
    assert entry.count("a view, no copy") == 2
    x = np.random.default_rng(0).standard_normal((2, 24)).astype(np.float32)
    y, z = mod.run({"x": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0).reshape(2, 24))
    np.testing.assert_array_equal(z, -x.reshape(2, 4, 6))


def test_elementwise_nodes_write_over_an_input_read_for_the_last_time():
    """opt_level 0 (no fusion): Neg and Exp write in place over the intermediate they read last;
    Add may not (its input r is read again later, by Mul), and the graph output gets its own."""
    from kiln.runtime.plan import static_plan
    m = make([helper.make_node("Relu", ["x"], ["r"]),
              helper.make_node("Neg", ["r"], ["n"]),
              helper.make_node("Exp", ["n"], ["e"]),
              helper.make_node("Add", ["e", "r"], ["a"]),
              helper.make_node("Mul", ["a", "r"], ["y"])],
             [f32("x", ["N", 16])], [f32("y", None)])
    mod = kiln.compile(m, target="cpu", opt_level=0)
    prog = mod._native.program
    assert {y.name: x.name for y, x in prog.inplace.items()} == {"e": "n", "a": "e"}
    plan = static_plan(prog, {v: (3, 16) for v in prog.graph.inputs})
    off = {v.name: o for v, o in plan.offsets.items()}
    assert off["n"] == off["e"] == off["a"] != off["r"]
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    r = np.maximum(x, 0)
    np.testing.assert_allclose(mod.run({"x": x})[0], (np.exp(-r) + r) * r, rtol=1e-6)


def test_vectorized_exp_erf_tanh_are_within_a_few_ulp():
    """kiln's own f32 exp/erf/tanh (kiln/backend/c.py) against float64 numpy on a dense grid,
    subnormal results, overflow, infinities and NaN."""
    import math
    grid = np.concatenate([np.linspace(-110, 95, 400_001), np.linspace(-1e-3, 1e-3, 20_001),
                           np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.73, -103.9, -104.5, 1e-40])])
    x = grid.astype(np.float32)
    m = make([helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Erf", ["x"], ["r"]),
              helper.make_node("Tanh", ["x"], ["t"])],
             [f32("x", [x.size])], [f32("e", [x.size]), f32("r", [x.size]), f32("t", [x.size])])
    e, r, t = kiln.compile(m, target="cpu", native_only=True).run({"x": x})
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        refs = (np.exp(x64), np.vectorize(math.erf, otypes=[np.float64])(x64), np.tanh(x64))
    for got, ref, ulps in zip((e, r, t), refs, (2, 4, 2)):
        with np.errstate(over="ignore"):              # exp past f32's range is inf, as it should
            want = ref.astype(np.float32)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        with np.errstate(invalid="ignore"):            # inf - inf where both are inf
            err = np.abs(got[ok].astype(np.float64) - ref[ok])
        tol = ulps * np.spacing(np.abs(want[ok])).astype(np.float64) + 1.5e-45 * ulps
        assert np.all((err <= tol) | (got[ok] == want[ok])), (x[ok][err > tol][:5], got[ok][err > tol][:5])
