"""The IR text form: print -> parse -> print is the identity, and bad text gives clear errors."""
import re

import numpy as np
import pytest

import kiln
from kiln.errors import IRParseError
from kiln.ir import Graph, MissingData, Value, tensor

SAMPLE = """\
graph main(%x: f32[N,4], %"odd name": i64[]) {
  %w: f32[4,5] = const @w
  %b: f32[4] = const [0.5, 0.1, 1e-05, inf]
  %s: str[2] = const ["a\\"b", "line\\nbreak"]
  %p: f32[1] = param [2.0]
  %h: f32[N,4] = Gemm(%x, %w, %b) {alpha=0.1, transB=1} loc("fc 1")
  %r: seq<f32[?,4]>, _ = Split(%h, _) {axis=0, names=["a", "b"], t=tensor<i64[3]>[0, 1, 2]}
  %o: opt<f32[*]> = If(%"odd name") {else_branch=graph e() {
      %e0: f32["2*N"] = Neg(%h)
      return %e0
    }, then_branch=graph t() {
      return %h
    }}
  return %h, %o
}"""


def test_sample_round_trips():
    g = kiln.parse_ir(SAMPLE)
    assert str(g) == SAMPLE
    assert str(kiln.parse_ir(str(g))) == SAMPLE


def test_types_and_constants_are_parsed():
    g = kiln.parse_ir(SAMPLE)
    x, odd = g.inputs
    assert x.type == tensor("f32", ("N", 4)) and odd.name == "odd name"
    w, b, s, p = g.constants
    assert isinstance(w.data, MissingData) and w.data.ref == "w"
    assert b.data.dtype == np.float32 and b.data[3] == np.inf
    assert s.data.tolist() == ['a"b', "line\nbreak"]
    assert p.feedable and not b.feedable
    gemm = g.nodes[0]
    assert gemm.name == "fc 1" and gemm.attrs == {"alpha": float(np.float32(0.1)), "transB": 1}
    split = g.nodes[1]
    assert split.inputs[1] is None and split.outputs[1] is None
    assert split.attrs["t"].dtype == np.int64
    cond = g.nodes[2]
    assert cond.attrs["then_branch"].outputs[0] is gemm.outputs[0]   # outer-scope reference


def test_weights_resolve_references():
    w = np.arange(20, dtype=np.float32).reshape(4, 5)
    g = kiln.parse_ir(SAMPLE, weights={"w": w})
    assert g.constants[0].data is not None and np.array_equal(g.constants[0].data, w)
    assert g.weights()["w"] is g.constants[0].data


def test_built_graph_round_trips_with_every_dtype():
    g = Graph("dtypes")
    outs = []
    for dt in kiln.ir.dtypes.ALL:
        if dt.name == "str":
            data = np.array(["x", "y"], dtype=object)
        else:
            data = np.array([1, 0], dtype=np.float32).astype(dt.numpy)
        outs.append(g.add_const(f"c_{dt.name}", data))
        big = np.ones(40, np.float32).astype(dt.numpy) if dt.name != "str" else np.array(["z"] * 40, object)
        outs.append(g.add_const(f"big_{dt.name}", big))
    g.outputs = outs
    text = str(g)
    g2 = kiln.parse_ir(text, g.weights())
    assert str(g2) == text
    for a, b in zip(g.constants, g2.constants):
        assert a.data.dtype == b.data.dtype, a.name
        same = (a.data.tolist() == b.data.tolist() if a.data.dtype == object
                else a.data.tobytes() == b.data.tobytes())
        assert same, a.name


def test_float_text_is_exact():
    vals = np.array([0.1, 1 / 3, 1e-38, 3.4028235e38, -0.0, 7.0], np.float32)
    g = Graph("f")
    g.outputs = [g.add_const("v", vals)]
    g2 = kiln.parse_ir(str(g))
    assert g2.constants[0].data.tobytes() == vals.tobytes()
    d = np.array([0.1, 1 / 3], np.float64)
    g = Graph("d")
    g.outputs = [g.add_const("v", d)]
    assert kiln.parse_ir(str(g)).constants[0].data.tobytes() == d.tobytes()


@pytest.mark.parametrize("text, where", [
    ("graph g(%x: f32[2]) {\n  %y: f32[2] = Relu(%z)\n  return %y\n}", "line 2, column 21: use of undefined value %z"),
    ("graph g(%x: f33[2]) {\n  return %x\n}", "line 1, column 13: expected a type"),
    ("graph g(%x: f32[2]) {\n  %x: f32[2] = Relu(%x)\n  return %x\n}", "defined twice"),
    ("graph g(%x: f32[2]) {\n  %y: f32[2] = Relu(%x)\n", "never reaches `return`"),
    ("graph g() {\n  %c: f32[3] = const [1.0, 2.0]\n  return %c\n}", "needs 3 elements, found 2"),
    ("graph g() { return } trailing", "unexpected text after the graph"),
    ("graph g() { %a: f32[1] = Relu() {k=1, k=2} return %a }", "given twice"),
    ("graph g() { ` }", "unexpected character"),
])
def test_parse_errors_name_the_place(text, where):
    with pytest.raises(IRParseError, match=re.escape(where)):
        kiln.parse_ir(text)


def test_parse_errors_are_kiln_errors():
    with pytest.raises(kiln.KilnError):
        kiln.parse_ir("graph")
    with pytest.raises(kiln.KilnError):
        kiln.parse_ir(b"graph g() { return }")


def test_missing_data_refuses_to_run():
    g = kiln.parse_ir("graph g() {\n  %w: f32[40] = const @w\n  return %w\n}")
    with pytest.raises(kiln.KilnError, match="no data"):
        kiln.compile(g, target="interpret").run({})


def test_value_names_with_odd_characters_round_trip():
    g = Graph("weird graph")
    x = Value('a"b%c\n', tensor("f32", (2,)))
    g.inputs = [x]
    n = g.add_node("Relu", [x], name='n"1', types=[tensor("f32", (2,))], output_names=["onnx::Relu_3"])
    g.outputs = n.outputs
    text = str(g)
    assert str(kiln.parse_ir(text)) == text
    assert kiln.parse_ir(text).inputs[0].name == 'a"b%c\n'


def test_mangled_text_gives_only_parse_errors():
    """Truncations and character swaps of valid text either parse or raise IRParseError."""
    rng = np.random.default_rng(0)
    for i in range(400):
        text = SAMPLE
        if i % 2:
            text = text[: rng.integers(0, len(text))]
        else:
            pos = rng.integers(0, len(text))
            text = text[:pos] + rng.choice(list('%@"[](){}<>,=:_ ?*-9ax\\')) + text[pos + 1:]
        try:
            kiln.parse_ir(text)
        except IRParseError:
            pass


def test_verifier_accepts_sound_graphs_and_lists_problems():
    from kiln.errors import VerifyError
    from kiln.ir import verify
    g = kiln.parse_ir("graph g(%x: f32[2]) {\n  %y: f32[2] = Relu(%x)\n  return %y\n}")
    assert verify(g) is g
    g.nodes[0].attrs["bogus"] = 1
    g.nodes.append(g.nodes[0])                       # the same outputs defined twice
    with pytest.raises(VerifyError) as e:
        verify(g)
    msg = str(e.value)
    assert "no attribute 'bogus'" in msg and "defined more than once" in msg
    g = kiln.parse_ir("graph g(%x: f32[2]) {\n  %y: f32[2] = Relu(%x)\n  return %y\n}")
    g.nodes[0].inputs = [g.nodes[0].outputs[0]]      # uses its own output
    with pytest.raises(VerifyError, match="not defined before use"):
        verify(g)
    g = kiln.parse_ir("graph g() {\n  %c: f32[2] = const [1.0, 2.0]\n  return %c\n}")
    g.constants[0].data = np.zeros(3, np.float32)
    with pytest.raises(VerifyError, match="has shape"):
        verify(g)


def test_float32_attributes_keep_their_exact_value():
    g = Graph("g")
    x = Value("x", tensor("f32", (2,)))
    g.inputs = [x]
    eps = float(np.float32(1e-5))               # what ONNX attributes hold
    g.add_node("LeakyRelu", [x], attrs={"alpha": eps, "beta": 0.1}, types=[tensor("f32", (2,))])
    g.outputs = g.nodes[0].outputs
    g2 = kiln.parse_ir(str(g))
    # float attributes are f32 (as in ONNX): 0.1 reads back as the f32 nearest to 0.1
    assert g2.nodes[0].attrs["alpha"] == eps and g2.nodes[0].attrs["beta"] == float(np.float32(0.1))
    assert str(kiln.parse_ir(str(g2))) == str(g2)
