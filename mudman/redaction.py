"""Keep secrets out of everything a run leaves behind: logs, results.json, W&B, study attrs.

Why: sweeps run for days on shared clusters, where ``outputs/``, W&B projects and the study
database are read by colleagues. Database passwords and tokens arrive through URLs, environment
variables (``MUDMAN_OPTUNA_STORAGE``, ``WANDB_API_KEY``, ``HF_TOKEN``) or config interpolations
(``${oc.env:HF_TOKEN}``); every record and log line passes through :func:`redact` first.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

MASK = "***"
# the password of scheme://user:password@host (greedy up to the last '@' before the path)
_URL_PASSWORD = re.compile(r"([A-Za-z][\w+.-]*://[^:/@\s]*:)[^/\s]*@")
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pwd|token|api_?key)=)[^&\s]+", re.IGNORECASE)
# config/record keys whose values are secrets (``hf_token``, ``api_key``; not ``tokenizer``)
SECRET_KEY = re.compile(
    r"(?:^|_)(?:token|api_?key|secret|password|passwd|credentials?)(?:$|_)", re.IGNORECASE
)
# environment variables that hold secrets even when their names do not say so clearly
SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "PGPASSWORD")
_MIN_SECRET_LEN = 6  # shorter values would mangle ordinary text when replaced


def mask_url(text: str) -> str:
    """Hide passwords of URLs (``postgresql://me:***@db/x``) and secret query parameters."""
    return _QUERY_SECRET.sub(rf"\1{MASK}", _URL_PASSWORD.sub(rf"\1{MASK}@", text))


def url_password(url: str) -> str | None:
    """The password part of ``scheme://user:password@host``, if any."""
    match = _URL_PASSWORD.search(url)
    return match.group(0)[len(match.group(1)) : -1] if match else None


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Secret strings currently in the environment, longest first (for replacement)."""
    environ = os.environ if environ is None else environ
    found = set()
    for name, value in environ.items():
        if name in SECRET_ENV or SECRET_KEY.search(name):
            found.add(value)
        password = url_password(value) if "://" in value else None
        if password:
            found.add(password)
    return sorted((v for v in found if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with URL passwords masked and known secret values replaced."""
    text = mask_url(text)
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a JSON-like structure with secret-named keys and secret strings masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {
            key: (
                MASK
                if isinstance(key, str) and SECRET_KEY.search(key) and obj[key] not in (None, "")
                else redact(value, secrets)
            )
            for key, value in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(value, secrets) for value in obj)
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record (console and log files)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's error path
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
