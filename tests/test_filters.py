"""Blueprint text reaches emitted files only through filters that keep it inert."""

import ast
import subprocess
import tomllib
import unicodedata
from pathlib import Path

import pytest

from generator.filters import (
    by_module,
    comment,
    docstring,
    import_names,
    inert,
    markdown,
    pyrepr,
    tojson,
    toml,
)
from generator.formatting import ruff_command
from tests.hostile import HOSTILE


@pytest.mark.parametrize("text", HOSTILE)
def test_pyrepr_round_trips_as_one_literal(text: str) -> None:
    literal = pyrepr(text)
    tree = ast.parse(f"x = {literal}\n")
    assert len(tree.body) == 1
    assert ast.literal_eval(literal) == text


def test_pyrepr_renders_nested_json_values() -> None:
    value = {"a": [1, 2.5, True, None, "q'\"\\"], "b": {}}
    assert ast.literal_eval(pyrepr(value)) == value


def test_pyrepr_escapes_bidi_controls_so_code_cannot_be_reordered() -> None:
    assert "\u202e" not in pyrepr("\u202eevil")
    assert "\u2066" not in pyrepr("a\u2066b")


@pytest.mark.parametrize("text", HOSTILE)
def test_docstring_stays_inside_its_quotes(text: str) -> None:
    source = f'def f():\n    """{docstring(text)}"""\n'
    tree = ast.parse(source)
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    assert len(func.body) == 1  # only the docstring: nothing escaped into code
    assert "\n" not in (ast.get_docstring(func) or "")


@pytest.mark.parametrize("text", HOSTILE)
def test_comment_is_one_line(text: str) -> None:
    line = comment(text)
    assert "\n" not in line and "\r" not in line
    tree = ast.parse(f"# {line}\nx = 1\n")
    assert len(tree.body) == 1


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_has_no_markup(text: str) -> None:
    out = markdown(text)
    assert "\n" not in out
    for index, char in enumerate(out):
        if char in "<>`|[]*_#{}":
            assert out[index - 1] == "\\", f"unescaped {char!r} in {out!r}"


def test_tojson_is_ascii_and_stable() -> None:
    assert tojson({"b": "é", "a": 1}) == '{"a": 1, "b": "\\u00e9"}'


@pytest.mark.parametrize(
    "text",
    [
        *HOSTILE,
        "\U0001d000 beyond the BMP \U0001f600",
        'quote " and back\\slash',
        "\x7f",
    ],
)
def test_toml_round_trips_where_json_escapes_would_not(text: str) -> None:
    # json.dumps writes U+1D000 as the surrogate pair \\ud834\\udc00, which TOML refuses
    assert tomllib.loads(f"x = {toml(text)}\ny = {toml([text, 'b'])}") == {
        "x": text,
        "y": [text, "b"],
    }


def _inert_by_definition(value: str) -> str:
    """``inert`` character by character, with no shortcut for plain ASCII."""
    out = []
    for ch in value:
        category = unicodedata.category(ch)
        if ch in "\n\r\t" or category in ("Zl", "Zp"):
            out.append(" ")
        elif category in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return " ".join("".join(out).split())


PLAIN = [
    "plain text",
    "  spaced   out  ",
    "tab\there",
    "new\nline",
    "bell\x07",
    "del\x7f",
]


@pytest.mark.parametrize("text", [*HOSTILE, *PLAIN])
def test_inert_shortcut_for_ascii_changes_nothing(text: str) -> None:
    assert inert(text) == _inert_by_definition(text)


@pytest.mark.parametrize("text", [*HOSTILE, *PLAIN])
def test_pyrepr_has_no_control_or_format_character(text: str) -> None:
    literal = pyrepr(text)
    assert not any(
        unicodedata.category(ch) in ("Cf", "Cc", "Zl", "Zp") for ch in literal
    )
    assert ast.literal_eval(literal) == text


# identifiers that tell ruff's order apart: case, constant/class/other, digit runs
_NAMES = """
Item_2 item2 ITEM2 A a _private X1Y c10_api c1_api c1api Item0 Scored10 Scored9 Item
ItemB Itemb item_b c2_api c02_api AB Ab aB ErrorRecord SERVICE load_settings UTC
datetime c9 c10 c100 c007 c07 c0 C_1 Z9z
"""
NAMES = _NAMES.split()


def test_import_names_and_modules_sort_as_ruffs_isort(tmp_path: Path) -> None:
    shuffled = sorted(NAMES, key=lambda n: n[::-1])  # any order but the right one
    module = tmp_path / "m.py"
    lines = ["from mod import " + ", ".join(shuffled) + "\n"]
    lines += [
        f"from .components.{name} import X{i}\n" for i, name in enumerate(shuffled)
    ]
    module.write_text("".join(lines), encoding="utf-8")
    command = ruff_command("check", "--isolated", "--no-cache", "--select", "I")
    subprocess.run([*command, "--fix", "--quiet", "m.py"], cwd=tmp_path, check=True)
    tree = ast.parse(module.read_text(encoding="utf-8"))
    froms = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert froms[0].module == "mod"  # the absolute import first, the relative after
    by_ruff = [alias.name for alias in froms[0].names]
    assert import_names(shuffled) == ", ".join(by_ruff)
    ours = by_module([{"module": name} for name in shuffled], "module")
    assert [node.module for node in froms[1:]] == [
        f"components.{item['module']}" for item in ours
    ]
