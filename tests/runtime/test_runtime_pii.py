"""Personal data is masked at any depth, in text, in log lines and error records."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import runtime
from pydantic import BaseModel

pytestmark = pytest.mark.anyio

MASKER = runtime.Masker({"email", "SSN", "customer_email"})


class Contact(BaseModel):
    email: str
    name: str


class Customer(BaseModel):
    contacts: list[Contact]
    ssn: str


@dataclass
class Card:
    ssn: str
    holder: str


def test_values_are_masked_at_any_depth() -> None:
    value = {
        "Email": "top@example.com",
        "orders": [{"customer_email": "c@example.com", "total": 3}],
        "customer": Customer(
            contacts=[Contact(email="m@example.com", name="M")], ssn="1"
        ),
        "cards": (Card(ssn="2", holder="H"),),
        "nested": {"deeper": [{"EMAIL": "d@example.com"}]},
    }

    assert MASKER.mask(value) == {
        "Email": "***",
        "orders": [{"customer_email": "***", "total": 3}],
        "customer": {"contacts": [{"email": "***", "name": "M"}], "ssn": "***"},
        "cards": [{"ssn": "***", "holder": "H"}],
        "nested": {"deeper": [{"EMAIL": "***"}]},
    }


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("email=a@b.c next", "email=*** next"),
        ('{"email": "a@b.c", "x": 1}', '{"email": "***", "x": 1}'),
        ("{'Email': 'a@b.c'}", "{'Email': '***'}"),
        (
            "Customer(customer_email='a@b.c', ssn=123)",
            "Customer(customer_email='***', ssn=***)",
        ),
        ("ssn: 123-45, email: a@b.c", "ssn: ***, email: ***"),
        ("?email=a%40b.c&page=2", "?email=***&page=2"),
        ('email="with \\" quote" rest', 'email="***" rest'),
        ("emailer=kept user_email=kept", "emailer=kept user_email=kept"),
    ],
)
def test_key_value_pairs_in_text_are_masked(text: str, masked: str) -> None:
    assert MASKER.mask_text(text) == masked


def test_nothing_is_masked_without_fields() -> None:
    assert runtime.Masker().mask_text("email=a@b.c") == "email=a@b.c"
    assert runtime.Masker().mask({"email": "a@b.c"}) == {"email": "a@b.c"}


def test_a_scalar_item_becomes_a_masked_dict() -> None:
    assert MASKER.as_dict(Contact(email="x@y.z", name="N")) == {
        "email": "***",
        "name": "N",
    }
    assert MASKER.as_dict(5) == {"value": 5}
    assert MASKER.as_dict("ssn=123") == {"value": "ssn=***"}


def json_line(record: logging.LogRecord) -> dict[str, Any]:
    line: dict[str, Any] = json.loads(runtime.JsonFormatter(MASKER).format(record))
    return line


async def test_every_log_line_is_masked_including_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing(runtime.Sink):
        def consume(self, item: Customer) -> None:
            self.log.info("got %s", item, extra={"customer": item})
            raise ValueError(f"rejected {item!r}")

    service = runtime.Service("pii", pii_fields={"email", "ssn"})
    service.add(Failing("failing", inputs={"in": Customer}))
    inlet = service.inlet("failing.in")
    customer = Customer(
        contacts=[Contact(email="m@example.com", name="M")], ssn="ssn-secret-7"
    )
    with caplog.at_level(logging.INFO, logger="pii"):
        async with service.running():
            await inlet.send(customer, correlation_id="corr-1")

    lines = [json_line(r) for r in caplog.records if r.name == "pii.failing"]
    assert [line["level"] for line in lines] == ["info", "error"]
    text = json.dumps(lines)
    assert "m@example.com" not in text and "ssn-secret-7" not in text
    info, error = lines
    assert info["customer"] == {
        "contacts": [{"email": "***", "name": "M"}],
        "ssn": "***",
    }
    assert (info["service"], info["component"]) == ("pii", "failing")
    assert error["port"] == "in"
    assert error["correlation_id"] == "corr-1"
    assert error["message_id"]
    assert "ValueError: rejected" in error["error"]  # the traceback, masked
    # every handler sees masked records, not only the JSON formatter
    assert "m@example.com" not in caplog.text and "ssn-secret-7" not in caplog.text
    info_record = next(r for r in caplog.records if r.name == "pii.failing")
    assert info_record.filename == "test_runtime_pii.py"  # the caller's line


def test_the_formatter_masks_records_from_plain_loggers() -> None:
    record = logging.LogRecord(
        "other", logging.WARNING, "f.py", 1, "ssn=%s", ("1",), None
    )
    record.payload = {"email": "x@y.z"}

    line = json_line(record)

    assert line["message"] == "ssn=***"
    assert line["payload"] == {"email": "***"}


async def test_an_error_record_is_masked_before_it_is_cut_short() -> None:
    class Verbose(runtime.Transformer):
        def transform(self, item: str) -> str:
            raise RuntimeError("x" * 1990 + " email=secret-address@example.com")

    service = runtime.Service("pii", pii_fields={"email"})
    service.add(Verbose("verbose", outputs={"out": str, "errors": runtime.ErrorRecord}))
    inlet = service.inlet("verbose.in")
    errors = service.tap("verbose.errors")
    async with service.running():
        await inlet.send("item")

    (record,) = errors.items
    assert "secret" not in record.message
    assert record.message.endswith("email=***")


def test_configure_logging_writes_json_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = runtime.configure_logging("configured", "DEBUG", MASKER)
    try:
        logging.getLogger("configured.part").debug("email=%s", "a@b.c")
    finally:
        logging.getLogger("configured").removeHandler(handler)

    line = json.loads(capsys.readouterr().err)
    assert line["message"] == "email=***"
    assert line["logger"] == "configured.part"


def test_lines_from_any_logger_are_masked_at_any_depth_and_in_text() -> None:
    # uvicorn's access line carries the query string; a library logs a nested
    # payload and an exception whose message holds personal data
    access = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "h11_impl.py",
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.1:5000", "POST", "/orders?email=a@b.c&page=2", "1.1", 202),
        None,
    )
    try:
        raise ValueError("refused {'ssn': '123-45-6789'} for email=e@f.g")
    except ValueError:
        failure = logging.LogRecord(
            "lib", logging.ERROR, "lib.py", 1, "failed", (), sys.exc_info()
        )
    failure.payload = {
        "rows": [{"Email": "c@d.e", "note": "contact: ssn=987"}],
        "customer": Customer(contacts=[Contact(email="m@n.o", name="M")], ssn="5"),
    }

    for record in (access, failure):  # a fixed time: digits of a secret must not
        record.created, record.msecs = 1_700_000_000.0, 0.0  # turn up by chance in it
    lines = [json_line(access), json_line(failure)]

    text = json.dumps(lines)
    for secret in ("a@b.c", "123-45-6789", "e@f.g", "c@d.e", "987", "m@n.o"):
        assert secret not in text, secret
    assert (
        lines[0]["message"]
        == '10.0.0.1:5000 - "POST /orders?email=***&page=2 HTTP/1.1" 202'
    )
    assert lines[1]["payload"]["rows"] == [{"Email": "***", "note": "contact: ssn=***"}]
    assert "ValueError: refused {'ssn': '***'} for email=***" in lines[1]["error"]
    assert (lines[1]["level"], lines[1]["logger"]) == ("error", "lib")


def test_serve_sends_uvicorn_lines_through_the_same_formatter() -> None:
    handler = runtime.configure_logging("svc", "INFO", MASKER, also=("uvicorn",))
    try:
        for name in ("svc", "uvicorn"):
            logger = logging.getLogger(name)
            assert handler in logger.handlers and not logger.propagate
        assert isinstance(handler.formatter, runtime.JsonFormatter)
    finally:
        for name in ("svc", "uvicorn"):
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).propagate = True


def test_a_line_stays_one_line_whatever_the_text() -> None:
    # what a client puts in a path reaches uvicorn's access line: no character in it
    # may break the line for a reader that splits on Unicode line boundaries
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "f.py",
        1,
        "GET /a\u2028b\x85c\nd\re\x1cf",
        (),
        None,
    )

    text = runtime.JsonFormatter(MASKER).format(record)

    assert text.isascii() and len(text.splitlines()) == 1
    assert json.loads(text)["message"] == "GET /a\u2028b\x85c\nd\re\x1cf"


def test_uvicorns_coloured_copy_of_the_message_is_left_out() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "f.py", 1, "Finished server process [%d]",
        (12,), None,
    )  # fmt: skip
    record.color_message = "Finished server process [\x1b[36m%d\x1b[0m]"

    text = runtime.JsonFormatter(MASKER).format(record)

    assert json.loads(text)["message"] == "Finished server process [12]"
    assert "color_message" not in text and "\\u001b" not in text


async def test_every_line_user_code_logs_for_an_item_carries_its_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Tag(runtime.Transformer):  # synchronous: the component holds the message
        def transform(self, item: str) -> str:
            self.log.info("tagging %s", item)
            return item

    class Keep(runtime.Sink):  # async, two inputs interleaving: the context holds it
        async def consume(self, item: str) -> None:
            await anyio.sleep(0)
            self.log.info("keeping %s", item)

        async def cleanup(self) -> None:
            self.log.info("done")

    service = runtime.Service("ids")
    service.add(Tag("tag", inputs={"in": str}, outputs={"out": str}))
    service.add(Keep("keep", inputs={"a": str, "b": str}))
    service.connect("tag.out", "keep.a")
    tagged, direct = service.inlet("tag.in"), service.inlet("keep.b")
    with caplog.at_level(logging.INFO, logger="ids"):
        async with service.running():
            for number in range(5):
                await tagged.send(f"via-tag-{number}", correlation_id=f"t-{number}")
                await direct.send(f"direct-{number}", correlation_id=f"d-{number}")

    lines = [r for r in caplog.records if r.name in ("ids.tag", "ids.keep")]
    per_item = [r for r in lines if r.getMessage() != "done"]
    assert len(per_item) == 15
    for record in per_item:
        item = record.getMessage().split(" ")[1]
        expected = ("t-" if item.startswith("via") else "d-") + item.rsplit("-", 1)[1]
        assert record.correlation_id == expected, record.getMessage()  # type: ignore[attr-defined]
        assert record.message_id  # type: ignore[attr-defined]
    (done,) = [r for r in lines if r.getMessage() == "done"]
    assert getattr(done, "message_id", None) is None  # not about any item
