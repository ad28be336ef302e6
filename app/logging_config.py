"""Logging: JSON lines with a request id (python-json-logger + asgi-correlation-id),
or plain text for a terminal (LOSSMON_LOG_FORMAT=auto, the default, picks text when
stderr is a TTY). Secrets never reach a log line: we do not log them, and
a redaction filter scrubs anything shaped like an API key, webhook secret or signature
as a second line of defence."""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from typing import Any

_SECRET_SHAPES = re.compile(
    r"lm_[0-9a-f]{12}_[A-Za-z0-9_-]+"  # API keys
    r"|whsec_[A-Za-z0-9+/=_-]+"  # webhook secrets
    r"|v1,[A-Za-z0-9+/=]{20,}"  # webhook signatures
    r"|(?i:bearer)\s+\S+"  # Authorization header values
)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI copy of the message
        message = record.getMessage()
        scrubbed = _SECRET_SHAPES.sub("[redacted]", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def resolve_format(fmt: str) -> str:
    """Format "auto" means "text" on a terminal, "json" otherwise."""
    if fmt != "auto":
        return fmt
    return "text" if sys.stderr.isatty() else "json"


def logging_dict(level: str, fmt: str) -> dict[str, Any]:
    formatter: dict[str, Any]
    if resolve_format(fmt) == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
            "rename_fields": {
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "correlation_id": "request_id",
            },
        }
    else:
        formatter = {
            "format": "%(asctime)s %(levelname)-7s %(name)s [%(correlation_id)s] %(message)s",
            "datefmt": "%H:%M:%S",
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {
                "()": "asgi_correlation_id.CorrelationIdFilter",
                "uuid_length": 32,
                "default_value": "-",
            },
            "redact": {"()": "app.logging_config.RedactSecrets"},
        },
        "formatters": {"main": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["request_id", "redact"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own handlers are replaced by ours so its lines are JSON too.
            "uvicorn": {"level": level, "handlers": ["stderr"], "propagate": False},
            "uvicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "uvicorn.access": {"level": level, "handlers": ["stderr"], "propagate": False},
            "apscheduler": {"level": "WARNING"},
            # Alembic narrates every migration step at INFO; only `lossmon migrate`
            # (which asks for it) shows them: `serve` and `compute` stay quiet.
            "alembic": {"level": "WARNING"},
            # httpx logs full request URLs at INFO; webhook URLs may carry tokens.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def configure(level: str, fmt: str) -> dict[str, Any]:
    config = logging_dict(level, fmt)
    logging.config.dictConfig(config)
    return config
