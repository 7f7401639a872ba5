"""No secret in a log line or an error message: AWS credentials masked wherever they appear.

AWS answers a bad signature with the canonical request it computed, security token
included; botocore's DEBUG log shows headers. Every ``ddbstreams`` log record and every
message of an error mapped from botocore goes through :func:`redact`.
"""

from __future__ import annotations

import logging
import os
import re


class RedactSecrets(logging.Filter):
    """Masks AWS credentials in log records: access key ids, secret keys, session tokens,
    ``Authorization`` credentials and signatures, ``X-Amz-Security-Token``.

    Known values (the ``AWS_*`` credential variables of the environment, if at least 12
    characters: real ones are 16 to hundreds, dummy ones such as ``testing`` are words that
    may be part of a table name) are masked wherever they appear; the rest is recognised by
    its shape.
    """

    MASK = "<redacted>"
    _SHAPES = (
        # Authorization: ... Credential=AKIA.../20240101/us-east-1/dynamodb/aws4_request
        re.compile(r"(?i)(\bcredential=)[^,\s'\"&]+"),
        # Authorization's Signature=hex, X-Amz-Signature=hex, botocore.auth's "Signature:\nhex"
        re.compile(r"(?i)(signature['\"]?\s*[:=]\s*b?['\"]?\s*)[0-9a-f]{16,}"),
        # X-Amz-Security-Token header (dict repr or canonical request) or query parameter
        re.compile(r"(?i)(security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,&}]+"),
        # aws_secret_access_key = ..., "SecretAccessKey": "...", SessionToken
        re.compile(
            r"(?i)((?:secret_?access_?key|session_?token|security_?token)['\"]?\s*[:=]\s*b?['\"]?)"
            r"[^'\"\s,&}]+"
        ),
        # access key ids: AKIA (long-term), ASIA (temporary) and the other IAM prefixes
        re.compile(
            r"()\b(?:AKIA|ASIA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|AGPA|ABIA|ACCA)[A-Z0-9]{12,}\b"
        ),
    )
    _VARIABLES = (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
    )

    def redact(self, text: str) -> str:
        for name in self._VARIABLES:
            value = os.environ.get(name, "")
            if len(value) >= 12:
                text = text.replace(value, self.MASK)
        for shape in self._SHAPES:
            text = shape.sub(lambda match: match.group(1) + self.MASK, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_REDACTOR = RedactSecrets()


def redact(text: str) -> str:
    """``text`` with AWS credentials masked."""
    return _REDACTOR.redact(text)


def protect(logger: logging.Logger) -> None:
    """Redact every record that ``logger`` itself makes (once)."""
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(_REDACTOR)
