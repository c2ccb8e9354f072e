"""The safe subset of regular expressions a custom condition may use (docs/rules.md, "Regular expressions").

DuckDB matches with RE2, which never backtracks: time is linear in the text. But the
constant is the size of the compiled program, and RE2 writes counted repetitions out
(`x{100}` is a hundred copies of `x`): `((((a*)*)*)*){1000}b` compiles, then costs ~4 ms
per 55-byte user agent and ~0.2 s per 2,000-byte value once RE2's DFA outgrows its memory
and falls back to its NFA. So a pattern is checked before a rule is saved, previewed or
imported: a string literal, RE2 syntax only (no backreferences or look-around, refused by
name), no unbounded repetition of something that itself repeats, counts of at most
`MAX_COUNT`, and counted repetitions that add at most `MAX_EXPANSION` items when written
out. RE2 itself then compiles it, so whatever else it refuses is refused here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PATTERN = 1000  # characters of one pattern
MAX_COUNT = 100  # the largest n or m of {n}, {n,}, {n,m}
MAX_EXPANSION = 200  # items counted repetitions add when written out, over the whole pattern
FLAGS = frozenset("cilmnps")  # DuckDB's regexp_matches options (docs/rules.md)

_COUNT = re.compile(r"\{(\d+)(,(\d*))?\}")


class UnsafePattern(ValueError):
    """A regular expression outside the safe subset; the message says which rule of it and how to fix it."""


@dataclass
class _Node:
    size: int  # items with counted repetitions written out
    written: int  # items as written (each counted repetition once)
    repeats: bool  # holds a quantifier
    empty: bool  # can match the empty string


def _shown(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 60 else pattern[:57] + "...")


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p, self.i = pattern, 0

    def fail(self, why: str) -> UnsafePattern:
        return UnsafePattern(f"regular expression {_shown(self.p)}: {why}")

    def peek(self, n: int = 1) -> str:
        return self.p[self.i:self.i + n]

    def alternation(self) -> _Node:
        node = self.sequence()
        while self.peek() == "|":
            self.i += 1
            other = self.sequence()
            node = _Node(node.size + other.size, node.written + other.written, node.repeats or other.repeats,
                         node.empty or other.empty)
        return node

    def sequence(self) -> _Node:
        node = _Node(0, 0, False, True)
        while self.i < len(self.p) and self.peek() not in "|)":
            item = self.quantified()
            node = _Node(node.size + item.size, node.written + item.written, node.repeats or item.repeats,
                         node.empty and item.empty)
        return node

    def quantified(self) -> _Node:
        start = self.i
        node = self.atom()
        inner = node
        quantifiers = 0
        while True:
            ch = self.peek()
            count = _COUNT.match(self.p, self.i) if ch == "{" else None
            if ch not in ("*", "+", "?") and count is None:
                return node
            if quantifiers:
                end = count.end() if count is not None else self.i + 1
                raise self.fail(f"{self.p[start:end]!r} repeats a repetition; write one quantifier")
            quantifiers += 1
            if count is not None:
                low, high = int(count.group(1)), count.group(3)
                top = max(low, int(high)) if high else low
                if top > MAX_COUNT:
                    raise self.fail(f"the repetition count {count.group(0)} is above {MAX_COUNT}; "
                                    "match a shorter run or use + / *")
                unbounded = count.group(2) is not None and not high
                self.i = count.end()
                node = _Node(node.size * max(top, 1), node.written, True, node.empty or low == 0)
            else:
                unbounded = ch != "?"
                self.i += 1
                node = _Node(node.size, node.written, True, node.empty or ch != "+")
            if unbounded and inner.repeats and inner.empty:
                raise self.fail(f"{self.p[start:self.i]!r} repeats without bound a group that itself repeats and "
                                "can match nothing (a nested quantifier such as (a*)*): write the inner "
                                "repetition once, e.g. a* for (a*)*")
            if self.peek() == "+":
                raise self.fail("possessive quantifiers (*+, ++, ?+) are not RE2 syntax")
            if self.peek() == "?":
                self.i += 1  # lazy: the same program

    def atom(self) -> _Node:
        ch = self.peek()
        if ch == "(":
            return self.group()
        if ch == "[":
            self.char_class()
            return _Node(1, 1, False, False)
        if ch == "\\":
            return self.escape()
        if ch in ("*", "+", "?"):
            raise self.fail(f"{ch!r} at position {self.i} has nothing to repeat")
        self.i += 1
        return _Node(1, 1, False, ch in "^$")

    def group(self) -> _Node:
        start = self.i
        self.i += 1
        if self.peek() == "?":
            head = self.p[self.i:self.i + 4]
            if head.startswith(("?=", "?!", "?<=", "?<!")):
                raise self.fail("look-ahead and look-behind ((?=...), (?!...), (?<=...), (?<!...)) are not "
                                "RE2 syntax; match the text itself, or combine conditions with AND / NOT")
            if head.startswith("?>"):
                raise self.fail("atomic groups (?>...) are not RE2 syntax")
            if head.startswith("?P=") or head.startswith("?P>"):
                raise self.fail("named backreferences (?P=name) are not RE2 syntax")
            if head.startswith("?P<") or head.startswith("?<"):
                close = self.p.find(">", self.i)
                if close < 0:
                    raise self.fail("a group name is not closed with '>'")
                self.i = close + 1
            else:
                flags = re.compile(r"\?[a-zA-Z-]*([:)])").match(self.p, self.i)
                if flags is None:
                    raise self.fail(f"'(?' at position {start} starts no group RE2 knows")
                self.i = flags.end()
                if flags.group(1) == ")":  # (?i): flags for the rest, no group
                    return _Node(0, 0, False, True)
        inner = self.alternation()
        if self.peek() != ")":
            raise self.fail(f"the group opened at position {start} is not closed")
        self.i += 1
        return inner

    def char_class(self) -> None:
        start = self.i
        self.i += 1
        if self.peek() == "^":
            self.i += 1
        if self.peek() == "]":
            self.i += 1  # a literal ']' first
        while self.i < len(self.p):
            ch = self.peek()
            if ch == "\\":
                self.i += 2
            elif self.peek(2) == "[:":
                close = self.p.find(":]", self.i + 2)
                self.i = close + 2 if close >= 0 else self.i + 1
            elif ch == "]":
                self.i += 1
                return
            else:
                self.i += 1
        raise self.fail(f"the character class opened at position {start} is not closed")

    def escape(self) -> _Node:
        nxt = self.p[self.i + 1:self.i + 2]
        if not nxt:
            raise self.fail("it ends with a lone backslash")
        if nxt in "123456789" or nxt in ("k", "g"):
            raise self.fail(f"backreferences (\\{nxt}...) are not RE2 syntax: a regular expression cannot "
                            "refer to what it matched earlier")
        if nxt == "Q":  # \Q...\E: literal text
            end = self.p.find("\\E", self.i + 2)
            text = self.p[self.i + 2:] if end < 0 else self.p[self.i + 2:end]
            self.i = len(self.p) if end < 0 else end + 2
            return _Node(len(text), len(text), False, not text)
        self.i += 2
        if nxt in ("p", "P", "x") and self.peek() == "{":
            close = self.p.find("}", self.i)
            self.i = close + 1 if close >= 0 else len(self.p)
        elif nxt in ("p", "P"):
            self.i += 1
        elif nxt == "x":
            self.i += 2
        return _Node(1, 1, False, nxt in "bBAz")  # \b \B \A \z match no character


def check(pattern: str, flags: str = "") -> None:
    """Raise UnsafePattern unless `pattern` (with DuckDB's regex `flags`) is in the safe subset and RE2 compiles it."""
    bad = sorted(set(flags) - FLAGS)
    if bad:
        raise UnsafePattern(f"regular expression option(s) {''.join(bad)!r} are not allowed; allowed: "
                            f"{''.join(sorted(FLAGS))}")
    if len(pattern) > MAX_PATTERN:
        raise UnsafePattern(f"a regular expression is longer than {MAX_PATTERN} characters")
    if "l" not in flags:  # 'l': the pattern is literal text, not a regular expression
        parser = _Parser(pattern)
        node = parser.alternation()
        if parser.i < len(pattern):
            raise parser.fail(f"')' at position {parser.i} closes no group")
        if node.size - node.written > MAX_EXPANSION:
            raise parser.fail(f"its counted repetitions ({{n}}, {{n,m}}) write out {node.size - node.written} more "
                              f"items, above {MAX_EXPANSION}: RE2 compiles each copy; repeat less, or use + / *")
    _compiles(pattern, flags)


def _compiles(pattern: str, flags: str) -> None:
    import duckdb

    with duckdb.connect() as con:
        try:
            con.execute("SELECT regexp_matches('', $p, $f)", {"p": pattern, "f": flags})
        except duckdb.Error as exc:
            why = str(exc).split(":", 1)[-1].strip()
            raise UnsafePattern(f"regular expression {_shown(pattern)}: RE2 refuses it ({why})") from None
