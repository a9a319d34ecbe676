"""One JSON object per log line, each with the ``request_id`` of the request it belongs to.

The service logs what happened (endpoint, status, latency, versions, counts), never
feature values, payloads or secrets: an exception is logged by its type and where it was
raised, not by its message, which may quote the data. ``REQUEST_ID`` is set for the length of a request,
so every line logged while handling it, in any module, carries it.
"""

from __future__ import annotations

import json
import logging
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# Attributes a LogRecord has of itself: everything else passed in ``extra=`` is logged as a field
# (but uvicorn's ``color_message``: the message again, with terminal colour codes).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_STANDARD |= {"color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        line |= {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        if record.exc_info and record.exc_info[1] is not None:
            # The exception's type and where it was raised, not its message: a message may quote the data.
            error = record.exc_info[1]
            frames = traceback.extract_tb(error.__traceback__)
            line["error"] = type(error).__name__
            if frames:
                line["raised_at"] = f"{frames[-1].filename}:{frames[-1].lineno}"
        return json.dumps(line, default=str)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's ``log_config``: its own loggers and the package's, all through ``JsonFormatter``."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # the app logs requests
        },
        "root": {"handlers": ["default"], "level": level},
    }
