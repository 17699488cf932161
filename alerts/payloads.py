"""The senders' formats, checked by pydantic, each turned into `IncomingAlert`s.

- Alertmanager webhook v4 (`version: "4"`, `alerts: [...]`) and Grafana's webhook contact
  point, which sends the same shape plus `orgId`, `title`, `state`, `message` and per-alert
  `values`, `silenceURL`, `dashboardURL`, ... (and `version: "1"`). An alert is one
  `fingerprint`; one firing of it is fingerprint + `startsAt`.
- PagerDuty v3 webhooks: one `event` per delivery; incident events carry the incident in
  `event.data`. The routing labels are derived from the incident.
- The generic format, our own: one alert with the caller's own `key`.

Senders add fields over time, so the Alertmanager, Grafana and PagerDuty models ignore fields
they do not use; the generic model is ours and forbids unknown fields. A document of the wrong
shape is refused with 422 naming the first wrong field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import Refused

AlertStatus = Literal["firing", "resolved"]
# Top-level keys only Grafana sends: how a Grafana delivery is told from Alertmanager's.
GRAFANA_KEYS = frozenset({"orgId", "title", "state", "message"})
GRAFANA_ALERT_KEYS = frozenset({"silenceURL", "dashboardURL", "panelURL", "values", "valueString"})
PAGERDUTY_ACTIONS = {"incident.triggered": "firing", "incident.resolved": "resolved"}


@dataclass(frozen=True)
class IncomingAlert:
    """One alert as the intake stores and decides it, whatever its sender."""

    source: str  # alertmanager, grafana, pagerduty, generic
    alert_name: str | None
    status: str  # firing or resolved
    dedup_key: str  # one delivery of one firing: a repeat is a duplicate
    group_key: str  # the alert across its deliveries and firings (cooldown, resolve)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    # Stored, but nothing is done: e.g. a PagerDuty incident.acknowledged event.
    inert_reason: str | None = None


class _SenderModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AlertmanagerAlert(_SenderModel):
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = Field(min_length=1, max_length=64)
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str = Field(min_length=1, max_length=128)


class AlertmanagerWebhook(_SenderModel):
    version: str
    groupKey: str | None = None
    status: AlertStatus | None = None
    receiver: str | None = None
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


class PagerDutyReference(_SenderModel):
    id: str | None = None
    summary: str | None = None


class PagerDutyIncident(_SenderModel):
    id: str = Field(min_length=1, max_length=64)
    type: str | None = None
    title: str | None = None
    status: str | None = None
    urgency: str | None = None
    incident_key: str | None = None
    number: int | None = None
    html_url: str | None = None
    service: PagerDutyReference | None = None
    priority: PagerDutyReference | None = None


class PagerDutyEvent(_SenderModel):
    id: str = Field(min_length=1, max_length=64)
    event_type: str = Field(min_length=1, max_length=64)
    resource_type: str | None = None
    occurred_at: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class PagerDutyWebhook(_SenderModel):
    event: PagerDutyEvent


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alertname: str = Field(min_length=1, max_length=255)
    status: AlertStatus
    key: str = Field(min_length=1, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


def _validated(model: type[BaseModel], document: Any, prefix: str = "") -> Any:
    if not isinstance(document, dict):
        raise Refused(422, f"{prefix or 'body'}: must be a JSON object")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(
            f"[{p}]" if isinstance(p, int) else str(p) for p in (*prefix.split("."), *error["loc"])
        ).replace(".[", "[")
        location = location.strip(".") or "body"
        reason = {"missing": "is required", "extra_forbidden": "is not a known field"}.get(
            error["type"], error["msg"]
        )
        # pydantic's messages name the rule, never the input: safe to send back
        raise Refused(422, f"{location}: {reason}") from None


def parse_alertmanager(document: Any) -> list[IncomingAlert]:
    """Alertmanager (or Grafana, told apart by the keys only Grafana sends)."""
    webhook: AlertmanagerWebhook = _validated(AlertmanagerWebhook, document)
    raw_alerts = document.get("alerts") or []
    is_grafana = bool(GRAFANA_KEYS & document.keys()) or any(
        isinstance(raw, dict) and GRAFANA_ALERT_KEYS & raw.keys() for raw in raw_alerts
    )
    if not is_grafana and webhook.version != "4":
        raise Refused(422, 'version: must be "4" (Alertmanager webhook format v4)')
    source = "grafana" if is_grafana else "alertmanager"
    return [
        IncomingAlert(
            source=source,
            alert_name=(alert.labels.get("alertname") or None),
            status=alert.status,
            dedup_key=f"{alert.fingerprint}:{alert.startsAt}",
            group_key=alert.fingerprint,
            labels=alert.labels,
            annotations=alert.annotations,
        )
        for alert in webhook.alerts
    ]


def parse_pagerduty(document: Any, delivery_id: str | None) -> list[IncomingAlert]:
    """One PagerDuty v3 event. Only incident.triggered (firing) and incident.resolved act."""
    event: PagerDutyEvent = _validated(PagerDutyWebhook, document).event
    delivery = (delivery_id or "").strip()[:128] or None
    annotations: dict[str, Any] = {"event_id": event.id, "event_type": event.event_type}
    if delivery:
        annotations["delivery_id"] = delivery
    if event.resource_type != "incident":
        return [
            IncomingAlert(
                source="pagerduty",
                alert_name=None,
                status="firing",
                dedup_key=f"{event.id}:{event.event_type}",
                group_key=event.id,
                annotations=annotations,
                inert_reason=f"pagerduty {event.event_type} is not an incident event",
            )
        ]
    incident: PagerDutyIncident = _validated(PagerDutyIncident, event.data, "event.data")
    labels = {
        "service": incident.service.summary if incident.service else None,
        "service_id": incident.service.id if incident.service else None,
        "urgency": incident.urgency,
        "priority": incident.priority.summary if incident.priority else None,
        "incident_key": incident.incident_key,
        "incident_status": incident.status,
    }
    if incident.html_url:
        annotations["html_url"] = incident.html_url
    if incident.number is not None:
        annotations["incident_number"] = str(incident.number)
    status = PAGERDUTY_ACTIONS.get(event.event_type)
    return [
        IncomingAlert(
            source="pagerduty",
            alert_name=(incident.title or "")[:255] or None,
            status=status or ("resolved" if incident.status == "resolved" else "firing"),
            # Every delivery of one event of one incident has the same key: a redelivery
            # (same X-Webhook-Id) and a second subscription's copy are both duplicates.
            dedup_key=f"{incident.id}:{event.event_type}",
            group_key=incident.id,
            labels={name: value for name, value in labels.items() if value is not None},
            annotations=annotations,
            inert_reason=None
            if status
            else f"pagerduty {event.event_type}: only incident.triggered and incident.resolved act",
        )
    ]


def parse_generic(document: Any) -> list[IncomingAlert]:
    alert: GenericAlert = _validated(GenericAlert, document)
    return [
        IncomingAlert(
            source="generic",
            alert_name=alert.alertname,
            status=alert.status,
            dedup_key=f"{alert.key}:{alert.status}",
            group_key=alert.key,
            labels=alert.labels,
            annotations=alert.annotations,
        )
    ]
