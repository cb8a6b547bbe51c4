"""The check tests/test_schemathesis.py adds to schemathesis (``SCHEMATHESIS_HOOKS``)."""

from typing import Any

import schemathesis


@schemathesis.check
def no_server_error_but_503_with_retry_after(
    ctx: Any, response: Any, case: Any
) -> None:
    """No 5xx answer, except 503 with ``Retry-After`` (full, starting or stopping)."""
    status = response.status_code
    if status < 500:
        return
    headers = {name.lower() for name in response.headers}
    if status == 503 and "retry-after" in headers:
        return
    raise AssertionError(
        f"{case.operation.label} answered {status}"
        + ("" if status == 503 else f": {response.text[:500]}")
        + ("" if status != 503 else " without Retry-After")
    )
