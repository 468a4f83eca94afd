"""How log lines are written: `human` (a line of text, the default) or `json` (one JSON object
a line, for log pipelines).

A JSON line holds `time` (UTC, ISO 8601 with milliseconds), `level`, `logger` and `message`;
then, where they are known, the fields of the order it is about (`master_order_id`,
`child_order_id`, `account_id`, from log_context.py), the caller's `key_id`, and the
`trace_id` and `span_id` of the current span (tracing on); `exception` holds a traceback. The
same field names passed in a call's `extra` win over the context's. docs/operations.md ("Logs")
lists them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from opentelemetry import trace

from gateway.observability.log_context import KEY_ID_FIELD, ORDER_FIELDS, context_fields

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_EXTRA_FIELDS = (*ORDER_FIELDS, KEY_ID_FIELD)


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the context fields of the call that logged it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Formatted in the logging call's own thread and context (a StreamHandler's).
        entry.update(context_fields())
        for name in _EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value:
                entry[name] = str(value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    """The root logger at `level`, writing to `stream` (stderr) in `log_format`."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(HUMAN_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])
