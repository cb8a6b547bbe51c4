"""Hostile text in every blueprint field that reaches a template: refused, or inert.

Hypothesis builds blueprints whose names, descriptions, defaults, patterns, PII field
names, versions, routes, proxies and imports are made of quotes of every kind, triple
quotes, backslashes, Jinja and shell syntax, Unicode confusables and bidi controls,
NUL and very long strings. Each one is either refused with the loader's user error, or
generates a project (without its gate, for speed) that compiles, passes ruff, imports
and runs its schema and pipeline tests, and executes none of the injected text: no
payload leaves its marker file. The full gate runs on one fixed hostile blueprint in
``test_generate.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.errors import BlueprintError
from generator.formatting import ruff_command
from generator.generation import generate
from generator.loader import load_text
from tests.hostile import HOSTILE, MARKER_DIR, MARKERS

PAYLOADS = (
    *HOSTILE,
    '"""', "'''", '"', "'", "\\", "\\\\'", "{{", "}}", "{%", "%}", "{#", "#}",
    "$(touch /tmp/pw_pwned_shell)", "`touch /tmp/pw_pwned_tick`", "; rm -rf /",
    "\x00", "\u202e", "\u2066", "\u2069", "\u200b", "\ufeff", "\u2028", "\r\n", "\n",
    "#", "%s", "%(x)s", "\\N{BULLET}", "\\x00", "\\u202e", "</script>", "\u0430",
    "\uff49\uff4d\uff50\uff4f\uff52\uff54", "\U0001d000", "\U0001f600",
    "__import__('os').system('touch /tmp/pw_pwned_single')",
    "\"\"\"; __import__('os').system('touch /tmp/pw_pwned_docstring'); \"\"\"",
)  # fmt: skip
TEXT = st.lists(
    st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=16)), max_size=6
).map("".join)
#: very long text: a description may hold 10,000 characters, a name 64
LONG = st.sampled_from([65, 5_000, 10_000]).map(lambda n: ("\u202e\"'x" * n)[:n])
#: fields whose text reaches emitted files as literals, comments, docstrings or prose
FREE_TEXT = ("description", "default", "pattern", "pii", "connection", "component")
#: fields that must be identifiers or fixed shapes: hostile text is refused there
SHAPED = ("service", "schema", "field", "component_name", "route", "version", "proxy")
SHAPED += ("import", "auth")


@st.composite
def blueprints(draw: st.DrawFn) -> dict[str, Any]:
    """A small service (endpoint -> sink, one schema) with hostile text in it.

    Every free-text field gets hostile text; now and then one shaped field (a name,
    the route, the version, a proxy, an import, ``auth``) gets some too.
    """
    poisoned = draw(st.one_of(st.none(), st.none(), st.sampled_from(SHAPED)))

    def shaped(field: str, valid: Any) -> Any:
        return draw(st.one_of(TEXT, LONG)) if poisoned == field else valid

    def free() -> str:
        return draw(st.one_of(TEXT, LONG))

    schema, field = shaped("schema", "Msg"), shaped("field", "note")
    api, keep = shaped("component_name", "api"), "keep"
    default = draw(TEXT)
    note: dict[str, Any] = {"type": "str", "default": default, "description": free()}
    if draw(st.booleans()):  # a valid pattern full of escapes, which the default fits
        note["pattern"] = "^" + re.escape(default) + "$"
    endpoint: dict[str, Any] = {
        "kind": "api_endpoint",
        "route": shaped("route", "POST /in"),
        "output": schema,
        "description": free(),
    }
    if draw(st.booleans()) or poisoned == "auth":
        endpoint["auth"] = shaped("auth", draw(st.sampled_from(["api_key", "basic"])))
    if draw(st.booleans()):
        endpoint["rate_limit"] = {"requests": 5, "per_seconds": 60}
    pii = draw(st.lists(TEXT.map(lambda t: t[:64] or "x"), min_size=1, max_size=3))
    return {
        "portwright": 1,
        "name": shaped("service", "hostile_svc"),
        "description": free(),
        "version": shaped("version", "1.0.0"),
        "defaults": {
            "pii_fields": pii,
            "trusted_proxies": [shaped("proxy", "10.0.0.0/8")],
        },
        "schemas": {
            schema: {
                "description": free(),
                "fields": {field: note, "count": {"type": "int", "default": 3}},
            }
        },
        "components": {
            api: endpoint,
            keep: {"kind": "sink", "input": schema, "description": free()},
        },
        "connections": [
            {"from": f"{api}.out", "to": f"{keep}.in", "description": free()}
        ],
        "forbidden_imports": [shaped("import", "requests")],
    }


# Imports the emitted package the way a deployment does, builds the app and its
# OpenAPI document (every description is in it), then runs the emitted schema and
# pipeline tests (every default, pattern and example item is used there).
CHECK = """
import importlib, sys
import pytest
package = sys.argv[1]
app = importlib.import_module(package + ".app").make_app()
app.openapi()
importlib.import_module(package + ".credentials")
importlib.import_module(package + ".__main__")
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-p", "anyio", "-x",
                      "tests/test_schemas.py", "tests/test_pipeline.py"]))
"""


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTILE_SVC_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only anyio's is needed: faster
    env.pop("PYTHONPATH", None)
    return env


def check_project(project: Path, package: str) -> None:
    """Compiles, passes ruff, stays inside its folder, imports and tests cleanly."""
    for path in project.rglob("*"):
        assert not path.is_symlink(), path
        assert path.resolve().is_relative_to(project.resolve()), path
        if path.suffix == ".py":
            compile(path.read_text(encoding="utf-8"), str(path), "exec")
    ruff = subprocess.run(
        ruff_command("check", "--no-cache", "."),
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    ran = subprocess.run(
        [sys.executable, "-c", CHECK, package],
        cwd=project,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]


@settings(
    max_examples=15,
    deadline=None,  # a generation and an import take seconds
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(blueprint=blueprints())
def test_hostile_text_is_refused_or_generates_code_that_runs_none_of_it(
    blueprint: dict[str, Any],
) -> None:
    for marker in MARKERS:
        Path(MARKER_DIR, marker).unlink(missing_ok=True)
    text = yaml.safe_dump(blueprint, allow_unicode=False, sort_keys=False, width=10**6)
    try:
        load_text(text, "hostile.yaml")
    except BlueprintError as exc:
        for problem in exc.problems:  # a user error: one line each, file and line
            assert str(problem).startswith("hostile.yaml:")
            assert "\n" not in str(problem) and "Traceback" not in str(problem)
        return
    with tempfile.TemporaryDirectory(prefix="pw-hostile-") as work:
        source = Path(work, "hostile.yaml")
        source.write_text(text, encoding="utf-8")
        project = Path(work, "out")
        generate(source, project, gate=False)
        check_project(project, blueprint["name"])
        outside = [p for p in Path(work).iterdir() if p not in (source, project)]
        assert outside == [], "generate wrote beside its target"
    for marker in MARKERS:
        assert not Path(MARKER_DIR, marker).exists(), f"a payload ran: {marker}"
