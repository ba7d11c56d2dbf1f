"""String ops: StringNormalizer, RegexFullMatch, StringSplit, StringConcat, TfIdfVectorizer.

String tensors are numpy object arrays of Python `str` (bytes are decoded as UTF-8 on the way in).
"""
from __future__ import annotations

import re

import numpy as np

from ..ir import dtypes
from .infer import InferContext, TensorType, broadcast
from .registry import op


def _text(s) -> str:
    return s.decode("utf-8") if isinstance(s, bytes) else str(s)


def _strings(x) -> np.ndarray:
    """An object array of str with x's shape."""
    x = np.asarray(x, dtype=object)
    out = np.empty(x.shape, dtype=object)
    for i, s in np.ndenumerate(x):
        out[i] = _text(s)
    return out


# --- StringNormalizer ----------------------------------------------------------------------------
def _infer_normalizer(ctx: InferContext):
    shape = ctx.shape(0)
    if shape is not None and ctx.attrs["stopwords"]:
        shape = shape[:-1] + (None,)
    return [TensorType(dtypes.string, shape)]


@op("StringNormalizer", inputs=["X"], outputs=["Y"],
    attrs=dict(case_change_action="NONE", is_case_sensitive=0, locale="", stopwords=None),
    infer=_infer_normalizer)
def string_normalizer(X, *, case_change_action, is_case_sensitive, locale, stopwords):
    """Drop stop words from a [C] or [1, C] string tensor, then lower- or upper-case it."""
    words = _strings(X).reshape(-1)
    fold = (lambda s: s) if is_case_sensitive else (lambda s: s.lower())
    stop = {fold(w) for w in (stopwords or [])}
    kept = [w for w in words if fold(w) not in stop]
    if case_change_action == "LOWER":
        kept = [w.lower() for w in kept]
    elif case_change_action == "UPPER":
        kept = [w.upper() for w in kept]
    if not kept:
        kept = [""]                     # all dropped: one empty string, as ONNX specifies
    out = np.array(kept, dtype=object)
    return out.reshape(1, -1) if X.ndim == 2 else out


# --- RegexFullMatch ------------------------------------------------------------------------------
@op("RegexFullMatch", inputs=["X"], outputs=["Y"], attrs=dict(pattern=""),
    infer=lambda ctx: [TensorType(dtypes.boolean, ctx.shape(0))])
def regex_full_match(X, *, pattern):
    """True where the whole string matches `pattern` (RE2 syntax, run with Python's re)."""
    rx = re.compile(pattern)
    out = np.zeros(X.shape, dtype=bool)
    for i, s in np.ndenumerate(np.asarray(X, dtype=object)):
        out[i] = rx.fullmatch(_text(s)) is not None
    return out


# --- StringSplit ---------------------------------------------------------------------------------
def _infer_split(ctx: InferContext):
    shape = ctx.shape(0)
    y = None if shape is None else tuple(shape) + (None,)
    return [TensorType(dtypes.string, y), TensorType(dtypes.i64, shape)][:ctx.n_outputs]


@op("StringSplit", inputs=["X"], outputs=["Y", "Z"], attrs=dict(delimiter="", maxsplit=None),
    infer=_infer_split)
def string_split(X, *, delimiter, maxsplit):
    """Split each string on `delimiter` (on runs of whitespace when empty), padding with ""."""
    limit = -1 if maxsplit is None else int(maxsplit)
    sep = delimiter or None
    parts = {}
    for i, s in np.ndenumerate(np.asarray(X, dtype=object)):
        parts[i] = _text(s).split(sep, limit)
    width = max((len(p) for p in parts.values()), default=0)
    Y = np.full(X.shape + (width,), "", dtype=object)
    Z = np.zeros(X.shape, dtype=np.int64)
    for i, p in parts.items():
        Y[i][:len(p)] = p
        Z[i] = len(p)
    return Y, Z


# --- StringConcat --------------------------------------------------------------------------------
_concat = np.frompyfunc(lambda a, b: _text(a) + _text(b), 2, 1)


@op("StringConcat", inputs=["X", "Y"], outputs=["Z"], infer=broadcast(dtypes.string))
def string_concat(X, Y):
    """Elementwise X + Y on strings, with numpy broadcasting."""
    return np.asarray(_concat(X, Y), dtype=object)


# --- TfIdfVectorizer -----------------------------------------------------------------------------
def _pool(pool, ngram_counts, max_len):
    """{n-gram tuple: position in the pool} for n = 1 .. max_len."""
    table = {}
    starts = list(ngram_counts) + [len(pool)]
    index = 0
    for n in range(1, len(starts)):
        lo, hi = starts[n - 1], starts[n]
        for k in range(lo, hi, n):
            if n <= max_len:
                table[tuple(pool[k:k + n])] = index
            index += 1
    return table


def _count_ngrams(row, table, counts, min_n, max_n, max_skip):
    """Add the counts of every n-gram of `row` found in `table` (each 1-gram counted once)."""
    length = len(row)
    for n in range(min_n, max_n + 1):
        skips = range(max_skip + 1) if n > 1 else range(1)
        for skip in skips:
            step = skip + 1
            for start in range(length - (n - 1) * step):
                key = tuple(row[start + k * step] for k in range(n))
                hit = table.get(key)
                if hit is not None:
                    counts[hit] += 1


def _infer_tfidf(ctx: InferContext):
    width = max(ctx.attrs["ngram_indexes"]) + 1
    shape = ctx.shape(0)
    out = None if shape is None else ((width,) if len(shape) == 1 else (shape[0], width))
    return [TensorType(dtypes.f32, out)]


@op("TfIdfVectorizer", inputs=["X"], outputs=["Y"],
    attrs=dict(max_gram_length=1, max_skip_count=0, min_gram_length=1, mode="TF",
               ngram_counts=[], ngram_indexes=[], pool_int64s=None, pool_strings=None,
               weights=None),
    infer=_infer_tfidf)
def tfidf_vectorizer(X, *, max_gram_length, max_skip_count, min_gram_length, mode, ngram_counts,
                     ngram_indexes, pool_int64s, pool_strings, weights):
    """Count (optionally IDF-weighted) skip-n-grams of each row that appear in the pool."""
    if pool_strings is not None:
        pool, rows = list(pool_strings), _strings(X)
    else:
        pool, rows = [int(v) for v in pool_int64s], np.asarray(X).astype(np.int64)
    table = _pool(pool, ngram_counts, max_gram_length)
    rows2 = rows.reshape(1, -1) if rows.ndim == 1 else rows.reshape(rows.shape[0], -1)
    width = max(ngram_indexes) + 1
    w = np.ones(len(ngram_indexes)) if weights is None else np.asarray(weights, np.float64)
    out = np.zeros((rows2.shape[0], width), np.float32)
    for r, row in enumerate(rows2):
        counts = np.zeros(len(ngram_indexes), np.float64)
        _count_ngrams(row.tolist(), table, counts, min_gram_length, max_gram_length,
                      max_skip_count)
        if mode == "IDF":
            counts = np.minimum(counts, 1) * w
        elif mode == "TFIDF":
            counts = counts * w
        out[r, np.asarray(ngram_indexes, np.int64)] = counts
    return out[0] if rows.ndim == 1 else out

