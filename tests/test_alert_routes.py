"""The alert routes file: its format, every rule with its exact message, matching, and the
real catalog's routes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from config import PROJECT_ROOT
from runbook_catalog import CatalogError, load_catalog
from runbook_catalog.routes import ROUTES_FILE, load_routes
from tasks.render import validate_parameters

from .alert_helpers import probe_runbook
from .catalog_factory import runbook as maintenance_runbook
from .catalog_factory import write_catalog

FILE = "catalog/alert-routes.yaml"

ROUTE: dict[str, Any] = {
    "name": "service-down",
    "description": "A service is down.",
    "match": {"alertname": "ServiceDown", "labels": {"severity": "critical"}},
    "runbook": "probe",
    "parameters": {"service": {"label": "service"}, "host": {"label": "host"}},
    "cooldown": "15m",
    "max_runs": 3,
    "window": "1h",
}


def route(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(ROUTE)
    data.update(copy.deepcopy(changes))
    return data


@pytest.fixture
def catalog_root(tmp_path):
    return write_catalog(tmp_path / "catalog", [probe_runbook("probe"), maintenance_runbook()])


def problems_of(root, document: Any) -> list[str]:
    text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
    (root / ROUTES_FILE).write_text(text)
    return [str(p) for p in load_routes(load_catalog(root)).problems]


def test_a_valid_route_loads_with_its_durations(catalog_root):
    assert problems_of(catalog_root, {"routes": [route()]}) == []
    table = load_routes(load_catalog(catalog_root))
    (loaded,) = table.routes
    assert (loaded.name, loaded.runbook, loaded.cooldown, loaded.window) == (
        "service-down",
        "probe",
        900,
        3600,
    )


def test_a_catalog_without_the_file_has_no_routes(catalog_root):
    table = load_routes(load_catalog(catalog_root), strict=True)
    assert (table.file, table.routes, table.problems) == (None, [], [])


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            "routes: [",
            f"{FILE}: line 2, column 1: invalid YAML: did not find expected node content [RB000]",
        ),
        ("- name: x\n", f"{FILE}: must be a YAML mapping (key: value) [RB000]"),
        ({"routes": [route()], "defaults": {}}, f"{FILE} > defaults: is not a known field [RB100]"),
        ({"rules": []}, f"{FILE} > routes: is required [RB100]"),
        ({"routes": {"a": 1}}, f"{FILE} > routes: must be a list of routes [RB100]"),
    ],
    ids=["invalid-yaml", "not-a-mapping", "unknown-top-level", "no-routes", "routes-not-list"],
)
def test_file_level_problems(catalog_root, document, expected):
    assert expected in problems_of(catalog_root, document)


SHAPE = [
    ({"runbook": None}, "route service-down > runbook: Input should be a valid string"),
    ({"matches": {}}, "route service-down > matches: is not a known field"),
    (
        {"name": "Service Down"},
        "route Service Down > name: String should match pattern '^[a-z0-9][a-z0-9-]{0,62}$'",
    ),
    (
        {"cooldown": "soon"},
        "route service-down > cooldown: 'soon' is not a duration (write 90s, 30m, 1h, 1h30m or 2d)",
    ),
    ({"max_runs": 0}, "route service-down > max_runs: Input should be greater than or equal to 1"),
    (
        {"parameters": {"service": {"label": "service", "value": "x"}}},
        "route service-down > parameters.service: give exactly one of label, annotation or value (got label, value)",
    ),
    (
        {"parameters": {"service": {"value": "web", "default": "x"}}},
        "route service-down > parameters.service: default applies to label and annotation only",
    ),
    (
        {"parameters": {"service": {"lable": "service"}}},
        "route service-down > parameters.service.lable: is not a known field",
    ),
    (
        {"match": {"alertname": "X", "sources": ["nagios"]}},
        "route service-down > match.sources[0]: Input should be 'alertmanager', 'grafana', 'pagerduty' or 'generic'",
    ),
    ({"match": {"labels": {}}}, "route service-down > match.alertname: is required"),
]


@pytest.mark.parametrize(
    ("changes", "message"), SHAPE, ids=[m.split(" > ")[1].split(":")[0] for _, m in SHAPE]
)
def test_shape_problems_name_the_route_and_field(catalog_root, changes, message):
    data = route(**changes)
    for key, value in changes.items():
        if value is None:
            del data[key]
    message = message.replace("Input should be a valid string", "is required")
    assert problems_of(catalog_root, {"routes": [data]}) == [f"{FILE} > {message} [RB100]"]


def test_a_route_without_a_name_is_named_by_its_position(catalog_root):
    data = route()
    del data["name"]
    assert problems_of(catalog_root, {"routes": [route(), data]}) == [
        f"{FILE} > route #2 > name: is required [RB100]"
    ]


RULES = [
    (
        [route(), route()],
        [
            f"{FILE} > route service-down > name: route name is used 2 times; names must be unique [AR001]"
        ]
        * 2,
    ),
    (
        [route(runbook="nonexistent")],
        [
            f"{FILE} > route service-down > runbook: no runbook 'nonexistent' in the catalog (or it has problems of its own) [AR002]"
        ],
    ),
    (
        [route(runbook="demo", parameters={"name": {"label": "service"}})],
        [
            f"{FILE} > route service-down > runbook: 'demo' is a maintenance runbook; alerts start incident_response and troubleshooting runbooks only [AR003]"
        ],
    ),
    (
        [route(parameters={"service": {"label": "service"}, "tenant": {"label": "tenant"}})],
        [
            f"{FILE} > route service-down > parameters.tenant: runbook 'probe' has no parameter 'tenant' (it takes: depth, hook, host, service) [AR004]"
        ],
    ),
    (
        [route(parameters={"host": {"label": "host"}})],
        [
            f"{FILE} > route service-down > parameters: runbook 'probe' requires parameter 'service': map it from a label, an annotation or a value [AR005]"
        ],
    ),
    (
        [route(match={"alertname": "X", "labels_regex": {"host": "(app"}})],
        [
            f"{FILE} > route service-down > match.labels_regex.host: invalid regular expression: missing ), unterminated subpattern at position 0 [AR006]"
        ],
    ),
    (
        [route(parameters={"service": {"label": "service"}, "depth": {"value": 99}})],
        [
            f"{FILE} > route service-down > parameters.depth.value: invalid: Input should be less than or equal to 10 [AR007]"
        ],
    ),
    (
        [route(parameters={"service": {"label": "service", "default": "Web App"}})],
        [
            f"{FILE} > route service-down > parameters.service.default: invalid: must be a slug: 1-63 characters of a-z, 0-9 and '-', not starting with '-' [AR007]"
        ],
    ),
    (
        [route(parameters={"service": {"label": "service"}, "hook": {"annotation": "hook"}})],
        [
            f"{FILE} > route service-down > parameters.hook: a secret parameter takes a constant reference ({{value: env:NAME}} or {{value: block:NAME}}), never alert data [AR008]"
        ],
    ),
]


@pytest.mark.parametrize(
    ("routes", "expected"), RULES, ids=[f"{e[0][-6:-1]}-{i}" for i, (_, e) in enumerate(RULES)]
)
def test_each_rule_with_its_exact_message(catalog_root, routes, expected):
    assert problems_of(catalog_root, {"routes": routes}) == expected


def test_a_route_with_problems_is_left_out_and_strict_refuses_the_file(catalog_root):
    problems_of(catalog_root, {"routes": [route(), route(name="broken", runbook="nonexistent")]})
    catalog = load_catalog(catalog_root)

    assert [r.name for r in load_routes(catalog).routes] == ["service-down"]
    with pytest.raises(CatalogError) as refused:
        load_routes(catalog, strict=True)
    assert [p.code for p in refused.value.problems] == ["AR002"]


def test_a_runbook_with_problems_of_its_own_cannot_be_routed(tmp_path):
    broken = probe_runbook("probe", expected_duration=None)
    root = write_catalog(tmp_path / "catalog", [broken])
    assert problems_of(root, {"routes": [route()]}) == [
        f"{FILE} > route service-down > runbook: no runbook 'probe' in the catalog (or it has problems of its own) [AR002]"
    ]


def test_matching_is_exact_name_sources_labels_and_full_regex(catalog_root):
    problems_of(
        catalog_root,
        {
            "routes": [
                route(
                    name="first",
                    match={
                        "alertname": "ServiceDown",
                        "sources": ["alertmanager"],
                        "labels": {"severity": "critical"},
                        "labels_regex": {"host": r"app[0-9]+\.example\.com"},
                    },
                ),
                route(name="fallback", match={"alertname": "ServiceDown"}),
            ]
        },
    )
    table = load_routes(load_catalog(catalog_root), strict=True)
    labels = {"severity": "critical", "host": "app1.example.com"}

    def matched(source="alertmanager", name="ServiceDown", **changes):
        found = table.match(source, name, {**labels, **changes})
        return found.name if found else None

    assert matched() == "first"
    assert matched(source="grafana") == "fallback"  # not in sources: the next route
    assert matched(severity="warning") == "fallback"
    assert matched(host="app1.example.com.evil") == "fallback"  # a full match, not a search
    assert matched(name="servicedown") is None  # names are exact


def test_parameter_values_come_from_labels_annotations_defaults_and_constants(catalog_root):
    problems_of(
        catalog_root,
        {
            "routes": [
                route(
                    parameters={
                        "service": {"label": "service"},
                        "host": {"annotation": "host", "default": "fallback.example.com"},
                        "depth": {"value": 4},
                        "hook": {"value": "env:HOOK"},
                    }
                )
            ]
        },
    )
    (loaded,) = load_routes(load_catalog(catalog_root), strict=True).routes

    values, origins = loaded.parameter_values({"service": "web"}, {})
    assert values == {
        "service": "web",
        "host": "fallback.example.com",
        "depth": 4,
        "hook": "env:HOOK",
    }
    assert origins["service"] == "label service"
    values, _ = loaded.parameter_values({}, {"host": "db1.example.com"})
    assert values == {"host": "db1.example.com", "depth": 4, "hook": "env:HOOK"}  # service absent


def test_runbooks_validate_reports_route_problems(catalog_root, cli_in_process):
    problems_of(catalog_root, {"routes": [route(runbook="nonexistent")]})

    code, _, err = cli_in_process("validate", env={"RUNBOOKS_CATALOG": str(catalog_root)})

    assert code == 1
    assert (
        f"{FILE} > route service-down > runbook: no runbook 'nonexistent' in the catalog "
        "(or it has problems of its own) [AR002]"
    ) in err


# --- the real catalog ---------------------------------------------------------------------------

REAL_ALERTS = {
    # route: (source, alert name, labels, annotations)
    "postgres-primary-down": (
        "alertmanager",
        "PostgresPrimaryDown",
        {"severity": "critical", "cluster": "jewelry-pg", "member": "pg-db-1"},
        {"failover_candidate": "pg-db-2"},
    ),
    "webapp-crash-loop": (
        "alertmanager",
        "WebappCrashLooping",
        {"service": "webapp", "previous_release": "20261201-4f2c9ab"},
        {},
    ),
    "database-credential-abuse": (
        "grafana",
        "DatabaseCredentialAbuse",
        {"severity": "critical", "source_ip": "203.0.113.47", "db_role": "reporting_ro"},
        {},
    ),
    "app-host-memory-low": (
        "alertmanager",
        "HostMemoryLow",
        {"job": "node", "service": "webapp", "instance": "app1:9100"},
        {},
    ),
    "postgres-slow-queries": ("alertmanager", "PostgresSlowQueries", {"severity": "warning"}, {}),
    "pagerduty-database-latency": (
        "pagerduty",
        "Database latency above SLO",
        {"service": "Jewelry Database", "urgency": "high"},
        {},
    ),
}


def test_the_real_catalog_routes_are_valid_and_cover_the_incident_runbooks():
    catalog = load_catalog(PROJECT_ROOT / "runbook_catalog", strict=True)
    table = load_routes(catalog, strict=True)

    assert {r.name for r in table.routes} == set(REAL_ALERTS)
    assert {r.runbook for r in table.routes} == {
        "database-outage",
        "application-crash",
        "security-breach",
        "high-memory-usage",
        "slow-database-queries",
    }
    for name, (source, alert_name, labels, notes) in REAL_ALERTS.items():
        found = table.match(source, alert_name, labels)
        assert found is not None and found.name == name
        values, _ = found.parameter_values(labels, notes)
        validate_parameters(catalog.runbook(found.runbook), values)  # a run could start
