"""Reading YAML safely: sane files become plain data with a line for every key path;
huge, empty, broken, bombed or ambiguous files are refused with one clear problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from generator import yaml_source
from generator.errors import BlueprintError
from generator.yaml_source import (
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    MAX_FILE_BYTES,
    format_loc,
    parse_source,
    read_source,
)


def _refused(raw: bytes | str) -> list[str]:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    with pytest.raises(BlueprintError) as caught:
        parse_source(data, "f.yaml")
    return [_parser_neutral(str(p)) for p in caught.value.problems]


def _parser_neutral(message: str) -> str:
    """The YAML parser's own words are libyaml's; PyYAML's pure-Python parser words
    them differently, so without libyaml only the line of a syntax error is compared."""
    head, marker, _ = message.partition(": invalid YAML: ")
    if marker and not LIBYAML:
        return head + marker
    return message


LIBYAML = hasattr(yaml, "CSafeLoader")


def test_data_and_the_line_of_every_key_path() -> None:
    doc = parse_source(
        b"# comment\nname: shop\nschemas:\n  Order:\n    fields: {id: str}\n"
        b"connections:\n  - a.out -> b.in\n  - {from: a.x,\n     to: b.y}\n",
        "f.yaml",
    )

    assert doc.data == {
        "name": "shop",
        "schemas": {"Order": {"fields": {"id": "str"}}},
        "connections": ["a.out -> b.in", {"from": "a.x", "to": "b.y"}],
    }
    assert doc.lines[("name",)] == 2
    assert doc.lines[("schemas", "Order", "fields", "id")] == 5
    assert doc.lines[("connections", 1)] == 8
    assert doc.lines[("connections", 1, "to")] == 9
    # a path the file does not define falls back to its longest defined prefix
    assert doc.line_of(("schemas", "Order", "fields", "id", "type")) == 5
    assert doc.line_of(("nothing", "here")) == 1
    assert str(doc.problem(("connections", 1, "to"), "bad")) == (
        "f.yaml:9: connections[1].to: bad"
    )


def test_format_loc() -> None:
    assert format_loc(()) == ""
    assert format_loc(("connections", 2, "from")) == "connections[2].from"
    assert format_loc(("a", 0, 1)) == "a[0][1]"


def test_timestamps_stay_text_and_scalars_keep_their_yaml_types() -> None:
    doc = parse_source(
        b"day: 2024-01-02\nat: 2024-01-02T03:04:05Z\nn: 3\nx: 1.5\nb: true\nz: null\n",
        "f.yaml",
    )

    assert doc.data == {
        "day": "2024-01-02",
        "at": "2024-01-02T03:04:05Z",
        "n": 3,
        "x": 1.5,
        "b": True,
        "z": None,
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "f.yaml:1: file is empty; a blueprint starts with 'portwright: 1'"),
        (b"\n\n# nothing\n", "f.yaml:1: file is empty; a blueprint starts with 'portwright: 1'"),
        (b"---\n", "f.yaml:1: a blueprint is a mapping of keys (portwright, name, schemas, ...)"),
        (b"just text\n", "f.yaml:1: a blueprint is a mapping of keys (portwright, name, schemas, ...)"),
        (b"- a\n- b\n", "f.yaml:1: a blueprint is a mapping of keys (portwright, name, schemas, ...)"),
        (b"a: 1\nb: [1, 2\nc: 3\n", "f.yaml:3: invalid YAML: did not find expected ',' or ']'"),
        (b"a: 1\n\tb: 2\n", "f.yaml:2: invalid YAML: found a tab character that violates indentation"),
        (b"a: 'open\n", "f.yaml:2: invalid YAML: found unexpected end of stream"),
        (b"a: *nowhere\n", "f.yaml:1: invalid YAML: found undefined alias"),
        (b"a: !!python/object:os.system {}\n", "f.yaml:1: a: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'"),
        (b"a: !!python/name:os.system ''\n", "f.yaml:1: a: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system'"),
        (b"a: [1, !env HOME]\n", "f.yaml:1: a[1]: invalid YAML: could not determine a constructor for the tag '!env'"),
        (b"!env a: 1\n", "f.yaml:1: invalid YAML: could not determine a constructor for the tag '!env'"),
        (b"a: !!int many\n", "f.yaml:1: a: invalid YAML: 'many' is not a valid int"),
        (b"a: !!bool maybe\n", "f.yaml:1: a: invalid YAML: 'maybe' is not a valid bool"),
        (b"a: 1\n---\nb: 2\n", "f.yaml:3: file holds several YAML documents; use one"),
        (b"a: 1\nb: \xff\xfe\n", "f.yaml:2: file is not valid UTF-8"),
        (b"a: 1\nb: \"x\x00y\"\n", "f.yaml:2: file contains a NUL byte"),
    ],
    ids=[
        "empty",
        "comments only",
        "empty document",
        "a scalar",
        "a list",
        "unclosed list",
        "tab indent",
        "unclosed quote",
        "undefined alias",
        "python object tag",
        "python name tag",
        "custom tag",
        "custom tag on a key",
        "int tag on text",
        "bool tag on text",
        "two documents",
        "not utf-8",
        "nul byte",
    ],
)  # fmt: skip
def test_files_that_are_not_a_blueprint_at_all(raw: bytes, expected: str) -> None:
    assert _refused(raw) == [_parser_neutral(expected)]


def test_duplicate_keys_are_refused_at_every_depth() -> None:
    assert _refused("a: 1\nb:\n  c: 1\n  c: 2\na: 3\nd: {e: 1, e: 1}\n") == [
        "f.yaml:4: b.c: duplicate key 'c' (first defined on line 3)",
        "f.yaml:5: a: duplicate key 'a' (first defined on line 1)",
        "f.yaml:6: d.e: duplicate key 'e' (first defined on line 6)",
    ]


def test_keys_must_be_strings() -> None:
    assert _refused("a: 1\n3: x\nyes: y\n? [k]\n: z\n") == [
        "f.yaml:2: key 3 is not a string (quote it if you meant a name)",
        "f.yaml:3: key True is not a string (quote it if you meant a name)",
        "f.yaml:4: a key must be a plain string, not a list or a mapping",
    ]


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, levels):
        refs = ", ".join([f"*a{n - 1}"] * 10)
        lines.append(f"a{n}: &a{n} [{refs}]")
    return "\n".join(lines) + "\n"


BOMB = (
    f"f.yaml:1: file expands to more than {MAX_EXPANDED_NODES} YAML nodes through "
    "anchors and aliases, the most a blueprint may have"
)


def test_alias_bomb_is_refused_without_expanding_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _bomb(9)  # a billion strings once expanded, from under a kilobyte
    assert len(text) < 1024
    # what is counted, not how long it took: the size is measured once per node
    # written (memoized), and nothing is built from the tree
    visits: list[int] = []
    measure = yaml_source._expanded_size

    def counted(node: yaml.Node, memo: dict[int, int]) -> int:
        visits.append(id(node))
        return measure(node, memo)

    def build(*args: object) -> object:
        raise AssertionError("a bombed tree was built")

    monkeypatch.setattr(yaml_source, "_expanded_size", counted)
    monkeypatch.setattr(yaml_source._Builder, "build", build)

    assert _refused(text) == [BOMB]
    assert len(visits) < 1000  # about the nodes written, not the billion expanded


def test_recursive_alias_is_refused() -> None:
    assert _refused("a: &a [1, *a]\n") == [BOMB]
    assert _refused("a: &a {b: *a}\n") == [BOMB]


def test_shared_aliases_within_the_limit_are_fine() -> None:
    doc = parse_source(_bomb(3).encode(), "f.yaml")  # 10 + 100 + 1000 leaves

    assert doc.data["a2"] == [[["x"] * 10] * 10] * 10


def test_depth_limit() -> None:
    fine = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert parse_source(fine.encode(), "f.yaml").data["a"]

    deep = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    (problem,) = _refused(deep)
    assert problem.startswith("f.yaml:1: a[0][0]")
    assert problem.endswith(": nested too deeply")


def test_size_limit() -> None:
    ok = b"a: 1\n#" + b"x" * (MAX_FILE_BYTES - 7) + b"\n"
    assert len(ok) == MAX_FILE_BYTES
    assert parse_source(ok, "f.yaml").data == {"a": 1}

    big = ok + b"#"

    def compose_all(*args: object, **kwargs: object) -> object:
        raise AssertionError("an oversized file was parsed")

    with pytest.MonkeyPatch.context() as patch:  # refused before parsing
        patch.setattr(yaml_source.yaml, "compose_all", compose_all)
        assert _refused(big) == [
            f"f.yaml:1: file is {MAX_FILE_BYTES + 1} bytes; a blueprint may be at most {MAX_FILE_BYTES}"
        ]


def test_merge_keys_merge_and_the_mapping_own_keys_win() -> None:
    doc = parse_source(
        b"base: &b {x: 1, y: 2}\n"
        b"one:\n  <<: *b\n  y: 3\n"
        b"two:\n  y: 4\n  <<: *b\n"
        b"three:\n  <<: [{z: 1}, *b]\n",
        "f.yaml",
    )

    assert doc.data["one"] == {"x": 1, "y": 3}
    assert doc.data["two"] == {"x": 1, "y": 4}
    assert doc.data["three"] == {"z": 1, "x": 1, "y": 2}
    assert doc.lines[("one", "y")] == 4  # the key's own line, not the anchor's
    assert doc.lines[("two", "y")] == 6
    assert doc.lines[("one", "x")] == 1  # a merged key points at where it is written


def test_read_source_reports_unreadable_files(tmp_path: Path) -> None:
    for path, reason in [
        (tmp_path / "missing.yaml", "No such file or directory"),
        (tmp_path, "Is a directory"),
    ]:
        with pytest.raises(BlueprintError) as caught:
            read_source(path, "shown.yaml")
        assert [str(p) for p in caught.value.problems] == [
            f"shown.yaml:1: cannot read file: {reason}"
        ]


def test_parsing_does_not_keep_nodes_alive() -> None:
    # The YAML constructor caches every node it builds; it must not outlive a parse.
    import gc

    text = Path(__file__).parent.parent / "blueprints" / "sensor_alerts.yaml"
    raw = text.read_bytes()
    parse_source(raw, "f.yaml")
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(20):
        parse_source(raw, "f.yaml")
    gc.collect()
    assert len(gc.get_objects()) - before < 200
