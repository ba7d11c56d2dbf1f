"""Classic ML ops of the ai.onnx.ml domain: LabelEncoder, TreeEnsemble, ArrayFeatureExtractor,
Binarizer, Normalizer, Scaler, OneHotEncoder, Imputer, CategoryMapper, FeatureVectorizer,
LinearRegressor, LinearClassifier, and the deprecated TreeEnsembleRegressor / Classifier.

kiln names them "ml.<OnnxName>"; the registry maps them back to (ai.onnx.ml, <OnnxName>).
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import dtypes
from .infer import InferContext, TensorType, same_as
from .registry import op

DOMAIN = "ai.onnx.ml"


def _text(s) -> str:
    return s.decode("utf-8") if isinstance(s, bytes) else str(s)


def _rows(X) -> np.ndarray:
    """X as float64 rows: [C] -> [1, C], [N, ...] -> [N, C]."""
    x = np.asarray(X, np.float64)
    return x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)


def _float_out(ctx: InferContext):
    return [TensorType(dtypes.f32, ctx.shape(0))]


# --- post transforms (shared by trees and linear models) -----------------------------------------
def _erfinv(y: np.ndarray) -> np.ndarray:
    """Inverse error function: Giles' approximation refined by two Newton steps."""
    y = np.asarray(y, np.float64)
    w = -np.log((1.0 - y) * (1.0 + y))
    small = w < 5.0
    ws = w - 2.5
    wl = np.sqrt(np.maximum(w, 5.0)) - 3.0
    p_small = np.polyval([2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                          0.00021858087, -0.00125372503, -0.00417768164, 0.246640727,
                          1.50140941], ws)
    p_large = np.polyval([-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                          0.00573950773, -0.0076224613, 0.00943887047, 1.00167406,
                          2.83297682], wl)
    x = np.where(small, p_small, p_large) * y
    erf = np.vectorize(math.erf, otypes=[np.float64])
    for _ in range(2):
        x = x - (erf(x) - y) / (2.0 / math.sqrt(math.pi) * np.exp(-x * x))
    return x


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_zero(s: np.ndarray) -> np.ndarray:
    """Softmax over the non-zero scores of each row; zero scores stay zero."""
    nz = s != 0
    big = np.where(nz, s, -np.inf).max(axis=-1, keepdims=True)
    e = np.where(nz, np.exp(s - np.where(np.isfinite(big), big, 0)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    return np.where(total > 0, e / np.where(total > 0, total, 1), 0.0)


_POST = {
    "NONE": lambda s: s,
    "SOFTMAX": _softmax,
    "LOGISTIC": lambda s: 1.0 / (1.0 + np.exp(-s)),
    "SOFTMAX_ZERO": _softmax_zero,
    "PROBIT": lambda s: math.sqrt(2.0) * _erfinv(2.0 * s - 1.0),
}
_POST_BY_ID = ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"]


def _post_transform(scores: np.ndarray, name) -> np.ndarray:
    if isinstance(name, int):
        name = _POST_BY_ID[name]
    return _POST[name](np.asarray(scores, np.float64))


# --- LabelEncoder --------------------------------------------------------------------------------
def _label_encoder_upgrade(node):
    """Opset 1 mapped strings <-> indices of `classes_strings`; express it with keys/values."""
    if "classes_strings" not in node.attrs:
        return
    classes = node.attrs.pop("classes_strings")
    t = node.inputs[0].type if node.inputs and node.inputs[0] is not None else None
    dt = getattr(t, "dtype", None)
    to_strings = dt.is_int if dt is not None else "default_string" in node.attrs
    if to_strings:
        node.attrs["keys_int64s"] = list(range(len(classes)))
        node.attrs["values_strings"] = classes
        node.attrs.pop("default_int64", None)
    else:
        node.attrs["keys_strings"] = classes
        node.attrs["values_int64s"] = list(range(len(classes)))
        node.attrs.pop("default_string", None)


def _label_values(attrs):
    """(values as a numpy array, output dtype) from whichever values_* attribute is set."""
    if attrs.get("values_tensor") is not None:
        v = np.asarray(attrs["values_tensor"]).reshape(-1)
        return v, v.dtype
    if attrs.get("values_strings") is not None:
        strings = [_text(s) for s in attrs["values_strings"]]
        return np.array(strings, dtype=object), np.dtype(object)
    if attrs.get("values_floats") is not None:
        return np.asarray(attrs["values_floats"], np.float32), np.dtype(np.float32)
    return np.asarray(attrs.get("values_int64s") or [], np.int64), np.dtype(np.int64)


def _label_keys(attrs):
    for name in ("keys_tensor", "keys_strings", "keys_floats", "keys_int64s"):
        if attrs.get(name) is not None:
            return list(np.asarray(attrs[name], dtype=object).reshape(-1))
    return []


def _label_default(attrs, out_dtype):
    if attrs.get("default_tensor") is not None:
        return np.asarray(attrs["default_tensor"]).reshape(-1)[0]
    if out_dtype == object:
        return attrs["default_string"]
    if out_dtype.kind == "f":
        return attrs["default_float"] if attrs.get("values_floats") is not None else -0.0
    return attrs["default_int64"] if attrs.get("values_int64s") is not None else -1


def _lookup_key(x):
    """A hashable key for one element; every NaN maps to the same key."""
    if isinstance(x, (str, bytes)):
        return _text(x)
    if isinstance(x, (float, np.floating)):
        return "nan" if math.isnan(x) else float(x)
    return int(x)


def _infer_label_encoder(ctx: InferContext):
    _, dt = _label_values(ctx.attrs)
    return [TensorType(dtypes.from_numpy(dt), ctx.shape(0))]


_LABEL_ATTRS = dict(default_float=-0.0, default_int64=-1, default_string="_Unused",
                    default_tensor=None, keys_floats=None, keys_int64s=None, keys_strings=None,
                    keys_tensor=None, values_floats=None, values_int64s=None,
                    values_strings=None, values_tensor=None)


@op("ml.LabelEncoder", inputs=["X"], outputs=["Y"], attrs=_LABEL_ATTRS,
    infer=_infer_label_encoder, upgrade=_label_encoder_upgrade, domain=DOMAIN)
def label_encoder(X, **attrs):
    """Map each element through keys_* -> values_* (default_* when the key is missing)."""
    values, out_dtype = _label_values(attrs)
    table = {}
    for k, v in zip(_label_keys(attrs), values):
        table[_lookup_key(k)] = v                      # a repeated key: the last one wins
    default = _label_default(attrs, out_dtype)
    out = np.empty(np.shape(X), dtype=out_dtype)
    for i, x in np.ndenumerate(np.asarray(X, dtype=object)):
        out[i] = table.get(_lookup_key(x), default)
    return out


# --- TreeEnsemble --------------------------------------------------------------------------------
_LEQ, _LT, _GTE, _GT, _EQ, _NEQ, _MEMBER = range(7)


def _member_sets(modes, membership_values):
    """The NaN-delimited membership_values, one set per BRANCH_MEMBER node, by node index."""
    sets, groups, cur = {}, [], []
    for v in (np.asarray(membership_values, np.float64) if membership_values is not None else []):
        if math.isnan(v):
            groups.append(cur)
            cur = []
        else:
            cur.append(v)
    if cur:
        groups.append(cur)
    member_nodes = [i for i, m in enumerate(modes) if m == _MEMBER]
    for node, group in zip(member_nodes, groups):
        sets[node] = np.asarray(group)
    return sets


def _branch(mode, x, split, member):
    """The node's condition on feature values x (False for NaN unless the mode says so)."""
    if mode == _LEQ:
        return x <= split
    if mode == _LT:
        return x < split
    if mode == _GTE:
        return x >= split
    if mode == _GT:
        return x > split
    if mode == _EQ:
        return x == split
    if mode == _NEQ:
        return x != split
    return np.isin(x, member)


def _tree_leaves(X, root, nodes, sets):
    """The leaf index each row of X reaches in the tree rooted at `root`."""
    n = X.shape[0]
    cur = np.full(n, root, np.int64)
    leaf = np.full(n, -1, np.int64)
    active = np.ones(n, bool)
    while active.any():
        rows = np.nonzero(active)[0]
        for node in np.unique(cur[rows]):
            at = rows[cur[rows] == node]
            x = X[at, nodes["featureids"][node]]
            cond = _branch(nodes["modes"][node], x, nodes["splits"][node], sets.get(node))
            if nodes["missing_true"][node]:
                cond = cond | np.isnan(x)
            nxt = np.where(cond, nodes["truenodeids"][node], nodes["falsenodeids"][node])
            is_leaf = np.where(cond, nodes["trueleafs"][node], nodes["falseleafs"][node])
            leaf[at[is_leaf != 0]] = nxt[is_leaf != 0]
            cur[at] = nxt
            active[at[is_leaf != 0]] = False
    return leaf


def _aggregate(per_tree, n_targets, how):
    """Combine [trees, N, targets] contributions (NaN: no contribution) per target."""
    hit = ~np.isnan(per_tree)
    vals = np.where(hit, per_tree, 0.0)
    if how in (0, 1):                                   # AVERAGE, SUM
        out = vals.sum(axis=0)
        return out / per_tree.shape[0] if how == 0 else out
    fill = np.inf if how == 2 else -np.inf
    pick = np.where(hit, per_tree, fill)
    out = pick.min(axis=0) if how == 2 else pick.max(axis=0)
    return np.where(hit.any(axis=0), out, 0.0)


def _infer_tree(ctx: InferContext):
    shape = ctx.shape(0)
    n = shape[0] if shape is not None and len(shape) >= 1 else None
    return [TensorType(ctx.dtype(0), (n, ctx.attrs["n_targets"]))]


@op("ml.TreeEnsemble", inputs=["X"], outputs=["Y"],
    attrs=dict(aggregate_function=1, leaf_targetids=None, leaf_weights=None,
               membership_values=None, n_targets=None, nodes_falseleafs=None,
               nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
               nodes_missing_value_tracks_true=None, nodes_modes=None, nodes_splits=None,
               nodes_trueleafs=None, nodes_truenodeids=None, post_transform=0, tree_roots=None),
    infer=_infer_tree, domain=DOMAIN)
def tree_ensemble(X, *, aggregate_function, leaf_targetids, leaf_weights, membership_values,
                  n_targets, nodes_falseleafs, nodes_falsenodeids, nodes_featureids,
                  nodes_hitrates, nodes_missing_value_tracks_true, nodes_modes, nodes_splits,
                  nodes_trueleafs, nodes_truenodeids, post_transform, tree_roots):
    """Sum / average / min / max of tree leaf weights per target, then a post transform."""
    X2 = np.asarray(X, np.float64).reshape(np.shape(X)[0], -1)
    modes = np.asarray(nodes_modes, np.int64).reshape(-1)
    n_nodes = len(modes)
    nodes = dict(modes=modes, featureids=np.asarray(nodes_featureids, np.int64),
                 splits=np.asarray(nodes_splits, np.float64).reshape(-1),
                 truenodeids=np.asarray(nodes_truenodeids, np.int64),
                 falsenodeids=np.asarray(nodes_falsenodeids, np.int64),
                 trueleafs=np.asarray(nodes_trueleafs, np.int64),
                 falseleafs=np.asarray(nodes_falseleafs, np.int64),
                 missing_true=np.asarray(nodes_missing_value_tracks_true or [0] * n_nodes))
    sets = _member_sets(modes, membership_values)
    weights = np.asarray(leaf_weights, np.float64).reshape(-1)
    targets = np.asarray(leaf_targetids, np.int64)
    per_tree = np.full((len(tree_roots), X2.shape[0], n_targets), np.nan)
    rows = np.arange(X2.shape[0])
    for t, root in enumerate(tree_roots):
        leaf = _tree_leaves(X2, root, nodes, sets)
        per_tree[t, rows, targets[leaf]] = weights[leaf]
    scores = _aggregate(per_tree, n_targets, aggregate_function)
    return _post_transform(scores, post_transform).astype(X.dtype)


# --- TreeEnsembleRegressor / TreeEnsembleClassifier (the older encoding) -------------------------
_MODE_IDS = {"BRANCH_LEQ": _LEQ, "BRANCH_LT": _LT, "BRANCH_GTE": _GTE, "BRANCH_GT": _GT,
             "BRANCH_EQ": _EQ, "BRANCH_NEQ": _NEQ, "LEAF": -1}


class _LegacyForest:
    """Nodes keyed by (tree id, node id), flattened; leaves carry (target, weight) votes."""

    def __init__(self, a, prefix):
        self.trees = list(a["nodes_treeids"])
        n = len(self.trees)
        where = {(t, i): k for k, (t, i) in enumerate(zip(self.trees, a["nodes_nodeids"]))}
        self.modes = np.array([_MODE_IDS[m] for m in a["nodes_modes"]], np.int64)
        self.features = np.asarray(a["nodes_featureids"], np.int64)
        values = a.get("nodes_values_as_tensor")
        self.splits = np.asarray(values if values is not None else a["nodes_values"],
                                 np.float64).reshape(-1)
        self.true = np.array([where.get((t, c), -1) for t, c in
                              zip(self.trees, a["nodes_truenodeids"])], np.int64)
        self.false = np.array([where.get((t, c), -1) for t, c in
                               zip(self.trees, a["nodes_falsenodeids"])], np.int64)
        self.missing_true = np.asarray(a.get("nodes_missing_value_tracks_true") or [0] * n)
        children = set(self.true[self.modes >= 0]) | set(self.false[self.modes >= 0])
        self.roots = [k for k in range(n) if k not in children]
        weights = a.get(prefix + "_weights_as_tensor")
        weights = weights if weights is not None else a[prefix + "_weights"]
        self.votes: dict[int, list] = {}
        for t, i, target, w in zip(a[prefix + "_treeids"], a[prefix + "_nodeids"],
                                   a[prefix + "_ids"], np.asarray(weights).reshape(-1)):
            self.votes.setdefault(where[(t, i)], []).append((int(target), float(w)))

    def leaves(self, X, root):
        """The flat index of the leaf each row of X reaches from `root`."""
        cur = np.full(X.shape[0], root, np.int64)
        for _ in range(len(self.modes)):
            inner = self.modes[cur] >= 0
            if not inner.any():
                break
            for node in np.unique(cur[inner]):
                at = np.nonzero(cur == node)[0]
                x = X[at, self.features[node]]
                cond = _branch(self.modes[node], x, self.splits[node], None)
                if self.missing_true[node]:
                    cond = cond | np.isnan(x)
                cur[at] = np.where(cond, self.true[node], self.false[node])
        return cur

    def scores(self, X, n_targets, how="SUM"):
        """[N, n_targets] aggregated votes (SUM, AVERAGE, MIN or MAX over trees)."""
        per_tree = np.full((len(self.roots), X.shape[0], n_targets), np.nan)
        for t, root in enumerate(self.roots):
            leaf = self.leaves(X, root)
            for node in np.unique(leaf):
                rows = leaf == node
                for target, w in self.votes.get(int(node), []):
                    cell = per_tree[t, rows, target]
                    per_tree[t, rows, target] = np.where(np.isnan(cell), w, cell + w)
        how_id = ["AVERAGE", "SUM", "MIN", "MAX"].index(how)
        return _aggregate(per_tree, n_targets, how_id)


def _base_values(a, n):
    base = a.get("base_values_as_tensor")
    base = base if base is not None else a.get("base_values")
    return np.zeros(n) if base is None else np.asarray(base, np.float64).reshape(-1)


_LEGACY_NODE_ATTRS = dict(base_values=None, base_values_as_tensor=None, nodes_falsenodeids=None,
                          nodes_featureids=None, nodes_hitrates=None,
                          nodes_hitrates_as_tensor=None, nodes_missing_value_tracks_true=None,
                          nodes_modes=None, nodes_nodeids=None, nodes_treeids=None,
                          nodes_truenodeids=None, nodes_values=None, nodes_values_as_tensor=None,
                          post_transform="NONE")


@op("ml.TreeEnsembleRegressor", inputs=["X"], outputs=["Y"],
    attrs=dict(_LEGACY_NODE_ATTRS, aggregate_function="SUM", n_targets=None, target_ids=None,
               target_nodeids=None, target_treeids=None, target_weights=None,
               target_weights_as_tensor=None),
    infer=lambda ctx: [TensorType(dtypes.f32, (ctx.shape(0)[0] if ctx.shape(0) else None,
                                               ctx.attrs["n_targets"]))],
    domain=DOMAIN)
def tree_ensemble_regressor(X, **a):
    """Tree ensemble regression (deprecated encoding): aggregated leaf votes + base values."""
    forest = _LegacyForest(a, "target")
    x = _rows(X)
    scores = forest.scores(x, a["n_targets"], a["aggregate_function"])
    scores = scores + _base_values(a, a["n_targets"])
    return _post_transform(scores, a["post_transform"]).astype(np.float32)


def _infer_tree_classifier(ctx: InferContext):
    shape = ctx.shape(0)
    n = shape[0] if shape else None
    label = dtypes.string if ctx.attrs["classlabels_strings"] is not None else dtypes.i64
    return [TensorType(label, (n,)), TensorType(dtypes.f32, (n, None))][:ctx.n_outputs]


@op("ml.TreeEnsembleClassifier", inputs=["X"], outputs=["Y", "Z"],
    attrs=dict(_LEGACY_NODE_ATTRS, class_ids=None, class_nodeids=None, class_treeids=None,
               class_weights=None, class_weights_as_tensor=None, classlabels_int64s=None,
               classlabels_strings=None),
    infer=_infer_tree_classifier, domain=DOMAIN)
def tree_ensemble_classifier(X, **a):
    """Tree ensemble classification (deprecated encoding): summed class votes, best label.

    Two labels with votes for one class only is the binary case: that score s favours
    labels[1] (above 0.5 when all weights are positive, else above 0) and the class scores are
    (1 - s, s), respectively (-s, s)."""
    labels = (np.array([_text(s) for s in a["classlabels_strings"]], dtype=object)
              if a["classlabels_strings"] is not None
              else np.asarray(a["classlabels_int64s"], np.int64))
    forest = _LegacyForest(a, "class")
    x = _rows(X)
    n_classes = len(labels)
    scores = forest.scores(x, n_classes) + _base_values(a, n_classes)
    used = set(a["class_ids"])
    if n_classes == 2 and len(used) == 1:
        s = scores[:, min(used)]
        weights = a.get("class_weights_as_tensor")
        weights = np.asarray(weights if weights is not None else a["class_weights"])
        positive = bool((weights >= 0).all())
        pick = (s > (0.5 if positive else 0.0)).astype(np.int64)
        scores = np.stack([1 - s, s] if positive else [-s, s], axis=1)
    else:
        pick = scores.argmax(axis=1)
    return labels[pick], _post_transform(scores, a["post_transform"]).astype(np.float32)


# --- small elementwise / reshaping models --------------------------------------------------------
def _infer_afe(ctx: InferContext):
    shape, idx = ctx.shape(0), ctx.shape(1)
    if shape is None:
        return [TensorType(ctx.dtype(0), None)]
    k = None
    if idx is not None and all(isinstance(d, int) for d in idx):
        k = int(np.prod(idx))
    return [TensorType(ctx.dtype(0), (1, k) if len(shape) == 1 else tuple(shape[:-1]) + (k,))]


@op("ml.ArrayFeatureExtractor", inputs=["X", "Y"], outputs=["Z"], infer=_infer_afe,
    domain=DOMAIN)
def array_feature_extractor(X, Y):
    """Select the elements at indices Y along the last axis ([C] input gives [1, k])."""
    out = np.take(X, np.asarray(Y, np.int64).reshape(-1), axis=-1)
    return out.reshape(1, -1) if X.ndim == 1 else out


@op("ml.Binarizer", inputs=["X"], outputs=["Y"], attrs=dict(threshold=0.0), infer=same_as(0),
    domain=DOMAIN)
def binarizer(X, *, threshold):
    """1 where X > threshold, else 0, in X's dtype."""
    return (X > threshold).astype(X.dtype)


@op("ml.Normalizer", inputs=["X"], outputs=["Y"], attrs=dict(norm="MAX"), infer=_float_out,
    domain=DOMAIN)
def normalizer(X, *, norm):
    """Row-wise normalization of [N, C] (or [C]) by MAX, L1 or L2 (zero divisor: row kept)."""
    x = np.asarray(X, np.float64)
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    if norm == "MAX":
        div = x2.max(axis=1, keepdims=True)
        y = x2 / np.where(div == 0, 1, div)
    elif norm == "L1":
        div = np.abs(x2).sum(axis=1, keepdims=True)
        y = x2 / np.where(div == 0, 1, div)
    else:
        div = np.sqrt((x2 * x2).sum(axis=1, keepdims=True))
        y = x2 / np.where(div == 0, 1, div)
    return y.reshape(x.shape).astype(np.float32)


@op("ml.Scaler", inputs=["X"], outputs=["Y"], attrs=dict(offset=None, scale=None),
    infer=_float_out, domain=DOMAIN)
def scaler(X, *, offset, scale):
    """(X - offset) * scale, per feature (last axis) or with one value for all."""
    off = np.asarray(offset if offset is not None else [0.0], np.float64)
    sc = np.asarray(scale if scale is not None else [1.0], np.float64)
    return ((np.asarray(X, np.float64) - off) * sc).astype(np.float32)


def _infer_one_hot_encoder(ctx: InferContext):
    cats = ctx.attrs["cats_strings"] or ctx.attrs["cats_int64s"] or []
    shape = ctx.shape(0)
    return [TensorType(dtypes.f32, None if shape is None else tuple(shape) + (len(cats),))]


@op("ml.OneHotEncoder", inputs=["X"], outputs=["Y"],
    attrs=dict(cats_int64s=None, cats_strings=None, zeros=1), infer=_infer_one_hot_encoder,
    domain=DOMAIN)
def one_hot_encoder(X, *, cats_int64s, cats_strings, zeros):
    """A trailing one-hot axis over the categories (all zeros for an unknown value if zeros=1)."""
    if cats_strings is not None:
        index = {_text(c): i for i, c in enumerate(cats_strings)}
        cats, key = len(cats_strings), _text
    else:
        index = {int(c): i for i, c in enumerate(cats_int64s)}
        cats, key = len(cats_int64s), lambda v: int(v)
    out = np.zeros(np.shape(X) + (cats,), np.float32)
    for i, x in np.ndenumerate(np.asarray(X, dtype=object)):
        hit = index.get(key(x))
        if hit is None and not zeros:
            raise ValueError(f"OneHotEncoder: value {x!r} is not a known category")
        if hit is not None:
            out[i + (hit,)] = 1.0
    return out


@op("ml.Imputer", inputs=["X"], outputs=["Y"],
    attrs=dict(imputed_value_floats=None, imputed_value_int64s=None, replaced_value_float=0.0,
               replaced_value_int64=0),
    infer=same_as(0), domain=DOMAIN)
def imputer(X, *, imputed_value_floats, imputed_value_int64s, replaced_value_float,
            replaced_value_int64):
    """Replace elements equal to the replaced value (NaN matches NaN) by the imputed values."""
    if np.issubdtype(X.dtype, np.floating):
        fill = np.asarray(imputed_value_floats, X.dtype)
        target = replaced_value_float
        hit = np.isnan(X) if math.isnan(target) else X == target
    else:
        fill = np.asarray(imputed_value_int64s, np.int64).astype(X.dtype)
        hit = X == replaced_value_int64
    return np.where(hit, np.broadcast_to(fill, X.shape), X).astype(X.dtype)


def _infer_category_mapper(ctx: InferContext):
    dt = dtypes.i64 if ctx.dtype(0) == dtypes.string else dtypes.string
    return [TensorType(dt, ctx.shape(0))]


@op("ml.CategoryMapper", inputs=["X"], outputs=["Y"],
    attrs=dict(cats_int64s=None, cats_strings=None, default_int64=-1,
               default_string="_Unused"),
    infer=_infer_category_mapper, domain=DOMAIN)
def category_mapper(X, *, cats_int64s, cats_strings, default_int64, default_string):
    """Strings -> ints or ints -> strings through the parallel cats_* lists."""
    strings = [_text(s) for s in (cats_strings or [])]
    ints = [int(v) for v in (cats_int64s or [])]
    if X.dtype == object:
        table, default, out_dt = dict(zip(strings, ints)), default_int64, np.int64
        key = _text
    else:
        table, default, out_dt = dict(zip(ints, strings)), default_string, object
        key = int
    out = np.empty(X.shape, dtype=out_dt)
    for i, x in np.ndenumerate(X):
        out[i] = table.get(key(x), default)
    return out


def _infer_feature_vectorizer(ctx: InferContext):
    shape = ctx.shape(0)
    n = shape[0] if shape is not None and len(shape) == 2 else 1 if shape is not None else None
    return [TensorType(dtypes.f32, (n, sum(ctx.attrs["inputdimensions"] or []) or None))]


@op("ml.FeatureVectorizer", inputs=["X*"], outputs=["Y"], attrs=dict(inputdimensions=None),
    infer=_infer_feature_vectorizer, domain=DOMAIN)
def feature_vectorizer(*X, inputdimensions):
    """Concatenate [N, C_i] inputs (1-D ones as [1, C]) along axis 1, each cut or zero-padded
    to inputdimensions[i] columns, as float32."""
    parts = []
    for x, width in zip(X, inputdimensions):
        x2 = np.asarray(x, np.float64)
        x2 = x2.reshape(1, -1) if x2.ndim == 1 else x2.reshape(x2.shape[0], -1)
        part = np.zeros((x2.shape[0], width))
        k = min(width, x2.shape[1])
        part[:, :k] = x2[:, :k]
        parts.append(part)
    return np.concatenate(parts, axis=1).astype(np.float32)


# --- linear models -------------------------------------------------------------------------------
@op("ml.LinearRegressor", inputs=["X"], outputs=["Y"],
    attrs=dict(coefficients=None, intercepts=None, post_transform="NONE", targets=1),
    infer=lambda ctx: [TensorType(dtypes.f32, (ctx.shape(0)[0] if ctx.shape(0) else None,
                                               ctx.attrs["targets"]))],
    domain=DOMAIN)
def linear_regressor(X, *, coefficients, intercepts, post_transform, targets):
    """X @ coefficients^T + intercepts for each of `targets` outputs, then a post transform."""
    x = _rows(X)
    coef = np.asarray(coefficients, np.float64).reshape(targets, -1)
    y = x @ coef.T
    if intercepts is not None:
        y = y + np.asarray(intercepts, np.float64)
    return _post_transform(y, post_transform).astype(np.float32)


def _infer_linear_classifier(ctx: InferContext):
    shape = ctx.shape(0)
    n = shape[0] if shape is not None and len(shape) == 2 else 1 if shape is not None else None
    label = dtypes.string if ctx.attrs["classlabels_strings"] is not None else dtypes.i64
    return [TensorType(label, (n,)), TensorType(dtypes.f32, (n, None))][:ctx.n_outputs]


@op("ml.LinearClassifier", inputs=["X"], outputs=["Y", "Z"],
    attrs=dict(classlabels_ints=None, classlabels_strings=None, coefficients=None,
               intercepts=None, multi_class=0, post_transform="NONE"),
    infer=_infer_linear_classifier, domain=DOMAIN)
def linear_classifier(X, *, classlabels_ints, classlabels_strings, coefficients, intercepts,
                      multi_class, post_transform):
    """Linear class scores, the winning label (Y) and the transformed scores (Z)."""
    labels = (np.array([_text(s) for s in classlabels_strings], dtype=object)
              if classlabels_strings is not None else np.asarray(classlabels_ints, np.int64))
    x = _rows(X)
    coef = np.asarray(coefficients, np.float64).reshape(-1, x.shape[1])
    scores = x @ coef.T
    if intercepts is not None:
        scores = scores + np.asarray(intercepts, np.float64)
    if coef.shape[0] == 1 and len(labels) == 2:
        # One score for two classes: positive favours labels[1]; the scores are (-s, s).
        raw = scores[:, 0]
        pick = (raw > 0).astype(np.int64)
        scores = np.stack([-raw, raw], axis=1)
    else:
        pick = scores.argmax(axis=1)
    return labels[pick], _post_transform(scores, post_transform).astype(np.float32)
