"""Reading a request body under a size cap, and parsing it as JSON (DESIGN.md rule 6).

The declared Content-Length is checked before anything is read; a chunked body (no length)
is counted while it arrives and refused as soon as it passes the cap, so a sender can never
make the receiver hold more than `limit` bytes of one request.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from .errors import Refused


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Refused(413, f"body of {int(declared)} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body is over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refused(400, "the client went away before the body was complete") from None
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """The document, or 400 with where the JSON breaks (never the text itself)."""
    if not body.strip():
        raise Refused(400, "empty body: expected a JSON object")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Refused(
            400, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise Refused(400, "body is not valid JSON: nested too deeply") from None
