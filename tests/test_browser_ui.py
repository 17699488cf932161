"""The Prefect UI of `runbooks up`, driven as a person does in headless Chromium (Playwright).

One `runbooks up` (a real child process, a test catalog with `ordered` and `gated`, a SQLite
mirror) and one browser serve every test of this module:

- a runbook is started from its deployment's "Custom run" form, completes, shows its logs and
  its report artifact, and is recorded in the mirror as a `ui` run;
- a hostile value typed into the form is refused before a run exists, with the error the UI
  really shows (a toast with the server's refusal and a red line under the field, or the
  browser's own message at a number field);
- even when the server lets a bad value through (the form's "Enforce Parameter Schema" switched
  off), the run fails on its own validation before any step;
- an approval step pauses the run; the UI's Resume form records approver and reason.

Screenshots of the key pages go to docs/screenshots/ when RUNBOOKS_UPDATE_SCREENSHOTS=1, else to
a temporary directory. Chromium is Debian's (/usr/bin/chromium): without it (or without the
`playwright` package) the tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import PROJECT_ROOT

from .conftest import mirror_rows
from .engine_catalog import gated, ordered, write_engine_catalog
from .up_process import UpProcess, running_up

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}
UI_TIMEOUT_MS = 60_000  # the UI and the runs are slow on a small, busy machine
RUN_TIMEOUT_MS = 120_000
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
FLOW_RUN_URL = re.compile(r"/runs/flow-run/([0-9a-f-]{36})")
SCHEDULED_TOAST = "scheduled to start now"
ERROR_TOAST = "Error creating flow run"


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is missing: install the dev extras")
    manager = sync_playwright().start()
    yield manager
    manager.stop()


@pytest.fixture(scope="module")
def browser(playwright_api):
    browser = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def served(browser, tmp_path_factory) -> Iterator[tuple[UpProcess, str]]:
    """`runbooks up` with `ordered` and `gated`; yields it and the mirror URL."""
    root = tmp_path_factory.mktemp("up")
    catalog = write_engine_catalog(root / "catalog", ordered(), gated())
    mirror = f"sqlite:///{root / 'mirror.db'}"
    env = {"RUNBOOKS_CATALOG": str(catalog), "RUNBOOKS_DATABASE_URL": mirror}
    with running_up(root, env) as up:
        yield up, mirror


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    page = context.new_page()
    # What the UI asked the API to change, for failure messages (reads are left out).
    page.api_calls = []
    page.on(
        "requestfinished",
        lambda r: (
            r.method != "GET"
            and not re.search(r"/(filter|count|paginate|history)$", r.url)
            and page.api_calls.append(f"{r.method} {r.url} -> {r.response().status}")
        ),
    )
    page.on("requestfailed", lambda r: page.api_calls.append(f"{r.method} {r.url} failed"))
    yield page
    context.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Where `ordered` writes: under /tmp, the base of its `dir` parameter (pytest's own
    temporary directory need not be)."""
    path = Path(tempfile.mkdtemp(prefix="runbooks-ui-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Saves a screenshot: into docs/screenshots/ with RUNBOOKS_UPDATE_SCREENSHOTS=1, else into
    a temporary directory, so a normal run never changes the tree."""
    if os.environ.get("RUNBOOKS_UPDATE_SCREENSHOTS") == "1":
        folder = SCREENSHOTS
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("screenshots")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    def save(page, name: str, *, height: int | None = None, settle: bool = False) -> Path:
        path = folder / f"{name}.png"
        if settle:  # let canvases (the run graph) draw: they follow the page's last requests
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_load_state("networkidle", timeout=15_000)
        if height:
            page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        page.screenshot(path=str(path))
        if height:
            page.set_viewport_size(VIEWPORT)
        return path

    return save


# ---- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _client(api_url: str):
    """Prefect's API client against the served server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


def _flow_run_ids(api_url: str) -> set[uuid.UUID]:
    with _client(api_url) as client:
        return {run.id for run in client.read_flow_runs(limit=200)}


def _execution_for(mirror: str, flow_run_id: uuid.UUID, timeout: float = 30):
    """The mirror's execution row of a flow run and its steps, once the run is finished."""
    deadline = time.monotonic() + timeout
    while True:
        executions, steps = mirror_rows(mirror)
        found = [e for e in executions if e.flow_run_id == flow_run_id]
        if found and found[0].status not in ("pending", "running", "awaiting_approval"):
            return found[0], [s for s in steps if s.execution_id == found[0].id]
        assert time.monotonic() < deadline, f"no finished execution for {flow_run_id}: {found}"
        time.sleep(0.3)


def _open_deployment(page, ui_url: str, slug: str) -> None:
    page.goto(f"{ui_url}/v2/deployments")
    page.get_by_role("link", name=slug, exact=True).first.click()
    page.wait_for_url(re.compile(r"/deployments/deployment/[0-9a-f-]{36}"))


def _open_custom_run(page, ui_url: str, slug: str) -> None:
    from playwright.sync_api import expect

    _open_deployment(page, ui_url, slug)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    expect(page.get_by_role("heading", name="Parameters")).to_be_visible()
    expect(page.get_by_label("Dir", exact=True)).to_be_visible()


def _click_until_answered(page, button, endpoint: str, answer, timeout: float = 60):
    """Click `button` and wait until `answer()` returns something (not None).

    The Prefect server on SQLite answers a write with 503 when its database is busy (a lock
    held by its own background services), and the UI then shows nothing at all: a person
    clicks again, and so does this (at most twice more; a 503 rolled back, so nothing was
    created), with a warning that says so.
    """
    button.click()
    clicks, seen = 1, len(page.api_calls)
    started = time.monotonic()
    while True:
        found = answer(started)
        if found is not None:
            return found
        busy = [c for c in page.api_calls[seen:] if endpoint in c and c.endswith("-> 503")]
        if busy and clicks < 3:
            warnings.warn(
                f"the Prefect server answered 503 (busy): {busy[0]}; clicked again", stacklevel=2
            )
            button.click()
            clicks, seen = clicks + 1, len(page.api_calls)
        if time.monotonic() - started > timeout:
            shown = page.get_by_role("main").inner_text()
            calls = "\n".join(page.api_calls[-10:])
            raise AssertionError(
                f"no answer within {timeout} s; the page shows:\n{shown}\nlast API calls:\n{calls}"
            )
        time.sleep(0.2)


def _submit(page) -> str:
    """Submit the run form; what answers it: the toast (the server created the run, or refused
    it), or the browser's own message when its form validation blocks the submission (a
    number field outside its minimum/maximum)."""
    toast = page.get_by_text(re.compile(f"{SCHEDULED_TOAST}|{ERROR_TOAST}")).first
    invalid = page.locator("form :is(input, textarea, select):invalid")

    def answer(clicked: float) -> str | None:
        if toast.is_visible():
            return toast.inner_text()
        messages = invalid.evaluate_all("fields => fields.map(f => f.validationMessage)")
        if messages and time.monotonic() - clicked > 2:  # and no request was sent
            return "\n".join(messages)
        return None

    button = page.get_by_role("button", name="Submit")
    return _click_until_answered(page, button, "/create_flow_run", answer)


def _view_run(page) -> uuid.UUID:
    """From the success toast to the flow run page; the flow run's id."""
    page.get_by_role("button", name="View run").click()
    page.wait_for_url(FLOW_RUN_URL)
    return uuid.UUID(FLOW_RUN_URL.search(page.url).group(1))


def _toasts_gone(page) -> None:
    """Let the toast fade before a screenshot (it does after a few seconds)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # a screenshot with a toast is still one
        page.get_by_text(SCHEDULED_TOAST).wait_for(state="hidden", timeout=15_000)


def _state_badge(page, name: str):
    return page.get_by_text(name, exact=True).first


def _log_line(page, text: str, timeout: float = 60) -> None:
    """Wait for a log line on the flow run page. The Logs tab stops polling once the run is
    final, so lines the run flushed at its very end can be missing until a reload (as a
    person would do)."""
    from playwright.sync_api import expect

    deadline = time.monotonic() + timeout
    while True:
        try:
            expect(page.get_by_text(text).first).to_be_visible(timeout=5_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()


# ---- the tests ----------------------------------------------------------------------------


def test_a_runbook_started_from_the_ui_form_completes_reports_and_is_recorded(
    served, page, workdir, shots
):
    from playwright.sync_api import expect

    up, mirror = served

    # The deployments list: one deployment per runbook.
    page.goto(f"{up.ui_url}/v2/deployments")
    expect(page.get_by_text("2 Deployments")).to_be_visible()
    expect(page.get_by_role("link", name="ordered", exact=True).first).to_be_visible()
    expect(page.get_by_role("link", name="gated", exact=True).first).to_be_visible()
    shots(page, "ui-01-deployments")

    # The deployment page: its Description tab is the runbook rendered as Markdown.
    _open_deployment(page, up.ui_url, "ordered")
    page.get_by_role("tab", name="Description").click()
    expect(page.get_by_role("heading", name="Ordered steps")).to_be_visible()
    expect(page.get_by_role("heading", name="Parameters")).to_be_visible()
    expect(page.get_by_role("cell", name="where to write")).to_be_visible()
    shots(page, "ui-02-deployment-description")

    # Run -> Custom run: the parameter form built from the runbook's parameter model.
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    dir_field = page.get_by_label("Dir", exact=True)
    expect(dir_field).to_be_visible()
    expect(page.get_by_text("where to write")).to_be_visible()
    expect(page.get_by_label("Fail At (Optional)")).to_have_value("0")  # the default
    dir_field.fill(str(workdir))
    shots(page, "ui-03-parameter-form", height=1400)

    assert SCHEDULED_TOAST in _submit(page)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1500})  # graph and logs
    flow_run_id = _view_run(page)
    expect(_state_badge(page, "Completed")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    _log_line(page, "ordered: succeeded")
    _log_line(page, "step s3 succeeded (exit 0)")
    _toasts_gone(page)
    shots(page, "ui-04-run-completed-logs", settle=True)
    page.set_viewport_size(VIEWPORT)

    # The run's artifacts: the report (a Markdown step table) and the progress bar.
    page.get_by_role("tab", name="Artifacts").click()
    expect(page.get_by_role("link", name=re.compile("ordered-progress"))).to_be_visible()
    page.get_by_role("link", name=re.compile("ordered-report")).click()
    page.wait_for_url(re.compile(r"/artifacts/artifact/"))
    expect(page.get_by_role("heading", name="Ordered steps: succeeded")).to_be_visible()
    report = page.get_by_role("table").first
    for step in ("s1", "s2", "s3"):
        row = report.get_by_role("row").filter(has_text=f"{step} Step")
        expect(row).to_contain_text("succeeded")
    shots(page, "ui-05-report-artifact")

    # The mirror's record: a `ui` run that succeeded, step by step, and the files it wrote.
    execution, steps = _execution_for(mirror, flow_run_id)
    assert execution.trigger == "ui"
    assert execution.status == "succeeded"
    assert execution.parameters["dir"] == str(workdir)
    assert [(s.step_id, s.status) for s in steps] == [
        ("s1", "succeeded"),
        ("s2", "succeeded"),
        ("s3", "succeeded"),
    ]
    assert (workdir / "log").read_text().split("\n")[:3] == ["run 1", "run 2", "run 3"]


REFUSED = (
    "Error creating flow run: Validation failed for field 'parameters.{field}'. Failure reason: "
)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        pytest.param("dir", "../../etc", "'../../etc' does not match ", id="path-climbing-out"),
        pytest.param("dir", "/etc/passwd", "'/etc/passwd' does not match ", id="path-elsewhere"),
        pytest.param(
            "fail_at",
            "1; rm -rf /",
            "'1; rm -rf /' is not of type 'integer'",
            id="text-in-an-integer",
        ),
        pytest.param("fail_at", 99, None, id="integer-above-its-max"),
    ],
)
def test_a_hostile_value_in_the_form_is_refused_before_a_run_exists(
    served, page, workdir, shots, request, field, value, reason
):
    from playwright.sync_api import expect

    up, _ = served
    _open_custom_run(page, up.ui_url, "ordered")
    if isinstance(value, str) and field == "fail_at":
        # The number field does not even take the text: the browser keeps it empty ...
        number = page.get_by_label("Fail At (Optional)")
        number.fill("")
        number.press_sequentially(value)
        expect(number).to_have_value("")
        # ... so someone determined types the whole object into the form's JSON input.
        page.get_by_role("button", name="Open menu").first.click()
        page.get_by_role("menuitem", name="Use JSON Input").click()
        editor = page.get_by_role("textbox").filter(has_text="broken_rollback")
        editor.click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(json.dumps({"dir": str(workdir), field: value}))
    elif field == "dir":
        page.get_by_label("Dir", exact=True).fill(value)
    else:
        page.get_by_label("Dir", exact=True).fill(str(workdir))
        page.get_by_label("Fail At (Optional)").fill(str(value))

    before = _flow_run_ids(up.api_url)
    answer = _submit(page)
    assert _flow_run_ids(up.api_url) == before, f"a flow run was created; the UI said {answer!r}"
    if reason is None:
        # A number field carries the schema's minimum/maximum: the browser refuses to submit
        # and shows its own message at the field; no request is sent.
        assert answer == "Value must be less than or equal to 9."
    else:
        # The server refuses (HTTP 409); the UI shows it as a toast naming field and rule.
        assert answer.startswith(REFUSED.format(field=field) + reason), answer
    if field == "dir":  # and the form marks the field, in red under it, with the same words
        inline = page.get_by_text(re.compile("^" + re.escape(reason)))
        expect(inline).to_be_visible()
    shots(page, f"ui-06-refused-{request.node.callspec.id}")


def test_a_bad_value_the_server_lets_through_fails_the_run_before_any_step(served, page):
    """Last line of defence: with "Enforce Parameter Schema" switched off in the form, the
    server creates the run, and the flow's own parameter model fails it before any step."""
    from playwright.sync_api import expect

    up, mirror = served
    _open_custom_run(page, up.ui_url, "ordered")
    page.get_by_label("Dir", exact=True).fill("../../etc")
    enforce = page.get_by_role("switch", name="Enforce Parameter Schema")
    expect(enforce).to_have_attribute("aria-checked", "true")  # on by default
    enforce.click()
    expect(enforce).to_have_attribute("aria-checked", "false")

    assert SCHEDULED_TOAST in _submit(page)
    flow_run_id = _view_run(page)
    expect(_state_badge(page, "Failed")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client(up.api_url) as client:
        state = client.read_flow_run(flow_run_id).state
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    assert state.is_failed()
    assert "parameters.dir: Value error, must stay under /tmp" in state.message
    # No step ran: no task run at all, and the mirror has no execution for it.
    assert tasks == []
    assert not any(e.flow_run_id == flow_run_id for e in mirror_rows(mirror)[0])


def test_an_approval_step_pauses_and_is_approved_in_the_ui_with_approver_and_reason(
    served, page, workdir, shots
):
    from playwright.sync_api import expect

    up, mirror = served
    _open_custom_run(page, up.ui_url, "gated")
    page.get_by_label("Dir", exact=True).fill(str(workdir))
    assert SCHEDULED_TOAST in _submit(page)
    flow_run_id = _view_run(page)
    expect(_state_badge(page, "Paused")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    assert not (workdir / "s2").exists()  # step 2 waits for the decision

    page.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name="Resume").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=re.compile("Approve step 2 of 3"))).to_be_visible()
    expect(dialog.get_by_text("It will run:")).to_be_visible()
    dialog.get_by_label("Approve (Optional)").click()
    expect(dialog.get_by_label("Approve (Optional)")).to_have_attribute("aria-checked", "true")
    dialog.get_by_label("Approver", exact=True).fill("Ada Operator")
    dialog.get_by_label("Reason (Optional)").fill("change ticket CHG-1234")
    _toasts_gone(page)
    shots(page, "ui-07-approval-prompt", height=1300)
    _click_until_answered(
        page,
        dialog.get_by_role("button", name="Resume"),
        "/resume",
        lambda _: True if dialog.is_hidden() else None,
    )

    expect(_state_badge(page, "Completed")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    _log_line(page, "step s2 approved by Ada Operator")
    execution, steps = _execution_for(mirror, flow_run_id)
    assert (execution.trigger, execution.status) == ("ui", "succeeded")
    approval = {s.step_id: (s.status, s.approved_by, s.approval_reason) for s in steps}
    assert approval == {
        "s1": ("succeeded", None, None),
        "s2": ("succeeded", "Ada Operator", "change ticket CHG-1234"),
        "s3": ("succeeded", None, None),
    }
