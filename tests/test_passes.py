"""Graph passes: IR text in -> pass -> IR text out, plus a model-level check that every pass keeps
the interpreter's results on the small CNN."""
import textwrap

import numpy as np
import pytest

import kiln
from kiln.ir.types import TensorType
from kiln.ir.verify import verify
from kiln.passes import PASSES
from kiln.runtime.interpreter import Interpreter


def ir(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def run_pass(name: str, text: str, check: bool = True) -> str:
    """Parse, run the pass, verify, print; with `check`, also compare the interpreter's results
    before and after on random inputs (where the inputs' types allow)."""
    g = PASSES[name](kiln.parse_ir(ir(text)))
    verify(g)
    feeds = random_feeds(g) if check else None
    if feeds is not None:
        before = run(kiln.parse_ir(ir(text)), feeds)
        for a, b in zip(run(g, feeds), before):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return str(g)


def random_feeds(g, symbol_size: int = 3):
    """Random inputs fitting the graph's input types (a symbol is `symbol_size`), or None when
    the graph has an input without a full tensor type or a constant without data."""
    rng = np.random.default_rng(0)
    feeds = {}
    for v in g.inputs:
        t = v.type
        if not isinstance(t, TensorType) or t.dtype is None or t.shape is None or None in t.shape:
            return None
        shape = [d if isinstance(d, int) else symbol_size for d in t.shape]
        if t.dtype.name == "bool":
            feeds[v.name] = rng.random(shape) < 0.5
        elif t.dtype.is_float:
            feeds[v.name] = rng.standard_normal(shape).astype(t.dtype.numpy)
        else:
            feeds[v.name] = rng.integers(0, 3, shape).astype(t.dtype.numpy)
    if any(not isinstance(c.data, np.ndarray) for c in g.constants):
        return None
    return feeds


def unchanged(name: str, text: str) -> bool:
    return run_pass(name, text, check=False) == ir(text)


def run(graph, feeds: dict):
    by_name = {v.name: v for v in graph.inputs}
    return Interpreter().run(graph, {by_name[k]: x for k, x in feeds.items()})


def same_results(name: str, text: str, feeds: dict, rtol=1e-5, atol=1e-6):
    """The pass keeps the interpreter's results on `feeds`."""
    before = run(kiln.parse_ir(ir(text)), feeds)
    after = run(verify(PASSES[name](kiln.parse_ir(ir(text)))), feeds)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# --- dce -------------------------------------------------------------------------------------
def test_dce_removes_unused_nodes_and_constants_but_keeps_params():
    src = '''
        graph g(%x: f32[2], %unused_input: f32[2]) {
          %c: f32[2] = const [1.0, 2.0]
          %p: f32[2] = param [3.0, 4.0]
          %a: f32[2] = Add(%x, %c)
          %b: f32[2] = Relu(%a)
          %y: f32[2] = Neg(%x)
          return %y
        }'''
    assert run_pass("dce", src) == ir('''
        graph g(%x: f32[2], %unused_input: f32[2]) {
          %p: f32[2] = param [3.0, 4.0]
          %y: f32[2] = Neg(%x)
          return %y
        }''')


def test_dce_keeps_values_read_inside_subgraphs_and_cleans_the_subgraphs():
    src = '''
        graph g(%x: f32[2], %cond: bool[]) {
          %a: f32[2] = Neg(%x)
          %y: f32[2] = If(%cond) {else_branch=graph e() {
              %dead: f32[2] = Abs(%a)
              return %x
            }, then_branch=graph t() {
              %k: f32[2] = const [1.0, 1.0]
              %n: f32[2] = Relu(%a)
              return %n
            }}
          return %y
        }'''
    assert run_pass("dce", src) == ir('''
        graph g(%x: f32[2], %cond: bool[]) {
          %a: f32[2] = Neg(%x)
          %y: f32[2] = If(%cond) {else_branch=graph e() {
              return %x
            }, then_branch=graph t() {
              %n: f32[2] = Relu(%a)
              return %n
            }}
          return %y
        }''')


def test_dce_keeps_a_node_when_any_of_its_outputs_is_used():
    src = '''
        graph g(%x: f32[4]) {
          %a: f32[2], %b: f32[2] = Split(%x) {num_outputs=2}
          return %b
        }'''
    assert unchanged("dce", src)


# --- cse -------------------------------------------------------------------------------------
def test_cse_merges_duplicates_and_redirects_all_uses():
    src = '''
        graph g(%x: f32[2], %cond: bool[]) {
          %a: f32[2] = Relu(%x)
          %b: f32[2] = Relu(%x)
          %s: f32[2] = Add(%a, %b)
          %t: f32[2] = If(%cond) {else_branch=graph e() {
              return %b
            }, then_branch=graph t() {
              %n: f32[2] = Neg(%b)
              return %n
            }}
          %u: f32[2] = Mul(%s, %t)
          return %u
        }'''
    assert run_pass("cse", src) == ir('''
        graph g(%x: f32[2], %cond: bool[]) {
          %a: f32[2] = Relu(%x)
          %s: f32[2] = Add(%a, %a)
          %t: f32[2] = If(%cond) {else_branch=graph e() {
              return %a
            }, then_branch=graph t() {
              %n: f32[2] = Neg(%a)
              return %n
            }}
          %u: f32[2] = Mul(%s, %t)
          return %u
        }''')


def test_cse_merges_chains_and_compares_array_attributes_by_value():
    src = '''
        graph g(%x: f32[2,3]) {
          %s: i64[2] = const [2, 3]
          %a: f32[3,2] = Transpose(%x) {perm=[1, 0]}
          %b: f32[3,2] = Transpose(%x) {perm=[1, 0]}
          %c: f32[3,2] = Neg(%a)
          %d: f32[3,2] = Neg(%b)
          %e: f32[2,3] = ConstantOfShape(%s) {value=tensor<f32[1]>[1.0]}
          %f: f32[2,3] = ConstantOfShape(%s) {value=tensor<f32[1]>[1.0]}
          %h: f32[2,3] = ConstantOfShape(%s) {value=tensor<f32[1]>[2.0]}
          %y: f32[3,2] = Sub(%c, %d)
          %z: f32[2,3] = Add(%e, %f)
          %w: f32[2,3] = Add(%z, %h)
          return %y, %w
        }'''
    assert run_pass("cse", src) == ir('''
        graph g(%x: f32[2,3]) {
          %s: i64[2] = const [2, 3]
          %a: f32[3,2] = Transpose(%x) {perm=[1, 0]}
          %c: f32[3,2] = Neg(%a)
          %e: f32[2,3] = ConstantOfShape(%s) {value=tensor<f32[1]>[1.0]}
          %h: f32[2,3] = ConstantOfShape(%s) {value=tensor<f32[1]>[2.0]}
          %y: f32[3,2] = Sub(%c, %c)
          %z: f32[2,3] = Add(%e, %e)
          %w: f32[2,3] = Add(%z, %h)
          return %y, %w
        }''')


def test_cse_leaves_graph_outputs_impure_ops_and_subgraph_nodes():
    src = '''
        graph g(%x: f32[2], %cond: bool[], %train: bool[]) {
          %r1: f32[2] = RandomUniformLike(%x)
          %r2: f32[2] = RandomUniformLike(%x)
          %d1: f32[2] = Dropout(%x, _, %train)
          %d2: f32[2] = Dropout(%x, _, %train)
          %i1: f32[2] = If(%cond) {else_branch=graph e() {
              return %x
            }, then_branch=graph t() {
              return %x
            }}
          %i2: f32[2] = If(%cond) {else_branch=graph e2() {
              return %x
            }, then_branch=graph t2() {
              return %x
            }}
          %o1: f32[2] = Abs(%x)
          %o2: f32[2] = Abs(%x)
          return %r1, %r2, %d1, %d2, %i1, %i2, %o1, %o2
        }'''
    assert unchanged("cse", src)


def test_cse_inside_a_subgraph_reuses_an_earlier_outer_node():
    src = '''
        graph g(%x: f32[2], %cond: bool[]) {
          %a: f32[2] = Exp(%x)
          %y: f32[2] = If(%cond) {else_branch=graph e() {
              return %x
            }, then_branch=graph t() {
              %b: f32[2] = Exp(%x)
              %c: f32[2] = Neg(%b)
              return %c
            }}
          %z: f32[2] = Add(%a, %y)
          return %z
        }'''
    assert "%c: f32[2] = Neg(%a)" in run_pass("cse", src)


# --- fold-constants --------------------------------------------------------------------------
def test_fold_constants_folds_a_shape_chain_in_one_run():
    src = '''
        graph g(%x: f32[6]) {
          %c: f32[2,3] = const [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
          %i: i64[] = const [1]
          %m: i64[1] = const [-1]
          %z: i64[1] = const [0]
          %s: i64[2] = Shape(%c)
          %d: i64[] = Gather(%s, %i)
          %u: i64[1] = Unsqueeze(%d, %z)
          %t: i64[2] = Concat(%m, %u) {axis=0}
          %r: f32[2,3] = Reshape(%x, %t)
          return %r
        }'''
    assert run_pass("fold-constants", src) == ir('''
        graph g(%x: f32[6]) {
          %c: f32[2,3] = const [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
          %i: i64[] = const [1]
          %m: i64[1] = const [-1]
          %z: i64[1] = const [0]
          %s: i64[2] = const [2, 3]
          %d: i64[] = const [3]
          %u: i64[1] = const [3]
          %t: i64[2] = const [-1, 3]
          %r: f32[2,3] = Reshape(%x, %t)
          return %r
        }''')


def test_fold_constants_takes_shape_and_size_from_static_types_only():
    src = '''
        graph g(%x: f32[2,3,4], %y: f32[N,3]) {
          %s: i64[1] = Shape(%x) {end=-1, start=1}
          %n: i64[] = Size(%x)
          %sy: i64[2] = Shape(%y)
          %a: i64[1] = Mul(%s, %n)
          %b: i64[2] = Add(%a, %sy)
          return %b
        }'''
    assert run_pass("fold-constants", src) == ir('''
        graph g(%x: f32[2,3,4], %y: f32[N,3]) {
          %s: i64[1] = const [3]
          %n: i64[] = const [24]
          %a: i64[1] = const [72]
          %sy: i64[2] = Shape(%y)
          %b: i64[2] = Add(%a, %sy)
          return %b
        }''')


def test_fold_constants_takes_static_dims_picked_from_a_symbolic_shape():
    src = '''
        graph g(%x: f32[N,S,768]) {
          %i: i64[] = const [2]
          %j: i64[] = const [0]
          %lo: i64[1] = const [-1]
          %hi: i64[1] = const [9223372036854775807]
          %s: i64[3] = Shape(%x)
          %a: i64[] = Gather(%s, %i) {axis=0}
          %n: i64[] = Gather(%s, %j) {axis=0}
          %b: i64[1] = Slice(%s, %lo, %hi)
          %y: i64[1] = Add(%b, %a)
          %z: i64[] = Add(%n, %a)
          return %y, %z
        }'''
    assert run_pass("fold-constants", src) == ir('''
        graph g(%x: f32[N,S,768]) {
          %i: i64[] = const [2]
          %j: i64[] = const [0]
          %lo: i64[1] = const [-1]
          %hi: i64[1] = const [9223372036854775807]
          %a: i64[] = const [768]
          %b: i64[1] = const [768]
          %s: i64[3] = Shape(%x)
          %n: i64[] = Gather(%s, %j) {axis=0}
          %y: i64[1] = Add(%b, %a)
          %z: i64[] = Add(%n, %a)
          return %y, %z
        }''')


def test_fold_constants_leaves_params_outputs_impure_ops_and_huge_results():
    src = '''
        graph g(%x: f32[2]) {
          %c: f32[2] = const [1.0, -2.0]
          %p: f32[2] = param [1.0, -2.0]
          %big: i64[2] = const [4096, 2048]
          %a: f32[2] = Neg(%p)
          %b: f32[2] = Abs(%c)
          %r: f32[2] = RandomUniformLike(%c)
          %e: f32[4096,2048] = ConstantOfShape(%big)
          %y: f32[2] = Add(%a, %r)
          return %y, %b, %e
        }'''
    assert unchanged("fold-constants", src)


def test_fold_constants_folds_a_transposed_weight_of_any_size(monkeypatch):
    """Transpose (like the reshapes) has as many elements as its input: it folds over the size
    limit, which still stops an Expand that would grow a weight."""
    from kiln.passes import fold_constants
    monkeypatch.setattr(fold_constants, "MAX_FOLDED_ELEMENTS", 4)
    src = '''
        graph g(%x: f32[4,2]) {
          %w: f32[2,3] = const [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
          %s: i64[2] = const [2, 3]
          %wt: f32[3,2] = Transpose(%w)
          %v: f32[2,3] = Reshape(%wt, %s) {allowzero=0}
          %y: f32[4,3] = MatMul(%x, %w)
          %z: f32[4,3] = MatMul(%x, %v)
          return %y, %z
        }'''
    out = run_pass("fold-constants", src)
    assert "Transpose" not in out and "Reshape" not in out
    assert "%v: f32[2,3] = const [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]" in out, out


def test_fold_constants_inside_a_subgraph_sees_outer_constants():
    src = '''
        graph g(%cond: bool[]) {
          %c: f32[2] = const [1.0, -2.0]
          %y: f32[2] = If(%cond) {else_branch=graph e() {
              return %c
            }, then_branch=graph t() {
              %n: f32[2] = Neg(%c)
              %m: f32[2] = Abs(%n)
              return %m
            }}
          return %y
        }'''
    assert run_pass("fold-constants", src) == ir('''
        graph g(%cond: bool[]) {
          %c: f32[2] = const [1.0, -2.0]
          %y: f32[2] = If(%cond) {else_branch=graph e() {
              return %c
            }, then_branch=graph t() {
              %n: f32[2] = const [-1.0, 2.0]
              %m: f32[2] = Abs(%n)
              return %m
            }}
          return %y
        }''')


# --- simplify --------------------------------------------------------------------------------
def test_simplify_drops_identity_but_not_a_graph_output():
    src = '''
        graph g(%x: f32[2]) {
          %a: f32[2] = Identity(%x)
          %b: f32[2] = Relu(%a)
          %c: f32[2] = Identity(%b)
          return %c
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%x: f32[2]) {
          %b: f32[2] = Relu(%x)
          %c: f32[2] = Identity(%b)
          return %c
        }''')


def test_simplify_redirects_uses_inside_subgraphs():
    src = '''
        graph g(%x: f32[2], %cond: bool[]) {
          %a: f32[2] = Identity(%x)
          %y: f32[2] = If(%cond) {else_branch=graph e() {
              return %a
            }, then_branch=graph t() {
              %n: f32[2] = Neg(%a)
              return %n
            }}
          return %y
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%x: f32[2], %cond: bool[]) {
          %y: f32[2] = If(%cond) {else_branch=graph e() {
              return %x
            }, then_branch=graph t() {
              %n: f32[2] = Neg(%x)
              return %n
            }}
          return %y
        }''')


def test_simplify_dropout_only_at_inference_with_unused_mask():
    src = '''
        graph g(%x: f32[2], %train: bool[]) {
          %f: bool[] = const [false]
          %a: f32[2] = Dropout(%x)
          %b: f32[2] = Dropout(%a, _, %f)
          %c: f32[2], %m: bool[2] = Dropout(%b)
          %d: f32[2] = Dropout(%c, _, %train)
          %e: f32[2], %unused: bool[2] = Dropout(%d)
          %y: f32[2] = Relu(%e)
          return %y, %m
        }'''
    assert run_pass("simplify", src, check=False) == ir('''
        graph g(%x: f32[2], %train: bool[]) {
          %f: bool[] = const [false]
          %c: f32[2], %m: bool[2] = Dropout(%x)
          %d: f32[2] = Dropout(%c, _, %train)
          %y: f32[2] = Relu(%d)
          return %y, %m
        }''')


def test_simplify_neutral_elements():
    src = '''
        graph g(%x: f32[2,3]) {
          %z: f32[] = const [0.0]
          %zr: f32[3] = const [0.0, 0.0, 0.0]
          %o: f32[1,3] = const [1.0, 1.0, 1.0]
          %a: f32[2,3] = Add(%x, %z)
          %b: f32[2,3] = Add(%zr, %a)
          %c: f32[2,3] = Sub(%b, %z)
          %d: f32[2,3] = Mul(%o, %c)
          %e: f32[2,3] = Div(%d, %o)
          %y: f32[2,3] = Relu(%e)
          return %y
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%x: f32[2,3]) {
          %z: f32[] = const [0.0]
          %zr: f32[3] = const [0.0, 0.0, 0.0]
          %o: f32[1,3] = const [1.0, 1.0, 1.0]
          %y: f32[2,3] = Relu(%x)
          return %y
        }''')


def test_simplify_keeps_ops_that_are_not_neutral():
    src = '''
        graph g(%x: f32[2,3], %v: f32[3]) {
          %z: f32[] = const [0.0]
          %o: f32[] = const [1.0]
          %p: f32[] = param [0.0]
          %half: f32[] = const [0.5]
          %z3: f32[2,2,3] = const @z3
          %a: f32[2,3] = Sub(%z, %x)
          %b: f32[2,3] = Div(%o, %a)
          %c: f32[2,3] = Add(%b, %p)
          %d: f32[2,3] = Mul(%c, %half)
          %e: f32[2,2,3] = Add(%d, %z3)
          %f: f32[2,3] = Add(%v, %z)
          return %e, %f
        }'''
    g = kiln.parse_ir(ir(src), weights={"z3": np.zeros((2, 2, 3), np.float32)})
    before = str(g)
    assert str(verify(PASSES["simplify"](g))) == before


def test_simplify_casts():
    src = '''
        graph g(%x: f32[2], %i: i32[2]) {
          %a: f32[2] = Cast(%x) {to=1}
          %b: f64[2] = Cast(%a) {to=11}
          %c: f32[2] = Cast(%b) {to=1}
          %d: i64[2] = Cast(%i) {to=7}
          %e: i32[2] = Cast(%d) {to=6}
          %h: f16[2] = Cast(%c) {to=10}
          %k: f32[2] = Cast(%h) {to=1}
          %m: i32[2] = Cast(%k) {to=6}
          %n: f32[2] = Cast(%m) {to=1}
          %ef: f32[2] = Cast(%e) {to=1}
          %s: f32[2] = Add(%n, %ef)
          return %s
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%x: f32[2], %i: i32[2]) {
          %b: f64[2] = Cast(%x) {to=11}
          %d: i64[2] = Cast(%i) {to=7}
          %h: f16[2] = Cast(%x) {to=10}
          %k: f32[2] = Cast(%h) {to=1}
          %m: i32[2] = Cast(%k) {to=6}
          %n: f32[2] = Cast(%m) {to=1}
          %ef: f32[2] = Cast(%i) {to=1}
          %s: f32[2] = Add(%n, %ef)
          return %s
        }''')


def test_exact_widening_is_exact_by_brute_force():
    """Every value of each 8/16-bit type (every bit pattern of f16 and bf16) survives the round
    trip through every type exact_widening accepts (signs of zeros too; a NaN stays a NaN, its
    payload may be quieted)."""
    from kiln.ir import dtypes
    from kiln.ops.elementwise import cast_array
    from kiln.passes.simplify import exact_widening
    names = ["bool", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f16", "bf16", "f32",
             "f64"]
    for a in ["bool", "i8", "u8", "i16", "u16", "f16", "bf16"]:
        da = dtypes.from_name(a)
        if a == "bool":
            xs = np.array([False, True])
        elif da.is_float:
            xs = np.arange(2 ** 16, dtype=np.uint16).view(da.numpy)
        else:
            info = np.iinfo(da.numpy)
            xs = np.arange(info.min, info.max + 1).astype(da.numpy)
        for b in names:
            db = dtypes.from_name(b)
            back = cast_array(cast_array(xs, db), da)
            if exact_widening(da, db):
                with np.errstate(invalid="ignore"):     # signalling NaNs
                    x64, b64 = xs.astype(np.float64), back.astype(np.float64)
                assert np.array_equal(b64, x64, equal_nan=True), (a, b)
                assert (np.isnan(x64) | (np.signbit(b64) == np.signbit(x64))).all(), (a, b)
    accepted = {(a, b) for a in names for b in names
                if exact_widening(dtypes.from_name(a), dtypes.from_name(b))}
    assert {("i8", "i16"), ("u8", "i16"), ("u8", "f16"), ("i16", "f32"), ("f16", "f32"),
            ("bf16", "f64"), ("bool", "f32")} <= accepted
    assert not accepted & {("i8", "u16"), ("i16", "f16"), ("f32", "f16"), ("f32", "bf16"),
                           ("i32", "f32"), ("f16", "bf16"), ("u64", "f64")}


def test_simplify_transpose_pairs():
    src = '''
        graph g(%x: f32[2,3,4]) {
          %a: f32[3,4,2] = Transpose(%x) {perm=[1, 2, 0]}
          %b: f32[4,3,2] = Transpose(%a) {perm=[1, 0, 2]}
          %c: f32[2,3,4] = Transpose(%b)
          %d: f32[2,3,4] = Relu(%c)
          %e: f32[4,3,2] = Transpose(%d)
          %f: f32[2,3,4] = Transpose(%e)
          return %f
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%x: f32[2,3,4]) {
          %a: f32[3,4,2] = Transpose(%x) {perm=[1, 2, 0]}
          %b: f32[4,3,2] = Transpose(%x) {perm=[2, 1, 0]}
          %d: f32[2,3,4] = Relu(%x)
          %e: f32[4,3,2] = Transpose(%d)
          %f: f32[2,3,4] = Transpose(%d) {perm=[0, 1, 2]}
          return %f
        }''')


def test_simplify_reshape_pairs():
    src = '''
        graph g(%x: f32[2,3,4], %dyn: i64[2]) {
          %s1: i64[2] = const [6, 4]
          %s2: i64[2] = const [4, -1]
          %s3: i64[2] = const [0, -1]
          %a: f32[6,4] = Reshape(%x, %s1)
          %b: f32[4,6] = Reshape(%a, %s2)
          %c: f32[?,?] = Reshape(%x, %dyn)
          %d: f32[?,?] = Reshape(%c, %s3)
          return %b, %d
        }'''
    assert run_pass("simplify", src, check=False) == ir('''
        graph g(%x: f32[2,3,4], %dyn: i64[2]) {
          %s1: i64[2] = const [6, 4]
          %s2: i64[2] = const [4, -1]
          %s3: i64[2] = const [0, -1]
          %a: f32[6,4] = Reshape(%x, %s1)
          %b: f32[4,6] = Reshape(%x, %s2)
          %c: f32[?,?] = Reshape(%x, %dyn)
          %d: f32[?,?] = Reshape(%c, %s3)
          return %b, %d
        }''')


def test_simplify_drops_reshapes_to_the_input_shape():
    src = '''
        graph g(%x: f32[N,64], %v: i64[1]) {
          %s: i64[2] = const [0, 64]
          %ax: i64[1] = const [0]
          %a: f32[N,64] = Reshape(%x, %s)
          %b: f32[N,64] = Flatten(%a) {axis=1}
          %c: i64[] = Squeeze(%v, %ax)
          %d: i64[1] = Unsqueeze(%c, %ax)
          %e: f32[N,64] = Relu(%b)
          %f: i64[1] = Neg(%d)
          return %e, %f
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%x: f32[N,64], %v: i64[1]) {
          %s: i64[2] = const [0, 64]
          %ax: i64[1] = const [0]
          %d_shape: i64[1] = const [1]
          %c: i64[] = Squeeze(%v, %ax)
          %e: f32[N,64] = Relu(%x)
          %f: i64[1] = Neg(%v)
          return %e, %f
        }''')


def test_simplify_squeeze_unsqueeze_flatten_chains_become_one_reshape():
    src = '''
        graph g(%x: f32[N,64,1,1]) {
          %ax: i64[1] = const [3]
          %ax0: i64[1] = const [0]
          %a: f32[N,64,1] = Squeeze(%x, %ax)
          %b: f32[N,64] = Flatten(%a) {axis=1}
          %c: f32[1,N,64] = Unsqueeze(%b, %ax0)
          %y: f32[1,N,64] = Relu(%c)
          return %y
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%x: f32[N,64,1,1]) {
          %ax: i64[1] = const [3]
          %ax0: i64[1] = const [0]
          %b_shape: i64[2] = const [-1, 64]
          %c_shape: i64[3] = const [1, -1, 64]
          %a: f32[N,64,1] = Squeeze(%x, %ax)
          %b: f32[N,64] = Reshape(%x, %b_shape)
          %c: f32[1,N,64] = Reshape(%x, %c_shape)
          %y: f32[1,N,64] = Relu(%c)
          return %y
        }''')


def test_simplify_shape_chains_need_constant_targets_and_an_expressible_shape():
    src = '''
        graph g(%x: f32[N,M,1], %axes: i64[1]) {
          %ax0: i64[1] = const [0]
          %a: f32[N,M] = Squeeze(%x, %axes)
          %b: f32[1,N,M] = Unsqueeze(%a, %ax0)
          %c: f32[1,1,N,M] = Unsqueeze(%b, %ax0)
          return %c
        }'''
    assert unchanged("simplify", src)


# --- fold-batchnorm --------------------------------------------------------------------------
BN_PARAMS = '''
          %scale: f32[2] = const [2.0, 6.0]
          %beta: f32[2] = const [0.25, 0.5]
          %mean: f32[2] = const [1.0, 0.0]
          %var: f32[2] = const [3.0, 8.0]'''       # epsilon=1: a = scale / sqrt(var + 1) = [1, 2]


def test_fold_batchnorm_into_conv():
    src = '''
        graph g(%x: f32[1,1,2,2]) {
          %w: f32[2,1,1,1] = const [1.0, 2.0]
          %b: f32[2] = const [0.5, -1.0]''' + BN_PARAMS + '''
          %c: f32[1,2,2,2] = Conv(%x, %w, %b) {kernel_shape=[1, 1]} loc("conv")
          %y: f32[1,2,2,2] = BatchNormalization(%c, %scale, %beta, %mean, %var) {epsilon=1.0}
          return %y
        }'''
    assert run_pass("fold-batchnorm", src) == ir('''
        graph g(%x: f32[1,1,2,2]) {
          %w: f32[2,1,1,1] = const [1.0, 2.0]
          %b: f32[2] = const [0.5, -1.0]''' + BN_PARAMS + '''
          %w_bn: f32[2,1,1,1] = const [1.0, 4.0]
          %b_bn: f32[2] = const [-0.25, -1.5]
          %y: f32[1,2,2,2] = Conv(%x, %w_bn, %b_bn) {kernel_shape=[1, 1]} loc("conv")
          return %y
        }''')
    same_results("fold-batchnorm", src, {"x": np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)})


def test_fold_batchnorm_into_gemm():
    src = '''
        graph g(%x: f32[3,2]) {
          %w: f32[2,2] = const [1.0, 2.0, 3.0, 4.0]
          %b: f32[2] = const [0.5, -1.0]''' + BN_PARAMS + '''
          %c: f32[3,2] = Gemm(%x, %w, %b) {beta=2.0, transB=1}
          %y: f32[3,2] = BatchNormalization(%c, %scale, %beta, %mean, %var) {epsilon=1.0}
          return %y
        }'''
    assert run_pass("fold-batchnorm", src) == ir('''
        graph g(%x: f32[3,2]) {
          %w: f32[2,2] = const [1.0, 2.0, 3.0, 4.0]
          %b: f32[2] = const [0.5, -1.0]''' + BN_PARAMS + '''
          %w_bn: f32[2,2] = const [1.0, 2.0, 6.0, 8.0]
          %b_bn: f32[2] = const [0.25, -3.5]
          %y: f32[3,2] = Gemm(%x, %w_bn, %b_bn) {transB=1}
          return %y
        }''')
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    same_results("fold-batchnorm", src, {"x": x})
    same_results("fold-batchnorm", src.replace(", transB=1", "").replace("beta=2.0", "alpha=0.5"),
                 {"x": x})
    same_results("fold-batchnorm", src.replace("%w, %b)", "%w)"), {"x": x})


def test_fold_batchnorm_into_grouped_conv_without_bias_keeps_results():
    rng = np.random.default_rng(0)
    src = '''
        graph g(%x: f32[1,4,5,5]) {
          %w: f32[2,2,3,3] = const @w''' + BN_PARAMS + '''
          %c: f32[1,2,3,3] = Conv(%x, %w) {group=2, kernel_shape=[3, 3]}
          %y: f32[1,2,3,3] = BatchNormalization(%c, %scale, %beta, %mean, %var) {epsilon=1.0}
          return %y
        }'''
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    before = run(kiln.parse_ir(ir(src), {"w": w}), {"x": x})
    g = verify(PASSES["fold-batchnorm"](kiln.parse_ir(ir(src), {"w": w})))
    assert [n.op for n in g.nodes] == ["Conv"]
    np.testing.assert_allclose(run(g, {"x": x})[0], before[0], rtol=1e-5, atol=1e-5)


def test_fold_batchnorm_leaves_what_it_cannot_fold():
    src = '''
        graph g(%x: f32[1,1,2,2]) {
          %w: f32[2,1,1,1] = const [1.0, 2.0]''' + BN_PARAMS + '''
          %pv: f32[2] = param [3.0, 8.0]
          %c1: f32[1,2,2,2] = Conv(%x, %w) {kernel_shape=[1, 1]}
          %y1: f32[1,2,2,2] = BatchNormalization(%c1, %scale, %beta, %mean, %var)
          %r1: f32[1,2,2,2] = Relu(%c1)
          %c2: f32[1,2,2,2] = Conv(%x, %w) {kernel_shape=[1, 1]}
          %y2: f32[1,2,2,2] = BatchNormalization(%c2, %scale, %beta, %mean, %pv)
          %c3: f32[1,2,2,2] = Conv(%x, %w) {kernel_shape=[1, 1]}
          %y3: f32[1,2,2,2] = BatchNormalization(%c3, %scale, %beta, %mean, %var) {training_mode=1}
          %c4: f32[1,2,2,2] = Conv(%x, %w) {kernel_shape=[1, 1]}
          %y4: f32[1,2,2,2] = BatchNormalization(%c4, %scale, %beta, %mean, %var)
          %y5: f32[1,1,2,2] = BatchNormalization(%x, %scale, %beta, %mean, %var)
          return %y1, %r1, %y2, %y3, %c4, %y4, %y5
        }'''
    # %c1 has another user, %pv is feedable, BN 3 trains, %c4 is a graph output, BN 5 stands alone
    assert unchanged("fold-batchnorm", src)


# --- the small CNN ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn():
    from kiln.testing.models import small_cnn
    g = kiln.import_onnx(small_cnn())
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    return str(g), g.weights(), {"image": x}, run(g, {"image": x})


@pytest.mark.parametrize("names", [["dce"], ["cse"], ["fold-constants"], ["simplify"],
                                   ["fold-batchnorm"],
                                   ["simplify", "fold-constants", "cse", "fold-batchnorm", "dce"]])
def test_passes_keep_small_cnn_results(cnn, names):
    text, weights, feeds, expected = cnn
    g = kiln.parse_ir(text, weights)
    for name in names:
        g = verify(PASSES[name](g))
    assert str(kiln.parse_ir(str(g), g.weights())) == str(g)
    np.testing.assert_allclose(run(g, feeds)[0], expected[0], rtol=1e-4, atol=1e-6)
    if "fold-batchnorm" in names:
        assert "BatchNormalization" not in str(g)


def test_simplify_pow_by_small_integers_becomes_multiplies():
    src = '''
        graph g(%x: f32[N,5]) {
          %two: f32[] = const [2.0]
          %three: f32[] = const [3.0]
          %one: f32[] = const [1.0]
          %half: f32[] = const [0.5]
          %a: f32[N,5] = Pow(%x, %two)
          %b: f32[N,5] = Pow(%a, %three)
          %c: f32[N,5] = Pow(%b, %one)
          %d: f32[N,5] = Pow(%c, %half)
          return %d
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%x: f32[N,5]) {
          %two: f32[] = const [2.0]
          %three: f32[] = const [3.0]
          %one: f32[] = const [1.0]
          %half: f32[] = const [0.5]
          %a: f32[N,5] = Mul(%x, %x)
          %b_mul: f32[N,5] = Mul(%a, %a)
          %b: f32[N,5] = Mul(%b_mul, %a)
          %d: f32[N,5] = Pow(%b, %half)
          return %d
        }''')


def test_simplify_gemm_between_reshapes_becomes_matmul_plus_bias():
    """torch's Linear on 3-D input (GPT-2's Conv1D) exports flatten -> Gemm -> unflatten; a
    transposed B gets a Transpose (folded later); alpha != 1 is left alone."""
    src = '''
        graph g(%h: f32[2,3,4], %w: f32[4,6], %b: f32[6], %wt: f32[6,4]) {
          %flat: i64[2] = const [-1, 4]
          %back: i64[3] = const [2, 3, 6]
          %a: f32[?,4] = Reshape(%h, %flat)
          %g: f32[?,6] = Gemm(%a, %w, %b)
          %y: f32[2,3,6] = Reshape(%g, %back)
          %g2: f32[?,6] = Gemm(%a, %wt, %b) {transB=1}
          %y2: f32[2,3,6] = Reshape(%g2, %back)
          %g3: f32[?,6] = Gemm(%a, %w, %b) {alpha=2.0}
          %y3: f32[2,3,6] = Reshape(%g3, %back)
          return %y, %y2, %y3
        }'''
    assert run_pass("simplify", src) == ir('''
        graph g(%h: f32[2,3,4], %w: f32[4,6], %b: f32[6], %wt: f32[6,4]) {
          %flat: i64[2] = const [-1, 4]
          %back: i64[3] = const [2, 3, 6]
          %a: f32[?,4] = Reshape(%h, %flat)
          %g: f32[?,6] = Gemm(%a, %w, %b)
          %y_matmul: f32[2,3,6] = MatMul(%h, %w)
          %y: f32[2,3,6] = Add(%y_matmul, %b)
          %g2: f32[?,6] = Gemm(%a, %wt, %b) {transB=1}
          %y2_transpose: f32[4,6] = Transpose(%wt)
          %y2_matmul: f32[2,3,6] = MatMul(%h, %y2_transpose)
          %y2: f32[2,3,6] = Add(%y2_matmul, %b)
          %g3: f32[?,6] = Gemm(%a, %w, %b) {alpha=2.0}
          %y3: f32[2,3,6] = Reshape(%g3, %back)
          return %y, %y2, %y3
        }''')
