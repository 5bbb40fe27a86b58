"""Structured JSON logs, one object per line, for the container's stdout.

Only event attributes (id, type, source) and outcomes are logged, never event data:
payloads may hold personal data and belong to the event store, not to logs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from aiservice_functions import contract

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_level() -> str:
    return os.environ.get(contract.ENV_LOG_LEVEL, "INFO").upper()


def logging_dict() -> dict[str, Any]:
    """A ``logging.config`` dict (also the event store's gunicorn ``logconfig_dict``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stdout}
        },
        "root": {"level": log_level(), "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # The runtime logs its own start-up lines; uvicorn's would repeat them.
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            "werkzeug": {"level": "WARNING"},
        },
    }


def configure_logging() -> None:
    import logging.config

    logging.config.dictConfig(logging_dict())
