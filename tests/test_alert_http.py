"""What the receiver refuses, and how: every auth failure is 401 before the body is parsed
and writes no row; bodies over the cap are 413 (declared or chunked); broken JSON is 400;
the wrong shape is 422 naming the field. Answers never echo the body or a secret. These
requests never reach Prefect: the receiver's Prefect is a closed port."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from .alert_helpers import (
    HMAC_SECRET,
    PAGERDUTY_SECRET,
    TOKEN,
    alertmanager_payload,
    am_alert,
    bearer,
    generic_payload,
    generic_signed,
    pagerduty_payload,
    pagerduty_signed,
    receivers,
)


@pytest.fixture
def start_offline_receiver(tmp_path):
    """A running receiver whose Prefect server is a closed port."""
    with receivers(tmp_path, None) as start:
        yield start


AM = "/alerts/alertmanager"
PD = "/alerts/pagerduty"
GENERIC = "/alerts/generic"
UNROUTED_AM = alertmanager_payload(am_alert("NotRouted", host="app1.example.com"))
UNROUTED_PD = pagerduty_payload(title="Nothing routes this")
UNROUTED_GENERIC = generic_payload("NotRouted", key="k1")


def _am(token: str | None) -> tuple[bytes, dict[str, str]]:
    return bearer(UNROUTED_AM, token)


def _pd_with(signature: str | None) -> tuple[bytes, dict[str, str]]:
    body, headers = pagerduty_signed(UNROUTED_PD)
    if signature is None:
        del headers["X-PagerDuty-Signature"]
    else:
        headers["X-PagerDuty-Signature"] = signature
    return body, headers


def _generic_with(**changes: str | None) -> tuple[bytes, dict[str, str]]:
    body, headers = generic_signed(UNROUTED_GENERIC)
    for name, value in changes.items():
        header = {"timestamp": "X-Runbooks-Timestamp", "signature": "X-Runbooks-Signature"}[name]
        if value is None:
            del headers[header]
        else:
            headers[header] = value
    return body, headers


AUTH_FAILURES = {
    "am-missing": (AM, lambda: _am(None), "missing Authorization: Bearer header"),
    "am-wrong": (AM, lambda: _am("not-the-token"), "wrong bearer token"),
    "am-scheme": (
        AM,
        lambda: (bearer(UNROUTED_AM, None)[0], {"Authorization": f"Basic {TOKEN}"}),
        "Authorization must be 'Bearer <token>'",
    ),
    "pd-missing": (PD, lambda: _pd_with(None), "missing X-PagerDuty-Signature header"),
    "pd-wrong": (
        PD,
        lambda: _pd_with("v1=" + "0" * 64),
        "X-PagerDuty-Signature does not match the body",
    ),
    "pd-other-secret": (
        PD,
        lambda: (
            pagerduty_signed(UNROUTED_PD, secret="another-secret")[0],
            pagerduty_signed(UNROUTED_PD, secret="another-secret")[1],
        ),
        "X-PagerDuty-Signature does not match the body",
    ),
    "pd-tampered-body": (
        PD,
        lambda: (
            json.dumps(pagerduty_payload(title="Tampered")).encode(),
            pagerduty_signed(UNROUTED_PD)[1],
        ),
        "X-PagerDuty-Signature does not match the body",
    ),
    "generic-no-timestamp": (
        GENERIC,
        lambda: _generic_with(timestamp=None),
        "missing X-Runbooks-Timestamp header",
    ),
    "generic-no-signature": (
        GENERIC,
        lambda: _generic_with(signature=None),
        "missing X-Runbooks-Signature header",
    ),
    "generic-bad-signature": (
        GENERIC,
        lambda: _generic_with(signature="sha256=" + "f" * 64),
        "X-Runbooks-Signature does not match the body",
    ),
    "generic-timestamp-text": (
        GENERIC,
        lambda: _generic_with(timestamp="yesterday"),
        "X-Runbooks-Timestamp must be unix seconds",
    ),
    "generic-stale": (
        GENERIC,
        lambda: generic_signed(UNROUTED_GENERIC, int(time.time()) - 301),
        "X-Runbooks-Timestamp is more than 5 minutes from the receiver's clock (replay window)",
    ),
    "generic-future": (
        GENERIC,
        lambda: generic_signed(UNROUTED_GENERIC, int(time.time()) + 301),
        "X-Runbooks-Timestamp is more than 5 minutes from the receiver's clock (replay window)",
    ),
    "generic-other-timestamp": (  # a signature is bound to its timestamp
        GENERIC,
        lambda: _generic_with(timestamp=str(int(time.time()) - 10)),
        "X-Runbooks-Signature does not match the body",
    ),
}


@pytest.fixture
def receiver(start_offline_receiver):
    return start_offline_receiver()


def test_every_auth_failure_is_401_with_its_reason_and_writes_nothing(receiver):
    for case, (path, request, reason) in AUTH_FAILURES.items():
        body, headers = request()
        response = receiver.post(path, body, headers)
        assert response.status_code == 401, case
        assert response.json() == {"error": reason}, case
        for secret in (TOKEN, PAGERDUTY_SECRET, HMAC_SECRET):
            assert secret not in response.text
    assert receiver.rows() == []


def test_the_same_requests_signed_right_are_accepted(receiver):
    """The control for the test above: only the credentials were wrong."""
    two_signatures = _pd_with(
        "v1=" + "0" * 64 + "," + pagerduty_signed(UNROUTED_PD)[1]["X-PagerDuty-Signature"]
    )
    answers = [
        receiver.post(AM, *_am(TOKEN)),
        receiver.post(PD, *two_signatures),  # while a secret is rotated, one match passes
        receiver.post(GENERIC, *generic_signed(UNROUTED_GENERIC)),
        receiver.post(GENERIC, *generic_signed(UNROUTED_GENERIC, int(time.time()) - 280)),
    ]

    ping = {  # what PagerDuty sends to test a subscription
        "event": {
            "id": "01ABCDEFGHIJKLMNOPQRSTUVWX",
            "event_type": "pagey.ping",
            "resource_type": "pagey",
            "occurred_at": "2026-12-04T10:00:00.000Z",
            "agent": None,
            "client": None,
            "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
        }
    }
    answers.append(receiver.post(PD, *pagerduty_signed(ping)))

    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert [a.json()["alerts"][0]["action"] for a in answers] == ["ignored"] * 5
    assert answers[4].json()["alerts"][0]["reason"] == (
        "pagerduty pagey.ping is not an incident event"
    )
    assert [r.source for r in receiver.rows()] == [
        "alertmanager",
        "pagerduty",
        "generic",
        "generic",
        "pagerduty",
    ]


@pytest.mark.parametrize(
    ("path", "request_", "variable"),
    [
        (AM, lambda: _am(TOKEN), "RUNBOOKS_ALERT_TOKEN"),
        (PD, lambda: pagerduty_signed(UNROUTED_PD), "RUNBOOKS_PAGERDUTY_SECRET"),
        (GENERIC, lambda: generic_signed(UNROUTED_GENERIC), "RUNBOOKS_ALERT_HMAC_SECRET"),
    ],
    ids=["alertmanager", "pagerduty", "generic"],
)
def test_an_endpoint_without_its_secret_refuses_everything(
    start_offline_receiver, path, request_, variable
):
    receiver = start_offline_receiver(token=None, pagerduty_secret=None, hmac_secret=None)

    response = receiver.post(path, *request_())

    assert response.status_code == 401
    endpoint = path.rsplit("/", 1)[1]
    assert response.json() == {
        "error": f"the {endpoint} endpoint is not configured ({variable} is not set)"
    }
    assert receiver.rows() == []


def test_bodies_over_the_cap_are_413_declared_or_chunked(start_offline_receiver):
    receiver = start_offline_receiver(max_body=4096)
    big = alertmanager_payload(
        *[am_alert("NotRouted", host=f"h{i}.example.com") for i in range(40)]
    )
    body, headers = bearer(big)
    assert len(body) > 4096

    declared = receiver.post(AM, body, headers)

    def chunks():
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    chunked = httpx.post(f"{receiver.url}{AM}", content=chunks(), headers=headers, timeout=10)
    signed_body, signed_headers = generic_signed(b'{"pad": "' + b"x" * 5000 + b'"}')
    generic = receiver.post(GENERIC, signed_body, signed_headers)

    assert declared.status_code == 413
    assert declared.json() == {"error": f"body of {len(body)} bytes is over the 4096-byte limit"}
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert chunked.status_code == 413
    assert chunked.json() == {"error": "body is over the 4096-byte limit"}
    assert generic.status_code == 413
    assert receiver.rows() == []


def test_auth_is_checked_before_the_body_is_read_or_parsed(start_offline_receiver):
    receiver = start_offline_receiver(max_body=4096)
    oversize = b"x" * 200_000

    def chunked():
        for _ in range(16):
            yield oversize

    answers = [
        # without a token the refusal comes from the headers: not 413, not 400
        receiver.post(AM, oversize, {"Content-Type": "application/json"}),
        httpx.post(f"{receiver.url}{AM}", content=chunked(), timeout=30),
        receiver.post(AM, b"{not json", {"Authorization": "Bearer wrong"}),
        receiver.post(PD, oversize, {}),
        receiver.post(GENERIC, oversize, {"X-Runbooks-Timestamp": "1"}),
    ]

    assert [a.status_code for a in answers] == [401] * 5, [a.text for a in answers]
    assert receiver.rows() == []


MALFORMED = {
    "not-json": (b'{"alerts": [ SECRET-MARKER', "body is not valid JSON: Expecting value"),
    "truncated": (b'{"version": "4", "alerts": [', "body is not valid JSON: Expecting value"),
    "empty": (b"", "empty body: expected a JSON object"),
    "not-utf8": (b'{"a": "\xff\xfe"}', "body is not UTF-8 text"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_json_is_400_and_the_body_is_not_echoed(receiver, case):
    body, reason = MALFORMED[case]

    answers = [
        receiver.post(AM, body, bearer({}, TOKEN)[1]),
        receiver.post(GENERIC, *generic_signed(body)),
        receiver.post(PD, body, pagerduty_signed({})[1] | _pd_signature(body)),
    ]

    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith(reason)
        assert "SECRET-MARKER" not in answer.text
    assert receiver.rows() == []


def _pd_signature(body: bytes) -> dict[str, str]:
    import hashlib
    import hmac

    digest = hmac.new(PAGERDUTY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-PagerDuty-Signature": f"v1={digest}"}


def _without(data: dict, *path) -> dict:
    copy = json.loads(json.dumps(data))
    target = copy
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return copy


def _with(data: dict, value, *path) -> dict:
    copy = json.loads(json.dumps(data))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


WRONG_SHAPE = {
    "am-no-alerts": (AM, _without(UNROUTED_AM, "alerts"), "alerts: is required"),
    "am-empty-alerts": (
        AM,
        _with(UNROUTED_AM, [], "alerts"),
        "alerts: List should have at least 1 item after validation, not 0",
    ),
    "am-labels-list": (
        AM,
        _with(UNROUTED_AM, ["a"], "alerts", 0, "labels"),
        "alerts[0].labels: Input should be a valid dictionary",
    ),
    "am-label-number": (
        AM,
        _with(UNROUTED_AM, 5, "alerts", 0, "labels", "host"),
        "alerts[0].labels.host: Input should be a valid string",
    ),
    "am-status": (
        AM,
        _with(UNROUTED_AM, "burning", "alerts", 0, "status"),
        "alerts[0].status: Input should be 'firing' or 'resolved'",
    ),
    "am-no-fingerprint": (
        AM,
        _without(UNROUTED_AM, "alerts", 0, "fingerprint"),
        "alerts[0].fingerprint: is required",
    ),
    "am-version": (
        AM,
        _with(UNROUTED_AM, "3", "version"),
        'version: must be "4" (Alertmanager webhook format v4)',
    ),
    "am-list": (AM, [UNROUTED_AM], "body: must be a JSON object"),
    "pd-no-event-type": (
        PD,
        _without(UNROUTED_PD, "event", "event_type"),
        "event.event_type: is required",
    ),
    "pd-no-incident-id": (
        PD,
        _without(UNROUTED_PD, "event", "data", "id"),
        "event.data.id: is required",
    ),
    "generic-unknown-field": (
        GENERIC,
        _with(UNROUTED_GENERIC, "x", "severity"),
        "severity: is not a known field",
    ),
    "generic-no-key": (GENERIC, _without(UNROUTED_GENERIC, "key"), "key: is required"),
    "generic-status": (
        GENERIC,
        _with(UNROUTED_GENERIC, "bogus", "status"),
        "status: Input should be 'firing' or 'resolved'",
    ),
}


def test_the_wrong_shape_is_422_naming_the_field(receiver):
    for case, (path, document, reason) in WRONG_SHAPE.items():
        body = json.dumps(document).encode()
        if path == AM:
            headers = bearer({}, TOKEN)[1]
        elif path == PD:
            headers = pagerduty_signed({})[1] | _pd_signature(body)
        else:
            body, headers = generic_signed(body)
        response = receiver.post(path, body, headers)
        assert response.status_code == 422, (case, response.text)
        assert response.json() == {"error": reason}, case
    assert receiver.rows() == []
