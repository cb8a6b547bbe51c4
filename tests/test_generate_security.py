"""A service with every kind of guard generates, and its own tests prove each guard.

The examples use API keys and limits per client and per key; this blueprint adds HTTP
Basic users (bcrypt), an open endpoint beside guarded ones and IPv4 and IPv6 trusted
proxies, and runs the whole gate: ruff, black, the import guard and the emitted tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLUEPRINT = """\
portwright: 1
name: notes_svc
description: Notes from people and from machines.
defaults:
  trusted_proxies: [192.0.2.0/24, "2001:db8::/32"]
schemas:
  Note:
    fields:
      text: {type: str, max_length: 200}
      author_email: {type: str, pii: true}
components:
  people_api:
    kind: api_endpoint
    route: POST /notes
    output: Note
    auth: basic
    rate_limit: {requests: 4, per_seconds: 30}
  machines_api:
    kind: api_endpoint
    route: PUT /notes/bulk
    output: Note
    auth: api_key
    rate_limit: {requests: 500, per_seconds: 60, key: api_key}
  open_api:
    kind: api_endpoint
    route: PATCH /notes
    output: Note
  keep:
    kind: sink
    input: Note
connections:
  - people_api.out -> keep.in
  - machines_api.out -> keep.in
  - open_api.out -> keep.in
"""


def test_every_kind_of_guard_generates_and_its_tests_pass(tmp_path: Path) -> None:
    source = tmp_path / "notes.yaml"
    source.write_text(BLUEPRINT, encoding="utf-8")
    dest = tmp_path / "out"

    done = subprocess.run(
        [sys.executable, "-m", "generator", "generate", str(source), "-o", str(dest)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate passed" in done.stdout
    tests = (dest / "tests" / "test_endpoint_security.py").read_text()
    for case in (
        "def test_without_valid_credentials_it_is_401(",
        "def test_over_its_rate_limit_it_is_429_with_retry_after(",
        "def test_a_forged_x_forwarded_for_does_not_change_the_client(",
        "def test_errors_have_one_shape_and_the_correlation_id_goes_round_trip(",
    ):
        assert case in tests
    settings = (dest / "notes_svc" / "settings.py").read_text()
    assert "TRUSTED_PROXIES: tuple[str, ...]" in settings
    assert '"192.0.2.0/24"' in settings and '"2001:db8::/32"' in settings
    assert "NOTES_SVC_BASIC_USERS_FILE" in settings
    wiring = (dest / "notes_svc" / "wiring.py").read_text()
    assert 'auth="basic"' in wiring and 'RateLimit(4, 30, "client")' in wiring
