"""Every project's AsyncAPI document: valid, complete, and the models' own schemas.

``asyncapi validate`` (npm ``@asyncapi/cli``, installed by ``bash .ci/run``) judges the
document of every example; without it these tests skip with the reason, except in CI
(``CI=true``), where they fail. The payload schemas are compared with what pydantic
produces for the models a generated project really holds, imported in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from generator.asyncapi import (
    DEAD_LETTER,
    HEADERS,
    asyncapi_document,
    asyncapi_yaml,
    dead_letter_record,
    payload_schemas,
)
from generator.generation import build
from generator.loader import load_blueprint, load_text

from .redisenv import missing
from .test_partitions_blueprint import BASE, NAME

ROOT = Path(__file__).parent.parent
EXAMPLES = [
    *sorted((ROOT / "blueprints").glob("*.yaml")),
    ROOT / "tests" / "blueprints" / "probe" / "every_feature.yaml",
    ROOT / "tests" / "blueprints" / "ok" / "feedback_loop.yaml",
]
IDS = [path.stem for path in EXAMPLES]
# Blueprint text in every place that reaches a payload schema: quotes, backslashes,
# control and bidi characters in descriptions, defaults of every shape, patterns,
# nesting, lists, optionals and inheritance.
AWKWARD = textwrap.dedent(r"""
    portwright: 1
    name: awkward
    description: "a \"quoted\" service \\ with a\u0007bell"
    schemas:
      Inner:
        description: 'tab	and "double" and \\ and \u202e bidi'
        fields:
          code: {type: str, pattern: '^[A-Z]{2}\d+$', description: "a \"code\" \\d"}
          tags: {type: "list[str]", default: [], max_length: 3}
      Outer:
        fields:
          inner: Inner
          inners: {type: "list[Inner] | None", default: null}
          when: {type: datetime, default: "2024-01-02T03:04:05+00:00"}
          day: {type: "date | None", default: null}
          ref: uuid
          extra: {type: dict, default: {}}
          count: {type: int, ge: 0, lt: 10, default: 1}
          ratio: {type: float, gt: 0, le: 1}
          flag: {type: bool, default: false}
          email: {type: str, pii: true}
      Derived:
        extends: Outer
        description: ""
        fields:
          note: {type: "str | None", default: null, min_length: 1}
    components:
      api:
        kind: api_endpoint
        route: POST /outer
        output: Derived
      store:
        kind: sink
        input: Derived
    connections:
      - api.out -> store.in
    """)


# where bash .ci/run installs npm tools when they are not on PATH
NPM_PREFIX = Path(
    os.environ.get("PORTWRIGHT_NPM_PREFIX", Path.home() / ".cache" / "portwright-npm")
)


def tool(name: str, how: str) -> str:
    """The program ``name`` (on PATH, or where .ci/run puts it); skips (fails in CI)
    when it is not installed."""
    found = shutil.which(name) or shutil.which(name, path=str(NPM_PREFIX / "bin"))
    if found:
        return found
    reason = f"{name} is not installed ({how}; bash .ci/run installs it)"
    missing(reason)


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """``asyncapi validate``, failing on warnings too.

    Its analytics are switched off through a config file beside ``path`` (the CLI
    would otherwise write one in the home folder and try to send a report).
    """
    program = tool("asyncapi", "npm install -g @asyncapi/cli@4.1.1")
    analytics = path.parent / "asyncapi-analytics.json"
    analytics.write_text('{"analyticsEnabled": "false", "infoMessageShown": "true"}')
    return subprocess.run(
        [program, "validate", str(path), "--fail-severity=warn"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={
            **os.environ,
            "ASYNCAPI_METRICS_CONFIG_PATH": str(analytics),
            "NO_COLOR": "1",
        },
    )


CASES = {path.stem: path.read_text(encoding="utf-8") for path in EXAMPLES}
CASES["awkward"] = AWKWARD


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each case generated (no gate) into its own folder, once for the module."""
    root = tmp_path_factory.mktemp("asyncapi")
    out = {}
    for stem, text in CASES.items():
        build(load_text(text), text, root / stem)
        out[stem] = root / stem
    return out


def _emitted_schemas(project: Path, package: str) -> dict[str, Any]:
    """What pydantic produces for the models of the project's ``schemas.py``."""
    script = textwrap.dedent(f"""
        import json
        from pydantic.json_schema import models_json_schema
        from {package} import schemas
        models = [getattr(schemas, name) for name in schemas.__all__]
        _, found = models_json_schema(
            [(m, "validation") for m in models],
            ref_template="#/components/schemas/{{model}}",
        )
        print(json.dumps(found["$defs"]))
        """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("stem", sorted(CASES))
def test_payload_schemas_are_what_pydantic_produces_for_the_emitted_models(
    stem: str, projects: dict[str, Path]
) -> None:
    blueprint = load_text(CASES[stem])
    emitted = _emitted_schemas(projects[stem], blueprint.name)
    assert payload_schemas(blueprint) == emitted
    document = json.loads(
        (projects[stem] / blueprint.name / "asyncapi.json").read_text("utf-8")
    )
    written = document["components"]["schemas"]
    assert {name: written[name] for name in emitted} == emitted


def test_the_awkward_schemas_keep_their_text() -> None:
    """Descriptions reach the document as the models carry them (sanity of the case)."""
    schemas = payload_schemas(load_text(AWKWARD))
    assert schemas["Inner"]["properties"]["code"]["description"] == 'a "code" \\d'
    assert schemas["Inner"]["properties"]["code"]["pattern"] == "^[A-Z]{2}\\d+$"
    assert schemas["Outer"]["properties"]["email"]["x-pii"] is True
    assert "\u202e" not in schemas["Inner"]["description"]  # inert, as the docstring


@pytest.mark.parametrize("stem", sorted(CASES))
def test_yaml_at_the_root_and_json_in_the_package_are_one_document(
    stem: str, projects: dict[str, Path]
) -> None:
    blueprint = load_text(CASES[stem])
    root = yaml.safe_load((projects[stem] / "asyncapi.yaml").read_text("utf-8"))
    served = json.loads(
        (projects[stem] / blueprint.name / "asyncapi.json").read_text("utf-8")
    )
    assert root == served == asyncapi_document(blueprint)


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_every_example_passes_the_official_validator(
    path: Path, tmp_path: Path
) -> None:
    target = tmp_path / "asyncapi.yaml"
    target.write_text(asyncapi_yaml(asyncapi_document(load_blueprint(path))))
    done = validate(target)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout + done.stderr


def test_the_validator_refuses_a_broken_document(tmp_path: Path) -> None:
    """The check above can fail: an operation with an unknown action is refused."""
    document = asyncapi_document(load_blueprint(EXAMPLES[0]))
    first = next(iter(document["operations"].values()))
    first["action"] = "publish"  # AsyncAPI 2's word, not 3's
    target = tmp_path / "asyncapi.yaml"
    target.write_text(asyncapi_yaml(document))
    done = validate(target)
    assert done.returncode != 0
    assert "action" in done.stdout + done.stderr


def test_redis_streams_dead_letters_and_memory_hops_are_channels() -> None:
    blueprint = load_blueprint(ROOT / "tests/blueprints/probe/every_feature.yaml")
    document = asyncapi_document(blueprint)
    channels = document["channels"]
    redis = [c for c in blueprint.connections if c.transport == "redis"]
    memory = [c for c in blueprint.connections if c.transport == "memory"]
    assert redis and memory
    addresses = {c["address"] for c in channels.values()}
    for connection in redis:
        stream = f"{blueprint.name}.{connection.source.ref}"
        assert stream in addresses
        assert stream + ".dlq" in addresses
    in_process = [
        c for c in channels.values() if c["x-portwright-transport"] == "memory"
    ]
    assert len(in_process) == len(memory)
    assert all(c["address"] is None for c in in_process)
    assert document["servers"]["redis"]["protocol"] == "redis"


def test_every_port_of_every_connection_has_its_operation() -> None:
    blueprint = load_blueprint(ROOT / "blueprints/sensor_alerts.yaml")
    operations = asyncapi_document(blueprint)["operations"].values()
    titles = {op["title"] for op in operations}
    for connection in blueprint.connections:
        source, target = connection.source, connection.target
        assert f"{source.ref} sends {source.schema}" in titles
        assert f"{target.ref} receives {source.schema} from {source.ref}" in titles


def test_messages_carry_the_envelope_headers_and_correlation_id() -> None:
    document = asyncapi_document(load_blueprint(EXAMPLES[0]))
    components = document["components"]
    headers = components["schemas"][HEADERS]["properties"]
    assert {"id", "correlation_id", "causation_id", "event_time"} <= set(headers)
    for name, message in components["messages"].items():
        if name == DEAD_LETTER:
            continue
        assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}
        assert message["correlationId"]["location"] == "$message.header#/correlation_id"


def test_the_redis_password_never_reaches_the_document() -> None:
    text = (ROOT / "blueprints/order_pipeline_redis.yaml").read_text("utf-8")
    text = text.replace(
        "redis_url: redis://127.0.0.1:6379/0", "redis_url: redis://ann:s3cret@db:6380/2"
    )
    document = asyncapi_document(load_text(text))
    assert "s3cret" not in asyncapi_yaml(document)
    assert document["servers"]["redis"]["host"] == "db:6380"
    assert document["servers"]["redis"]["pathname"] == "/2"


@pytest.mark.parametrize("stem", ["order_pipeline", "order_pipeline_redis"])
def test_the_emitted_project_serves_its_document(
    stem: str, projects: dict[str, Path]
) -> None:
    """The emitted tests of the route and the schemas pass in the project itself."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_asyncapi.py"],
        cwd=projects[stem],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout


def test_a_keyed_redis_connection_is_a_channel_of_partition_streams(
    tmp_path: Path,
) -> None:
    blueprint = load_text(BASE, NAME)
    document = asyncapi_document(blueprint)
    channels = document["channels"]
    keyed = channels["api-out--book-in"]
    assert keyed["address"] == "parts.api.out.book.in.p{partition}"
    assert keyed["x-portwright-key"] == "symbol"
    assert keyed["x-portwright-partitions"] == 4
    assert "modulo 4" in keyed["parameters"]["partition"]["description"]
    dlq = channels["api-out--book-in-dlq"]
    assert dlq["address"] == "parts.api.out.book.in.p{partition}.dlq"
    assert channels["book-out--store-in"]["x-portwright-partitions"] == 8
    # the unkeyed connection keeps the port's one stream
    assert channels["notes-out"]["address"] == "parts.notes.out"
    titles = {op["title"] for op in document["operations"].values()}
    assert "api.out sends Trade" in titles
    assert "book.in receives Trade from api.out" in titles
    target = tmp_path / "asyncapi.yaml"
    target.write_text(asyncapi_yaml(document))
    done = validate(target)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("reason", [None, "taken over 10 times in a row"])
def test_the_dead_letter_schema_names_every_field_the_runtime_writes(
    reason: str | None,
) -> None:
    from runtime.redis.connection import RedisConnection, _Dead

    writer = SimpleNamespace(stream="s", group="g", link=SimpleNamespace(consumer="c"))
    letter = _Dead(b"1-0", 3, b"not json", "ValueError", "boom", reason)
    record = json.loads(RedisConnection._record(writer, letter))  # type: ignore[arg-type]

    schema = dead_letter_record()
    assert set(record) <= set(schema["properties"])
    assert set(schema["required"]) <= set(record)
    assert ("reason" in record) == (reason is not None)
