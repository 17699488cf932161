"""The engine: one named Prefect flow per catalog runbook, built from its definition.

The flow's parameters are the runbook's own pydantic model, so the Prefect UI shows a form with
types, defaults, descriptions and allowed values, and a deployment run with a bad value is
refused before it exists. `trigger`, `triggered_by` and `alert_event_id` say who started it.
(No `from __future__ import annotations` here: the flow's signature must hold the real model.)
"""

from typing import Literal

from prefect import Flow, flow
from prefect.context import FlowRunContext

from runbook_catalog.loader import Catalog, Document
from runbook_catalog.markdown import runbook_markdown

from .execution import RunRequest, execute_runbook
from .heap import freeze_startup_heap
from .hooks import HOOKS

Trigger = Literal["ui", "schedule", "alert", "cli", "api"]


def flow_attribute(slug: str) -> str:
    """The module attribute (and entrypoint name) of a runbook's flow: a-b -> a_b."""
    return slug.replace("-", "_")


def _infer_trigger(explicit: str | None) -> str:
    if explicit:
        return explicit
    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    if flow_run is not None and flow_run.auto_scheduled:
        return "schedule"
    if flow_run is not None and flow_run.deployment_id is not None:
        return "ui"
    return "api"


def build_flow(document: Document) -> Flow:
    runbook = document.model
    parameters_model = runbook.parameter_model()
    has_required = any(f.is_required() for f in parameters_model.model_fields.values())

    def run_runbook(
        parameters: parameters_model,  # type: ignore[valid-type]
        trigger: Trigger | None = None,
        triggered_by: str | None = None,
        alert_event_id: int | None = None,
    ) -> dict:
        freeze_startup_heap()
        context = FlowRunContext.get()
        outcome = execute_runbook(
            RunRequest(
                document=document,
                parameters=parameters,
                trigger=_infer_trigger(trigger),
                triggered_by=triggered_by,
                alert_event_id=alert_event_id,
                flow_run_id=context.flow_run.id if context and context.flow_run else None,
            )
        )
        return {"execution_id": str(outcome.execution_id), "status": outcome.status.value}

    if not has_required:
        run_runbook.__defaults__ = (parameters_model(), None, None, None)
    run_runbook.__doc__ = runbook.summary
    return flow(
        run_runbook,
        name=runbook.slug,
        description=runbook_markdown(runbook),
        version=runbook.version,
        validate_parameters=True,
        persist_result=False,
        retries=0,
        **HOOKS,
    )


def build_flows(catalog: Catalog) -> dict[str, Flow]:
    return {slug: build_flow(document) for slug, document in sorted(catalog.runbooks.items())}
