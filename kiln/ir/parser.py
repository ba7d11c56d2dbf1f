"""Text -> Graph: reads what printer.py writes. Errors name the line and column."""
from __future__ import annotations

import re

import numpy as np

from ..errors import IRParseError
from . import dtypes
from .graph import Graph, MissingData, Node, Value
from .printer import TensorAttrRef
from .types import UNKNOWN, OptionalType, SequenceType, TensorType

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<val>%(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_./\-]+))
  | (?P<ref>@(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_./\-]+))
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<num>-?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?|\d+)|-inf\b)
  | (?P<id>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[()\[\]{}<>,=:*?])
""", re.VERBOSE)

_ESC = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def unquote(s: str) -> str:
    out, i = [], 1
    while i < len(s) - 1:
        c = s[i]
        if c == "\\":
            nxt = s[i + 1]
            if nxt == "x":
                out.append(chr(int(s[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append(_ESC.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _name(tok: str) -> str:
    body = tok[1:]
    return unquote(body) if body.startswith('"') else body


class _Parser:
    def __init__(self, text: str, weights):
        self.text = text
        self.weights = weights or {}
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                self.fail("unexpected character " + repr(text[pos]), pos)
            if m.lastgroup != "ws":
                self.toks.append((m.lastgroup, m.group(), pos))
            pos = m.end()
        self.toks.append(("eof", "", len(text)))
        self.i = 0

    # --- token helpers ---------------------------------------------------------------------
    def fail(self, msg: str, pos: int | None = None):
        if pos is None:
            pos = self.toks[self.i][2]
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        lines = self.text.split("\n")
        src = lines[line - 1] if line <= len(lines) else ""
        raise IRParseError(f"line {line}, column {col}: {msg}\n  {src}\n  {' ' * (col - 1)}^")

    def peek(self, k: int = 0):
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self):
        t = self.toks[self.i]
        if t[0] != "eof":
            self.i += 1
        return t

    def at(self, text: str) -> bool:
        kind, tok, _ = self.peek()
        return tok == text and kind in ("punct", "id")

    def expect(self, text: str):
        kind, tok, _ = self.peek()
        if tok != text:
            self.fail(f"expected {text!r}, found {tok!r}" if tok else f"expected {text!r} at end of text")
        return self.next()

    def expect_kind(self, kind: str, what: str):
        k, tok, _ = self.peek()
        if k != kind:
            self.fail(f"expected {what}, found {tok!r}")
        return self.next()[1]

    # --- grammar ---------------------------------------------------------------------------
    def parse_graph(self, scope: dict | None) -> Graph:
        self.expect("graph")
        kind, tok, _ = self.next()
        if kind == "id":
            name = tok
        elif kind == "str":
            name = unquote(tok)
        else:
            self.fail(f"expected a graph name, found {tok!r}")
        g = Graph(name)
        local = _Scope(scope)
        self.expect("(")
        while not self.at(")"):
            v = self.def_value(local)
            g.inputs.append(v)
            if not self.at(")"):
                self.expect(",")
        self.expect(")")
        self.expect("{")
        while not self.at("return"):
            if self.peek()[0] == "eof":
                self.fail("graph body never reaches `return`")
            self.statement(g, local)
        self.expect("return")
        if not self.at("}"):
            while True:
                g.outputs.append(self.use_value(local))
                if not self.at(","):
                    break
                self.next()
        self.expect("}")
        return g

    def def_value(self, scope) -> Value:
        _, tok, pos = self.peek()
        name = _name(self.expect_kind("val", "a value (%name)"))
        self.expect(":")
        v = Value(name, self.type())
        scope.define(name, v, lambda m: self.fail(m, pos))
        return v

    def use_value(self, scope) -> Value:
        _, tok, pos = self.peek()
        name = _name(self.expect_kind("val", "a value (%name)"))
        v = scope.lookup(name)
        if v is None:
            self.fail(f"use of undefined value %{name}", pos)
        return v

    def statement(self, g: Graph, scope):
        outs: list[Value | None] = []
        while True:
            if self.at("_"):
                self.next()
                outs.append(None)
            else:
                outs.append(self.def_value(scope))
            if not self.at(","):
                break
            self.next()
        self.expect("=")
        kind, tok, pos = self.peek()
        if tok in ("const", "param") and kind == "id":
            self.next()
            if len(outs) != 1 or outs[0] is None:
                self.fail("a constant defines exactly one value", pos)
            v = outs[0]
            v.feedable = tok == "param"
            v.data = self.const_data(v.type)
            g.constants.append(v)
            return
        op = self.expect_kind("id", "an op name")
        self.expect("(")
        ins: list[Value | None] = []
        while not self.at(")"):
            if self.at("_"):
                self.next()
                ins.append(None)
            else:
                ins.append(self.use_value(scope))
            if not self.at(")"):
                self.expect(",")
        self.expect(")")
        attrs = {}
        if self.at("{"):
            self.next()
            while not self.at("}"):
                key = self.expect_kind("id", "an attribute name")
                self.expect("=")
                if key in attrs:
                    self.fail(f"attribute {key!r} given twice")
                attrs[key] = self.attr_value(scope)
                if not self.at("}"):
                    self.expect(",")
            self.expect("}")
        name = ""
        if self.at("loc"):
            self.next()
            self.expect("(")
            name = unquote(self.expect_kind("str", "a quoted node name"))
            self.expect(")")
        g.nodes.append(Node(op, ins, outs, attrs, name))

    def const_data(self, t):
        kind, tok, pos = self.peek()
        if kind == "ref":
            self.next()
            ref = _name(tok)
            if ref in self.weights:
                return np.asarray(self.weights[ref])
            return MissingData(ref)
        if not isinstance(t, TensorType) or t.dtype is None or not t.is_static:
            self.fail("an inline constant needs a static tensor type", pos)
        items = self.list_value(None)
        return self.make_array(items, t, pos)

    def make_array(self, items, t: TensorType, pos):
        n = int(np.prod(t.shape, dtype=np.int64))
        if len(items) != n:
            self.fail(f"{t} needs {n} elements, found {len(items)}", pos)
        if t.dtype == dtypes.string:
            return np.array(items, dtype=object).reshape(t.shape)
        src = np.array(items, dtype=np.float64 if t.dtype.is_float else None)
        if t.dtype.is_float and t.dtype.name not in ("f64",):
            src = src.astype(np.float32)
        return src.astype(t.dtype.numpy).reshape(t.shape)

    def attr_value(self, scope):
        kind, tok, pos = self.peek()
        if kind == "id" and tok == "graph":
            return self.parse_graph(scope)
        if kind == "id" and tok == "tensor":
            self.next()
            self.expect("<")
            t = self.type()
            self.expect(">")
            if self.peek()[0] == "ref":
                ref = _name(self.next()[1])
                if ref in self.weights:
                    return np.asarray(self.weights[ref])
                return TensorAttrRef(t, ref)
            if not isinstance(t, TensorType) or t.dtype is None or not t.is_static:
                self.fail("a tensor attribute needs a static tensor type", pos)
            return self.make_array(self.list_value(None), t, pos)     # raw values, f64 kept
        if kind == "id" and tok == "type":
            self.next()
            self.expect("<")
            t = self.type()
            self.expect(">")
            return t
        if self.at("["):
            return self.list_value(scope)
        v = self.scalar()
        return float(np.float32(v)) if isinstance(v, float) else v    # float attributes are f32

    def list_value(self, scope):
        self.expect("[")
        items = []
        while not self.at("]"):
            items.append(self.attr_value(scope) if scope is not None else self.scalar())
            if not self.at("]"):
                self.expect(",")
        self.expect("]")
        return items

    def scalar(self):
        kind, tok, pos = self.next()
        if kind == "num":
            if tok == "-inf":
                return float("-inf")
            return float(tok) if any(c in tok for c in ".eE") else int(tok)
        if kind == "str":
            return unquote(tok)
        if kind == "id" and tok in ("true", "false"):
            return tok == "true"
        if kind == "id" and tok in ("inf", "nan"):
            return float(tok)
        self.fail(f"expected a value, found {tok!r}", pos)

    def type(self):
        kind, tok, pos = self.next()
        if tok == "?" and not self.at("["):
            return UNKNOWN
        if kind == "id" and tok in ("seq", "opt") and self.at("<"):
            self.next()
            inner = self.type()
            self.expect(">")
            return SequenceType(inner) if tok == "seq" else OptionalType(inner)
        if tok == "?":
            dt = None
        elif kind == "id" and tok in dtypes.BY_NAME:
            dt = dtypes.BY_NAME[tok]
        else:
            self.fail(f"expected a type, found {tok!r}", pos)
        self.expect("[")
        if self.at("*"):
            self.next()
            self.expect("]")
            return TensorType(dt, None)
        dims = []
        while not self.at("]"):
            k, d, p = self.next()
            if k == "num" and d.lstrip("-").isdigit():
                dims.append(int(d))
            elif d == "?":
                dims.append(None)
            elif k == "id":
                dims.append(d)
            elif k == "str":
                dims.append(unquote(d))
            else:
                self.fail(f"expected a dim, found {d!r}", p)
            if not self.at("]"):
                self.expect(",")
        self.expect("]")
        return TensorType(dt, tuple(dims))


class _Scope:
    def __init__(self, parent):
        self.parent, self.names = parent, {}

    def define(self, name, v, fail):
        if self.lookup(name) is not None:
            fail(f"value %{name} is defined twice")
        self.names[name] = v

    def lookup(self, name):
        s = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None


def parse_ir(text: str, weights: dict | None = None) -> Graph:
    """Parse IR text. `weights` maps the references (`@w`) of large constants to their data;
    a reference with no data gives a constant whose data is a `MissingData` placeholder."""
    if not isinstance(text, str):
        raise IRParseError(f"parse_ir expects a str, got {type(text).__name__}")
    p = _Parser(text, weights)
    g = p.parse_graph(None)
    if p.peek()[0] != "eof":
        p.fail(f"unexpected text after the graph: {p.peek()[1]!r}")
    return g
