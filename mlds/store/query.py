"""An OPTIMADE-like filter language over catalog entries, with a recursive-descent parser.

Grammar (keywords are case-insensitive, strings use double quotes)::

    filter     := or_expr
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | primary
    primary    := "(" or_expr ")" | FIELD op value | FIELD "HAS" [ "ALL" | "ANY" | "ONLY" ] value ("," value)*
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="

Fields: ``elements`` (list; HAS ALL/ANY/ONLY), ``formulas`` (list), ``nelements``,
``nframes``, ``natoms``, ``size``, ``version``, ``energy_per_atom_min``/``_max``
(numbers), ``code``/``codes`` and ``functional``/``functionals`` (lists; ``=``
matches any entry, case-insensitively), ``name``, ``license``, ``author``,
``kind`` (``"dataset"`` or ``"potential"``) (strings).  ``HAS "X"`` alone means ``HAS ALL "X"``.

Examples: ``elements HAS ALL "Si","O" AND nelements<=3``,
``(code="VASP" OR code="QE") AND NOT functional="LDA"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlds.errors import MldsError


class QueryError(MldsError):
    """A search filter that does not parse."""


NUMERIC = {"nelements", "nframes", "natoms", "size", "version", "energy_per_atom_min", "energy_per_atom_max"}
LISTS = {"elements": "elements", "formulas": "formulas", "formula": "formulas", "codes": "codes", "code": "codes",
         "functionals": "functionals", "functional": "functionals"}
STRINGS = {"name", "license", "author", "kind"}
CASE_INSENSITIVE = {"codes", "functionals"}
KEYWORDS = {"AND", "OR", "NOT", "HAS", "ALL", "ANY", "ONLY"}
OPS = ("<=", ">=", "!=", "=", "<", ">")


@dataclass
class Token:
    kind: str   # IDENT KW STRING NUMBER OP LPAREN RPAREN COMMA EOF
    value: Any
    col: int    # 1-based column
    text: str


_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
""", re.VERBOSE)


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == '"':
                raise QueryError(f"unterminated string starting at column {pos + 1}")
            raise QueryError(f"unexpected character {ch!r} at column {pos + 1}")
        kind = m.lastgroup
        raw = m.group()
        col = pos + 1
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "number":
            out.append(Token("NUMBER", float(raw) if any(c in raw for c in ".eE") else int(raw), col, raw))
        elif kind == "ident":
            if raw.upper() in KEYWORDS:
                out.append(Token("KW", raw.upper(), col, raw))
            else:
                out.append(Token("IDENT", raw.lower(), col, raw))
        elif kind == "string":
            out.append(Token("STRING", re.sub(r"\\(.)", r"\1", raw[1:-1]), col, raw))
        elif kind == "op":
            out.append(Token("OP", raw, col, raw))
        else:
            out.append(Token(kind.upper(), raw, col, raw))
    out.append(Token("EOF", None, len(text) + 1, "end of filter"))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def _next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def _fail(self, expected: str = "") -> QueryError:
        t = self.tok
        what = "end of filter" if t.kind == "EOF" else repr(t.text)
        msg = f"unexpected token {what} at column {t.col}"
        if expected:
            msg += f" (expected {expected})"
        return QueryError(msg)

    def _kw(self, *words: str) -> bool:
        return self.tok.kind == "KW" and self.tok.value in words

    def parse(self):
        if self.tok.kind == "EOF":
            raise QueryError("empty filter")
        node = self.or_expr()
        if self.tok.kind != "EOF":
            raise self._fail("AND, OR or end of filter")
        return node

    def or_expr(self):
        node = self.and_expr()
        while self._kw("OR"):
            self._next()
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self):
        node = self.not_expr()
        while self._kw("AND"):
            self._next()
            node = ("and", node, self.not_expr())
        return node

    def not_expr(self):
        if self._kw("NOT"):
            self._next()
            return ("not", self.not_expr())
        return self.primary()

    def primary(self):
        t = self.tok
        if t.kind == "LPAREN":
            self._next()
            node = self.or_expr()
            if self.tok.kind != "RPAREN":
                raise self._fail("')'")
            self._next()
            return node
        if t.kind != "IDENT":
            raise self._fail("a field name or '('")
        field = self._field(self._next())
        if self._kw("HAS"):
            self._next()
            mode = "ALL"
            if self._kw("ALL", "ANY", "ONLY"):
                mode = self._next().value
            if field not in LISTS.values():
                raise QueryError(f"HAS needs a list field (elements, formulas, codes, functionals), not {t.text!r} at column {t.col}")
            values = [self._value(str)]
            while self.tok.kind == "COMMA":
                self._next()
                values.append(self._value(str))
            return ("has", field, mode, values)
        if self.tok.kind != "OP":
            raise self._fail("a comparison operator or HAS")
        op = self._next().value
        if field in NUMERIC:
            return ("cmp", field, op, self._value((int, float)))
        if op not in ("=", "!="):
            raise QueryError(f"operator {op!r} needs a numeric field, not {t.text!r} (column {t.col})")
        return ("cmp", field, op, self._value(str))

    def _field(self, t: Token) -> str:
        if t.value in NUMERIC or t.value in STRINGS:
            return t.value
        if t.value in LISTS:
            return LISTS[t.value]
        known = sorted(NUMERIC | STRINGS | set(LISTS))
        raise QueryError(f"unknown field {t.text!r} at column {t.col}; known fields: {', '.join(known)}")

    def _value(self, typ):
        t = self.tok
        if typ is str and t.kind == "STRING":
            return self._next().value
        if typ is not str and t.kind == "NUMBER":
            return self._next().value
        raise self._fail("a quoted string" if typ is str else "a number")


def parse(text: str):
    """Parse a filter into a small AST (nested tuples); raises :class:`QueryError`."""
    return _Parser(text).parse()


def _norm(field: str, v: Any) -> Any:
    return v.lower() if field in CASE_INSENSITIVE and isinstance(v, str) else v


def matches(node, entry: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "and":
        return matches(node[1], entry) and matches(node[2], entry)
    if kind == "or":
        return matches(node[1], entry) or matches(node[2], entry)
    if kind == "not":
        return not matches(node[1], entry)
    if kind == "has":
        _, field, mode, values = node
        have = {_norm(field, x) for x in (entry.get(field) or [])}
        want = {_norm(field, x) for x in values}
        if mode == "ALL":
            return want <= have
        if mode == "ANY":
            return bool(want & have)
        return bool(have) and have <= want  # ONLY
    _, field, op, value = node
    if field in LISTS.values():
        have = {_norm(field, x) for x in (entry.get(field) or [])}
        hit = _norm(field, value) in have
        return hit if op == "=" else not hit
    got = entry.get(field)
    if got is None:
        return False
    if field in NUMERIC:
        got = float(got)
    return {"=": got == value, "!=": got != value, "<": got < value, "<=": got <= value,
            ">": got > value, ">=": got >= value}[op]
