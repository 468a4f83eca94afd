"""The JSON log format: one object a line, with the fields of the order, the caller and the
trace the line was logged in; the human format unchanged."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from gateway.observability.log_context import forget, log_about, set_caller
from gateway.observability.log_format import HUMAN_FORMAT, JsonFormatter, configure_logging


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.log_format")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_time_level_logger_and_message(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.warning("account %s: no snapshot: %s", "acc_1", 'timeout "5 s"\nthen more')
    (line,) = _lines(stream)
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["level"] == "WARNING" and line["logger"] == "tests.log_format"
    assert line["message"] == 'account acc_1: no snapshot: timeout "5 s"\nthen more'
    assert line["time"].endswith("Z") and "T" in line["time"]


async def test_lines_about_an_order_carry_its_ids_and_the_callers_key(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    async def call() -> None:
        set_caller("k3y1d")
        log_about(master_order_id="mo_1")
        logger.info("stored")

        async def child(child_order_id: str, account_id: str) -> None:
            log_about(master_order_id="mo_1", child_order_id=child_order_id, account_id=account_id)
            logger.debug("filled")

        # Tasks start with the call's context; each child's fields stay its own.
        await asyncio.gather(child("co_1", "acc_1"), child("co_2", "acc_2"))
        logger.info("dispatched")

    await asyncio.create_task(call())
    logger.info("outside")
    stored, first, second, dispatched, outside = _lines(stream)
    assert (stored["master_order_id"], stored["key_id"]) == ("mo_1", "k3y1d")
    assert "child_order_id" not in stored and "account_id" not in stored
    assert {(c["child_order_id"], c["account_id"], c["key_id"]) for c in (first, second)} == {
        ("co_1", "acc_1", "k3y1d"),
        ("co_2", "acc_2", "k3y1d"),
    }
    assert "child_order_id" not in dispatched and dispatched["master_order_id"] == "mo_1"
    assert not {"master_order_id", "key_id"} & set(outside)


def test_forget_ends_the_fields_early_and_extra_names_them_explicitly(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    token = log_about(account_id="acc_9")
    logger.info("about the account")
    forget(token)
    logger.info("about nothing")
    logger.info("ended", extra={"master_order_id": "mo_7"})
    about, nothing, ended = _lines(stream)
    assert about["account_id"] == "acc_9"
    assert "account_id" not in nothing
    assert ended["master_order_id"] == "mo_7"


def test_a_line_logged_in_a_span_carries_its_trace_and_span_ids(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    with tracer.start_as_current_span("mam.order.dispatch") as span:
        logger.info("inside")
    logger.info("after")
    inside, after = _lines(stream)
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in after


def test_an_exception_is_one_field_of_its_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("child co_1: dispatch failed")
    (line,) = _lines(stream)
    assert line["level"] == "ERROR"
    assert "ValueError: boom" in line["exception"] and "Traceback" in line["exception"]


@pytest.mark.parametrize(("log_format", "json_lines"), [("json", True), ("human", False)])
def test_the_configured_format_is_the_root_loggers(log_format: str, json_lines: bool) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers.clear()
    stream = io.StringIO()
    try:
        configure_logging("INFO", log_format, stream)
        logging.getLogger("gateway.test").info("hello %s", "there")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    text = stream.getvalue().strip()
    if json_lines:
        assert json.loads(text)["message"] == "hello there"
    else:
        assert text.endswith("INFO gateway.test: hello there")
        assert HUMAN_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"
