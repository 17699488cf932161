"""Who may send alerts, checked before a body is parsed (DESIGN.md rule 6).

Alertmanager and Grafana cannot sign a body, so they send a bearer token, checked before the
body is even read. PagerDuty signs the raw body (HMAC-SHA256 in `X-PagerDuty-Signature:
v1=<hex>`, several signatures while a secret is rotated). The generic endpoint signs
`<timestamp>.<body>`, and a timestamp outside ±5 minutes is refused so that a captured request
cannot be replayed later. An endpoint whose secret is not configured refuses every request:
nothing is open by default. Every comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from pydantic import SecretStr

from .errors import Refused

REPLAY_WINDOW_SECONDS = 300
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}", re.ASCII)


def _key(secret: SecretStr | None, endpoint: str, variable: str) -> bytes:
    if secret is None or not secret.get_secret_value():
        raise Refused(401, f"the {endpoint} endpoint is not configured ({variable} is not set)")
    return secret.get_secret_value().encode()


def require_bearer(headers: Mapping[str, str], token: SecretStr | None) -> None:
    """Alertmanager and Grafana: `Authorization: Bearer <RUNBOOKS_ALERT_TOKEN>`."""
    expected = _key(token, "alertmanager", "RUNBOOKS_ALERT_TOKEN")
    challenge = {"WWW-Authenticate": "Bearer"}
    given = headers.get("authorization")
    if not given:
        raise Refused(401, "missing Authorization: Bearer header", headers=challenge)
    scheme, _, credentials = given.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Refused(401, "Authorization must be 'Bearer <token>'", headers=challenge)
    if not hmac.compare_digest(credentials.strip().encode(), expected):
        raise Refused(401, "wrong bearer token", headers=challenge)


def pagerduty_signature_header(headers: Mapping[str, str], secret: SecretStr | None) -> str:
    """The signature header, checked for presence before the body is read."""
    _key(secret, "pagerduty", "RUNBOOKS_PAGERDUTY_SECRET")
    header = headers.get("x-pagerduty-signature")
    if not header:
        raise Refused(401, "missing X-PagerDuty-Signature header")
    return header


def verify_pagerduty_signature(header: str, body: bytes, secret: SecretStr | None) -> None:
    """Any one `v1=<hex>` in the comma-separated header that matches the body passes."""
    expected = hmac.new(
        _key(secret, "pagerduty", "RUNBOOKS_PAGERDUTY_SECRET"), body, hashlib.sha256
    ).hexdigest()
    matched = False
    for part in header.split(","):
        version, _, signature = part.strip().partition("=")
        if version == "v1":
            # no early exit: the time taken does not say which signature matched
            matched |= hmac.compare_digest(signature.strip().lower().encode(), expected.encode())
    if not matched:
        raise Refused(401, "X-PagerDuty-Signature does not match the body")


def generic_signature_headers(
    headers: Mapping[str, str], secret: SecretStr | None, now: float
) -> tuple[str, str]:
    """(timestamp, signature), both present and the timestamp inside the replay window;
    checked before the body is read."""
    _key(secret, "generic", "RUNBOOKS_ALERT_HMAC_SECRET")
    timestamp = (headers.get("x-runbooks-timestamp") or "").strip()
    signature = (headers.get("x-runbooks-signature") or "").strip()
    if not timestamp:
        raise Refused(401, "missing X-Runbooks-Timestamp header")
    if not signature:
        raise Refused(401, "missing X-Runbooks-Signature header")
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise Refused(401, "X-Runbooks-Timestamp must be unix seconds")
    if abs(now - int(timestamp)) > REPLAY_WINDOW_SECONDS:
        raise Refused(
            401,
            f"X-Runbooks-Timestamp is more than {REPLAY_WINDOW_SECONDS // 60} minutes from "
            "the receiver's clock (replay window)",
        )
    return timestamp, signature


def generic_signature(timestamp: str, body: bytes, secret: bytes) -> str:
    """What a sender puts in X-Runbooks-Signature (also used by tests and docs)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_generic_signature(
    timestamp: str, signature: str, body: bytes, secret: SecretStr | None
) -> None:
    expected = generic_signature(
        timestamp, body, _key(secret, "generic", "RUNBOOKS_ALERT_HMAC_SECRET")
    )
    if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
        raise Refused(401, "X-Runbooks-Signature does not match the body")
