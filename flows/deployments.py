"""How each runbook becomes a Prefect deployment: the one description both paths build from.

`deployment_specs` turns a catalog into one `DeploymentSpec` per active runbook. Two consumers
read the specs, and neither decides anything of its own:

- the main job (`runbooks up`) serves them: `runner_deployments(specs, flows)` gives the
  `RunnerDeployment`s for `prefect.serve` / `Runner.add_deployment`;
- `flows/prefect_yaml.py` writes them into `prefect.yaml` for `prefect deploy --all`.

Names follow one convention: flow name = deployment name = runbook slug, so every deployment is
"slug/slug" (the alert receiver starts runs by that name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook_catalog.loader import Catalog
from runbook_catalog.markdown import NoteView, runbook_markdown
from runbook_catalog.models import AdminNote, Runbook

from .engine import flow_attribute

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment
    from sqlalchemy import Engine

FLOWS_MODULE = "flows/runbooks.py"

# One run of a runbook at a time, the rest wait their turn. The real guard is the database
# lease (db/leases.py: one execution per runbook and target, expiring when its holder dies);
# this limit is a second line in front of it. ENQUEUE: a second UI click, schedule tick or
# alert while a run is going waits in Prefect and runs afterwards, instead of starting only to
# be refused by the lease (or being dropped, as CANCEL_NEW would). Prefect's slots have leaked
# when workers died (PREFECT-NOTES.md), so it must never be the only guard.
CONCURRENCY_LIMIT = 1
COLLISION_STRATEGY = "ENQUEUE"


@dataclass(frozen=True)
class ScheduleSpec:
    """A runbook schedule as Prefect takes it. `flow_parameters` are the flow's own
    parameters: the runbook's values sit under the flow's one model parameter,
    `{"parameters": {...}}`."""

    cron: str
    timezone: str
    flow_parameters: dict[str, Any]
    active: bool = True


@dataclass(frozen=True)
class DeploymentSpec:
    slug: str
    name: str
    entrypoint: str  # relative to the project root: flows/runbooks.py:<attribute>
    description: str  # Markdown: the runbook, with its pinned admin notes
    tags: tuple[str, ...]
    schedules: tuple[ScheduleSpec, ...]
    version: str
    # Deployment-level defaults for the flow's parameters ({} when the runbook declares none).
    parameters: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: int = CONCURRENCY_LIMIT
    collision_strategy: str = COLLISION_STRATEGY

    @property
    def flow_name(self) -> str:
        return self.slug

    @property
    def full_name(self) -> str:
        """What `prefect deployment run` and `run_deployment` take: "slug/slug"."""
        return f"{self.flow_name}/{self.name}"


def _tags(runbook: Runbook) -> tuple[str, ...]:
    tags = [f"type:{runbook.type.value}", f"priority:{runbook.priority.value}", *runbook.tags]
    return tuple(dict.fromkeys(tags))  # without repeats, in order


def _flow_parameters(runbook_values: Mapping[str, Any]) -> dict[str, Any]:
    return {"parameters": dict(runbook_values)} if runbook_values else {}


def _parameter_defaults(runbook: Runbook) -> dict[str, Any]:
    defaults = {
        name: spec.default
        for name, spec in runbook.parameters.items()
        if getattr(spec, "default", None) is not None
    }
    return _flow_parameters(defaults)


def _pinned_views(slug: str, notes: Iterable[AdminNote]) -> list[NoteView]:
    pinned = [note for note in notes if note.pinned and slug in note.runbooks]
    return [
        NoteView(note.slug, note.title, note.type.value, True, note.body)
        for note in sorted(pinned, key=lambda note: (note.title, note.slug))
    ]


def deployment_spec(runbook: Runbook, pinned_notes: Iterable[AdminNote] = ()) -> DeploymentSpec:
    return DeploymentSpec(
        slug=runbook.slug,
        name=runbook.slug,
        entrypoint=f"{FLOWS_MODULE}:{flow_attribute(runbook.slug)}",
        description=runbook_markdown(runbook, _pinned_views(runbook.slug, pinned_notes)),
        tags=_tags(runbook),
        schedules=tuple(
            ScheduleSpec(
                cron=schedule.cron,
                timezone=schedule.timezone,
                flow_parameters=_flow_parameters(schedule.parameters),
                active=schedule.active,
            )
            for schedule in runbook.schedules
        ),
        version=runbook.version,
        parameters=_parameter_defaults(runbook),
    )


def deployment_specs(catalog: Catalog, pinned_notes: Iterable[AdminNote]) -> list[DeploymentSpec]:
    """One spec per runbook of the catalog, sorted by slug. A catalog holds only active
    runbooks (a runbook removed from it is marked inactive in the mirror by `sync`)."""
    notes = list(pinned_notes)
    return [
        deployment_spec(document.model, notes) for _, document in sorted(catalog.runbooks.items())
    ]


def catalog_pinned_notes(catalog: Catalog) -> list[AdminNote]:
    """The catalog's own pins: what prefect.yaml is generated from, so it is reproducible."""
    return [document.model for document in catalog.notes.values() if document.model.pinned]


def mirror_pinned_notes(engine: Engine) -> list[AdminNote]:
    """The pins as admins keep them now (`runbooks notes pin/unpin`, their own notes), for the
    main job, which builds its deployments at start."""
    from db.engine import session_scope
    from db.notes import list_notes

    with session_scope(engine) as session:
        return [
            AdminNote(
                slug=note.slug,
                title=note.title,
                type=note.note_type,
                pinned=True,
                tags=list(note.tags or []),
                runbooks=list(note.runbook_slugs or []),
                body=note.body,
            )
            for note in list_notes(session)
            if note.is_pinned
        ]


def runner_deployments(
    specs: Iterable[DeploymentSpec], flows: Mapping[str, Flow]
) -> list[RunnerDeployment]:
    """The specs as deployments for `prefect.serve(*deployments)`; `flows` maps slug -> flow
    (`flows.runbooks.FLOWS`, or `flows.engine.build_flows(catalog)`)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    deployments = []
    for spec in specs:
        flow = flows[spec.slug]
        if flow.name != spec.flow_name:
            raise ValueError(f"flow for '{spec.slug}' is named '{flow.name}', not '{spec.slug}'")
        deployment = flow.to_deployment(
            name=spec.name,
            description=spec.description,
            tags=list(spec.tags),
            schedules=[
                Cron(
                    schedule.cron,
                    timezone=schedule.timezone,
                    parameters=schedule.flow_parameters,
                    active=schedule.active,
                )
                for schedule in spec.schedules
            ],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=spec.concurrency_limit,
                collision_strategy=ConcurrencyLimitStrategy(spec.collision_strategy),
            ),
            version=spec.version,
            parameters=dict(spec.parameters),
            enforce_parameter_schema=True,
        )
        # Prefect derives the entrypoint from where the function was defined, which for a
        # flow built by the engine is a closure in flows/engine.py; record the importable one.
        deployment.entrypoint = spec.entrypoint
        deployments.append(deployment)
    return deployments
