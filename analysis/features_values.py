"""The shape of one parameter value: character classes, punctuation counts, token shape.

Kruegel & Vigna's models look at a value's length, its character distribution and its
structure.  Here a value is mapped once, at C speed (``str.translate``), to a class string:
ASCII lower -> ``a``, upper -> ``A``, digit -> ``9``, other letters -> ``u``, control
characters -> ``c``, and every punctuation character (and space) stands for itself.  From
that come the set of classes present, how often each punctuation character occurs, and the
token shape: classes with letter case folded and runs collapsed ("80624196L" -> "9a",
"ann@mail.es" -> "a@a.a").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SHAPE = 40  # a longer shape is cut and ends with "…": free text has no useful shape
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _class_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x100):
        char = chr(code)
        if code < 0x20 or code == 0x7F:
            table[code] = "c"
        elif "a" <= char <= "z":
            table[code] = "a"
        elif "A" <= char <= "Z":
            table[code] = "A"
        elif "0" <= char <= "9":
            table[code] = "9"
        elif code >= 0x80:
            table[code] = "c" if code < 0xA0 else ("u" if char.isalpha() else char)
    return table


_CLASS_TABLE = _class_table()
_FOLD_TABLE = str.maketrans({"A": "a", "u": "a"})
_BEYOND_LATIN1 = re.compile(r"[^\x00-\xff]")
_RUNS = re.compile(r"(.)\1+")
LETTER_CLASSES = frozenset("aAu9c")
CLASS_NAMES = {"a": "lowercase letter", "A": "uppercase letter", "9": "digit",
               "u": "non-ASCII letter", "c": "control character", " ": "space"}


@dataclass(slots=True, frozen=True)
class ValueSignature:
    """What the profiles learn from one value."""

    length: int
    classes: frozenset[str]
    punct_counts: tuple[tuple[str, int], ...]  # (character, occurrences), sorted
    shape: str
    number: float | None  # the value as a number when it is one


def class_string(value: str) -> str:
    """Each character replaced by its class (see the module docstring)."""
    mapped = value.translate(_CLASS_TABLE)
    if not mapped.isascii():
        mapped = _BEYOND_LATIN1.sub("u", mapped)
    return mapped


def describe_class(cls: str) -> str:
    """A readable name of one character class ("digit", "'<'")."""
    return CLASS_NAMES.get(cls, repr(cls))


def signature(value: str, max_chars: int = 4096) -> ValueSignature:
    """The signature of one value (only its first ``max_chars`` characters are classified)."""
    length = len(value)
    mapped = class_string(value[:max_chars])
    classes = frozenset(mapped)
    punct = tuple(sorted((c, mapped.count(c)) for c in classes if c not in LETTER_CLASSES))
    shape = _RUNS.sub(r"\1", mapped.translate(_FOLD_TABLE))
    if len(shape) > MAX_SHAPE:
        shape = shape[:MAX_SHAPE] + "…"
    number = None
    if length <= 32 and NUMBER.fullmatch(value):
        try:
            number = float(value)
        except ValueError:  # pragma: no cover - the pattern only admits floats
            number = None
    return ValueSignature(length, classes, punct, shape, number)
