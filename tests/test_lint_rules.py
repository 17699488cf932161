"""Every lint rule, each fed a bad definition, with the exact message an author sees."""

from __future__ import annotations

import pytest

from runbook_catalog import load_catalog

from .catalog_factory import MINIMAL_NOTE, problems, runbook, write_catalog

FILE = "catalog/runbooks/demo.yaml > demo"


def step(**changes):
    base = runbook()["steps"][0]
    base.update(changes)
    return base


def test_minimal_runbook_is_valid(tmp_path):
    root = write_catalog(tmp_path / "catalog", [runbook()], [MINIMAL_NOTE])
    catalog = load_catalog(root)
    assert catalog.problems == []
    assert list(catalog.runbooks) == ["demo"]
    assert list(catalog.notes) == ["demo-note"]


CASES = {
    "RB002 duplicate step id": (
        runbook(steps=[step(), step()]),
        f"{FILE} > step touch > id: step id is used 2 times; ids must be unique [RB002]",
    ),
    "RB003 no verification": (
        runbook(steps=[step(verify=None)]),
        f"{FILE} > step touch > verify: every step needs a verification [RB003]",
    ),
    "RB003 verification checks nothing": (
        runbook(steps=[step(verify={"exit_code": 0})]),
        f"{FILE} > step touch > verify: the verification checks nothing: give a command, an "
        "output pattern, or for sql min_rows/max_rows [RB003]",
    ),
    "RB003 sql verification without expectation": (
        runbook(steps=[step(connection="db", verify={"sql": "select 1"})]),
        f"{FILE} > step touch > verify: the verification checks nothing: give a command, an "
        "output pattern, or for sql min_rows/max_rows [RB003]",
    ),
    "RB004 state change without rollback": (
        runbook(steps=[step(rollback=None)]),
        f"{FILE} > step touch > rollback: a step that changes state needs a rollback, or "
        "irreversible: true (or changes_state: false if it only reads) [RB004]",
    ),
    "RB005 irreversible critical step without approval": (
        runbook(priority="critical", rto="1h", steps=[step(rollback=None, irreversible=True)]),
        f"{FILE} > step touch > requires_approval: an irreversible step of a critical runbook "
        "needs requires_approval: true [RB005]",
    ),
    "RB006 critical without RTO": (
        runbook(priority="critical"),
        f"{FILE} > rto: a critical runbook needs an RTO (recovery time objective) [RB006]",
    ),
    "RB007 disaster recovery without RPO": (
        runbook(type="disaster_recovery"),
        f"{FILE} > rpo: a disaster recovery runbook needs an RPO (recovery point) [RB007]",
    ),
    "RB008 no expected duration": (
        runbook(expected_duration=None),
        f"{FILE} > expected_duration: every runbook needs an expected duration [RB008]",
    ),
    "RB009 undeclared placeholder": (
        runbook(steps=[step(run={"argv": ["touch", "/tmp/{{ name }}/{{ other }}"]})]),
        f"{FILE} > step touch > run: uses parameter other, which the runbook does not declare "
        "[RB009]",
    ),
    "RB009 undeclared variable in a script": (
        runbook(steps=[step(run={"script": 'touch "/tmp/$RB_NAME/$RB_OTHER"'})]),
        f"{FILE} > step touch > run: uses parameter $RB_OTHER, which the runbook does not "
        "declare [RB009]",
    ),
    "RB009 undeclared sql bind parameter": (
        runbook(
            steps=[
                step(
                    connection="db",
                    verify={"sql": "select 1 where %(who)s = %(name)s", "min_rows": 1},
                )
            ]
        ),
        f"{FILE} > step touch > verify: uses parameter who, which the runbook does not declare "
        "[RB009]",
    ),
    "RB010 declared but unused": (
        runbook(
            parameters={
                "name": {"type": "slug", "description": "x"},
                "spare": {"type": "slug", "description": "x"},
            }
        ),
        f"{FILE} > parameters.spare: is declared but no step uses it [RB010]",
    ),
    "RB011 placeholder in a script": (
        runbook(steps=[step(run={"script": "touch /tmp/{{ name }}"})]),
        f"{FILE} > step touch > run.script: a shell script must not contain {{{{ placeholders }}}}: "
        "read the parameter from $RB_NAME instead (DESIGN.md rule 1) [RB011]",
    ),
    "RB011 placeholder after -c": (
        runbook(steps=[step(run={"argv": ["psql", "-c", "select '{{ name }}'"]})]),
        f"{FILE} > step touch > run.argv[2]: a {{{{ placeholder }}}} here would be parsed as code; "
        "pass it as data (psql -v name={{ name }} with :'name', or an RB_* variable in a "
        "script) [RB011]",
    ),
    "RB011 placeholder in code behind a wrapper": (
        runbook(
            steps=[step(run={"argv": ["kubectl", "exec", "app", "--", "sh", "-c", "{{ name }}"]})]
        ),
        f"{FILE} > step touch > run.argv[6]: a {{{{ placeholder }}}} here would be parsed as code; "
        "pass it as data (psql -v name={{ name }} with :'name', or an RB_* variable in a "
        "script) [RB011]",
    ),
    "RB011 placeholder in an ssh command line": (
        runbook(steps=[step(rollback={"argv": ["ssh", "host", "rm /tmp/{{ name }}"]})]),
        f"{FILE} > step touch > rollback.argv: ssh passes its arguments to the remote shell; use "
        "an ssh target instead of a {{ placeholder }} in an ssh command line [RB011]",
    ),
    "RB012 changelog behind the version": (
        runbook(version="1.1"),
        f"{FILE} > changelog: the newest changelog entry is 1.0 but the runbook is version 1.1; "
        "add an entry for the new version at the top [RB012]",
    ),
    "RB012 changelog out of order": (
        runbook(
            changelog=[
                {"version": "1.0", "date": "2026-12-04", "changes": ["a"]},
                {"version": "1.1", "date": "2026-12-01", "changes": ["b"]},
            ]
        ),
        f"{FILE} > changelog: changelog versions must be unique, newest first [RB012]",
    ),
    "RB013 unknown target": (
        runbook(steps=[step(target="nowhere")]),
        f"{FILE} > step touch > target: unknown target 'nowhere' [RB013]",
    ),
    "RB013 sql without a database": (
        runbook(steps=[step(verify={"sql": "select 1", "min_rows": 1})]),
        f"{FILE} > step touch > verify: sql runs on a postgres target, or on the step's "
        "connection [RB013]",
    ),
    "RB013 program on a postgres target": (
        runbook(steps=[step(target="db")]),
        f"{FILE} > step touch > run: a postgres target runs sql; run programs on a local or ssh "
        "target with connection: for the database settings [RB013]",
    ),
    "RB014 SQL identifier placeholder of a non-identifier": (
        runbook(
            steps=[
                step(
                    connection="db",
                    verify={"sql": "select 1 from {{ name }}", "min_rows": 1},
                )
            ]
        ),
        f"{FILE} > step touch > verify.sql: {{{{ name }}}} in SQL is quoted as an identifier, so "
        "'name' must be of type identifier; pass values as %(name)s [RB014]",
    ),
    "RB018 invalid schedule parameters": (
        runbook(schedules=[{"cron": "0 3 * * *", "timezone": "UTC", "parameters": {}}]),
        f"{FILE} > schedules[0].parameters.name: is required [RB018]",
    ),
    "RB019 invalid default": (
        runbook(parameters={"name": {"type": "slug", "description": "x", "default": "-rf"}}),
        f"{FILE} > parameters.name.default: invalid: must be a slug: 1-63 characters of a-z, 0-9 "
        "and '-', not starting with '-' [RB019]",
    ),
    "RB020 parameter name": (
        runbook(
            parameters={"Name": {"type": "slug", "description": "x"}},
            steps=[step(run={"argv": ["touch", "/tmp/{{ Name }}"]}, verify={"argv": ["true"]})],
        ),
        f"{FILE} > parameters.Name: a parameter name is lowercase ASCII letters, digits and _, "
        "starting with a letter [RB020]",
    ),
    "RB021 irreversible with rollback": (
        runbook(steps=[step(irreversible=True)]),
        f"{FILE} > step touch > rollback: an irreversible step cannot declare a rollback [RB021]",
    ),
    "RB022 published key taken": (
        runbook(steps=[step(publish="report")]),
        f"{FILE} > step touch > publish: 'report' is the engine's own artifact [RB022]",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_rule_reports_exact_problem_and_rejects_the_runbook(tmp_path, case):
    data, expected = CASES[case]
    root = write_catalog(tmp_path / "catalog", [data])
    catalog = load_catalog(root)
    assert expected in [str(p) for p in catalog.problems]
    assert "demo" not in catalog.runbooks


def test_rb001_duplicate_slugs_across_files(tmp_path):
    root = write_catalog(tmp_path / "catalog", [runbook()])
    (root / "runbooks" / "copy.yaml").write_text((root / "runbooks" / "demo.yaml").read_text())
    found = problems(root)
    assert "catalog/runbooks/copy.yaml > demo > slug: another runbook has this slug [RB001]" in (
        found
    )
    assert "catalog/runbooks/demo.yaml > demo > slug: another runbook has this slug [RB001]" in (
        found
    )
    assert "catalog/runbooks/copy.yaml > demo > slug: the file must be named demo.yaml [RB015]" in (
        found
    )
    assert load_catalog(root).runbooks == {}


def test_rb016_and_rb017_notes(tmp_path):
    bad_link = dict(MINIMAL_NOTE, runbooks=["demo", "ghost"])
    root = write_catalog(tmp_path / "catalog", [runbook()], [bad_link])
    (root / "notes" / "twin.yaml").write_text((root / "notes" / "demo-note.yaml").read_text())
    found = problems(root)
    assert (
        "catalog/notes/demo-note.yaml > demo-note > runbooks: links unknown runbook 'ghost' [RB016]"
        in found
    )
    assert "catalog/notes/twin.yaml > demo-note > slug: another note has this slug [RB017]" in found
    catalog = load_catalog(root)
    assert catalog.notes == {}
    assert list(catalog.runbooks) == ["demo"]  # a bad note does not reject the runbook


def test_shape_errors_name_step_and_field(tmp_path):
    data = runbook(steps=[step(timeout="soon", colour="red")], priority="urgent")
    root = write_catalog(tmp_path / "catalog", [data])
    found = problems(root)
    assert f"{FILE} > priority: Input should be 'critical', 'high', 'medium' or 'low' [RB100]" in (
        found
    )
    assert f"{FILE} > step touch > colour: is not a known field [RB100]" in found
    assert (
        f"{FILE} > step touch > timeout: 'soon' is not a duration (write 90s, 30m, 1h, 1h30m or "
        "2d) [RB100]" in found
    )


def test_command_needs_exactly_one_form(tmp_path):
    data = runbook(steps=[step(run={"argv": ["true"], "script": "true"})])
    found = problems(write_catalog(tmp_path / "catalog", [data]))
    assert (
        f"{FILE} > step touch > run: give exactly one of argv, script or sql (got argv, script) [RB100]"
        in found
    )


def test_missing_parameter_type_is_reported(tmp_path):
    data = runbook(parameters={"name": {"description": "no type"}})
    found = problems(write_catalog(tmp_path / "catalog", [data]))
    assert any(p.startswith(f"{FILE} > parameters.name") and "[RB100]" in p for p in found), found


def test_invalid_yaml_names_line(tmp_path):
    root = write_catalog(tmp_path / "catalog", [])
    (root / "runbooks" / "broken.yaml").write_text("slug: x\nsteps: [\n")
    (root / "runbooks" / "list.yaml").write_text("- a\n- b\n")
    found = problems(root)
    assert any(
        p.startswith("catalog/runbooks/broken.yaml: line 3") and "[RB000]" in p for p in found
    )
    assert "catalog/runbooks/list.yaml: must be a YAML mapping (key: value) [RB000]" in found


def test_every_problem_is_reported_at_once(tmp_path):
    bad = runbook(priority="critical", expected_duration=None, steps=[step(verify=None)])
    other = runbook(slug="other", type="disaster_recovery")
    found = problems(write_catalog(tmp_path / "catalog", [bad, other]))
    codes = sorted(p.rsplit("[", 1)[1].rstrip("]") for p in found)
    assert codes == ["RB003", "RB006", "RB007", "RB008"]


def test_yaml_is_loaded_safely(tmp_path):
    root = write_catalog(tmp_path / "catalog", [])
    canary = tmp_path / "canary"
    (root / "runbooks" / "evil.yaml").write_text(
        f"slug: !!python/object/apply:os.system ['touch {canary}']\n"
    )
    found = problems(root)
    assert not canary.exists()
    assert any("catalog/runbooks/evil.yaml" in p and "[RB000]" in p for p in found)
