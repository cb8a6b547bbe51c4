"""Blueprint text reaches emitted files only through filters that keep it inert."""

import ast
import tomllib

import pytest

from generator.filters import comment, docstring, markdown, pyrepr, tojson, toml
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
