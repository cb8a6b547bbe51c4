"""Read a blueprint file safely into plain data, remembering the line of every key.

PyYAML's safe composer gives a node tree with positions; we build plain Python values
from it ourselves so that we can (1) record the line of every key path, (2) refuse
duplicate keys, which PyYAML silently overwrites, and (3) refuse alias bombs before they
expand, by counting the expanded size of the tree without building it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import BlueprintError, Problem

MAX_FILE_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64

Loc = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
# Plain data only: a tag such as !!python/object on a mapping is refused, not ignored.
_COLLECTION_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "set", "omap", "pairs")
)


@dataclass(frozen=True)
class SourceDoc:
    """A parsed YAML document: its plain data and the line of every key path."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of the longest prefix of ``loc`` that the file defines."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1

    def problem(self, loc: Loc, message: str) -> Problem:
        """A problem at ``loc``, with its line and dotted key path."""
        return Problem(self.file, self.line_of(loc), format_loc(loc), message)


def format_loc(loc: Loc) -> str:
    """``('connections', 2, 'from')`` -> ``connections[2].from``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.isprintable() or any(char.isspace() for char in part):
            out += f"[{part!r}]"  # a key with a newline must not break the line
        else:
            out += f".{part}" if out else str(part)
    return out


def read_source(path: Path, display: str | None = None) -> SourceDoc:
    """Read and parse ``path``; raise BlueprintError for anything that is not sane YAML."""
    name = display if display is not None else str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BlueprintError(
            [Problem(name, 1, "", f"cannot read file: {exc.strerror}")]
        ) from None
    return parse_source(raw, name)


def parse_source(raw: bytes, name: str) -> SourceDoc:
    """Parse YAML bytes into a SourceDoc, refusing huge, empty, broken or bombed files."""

    def fail(line: int, message: str) -> BlueprintError:
        return BlueprintError([Problem(name, line, "", message)])

    if len(raw) > MAX_FILE_BYTES:
        raise fail(
            1, f"file is {len(raw)} bytes; a blueprint may be at most {MAX_FILE_BYTES}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(
            raw[: exc.start].count(b"\n") + 1, "file is not valid UTF-8"
        ) from None
    if "\x00" in text:
        raise fail(
            text[: text.index("\x00")].count("\n") + 1, "file contains a NUL byte"
        )
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = exc.problem or exc.context or "invalid YAML"
        raise fail(line, f"invalid YAML: {reason}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        raise fail(
            text[: exc.position].count("\n") + 1,
            f"invalid YAML: character U+{exc.character:04X} is not allowed: {exc.reason}",
        ) from None
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "cannot read the file"
        raise fail(1, f"invalid YAML: {reason}") from None
    if not nodes or nodes[0] is None:
        raise fail(1, "file is empty; a blueprint starts with 'portwright: 1'")
    if len(nodes) > 1:
        raise fail(
            nodes[1].start_mark.line + 1, "file holds several YAML documents; use one"
        )
    root = nodes[0]
    size = _expanded_size(root, {})
    if size > MAX_EXPANDED_NODES:
        raise fail(
            1,
            f"file expands to more than {MAX_EXPANDED_NODES} YAML nodes through "
            "anchors and aliases, the most a blueprint may have",
        )
    builder = _Builder(name)
    data = builder.build(root, (), 0)
    if builder.problems:
        raise BlueprintError(builder.problems)
    if not isinstance(data, dict):
        raise fail(
            1, "a blueprint is a mapping of keys (portwright, name, schemas, ...)"
        )
    return SourceDoc(name, data, builder.lines)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes the tree holds once every alias is expanded (linear in unique nodes)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = MAX_EXPANDED_NODES + 1  # a recursive alias expands forever
    total = 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _expanded_size(key, memo) + _expanded_size(value, memo)
            if total > MAX_EXPANDED_NODES:
                break
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, memo)
            if total > MAX_EXPANDED_NODES:
                break
    memo[id(node)] = total
    return total


class _Builder:
    """Turns composed nodes into plain values, recording lines and refusing duplicates."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[Loc, int] = {(): 1}
        self.problems: list[Problem] = []
        # One constructor per file: a constructor keeps every node it has built, so a
        # shared one would hold every file's nodes for the life of the process.
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        if depth > MAX_DEPTH:
            line = node.start_mark.line + 1
            self.problems.append(
                Problem(self.name, line, format_loc(loc), "nested too deeply")
            )
            return None
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            self._invalid(
                node, loc, f"could not determine a constructor for the tag {node.tag!r}"
            )
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, depth)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for index, item in enumerate(node.value):
                self.lines.setdefault((*loc, index), item.start_mark.line + 1)
                out.append(self.build(item, (*loc, index), depth + 1))
            return out
        return self._scalar(node, loc)

    def _invalid(self, node: yaml.Node, loc: Loc, reason: str) -> None:
        line = node.start_mark.line + 1
        self.problems.append(
            Problem(self.name, line, format_loc(loc), f"invalid YAML: {reason}")
        )

    def _mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    Problem(
                        self.name,
                        line,
                        format_loc(loc),
                        "a key must be a plain string, not a list or a mapping",
                    )
                )
                continue
            reported = len(self.problems)
            key = self._scalar(key_node, loc)
            if len(self.problems) > reported:
                continue
            if not isinstance(key, str):
                self.problems.append(
                    Problem(
                        self.name,
                        line,
                        format_loc(loc),
                        f"key {key!r} is not a string (quote it if you meant a name)",
                    )
                )
                continue
            if key in out:
                first = self.lines.get((*loc, key), line)
                self.problems.append(
                    Problem(
                        self.name,
                        line,
                        format_loc((*loc, key)),
                        f"duplicate key {key!r} (first defined on line {first})",
                    )
                )
                continue
            self.lines.setdefault((*loc, key), line)
            out[key] = self.build(value_node, (*loc, key), depth + 1)
        # '<<' merges last: the mapping's own keys win wherever the '<<' stands, and
        # (with setdefault above) keep their own lines.
        for value_node in merges:
            merged = self.build(value_node, loc, depth + 1)
            for source in merged if isinstance(merged, list) else [merged]:
                if isinstance(source, dict):
                    for k, v in source.items():
                        out.setdefault(k, v)
        return out

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        # Timestamps stay strings: a blueprint's dates are data for pydantic, not for YAML.
        if node.tag == "tag:yaml.org,2002:timestamp":
            return str(node.value)
        if node.tag == _STR_TAG:  # most scalars: what the constructor would return
            return node.value
        try:
            return self.scalars.construct_object(node)
        except yaml.constructor.ConstructorError as exc:  # an unknown tag: !foo x
            reason = exc.problem or f"cannot read {node.value!r}"
        except (
            ValueError,
            TypeError,
            LookupError,
        ):  # a tag the text does not fit: !!int x
            reason = f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}"
        self._invalid(node, loc, reason)
        return None
