"""One log format for the function runtime, the event store and the operator.

JSON lines by default, the same keys everywhere (``ts``, ``level``, ``logger``, ``msg``,
then any extra fields, ``exc`` for a traceback); ``AISVC_LOG_FORMAT=text`` (or a
``--log-format text`` flag) gives plain lines for a terminal. Only event attributes (id,
type, source) and outcomes are logged, never event data: payloads may hold personal data
and belong to the event store, not to logs.
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


FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_level() -> str:
    return os.environ.get(contract.ENV_LOG_LEVEL, "INFO").upper()


def log_format(explicit: str | None = None) -> str:
    """``json`` or ``text``: the flag's value, else ``AISVC_LOG_FORMAT``, else json."""
    value = (explicit or os.environ.get(contract.ENV_LOG_FORMAT, "") or "json").lower()
    if value not in FORMATS:
        raise ValueError(f"log format must be json or text, got {value[:20]!r}")
    return value


def logging_dict(fmt: str | None = None) -> dict[str, Any]:
    """A ``logging.config`` dict (also handed to gunicorn as ``logconfig_dict``)."""
    chosen = log_format(fmt)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JSONFormatter}, "text": {"format": TEXT_FORMAT}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": chosen, "stream": sys.stdout}
        },
        "root": {"level": log_level(), "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # The runtime logs its own start-up lines; uvicorn's would repeat them.
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            "werkzeug": {"level": "WARNING"},
            # One line per request would repeat full URLs; requests are counted in metrics.
            "httpx": {"level": "WARNING"},
        },
    }


def configure_logging(fmt: str | None = None, *, keep_level: bool = False) -> None:
    """Log in the one format from now on; with ``keep_level``, at the root level already
    chosen (``kopf run --verbose/--debug/--quiet`` sets it before the operator starts)."""
    import logging.config

    level = logging.getLogger().level
    logging.config.dictConfig(logging_dict(fmt))
    if keep_level:
        logging.getLogger().setLevel(level)
