"""Load a blueprint file: YAML -> shape check (pydantic) -> graph rules -> Blueprint.

Every failure is a ``BlueprintError`` whose problems name the file, line and key path,
and say what is wrong with the value quoted (and, where a name is close, the fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .blueprint import Blueprint
from .errors import BlueprintError, Problem
from .model import (
    COMPONENT_MODELS,
    KINDS,
    BlueprintSpec,
    ConnectionSpec,
    Defaults,
    FieldSpec,
    RateLimitSpec,
    SchemaSpec,
    WindowShapeSpec,
)
from .resolve import did_you_mean, resolve
from .yaml_source import Loc, SourceDoc, parse_source, read_source


def load_blueprint(path: Path, display: str | None = None) -> Blueprint:
    """Load, check and resolve the blueprint at ``path``."""
    return load_document(read_source(path, display))


def load_text(text: str, name: str = "<blueprint>") -> Blueprint:
    """Load a blueprint from a string (tests, and tools that hold the text already)."""
    # surrogatepass: a lone surrogate becomes bytes that parse_source reports as not UTF-8
    return load_document(parse_source(text.encode("utf-8", "surrogatepass"), name))


def load_document(doc: SourceDoc) -> Blueprint:
    """Check and resolve an already parsed document."""
    try:
        spec = BlueprintSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise BlueprintError(_problems(doc, exc)) from None
    return resolve(spec, doc)


def _problems(doc: SourceDoc, exc: ValidationError) -> list[Problem]:
    errors = [
        (_kind_loc(doc, _strip_tags(doc.data, tuple(e["loc"])), e), e)
        for e in exc.errors(include_url=False)
    ]
    problems = {
        loc: doc.problem(loc, _message(doc, loc, error)) for loc, error in errors
    }
    # 'missing route' beside "unknown key 'rout' (did you mean 'route'?)" says it twice
    for loc, error in errors:
        if error["type"] == "missing":
            hint = f"(did you mean {str(loc[-1])!r}?)"
            siblings = [p for other, p in problems.items() if other[:-1] == loc[:-1]]
            if any(p.message.endswith(hint) for p in siblings):
                del problems[loc]
    return list(problems.values())


def _kind_loc(doc: SourceDoc, loc: Loc, error: ErrorDetails) -> Loc:
    """An unknown kind is reported on the ``kind`` line, not the component's."""
    if error["type"] == "union_tag_invalid" and (*loc, "kind") in doc.lines:
        return (*loc, "kind")
    return loc


def _strip_tags(data: Any, loc: Loc) -> Loc:
    """Drop the union tags pydantic puts into a location (``components.api.api_endpoint``)."""
    out: list[str | int] = []
    node = data
    tagged = False
    for part in loc:
        if part == "[key]":
            continue
        if len(out) == 2 and out[0] == "components" and not tagged:
            tagged = True  # pydantic's tag comes first, though a key may share its name
            if isinstance(node, dict) and part in KINDS and node.get("kind") == part:
                continue
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif len(out) == 2 and out[0] == "components" and part in KINDS:
            continue  # the discriminator's tag
        elif out and out[-1] in _BOUND_KEYS.values() and part in ("int", "float"):
            continue  # the tags of the int | float union a bound takes
        elif (
            len(out) >= 4
            and out[0] == "schemas"
            and out[2] == "fields"
            and part in ("str", "FieldSpec")
        ):
            continue
        else:
            out.append(part)
            node = None
    return tuple(out)


def _model_at(data: Any, loc: Loc) -> type[BaseModel] | None:
    """The model whose keys live at ``loc`` (for 'did you mean' on unknown keys)."""
    if loc == ():
        return BlueprintSpec
    if loc == ("defaults",):
        return Defaults
    if len(loc) == 2 and loc[0] == "schemas":
        return SchemaSpec
    if len(loc) == 4 and loc[0] == "schemas" and loc[2] == "fields":
        return FieldSpec
    if len(loc) == 2 and loc[0] == "connections":
        return ConnectionSpec
    if len(loc) == 3 and loc[0] == "components" and loc[2] == "rate_limit":
        return RateLimitSpec
    if len(loc) == 3 and loc[0] == "components" and loc[2] == "window":
        return WindowShapeSpec
    if len(loc) == 2 and loc[0] == "components":
        component = (
            data.get("components", {}).get(loc[1]) if isinstance(data, dict) else None
        )
        kind = component.get("kind") if isinstance(component, dict) else None
        return COMPONENT_MODELS.get(kind) if isinstance(kind, str) else None
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _where(loc: Loc) -> str:
    if len(loc) >= 4 and loc[0] == "schemas" and loc[2] == "fields":
        return f" in field {f'{loc[1]}.{loc[3]}'!r}"
    if len(loc) >= 2 and loc[0] == "components":
        return f" in component {loc[1]!r}"
    if len(loc) >= 2 and loc[0] == "schemas":
        return f" in schema {loc[1]!r}"
    if len(loc) >= 2 and loc[0] == "connections":
        return f" in connection {loc[1]}"
    return ""


def _message(doc: SourceDoc, loc: Loc, error: ErrorDetails) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    shown = _show(value)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(doc.data, loc[:-1])
        hint = did_you_mean(key, _keys(model)) if model is not None else ""
        return f"unknown key {key!r}{_where(loc[:-1])}{hint}"
    if kind == "missing":
        return f"missing required key {str(loc[-1])!r}{_where(loc[:-1])}"
    if kind == "union_tag_invalid":
        raw = value.get("kind") if isinstance(value, dict) else None
        if not isinstance(raw, str):
            return (
                f"expected a kind name, got {_show(raw)}; kinds are: {', '.join(KINDS)}"
            )
        return f"unknown kind {raw!r}{did_you_mean(raw, KINDS)}; kinds are: {', '.join(KINDS)}"
    if kind == "union_tag_not_found":
        return (
            f"missing required key 'kind'{_where(loc)}; kinds are: {', '.join(KINDS)}"
        )
    if kind == "literal_error" and loc == ("portwright",):
        return (
            f"format version {shown} is not supported; this portwright reads version 1"
        )
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        options = [
            o.strip() for o in expected.replace(" or ", ",").split(",") if o.strip()
        ]
        hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
        return f"{shown} is not one of: {', '.join(options)}{hint}"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {shown}"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {ctx.get(_BOUND_KEYS[kind])}, got {shown}"
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must not be empty, got {shown}"
    if kind == "string_pattern_mismatch":
        return f"{shown} does not match {ctx.get('pattern')}"
    return str(error["msg"]).removeprefix("Value error, ")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string (quote it)",
    "dict_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "int_from_float": "a whole number",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}
_BOUND_KEYS = {
    "greater_than": "gt",
    "greater_than_equal": "ge",
    "less_than": "lt",
    "less_than_equal": "le",
}
