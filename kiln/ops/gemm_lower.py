"""BLIS-style lowerings of MatMul, Gemm and PackedMatMul (fp32): cache blocking, packing, a
register-blocked FMA micro-kernel, threads over blocks, the fused epilogue per finished tile.

The loop nest (loop IR; the C support functions come from kiln/backend/microkernel.py):

    for t in 0..G parallel:                      # G = batch x gm x gn blocks of the output
      (m0, m1) x (n0, n1) = block t              # even split in micro-tile units
      for kb in 0..ceil(K/KC):                   # pc = kb*KC, kc = min(KC, K - pc)
        [B known only at run time: pack B[pc:pc+kc, n0:n1] -> per-thread scratch]
        for ib in 0..ceil((m1-m0)/MC):           # ic = m0 + ib*MC
          pack alpha * A[ic:ic+mc, pc:pc+kc] -> per-thread scratch (MR-row panels)
          for jb in 0..ceil((n1-n0)/NR):         # jr: the B panel stays in L1 while ...
            for rb in 0..ceil(mc/MR):            # ... the MR-row panels of A stream through it
              tile(kc, A panel, B panel, Y[ir:ir+mr, jr:jr+nr], accumulate = kb > 0)
              if kb is the last: beta * C and the fused epilogue on this mr x nr tile

Packed weights larger than the last-level cache (an LM head) swap the loops instead: the row block
of A is packed the whole K deep once, and for each jb the kb loop runs inside, so each column panel
of C is finished while in L1 (`_deep`).

B that is a compile-time constant arrives pre-packed (PackedMatMul, kiln/passes/pack_weights.py);
otherwise (activations: attention's QK^T and PV, or opt_level < 2) it is packed per block at run
time. The partition: with packed B, blocks split M first (each thread packs only its own rows of A,
B is shared read-only); with B packed at run time, few blocks of many rows (B is packed once per
block). Block counts are multiples of the thread count (read at run time) when above one, and
tiny products run on one thread. Ragged M/N/K go through the same kernel (zero-padded panels).
Anything else (f64, integers, shapes this does not handle) falls back to linalg_lower's loops.
An ungrouped 2-D Conv is the same GEMM per image (W @ im2col(X[n]), bias and fused epilogue per
tile): at 1x1/stride 1/no padding X[n] is packed as it is, otherwise im2col panels are gathered
from X while packing (implicit GEMM). Grouped and other convolutions keep nn_lower's lowering.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..backend.microkernel import host_config, last_level_cache
from ..lower.context import LowerCtx, NotLowerable, TensorRef
from ..lower.loopir import (Bin, Call, CallC, Const, Expr, For, If, Let, Load, Ref, Select, Store, Var,
                            add, mul, product, sub)
from . import linalg_lower

# block counts are multiples of the thread count, read at run time into `par` at the head of the
# kernel (omp_get_max_threads: one library serves any thread count a Module is given)
PAR = Var("par", "i64")
BATCH_BLOCKS = 8         # at least this many matrices in a batch: one row block per matrix
DIRECT_M = 16            # B known at run time and at most this many rows: read B in place
SMALL = 1 << 15          # M*N*K below this: one block (threading costs more than it gives)
DEEP_A_BYTES = 512 << 10  # A packed the whole K deep when its MC rows take at most this (L2)
SHALLOW_K = 64           # K up to this: tiles walk along C's rows (storing C costs more than the FMAs)
I64 = "i64"


# --- index arithmetic with constant folding ----------------------------------------------------
def _c(v) -> Expr:
    return v if not isinstance(v, int) else Const(v)


def _div(a, b) -> Expr:
    a, b = _c(a), _c(b)
    if isinstance(b, Const) and b.value == 1:
        return a
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value // b.value)
    return Bin("/", a, b, I64)


def _mod(a, b) -> Expr:
    a, b = _c(a), _c(b)
    if isinstance(b, Const) and b.value == 1:
        return Const(0)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value % b.value)
    return Bin("%", a, b, I64)


def _cdiv(a, b: int) -> Expr:
    return _div(add(_c(a), Const(b - 1)), b)


def _min(a, b) -> Expr:
    a, b = _c(a), _c(b)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(min(a.value, b.value))
    return Bin("min", a, b, I64)


def _max(a, b) -> Expr:
    a, b = _c(a), _c(b)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(max(a.value, b.value))
    return Bin("max", a, b, I64)


def _round_up(g: Expr) -> Expr:
    """g (a name or a constant: it appears three times) rounded up to a multiple of the thread
    count when above 1."""
    if isinstance(g, Const) and g.value <= 1:
        return g
    return Select(Bin(">", g, Const(1), "bool"), mul(_div(add(g, sub(PAR, Const(1))), PAR), PAR),
                  g, I64)


def _unflatten(flat: Expr, dims: list) -> list:
    """Multi-index of `flat` in row-major `dims`."""
    out = []
    for k in range(len(dims)):
        q = _div(flat, product(dims[k + 1:]))
        out.append(q if k == 0 else _mod(q, dims[k]))
    return out


# --- the GEMM ----------------------------------------------------------------------------------
@dataclass
class GemmSpec:
    """Y[b] (M x N, row-major, ldc N) = alpha * A[b] @ B[b] (+ beta * C), then the epilogue."""
    M: Expr
    N: Expr
    K: Expr
    batch: list                          # output batch dims ([] when none)
    a: TensorRef
    a_base: Callable[[list], Expr]       # element offset of A[b] for batch index vars
    rsa: Expr                            # A[b][i, k] = a[a_base + i*rsa + k*csa]
    csa: Expr
    b: TensorRef
    packed: bool                         # b is packed at compile time (kiln/ops/gemm.py layout)
    b_base: Callable[[list], Expr]
    rsb: Expr                            # runtime B[b][k, j] = b[b_base + k*rsb + j*csb]
    csb: Expr
    y: TensorRef
    out_idx: Callable[[list, Expr, Expr], list]   # output multi-index (epilogue) of (b, m, n)
    alpha: float = 1.0
    c: TensorRef | None = None           # Gemm's C, broadcast to M x N
    beta: float = 0.0
    # B gathered while packing (implicit GEMM): (bbase, pc, kc, n0, nc) -> the packing call
    gather_b: Callable | None = None
    split_n: bool = False                # threads split the columns (each packs only its own)
    a_packed: bool = False               # A packed at compile time (kiln/ops/gemm.py: pack_a)


def _direct(spec: GemmSpec) -> bool:
    """Few rows and a row-major B known at run time: the tiles read B in place (no packing). Not
    when a single row panel would walk B's columns with a row stride of a multiple of 4 KiB (every
    row in the same cache set: packing, which reads rows sequentially, is faster then)."""
    if spec.packed or spec.a_packed or spec.gather_b is not None or \
            not (isinstance(spec.M, Const) and spec.M.value <= DIRECT_M):
        return False
    if not (isinstance(spec.csb, Const) and spec.csb.value == 1):
        return False
    aliased = not isinstance(spec.rsb, Const) or spec.rsb.value % 1024 == 0
    return spec.M.value > 6 or not aliased


def _if_one(g: Expr, a: Expr, b: Expr) -> Expr:
    """a when g == 1, else b (folded when g is known)."""
    if isinstance(g, Const):
        return a if g.value == 1 else b
    return Select(Bin("==", g, Const(1), "bool"), a, b, I64)


def _partition(spec: GemmSpec, cfg, bind) -> tuple[Expr, Expr]:
    """gm x gn blocks per matrix. Columns: blocks of at most NC. Rows: with B packed ahead (or read
    in place) blocks of about MC rows, a multiple of the thread count (each thread packs only its
    rows of A); with B packed per block, at most one block of rows per thread. One row block
    (M <= MC): split the columns between the threads instead. Tiny products and batches of
    matrices: no split. `bind(prefix, expr)` names a runtime expression (a Let), keeping the C
    readable."""
    nmr, nnr = _cdiv(spec.M, cfg.mr), _cdiv(spec.N, cfg.nr)
    gn_nc = bind("gnc", _max(_cdiv(nnr, cfg.nc // cfg.nr), 1))
    if spec.packed or _direct(spec):
        gm = _min(nmr, bind("gmr", _round_up(bind("gmc", _max(1, _cdiv(nmr, cfg.mc // cfg.mr))))))
    elif spec.split_n:
        gm = Const(1)
    else:
        gm = _min(_max(nmr, 1), PAR)
    gm = bind("gm", _max(gm, 1))
    gn = _if_one(gm, _min(_max(nnr, 1), bind("gnr", _round_up(bind("gnp", _max(gn_nc, PAR))))), gn_nc)
    gn = bind("gn", _max(gn, 1))
    nb = product(spec.batch)
    if isinstance(nb, Const) and nb.value >= BATCH_BLOCKS:  # enough matrices: one row block each,
        gm, gn = Const(1), gn_nc                          # B's columns still in blocks of NC
    work = mul(mul(spec.M, spec.N), spec.K)
    if isinstance(work, Const):
        if work.value < SMALL:
            return Const(1), Const(1)
        return gm, gn
    small = Bin("<", work, Const(SMALL), "bool")
    return Select(small, Const(1), gm, I64), Select(small, Const(1), gn, I64)


def emit_gemm(ctx: LowerCtx, spec: GemmSpec) -> list:
    cfg = host_config()
    MR, NR, MC, KC = cfg.mr, cfg.nr, cfg.mc, cfg.kc
    M, N, K = spec.M, spec.N, spec.K

    def var(prefix):
        return Var(ctx.fresh(prefix))

    def let(v: Var, e: Expr):
        return Let(v.name, e, I64)

    head = [let(PAR, Call("threads", (), I64))]

    def bind(prefix: str, e: Expr) -> Expr:
        if isinstance(e, (Const, Var)):
            return e
        v = var(prefix)
        head.append(let(v, e))
        return v
    gm_e, gn_e = _partition(spec, cfg, bind)
    gm, gn, t = var("gm"), var("gn"), var("t")
    nb = product(spec.batch)
    head += [let(gm, gm_e), let(gn, gn_e)]
    body = []
    blocks = mul(gm, gn)
    tb, tr, bm, bn = var("tb"), var("tr"), var("bm"), var("bn")
    body += [let(tb, _div(t, blocks)), let(tr, _mod(t, blocks)), let(bm, _div(tr, gn)),
             let(bn, _mod(tr, gn))]
    bvars = []
    for k, e in enumerate(_unflatten(tb, spec.batch)):
        bv = var("b")
        body.append(let(bv, e))
        bvars.append(bv)
    nmr, nnr = _cdiv(M, MR), _cdiv(N, NR)
    m0, m1, n0, n1 = var("m0"), var("m1"), var("n0"), var("n1")
    body += [let(m0, mul(_div(mul(bm, nmr), gm), Const(MR))),
             let(m1, _min(mul(_div(mul(add(bm, Const(1)), nmr), gm), Const(MR)), M)),
             let(n0, mul(_div(mul(bn, nnr), gn), Const(NR))),
             let(n1, _min(mul(_div(mul(add(bn, Const(1)), nnr), gn), Const(NR)), N))]
    abase, ybase = var("abase"), var("ybase")
    body += [let(abase, spec.a_base(bvars)), let(ybase, mul(tb, mul(M, N)))]
    direct = _direct(spec)
    if not spec.packed:
        bbase = var("bbase")
        body.append(let(bbase, spec.b_base(bvars)))
    nkb = _max(_cdiv(K, KC), 1)          # K = 0 still stores zeros (one empty block)
    kb, pc, kc = var("kb"), var("pc"), var("kc")
    ib, ic, mc = var("ib"), var("ic"), var("mc")
    jb, jr, nr = var("jb"), var("jr"), var("nr")
    rb, ir, mr = var("rb"), var("ir"), var("mr")
    # the tile
    y_at = add(ybase, add(mul(ir, N), jr))
    deep = _deep(spec, cfg)
    if spec.packed:
        # the (kc x Np) block of B at row pc, then panel n0/NR + jb of it (kiln/ops/gemm.py); A's
        # panel rb packed kc deep, or (deep) the whole K deep with this block pc*MR into it
        npad = mul(_cdiv(N, NR), Const(NR))
        panel = add(mul(pc, npad), mul(mul(add(_div(n0, NR), jb), kc), Const(NR)))
        a_off = (add(mul(mul(rb, Const(MR)), K), mul(pc, Const(MR))) if deep
                 else mul(mul(rb, Const(MR)), kc))
        call = CallC(cfg.fn("tile"), (kc, a_off, Ref(spec.b.buf, panel, "f32"),
                                      Ref(spec.y.buf, y_at, "f32"), N, mr, nr,
                                      Bin(">", kb, Const(0), "bool"), Bin("==", rb, Const(0), "bool")))
    elif direct:
        call = CallC(cfg.fn("tile_d"), (kc, mul(mul(rb, Const(MR)), kc),
                                        Ref(spec.b.buf, add(bbase, add(mul(pc, spec.rsb), jr)), "f32"),
                                        spec.rsb, Ref(spec.y.buf, y_at, "f32"), N, mr, nr,
                                        Bin(">", kb, Const(0), "bool")))
    elif spec.a_packed:
        # the panel of rows ir.. in the block of depth pc.. (kiln/ops/gemm.py: pack_a)
        mpad = mul(_cdiv(M, MR), Const(MR))
        call = CallC(cfg.fn("tile_ps"), (kc, Ref(spec.a.buf, add(mul(pc, mpad), mul(ir, kc)), "f32"),
                                         mul(mul(jb, Const(NR)), kc), Ref(spec.y.buf, y_at, "f32"), N,
                                         mr, nr, Bin(">", kb, Const(0), "bool")))
    else:
        call = CallC(cfg.fn("tile_s"), (kc, mul(mul(rb, Const(MR)), kc), mul(mul(jb, Const(NR)), kc),
                                        Ref(spec.y.buf, y_at, "f32"), N, mr, nr,
                                        Bin(">", kb, Const(0), "bool")))
    tile = [call]
    fin = _finish(ctx, spec, bvars, ybase, ir, jr, mr, nr)
    if fin:
        tile.append(If(Bin("==", kb, sub(nkb, Const(1)), "bool"), fin))
    row = [let(ir, add(ic, mul(rb, Const(MR)))), let(mr, _min(Const(MR), sub(mc, mul(rb, Const(MR)))))]
    col = [let(jr, add(n0, mul(jb, Const(NR)))), let(nr, _min(Const(NR), sub(n1, jr)))]
    rows, cols = (rb.name, _cdiv(mc, MR)), (jb.name, _cdiv(sub(n1, n0), NR))
    if isinstance(K, Const) and K.value <= SHALLOW_K:
        # shallow products: the C tiles dominate, so walk each row panel's tiles along the rows
        # of C (MR output streams) rather than down a column of tiles (mc streams, far apart)
        inner = For(rows[0], rows[1], row + [For(cols[0], cols[1], col + tile)])
    else:
        # the B panel stays in L1 while the MR-row panels of A stream through it
        inner = For(cols[0], cols[1], col + [For(rows[0], rows[1], row + tile)])
    iloop = [let(ic, add(m0, mul(ib, Const(MC)))), let(mc, _min(Const(MC), sub(m1, ic)))]
    kloop = [let(pc, mul(kb, Const(KC))), let(kc, _min(Const(KC), sub(K, pc)))]
    if deep:
        # A's rows packed once, the whole K deep; then each column panel of C is finished over
        # all of K while it sits in L1, instead of the block of C going through memory once per kb
        iloop.append(CallC(cfg.fn("pack_a"), (Ref(spec.a.buf, add(abase, mul(ic, spec.rsa)), "f32"),
                                              spec.rsa, spec.csa, mc, K, Const(float(spec.alpha), "f32"))))
        kloop.append(For(rows[0], rows[1], row + tile))
        iloop.append(For(cols[0], cols[1], col + [For(kb.name, nkb, kloop)]))
        body.append(For(ib.name, _cdiv(sub(m1, m0), MC), iloop))
    else:
        if not spec.a_packed:
            iloop.append(CallC(cfg.fn("pack_a"), (
                Ref(spec.a.buf, add(abase, add(mul(ic, spec.rsa), mul(pc, spec.csa))), "f32"),
                spec.rsa, spec.csa, mc, kc, Const(float(spec.alpha), "f32"))))
        iloop.append(inner)
        if spec.gather_b is not None:
            kloop.append(spec.gather_b(bbase, pc, kc, n0, sub(n1, n0)))
        elif not spec.packed and not direct:
            kloop.append(CallC(cfg.fn("pack_b"), (
                Ref(spec.b.buf, add(bbase, add(mul(pc, spec.rsb), mul(n0, spec.csb))), "f32"),
                spec.rsb, spec.csb, kc, sub(n1, n0))))
        kloop.append(For(ib.name, _cdiv(sub(m1, m0), MC), iloop))
        body.append(For(kb.name, nkb, kloop))
    ctx.epilogue_done = True
    return head + [For(t.name, mul(nb, mul(gm, gn)), body, "parallel")]


def _deep(spec: GemmSpec, cfg) -> bool:
    """Finish each column panel of C over all of K (A's row block packed the whole K deep) rather
    than passing over the block of C once per KC: for weights packed ahead that are larger than the
    last-level cache (a language model's output projection: streaming them evicts the block of C
    between passes, so each pass would cost a round trip to memory), with A's MC x K rows small
    enough for L2. Measured on GPT-2's 128 x 768 x 50257 LM head: 5-11% faster; on weights that fit
    in the cache it is slower (BERT's 128 x 768 x 3072: 7%)."""
    K, N = spec.K, spec.N
    return (spec.packed and spec.gather_b is None and isinstance(K, Const) and isinstance(N, Const)
            and cfg.kc < K.value and cfg.mc * K.value * 4 <= DEEP_A_BYTES
            and K.value * N.value * 4 > last_level_cache())


def _finish(ctx: LowerCtx, spec: GemmSpec, bvars, ybase, ir, jr, mr, nr) -> list:
    """What runs on a finished mr x nr tile: + beta * C, then the fused epilogue."""
    if spec.c is None and ctx.epilogue is None:
        return []
    i, j = Var(ctx.fresh("i")), Var(ctx.fresh("j"))
    m, n = add(ir, i), add(jr, j)
    flat = add(ybase, add(mul(m, spec.N), n))
    stmts = []
    if spec.c is not None:
        cref = spec.c
        cidx = ctx.broadcast_index(cref, [spec.M, spec.N], [m, n])
        val = Bin("+", Load(spec.y.buf, flat, "f32"),
                  Bin("*", Const(float(spec.beta), "f32"), cref.load(cidx), "f32"), "f32")
        stmts.append(Store(spec.y.buf, flat, val))
    if ctx.epilogue is not None:
        stmts += ctx.epilogue(flat, spec.out_idx(bvars, m, n))
    return [For(i.name, mr, [For(j.name, nr, stmts, "vector")])]


# --- the ops -------------------------------------------------------------------------------
def _f32(*refs) -> bool:
    return all(r is None or r.dtype == "f32" for r in refs)


def _batch_offset(t: TensorRef, batch: list, bvars: list) -> Expr:
    """Element offset of t's matrix (its last two dims) for output batch index bvars, with numpy
    broadcasting of t's batch dims."""
    tb = list(t.shape[:-2])
    stride = mul(t.shape[-2], t.shape[-1])
    lead = len(batch) - len(tb)
    off: Expr = Const(0)
    for k in reversed(range(len(tb))):
        d, i = tb[k], bvars[k + lead]
        if isinstance(d, Const) and d.value == 1:
            pass
        elif d == batch[k + lead] or isinstance(d, Const):
            off = add(off, mul(i, stride))
        else:                   # both runtime dims: broadcast decided at run time
            off = add(off, mul(Select(Bin("==", d, Const(1), "bool"), Const(0), i, I64), stride))
        stride = mul(stride, d)
    return off


def _matmul_spec(ctx: LowerCtx, a0: TensorRef, b0: TensorRef, y0: TensorRef, packed: bool,
                 K=None, N=None) -> GemmSpec:
    """numpy-matmul semantics; b0 is the runtime B (…, K, N)/(K,) or, packed, the panels."""
    if packed or b0.rank <= 2:
        # B is one matrix: A's leading dims fold into M (A and Y are contiguous row-major)
        if packed:
            b_rank = 2
        else:
            b_rank = b0.rank
            K = b0.shape[0]
            N = b0.shape[1] if b0.rank == 2 else Const(1)
        rows = list(a0.shape[:-1])
        M = product(rows)

        def out_idx(bvars, m, n):
            return _unflatten(m, rows) + ([n] if b_rank == 2 else [])
        return GemmSpec(M, N, K, [], a0, lambda bv: Const(0), K, Const(1), b0, packed,
                        lambda bv: Const(0), N if b_rank == 2 else Const(1), Const(1), y0, out_idx)
    a = a0 if a0.rank > 1 else TensorRef(a0.buf, a0.dtype, [Const(1), a0.shape[0]])
    M, K, N = a.shape[-2], a.shape[-1], b0.shape[-1]
    batch = list(y0.shape[:y0.rank - (1 if a0.rank == 1 else 2)])

    def out_idx(bvars, m, n):
        return list(bvars) + ([m] if a0.rank > 1 else []) + [n]
    return GemmSpec(M, N, K, batch, a, lambda bv: _batch_offset(a, batch, bv), K, Const(1), b0,
                    False, lambda bv: _batch_offset(b0, batch, bv), N, Const(1), y0, out_idx)


def lower_matmul(ctx: LowerCtx):
    a0, b0, y0 = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    if not _f32(a0, b0, y0) or a0.rank == 0 or b0.rank == 0:
        return linalg_lower.lower_matmul(ctx)
    return emit_gemm(ctx, _matmul_spec(ctx, a0, b0, y0, False))


def _gemm_spec(ctx: LowerCtx, b: TensorRef, packed: bool, K, N, trans_a, trans_b,
               alpha, beta) -> GemmSpec:
    a, y = ctx.inputs[0], ctx.outputs[0]
    cc = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    if beta == 0:
        cc = None
    M = y.shape[0]
    rsa, csa = (Const(1), M) if trans_a else (K, Const(1))
    rsb, csb = (Const(1), K) if trans_b else (N, Const(1))
    return GemmSpec(M, N, K, [], a, lambda bv: Const(0), rsa, csa, b, packed, lambda bv: Const(0),
                    rsb, csb, y, lambda bv, m, n: [m, n], alpha, cc, beta)


def lower_gemm(ctx: LowerCtx):
    a, b, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    cc = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    if not _f32(a, b, y, cc) or a.rank != 2 or b.rank != 2 or (cc is not None and cc.rank > 2):
        return linalg_lower.lower_gemm(ctx)
    at = ctx.attrs
    K = a.shape[0] if at["transA"] else a.shape[1]
    N = y.shape[1]
    return emit_gemm(ctx, _gemm_spec(ctx, b, False, K, N, at["transA"], at["transB"],
                                     at["alpha"], at["beta"]))


def lower_packed(ctx: LowerCtx):
    a, bp, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    cc = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    at = ctx.attrs
    cfg = host_config()
    shape = bp.static_shape()
    if shape is None or len(shape) != 2 or shape[1] != cfg.nr or at["kc"] != cfg.kc:
        raise NotLowerable("weights packed for another micro-kernel")
    if not _f32(a, y, cc) or (cc is not None and cc.rank > 2):
        raise NotLowerable("PackedMatMul on non-f32 operands")
    K, N = Const(at["k"]), Const(at["n"])
    if at["gemm"]:
        return emit_gemm(ctx, _gemm_spec(ctx, bp, True, K, N, at["trans_a"], False,
                                         at["alpha"], at["beta"]))
    return emit_gemm(ctx, _matmul_spec(ctx, a, bp, y, True, K, N))


def lower_conv_gemm(ctx: LowerCtx):
    """An ungrouped 2-D f32 convolution is a GEMM per image: Y[n] (M x OH*OW) = W (M x C*KH*KW) @
    im2col(X[n]), the bias broadcast along rows. At 1x1, stride 1 and no padding im2col(X[n]) is X[n]
    itself (packed like any matrix); otherwise its panels are gathered from X while packing
    (implicit GEMM: the im2col matrix never exists whole). None when the convolution is not of that
    kind (the direct lowering then runs)."""
    from .nn_lower import conv_geometry
    x, w, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    b = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    at = ctx.attrs
    packed = ctx.node.op == "PackedConv"

    def refuse(why: str):
        """A Conv of another kind goes to the direct lowering; a PackedConv has nowhere to go."""
        if packed:
            raise NotLowerable(why)
        return None
    if packed:
        shape, cfg = w.static_shape(), host_config()
        if shape is None or len(shape) != 2 or shape[1] != cfg.mr or at["kc"] != cfg.kc:
            return refuse("weights packed for another micro-kernel")
        ws = (at["m"], at["c"], *at["kernel_shape"])
    else:
        ws = w.static_shape()
    if x.rank != 4 or ws is None or len(ws) != 4 or at["group"] != 1:
        return refuse("not an ungrouped 2-D convolution")
    if not _f32(x, w, y, b) or (b is not None and b.rank != 1):
        return refuse("convolution on non-f32 operands")
    try:
        _, _, _, kernel, strides, dil, begin, _ = conv_geometry(ctx)
    except NotLowerable as e:
        return refuse(str(e))
    M, C = Const(ws[0]), Const(ws[1])
    K = Const(ws[1] * ws[2] * ws[3])
    H, W = x.shape[2], x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    HWo = mul(OH, OW)
    wmat = TensorRef(w.buf, w.dtype, [M, K], w.data)
    bias = None if b is None else TensorRef(b.buf, b.dtype, [M, Const(1)])
    cfg = host_config()
    plain = kernel == (1, 1) and strides == (1, 1) and begin == (0, 0)

    def gather(bbase, pc, kc, n0, nc):
        geom = [Const(v) for v in (*kernel, *strides, *begin, *dil)]
        return CallC(cfg.fn("pack_b_conv"), (Ref(x.buf, bbase, "f32"), H, W, OW, *geom, pc, kc, n0, nc))

    def out_idx(bv, m, n):
        return [bv[0], m, _div(n, OW), _mod(n, OW)]
    big_n = isinstance(HWo, Const) and HWo.value >= ws[0]
    spec = GemmSpec(M, HWo, K, [x.shape[0]], wmat, lambda bv: Const(0), K, Const(1), x, False,
                    lambda bv: mul(bv[0], mul(C, mul(H, W))), HWo, Const(1), y, out_idx, 1.0, bias,
                    1.0, None if plain else gather, split_n=not plain and big_n, a_packed=packed)
    return emit_gemm(ctx, spec)


def _conv_or(direct):
    def lower(ctx: LowerCtx):
        stmts = lower_conv_gemm(ctx)
        return direct(ctx) if stmts is None else stmts
    lower.__doc__ = f"1x1 convolutions as GEMM (gemm_lower), others: {direct.__module__}"
    return lower


LOWER = {"MatMul": lower_matmul, "Gemm": lower_gemm, "PackedMatMul": lower_packed,
         "PackedConv": lower_conv_gemm}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
        elif d.name == "Conv" and d.lower is not None:
            d.lower = _conv_or(d.lower)
