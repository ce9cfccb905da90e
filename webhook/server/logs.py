"""One log format for every line the server writes: nfsguard's and gunicorn's alike.

``serve --log-format text`` (default) writes ``TIME LEVEL LOGGER: message key=value...``;
``--log-format json`` writes one JSON object per line (``time``, ``level``, ``logger``,
``pid``, ``message``, and the line's fields). A line's fields are passed as
``extra={"fields": {...}}`` (the per-decision line, webhook/server/app.py). gunicorn's
own loggers (``gunicorn.error``, ``gunicorn.access``) get the same formatter through
:class:`GunicornLogger`, the ``logger_class`` the runner gives gunicorn: a log
collector reads one format from a pod, never two. docs/operations.md shows both.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger as _GunicornBaseLogger

FORMATS = ("text", "json")

#: The format chosen by ``serve`` (set in the master before gunicorn forks).
_format = "text"


def _time(record: logging.LogRecord) -> str:
    """``2026-12-03T15:20:01.123Z``. ``isoformat`` truncates to the millisecond as the
    format always did, at a tenth of ``strftime``'s cost (the decision line is written
    once per review: docs/performance.md)."""
    moment = datetime.fromtimestamp(record.created, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


#: A text value written as it is: not empty, no whitespace (``str.isspace``'s), no
#: quote, no ``=``; any other is written as a JSON string.
_BARE = re.compile(r'[^\s"=]+')


def _text_value(value: Any) -> str:
    """One ``key=value``'s value: a bare word, else JSON (``true``, ``null``, ``0.41``,
    ``"two words"``). The scalars a line carries are spelt without json.dumps, as
    json.dumps spells them."""
    if isinstance(value, str):
        text = value
    elif value is None:
        return "null"
    elif value is True:
        return "true"
    elif value is False:
        return "false"
    elif type(value) is int:
        return repr(value)
    else:
        text = json.dumps(value)
    return text if _BARE.fullmatch(text) else json.dumps(text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    """``2026-12-03T15:20:01.123Z INFO nfsguard.decision: decision uid=... outcome=mutated``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        line += "".join(f" {key}={_text_value(value)}" for key, value in _fields(record).items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback is the ``exception`` string, never more lines."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(fmt: str, level: str) -> None:
    """nfsguard's (root) logging to stderr in ``fmt``; gunicorn's follows through
    :class:`GunicornLogger`."""
    global _format
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    _format = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # Python warnings are log lines too, in the same format


class GunicornLogger(_GunicornBaseLogger):  # type: ignore[misc]
    """gunicorn's logger with nfsguard's formatter on its handlers (error and access)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        fmt = formatter(_format)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(fmt)
                # Access lines join the other logs on stderr: stdout is the audit copy's.
                if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                    handler.setStream(sys.stderr)


def announce(fmt: str, message: str) -> None:
    """A line ``serve`` always prints (whatever ``--log-level``), in ``fmt``: the
    address it serves on, before gunicorn starts."""
    record = logging.LogRecord("nfsguard", logging.INFO, __file__, 0, message, None, None)
    print(formatter(fmt).format(record), file=sys.stderr, flush=True)
