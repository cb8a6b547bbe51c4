"""The Jinja filters every template may use, registered in one place.

Text from a blueprint reaches emitted files only through these: as a Python literal
(``pyrepr``), JSON (``tojson``), a TOML string (``toml``), or text made inert for a docstring, a comment, YAML or
Markdown. None of them lets the text end its context (a triple quote, a newline in a
comment, a backtick fence) or carry control characters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from .names import class_name

_DIGITS = re.compile(r"(\d+)")


def pyrepr(value: Any) -> str:
    """A Python literal for a JSON-like value (str, int, float, bool, None, list, dict)."""
    if isinstance(value, str):
        return _string_literal(value)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        inner = ", ".join(pyrepr(v) for v in value)
        return f"[{inner}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{pyrepr(str(k))}: {pyrepr(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"cannot render {type(value).__name__} as a literal")


def _string_literal(value: str) -> str:
    # repr() escapes what is not printable; we also escape format and bidi controls that
    # isprintable() lets through in some Python versions, so no literal can reorder code.
    body = repr(value)
    if body.isascii():  # repr already escaped every ASCII control character
        return body
    return "".join(
        (
            f"\\u{ord(ch):04x}"
            if unicodedata.category(ch) in ("Cf", "Cc", "Zl", "Zp")
            else ch
        )
        for ch in body
    )


def inert(value: Any) -> str:
    """One line of plain text: no control, format or bidi characters, no newlines."""
    text = str(value)
    if text.isascii() and text.isprintable():  # nothing to replace: no control, no \n
        return " ".join(text.split())
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in "\n\r\t" or category in ("Zl", "Zp"):
            out.append(" ")
        elif category in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def docstring(value: Any) -> str:
    """Text safe inside a triple-quoted docstring (no quote run, no escape)."""
    return inert(value).replace("\\", "\\\\").replace('"', "'")


def comment(value: Any) -> str:
    """Text safe after ``#`` on one line."""
    return inert(value)


def markdown(value: Any) -> str:
    """Text safe in Markdown prose and tables: no HTML, no code fences, no cell breaks."""
    text = inert(value)
    for ch in "\\`*_[]<>|#{}":
        text = text.replace(ch, "\\" + ch)
    return text


def tojson(value: Any) -> str:
    """Stable JSON (ASCII only, sorted keys)."""
    return json.dumps(value, ensure_ascii=True, sort_keys=True)


def toml(value: Any) -> str:
    """A TOML value for a string or a list of strings.

    Not JSON: TOML's ``\\u`` escapes must be Unicode scalar values, so a character
    beyond U+FFFF is written ``\\UXXXXXXXX``, never as a JSON surrogate pair.
    """
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    out = ['"']
    for ch in str(value):
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate is no character at all
            out.append("\\uFFFD")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    out.append('"')
    return "".join(out)


def _natural(text: str) -> tuple[Any, ...]:
    """``item10`` after ``item2``: digit runs compare as numbers, as ruff's isort does.

    ruff's natural order compares a run with a leading zero digit by digit, as a
    fraction: ``c02`` comes before ``c1`` and ``c2``.
    """
    return tuple(
        ((0, run) if run.startswith("0") else (1, int(run))) if run.isdigit() else run
        for run in _DIGITS.split(text)
    )


def import_key(name: str) -> tuple[Any, ...]:
    """Where ruff's isort (default settings) puts ``name`` among names or modules.

    Order by type first (CONSTANTS, then Classes, then everything else), then by the
    name without case, naturally (``Item2`` before ``Item10``).
    """
    if len(name) > 1 and name.isupper():
        rank = 0
    elif name[:1].isupper():
        rank = 1
    else:
        rank = 2
    return rank, _natural(name.lower()), _natural(name)


def module_key(module: str) -> tuple[Any, ...]:
    """Where ruff's isort puts ``from <module> import ...`` in its section."""
    return _natural(module.lower()), _natural(module)


def import_names(names: Iterable[str]) -> str:
    """``Sink, Item10, Item2`` -> ``Item2, Item10, Sink``: a from-import's names, sorted.

    Templates emit their imports sorted, so that ``ruff format`` alone finishes them:
    no ``ruff check --select I --fix`` runs at generation.
    """
    return ", ".join(sorted(set(names), key=import_key))


def by_module(items: Iterable[Any], attribute: str) -> list[Any]:
    """``items`` in ruff's isort order of their ``attribute`` (a module or a name)."""
    return sorted(items, key=lambda item: module_key(str(item[attribute])))


def env_name(value: str) -> str:
    """``order_pipeline`` -> ``ORDER_PIPELINE``."""
    return value.upper()


FILTERS: dict[str, Callable[..., Any]] = {
    "pyrepr": pyrepr,
    "inert": inert,
    "docstring": docstring,
    "comment": comment,
    "markdown": markdown,
    "tojson": tojson,
    "toml": toml,
    "class_name": class_name,
    "env_name": env_name,
    "import_names": import_names,
    "by_module": by_module,
}
