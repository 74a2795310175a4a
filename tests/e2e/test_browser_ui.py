"""The Prefect UI as the treasury team's console, in a real browser.

A real ``prefect server start`` with its UI, Yinqi's deployments applied to it, a payment run
against the sandbox bank that finished and one that waits for approval; headless Chromium
(Debian's, driven by Playwright) finds the deployments, opens the finished run's artifacts
and approves the waiting run through the form Prefect renders for its run input. The
database then says who approved. A screenshot of every step is kept under the test's
temporary directory.
"""

from __future__ import annotations

import contextvars
import csv
import inspect
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from browser_support import UIServer, chromium_context, find_chromium, prefect_ui_server
from sqlalchemy import select

from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.store.approvals import current_code
from yinqi.store.models import Approval, Payment

pytestmark = [pytest.mark.browser, pytest.mark.slow]

UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Generous: the UI loads its bundle and then its data on a machine other tests share.
UI_TIMEOUT_MS = 60_000
#: Approvers of the two runs: two people of the same role, so neither run spends the other's
#: one-time code.
FIRST_APPROVER, BROWSER_APPROVER = "sun.approver", "li.approver"


# --- The console's words: every UI selector is here --------------------------------------
# Prefect's UI changes between versions; only text and roles an operator sees are used.

class Console:
    """The Prefect UI (the server's default, V2 in Prefect 3.9) as an operator uses it."""

    def __init__(self, page: Any, root: str) -> None:
        self.page = page
        self.root = root

    def home(self) -> None:
        self.page.goto(self.root + "/")

    def go_to(self, section: str) -> None:
        """A section of the sidebar: Runs, Deployments ..."""
        self.page.get_by_role("link", name=section, exact=True).first.click()

    def deployments_total(self, n: int) -> Any:
        return self.page.get_by_text(f"{n} Deployments", exact=True)

    def search_deployments(self, text: str) -> None:
        self.page.get_by_placeholder("Search deployments").fill(text)

    def deployment(self, name: str) -> Any:
        return self.page.get_by_role("link", name=name, exact=True)

    def open_run(self, name: str) -> None:
        self.page.get_by_role("link", name=name, exact=True).first.click()
        self.page.wait_for_url("**/flow-run/**")

    def run_title(self, name: str) -> Any:
        return self.page.get_by_role("heading", name=name)

    def state(self, name: str) -> Any:
        return self.page.get_by_text(name, exact=True).first

    def log_line(self, text: str) -> Any:
        """A line of the run's log (the Logs tab a run page opens on)."""
        return self.page.get_by_text(text).first

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name, exact=True).click()

    def artifact(self, key: str) -> Any:
        return self.page.get_by_text(key, exact=True).first

    def table_cell(self, text: str) -> Any:
        return self.page.get_by_role("cell", name=text, exact=True)

    def open_resume_form(self) -> Any:
        """The run's menu → Resume: a dialog with the form of the run input's schema."""
        self.page.get_by_role("button", name="Open menu").first.click()
        self.page.get_by_role("menuitem", name="Resume", exact=True).click()
        return self.page.get_by_role("dialog")

    @staticmethod
    def fill(form: Any, label: str, value: str) -> None:
        form.get_by_label(label, exact=True).fill(value)

    @staticmethod
    def submit(form: Any) -> None:
        form.get_by_role("button", name="Resume", exact=True).click()


# --- The installation: a Prefect server with its UI, a demo world, two payment runs ---------

@pytest.fixture(scope="module")
def chromium() -> str:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the playwright package is not installed (pip install -e '.[dev]')"
    path = find_chromium()
    if path is None:
        reason = "no Chromium found (apt-get install chromium)"
    if reason is not None or path is None:
        if UNDER_CI:
            pytest.fail(f"{reason} (CI=true: the browser test must run, not skip)")
        pytest.skip(str(reason))
    return path


@pytest.fixture(scope="module")
def ui(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    with prefect_ui_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture(scope="module")
def prefect_api(ui: UIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Flows run in this process report to the UI's server, as the test harness does for its
    own: the settings are also made process-global, because a flow's threads (logs, events)
    do not inherit this context."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: ui.api_url,
                                     PREFECT_HOME: str(tmp_path_factory.mktemp("prefect"))}):
        with prefect.context._temporary_global_settings_context(
                prefect.context.get_settings_context()):
            yield ui.api_url
            _drain_prefect_workers()


def _drain_prefect_workers() -> None:
    """Send the last logs and events before the server goes, and leave no worker behind
    pointed at it (as prefect_test_harness does on exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass  # never started
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


@pytest.fixture(scope="module")
def world(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWorld]:
    from tasks.context import use_app

    with demo_world(tmp_path_factory.mktemp("ui-world") / "home", settle_after=0.3) as w:
        use_app(w.app)
        yield w
        use_app(None)


@pytest.fixture(scope="module")
def applied(world: DemoWorld, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from flows.deployments import deployments

    found = deployments(intake_folder=tmp_path_factory.mktemp("intake"),
                        reconciliation=world.app.config.reconciliation,
                        backups=world.app.config.backup)
    for d in found:
        d.apply()
    return [d.name for d in found]


@dataclass
class PaymentRun:
    """A payment run in a thread of this process, as ``yinqi flows serve`` would run it."""

    voucher_file: Path
    out: dict[str, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def start(self) -> PaymentRun:
        from flows.payment import payment_run

        def run() -> None:
            try:
                # One answer per pause: a refused one ends the wait instead of asking again.
                self.out["result"] = payment_run(
                    voucher_file=str(self.voucher_file), imported_by="demo",
                    approval_poll_seconds=1, approval_timeout_seconds=300, approval_rounds=1,
                    poll_seconds=0.3, max_follow_seconds=120)
            except BaseException as exc:  # noqa: BLE001 - reported by result()
                self.out["error"] = exc

        ctx = contextvars.copy_context()
        self.thread = threading.Thread(target=ctx.run, args=(run,), daemon=True)
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def result(self, timeout: float = 180) -> dict[str, Any]:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the payment run did not finish"
        assert "error" not in self.out, repr(self.out.get("error"))
        return self.out["result"]  # type: ignore[no-any-return]


@dataclass
class FinishedRun:
    id: UUID
    name: str
    result: dict[str, Any]


def vouchers(path: Path, prefix: str, rows: list[tuple[str, str, str, str, str]]) -> Path:
    """A voucher file of small supplier payments (one approval level each) by wu.maker."""
    from yinqi.demo.vouchers import DEBTORS, HEADER

    day = date.today().isoformat()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for i, (name, account, bank, cnaps, amount) in enumerate(rows, 1):
        writer.writerow([f"{prefix}{i:06d}", day, DEBTORS[0], name, account, bank, cnaps,
                         amount, "CNY", "货款", "供应商", "否", "wu.maker", day])
    path.write_bytes(out.getvalue().encode("utf-8"))
    return path


# --- Prefect's API, through its synchronous client only ------------------------------------
# Once Playwright runs, this thread has a running event loop, and Prefect's functions that
# serve both worlds (resume_flow_run, Deployment.apply ...) would hand back coroutines.

def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def wait_paused(run: PaymentRun, timeout: float = 120) -> Any:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
        any_=[StateType.PAUSED])))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _client() as client:
            found = client.read_flow_runs(flow_run_filter=paused)
        if found:
            return found[0]
        if not run.alive():
            run.result(0)  # raises what stopped it
            raise AssertionError("the payment run finished without waiting for approval")
        time.sleep(0.3)
    raise AssertionError("the payment run never paused for approval")


def resume(flow_run_id: UUID, answer: dict[str, Any]) -> None:
    with _client() as client:
        outcome = client.resume_flow_run(flow_run_id, run_input=answer)
    assert outcome.status.value == "ACCEPT", outcome


def read_run(flow_run_id: UUID) -> Any:
    with _client() as client:
        return client.read_flow_run(flow_run_id)


def code_of(world: DemoWorld, username: str) -> str:
    with world.app.sessions() as s:
        return current_code(s, world.app.field_cipher, username, datetime.now(UTC))


@pytest.fixture(scope="module")
def finished_run(world: DemoWorld, applied: list[str],
                 tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """A run approved through the API (the form is the last test's) and paid."""
    from yinqi.demo.vouchers import PAYEES

    folder = tmp_path_factory.mktemp("first-run")
    run = PaymentRun(vouchers(folder / "first.csv", "UIA", [
        (*PAYEES[0][:4], "1234.56"), (*PAYEES[9][:4], "2345.67")])).start()
    paused = wait_paused(run)
    resume(paused.id, {"approver": FIRST_APPROVER, "decision": "approve",
                       "code": code_of(world, FIRST_APPROVER)})
    result = run.result()
    assert result["approvals"]["pending"] == 0, result["approvals"]
    assert read_run(paused.id).state.is_completed()
    return FinishedRun(paused.id, paused.name, result)


@pytest.fixture(scope="module")
def console(chromium: str, ui: UIServer, applied: list[str], finished_run: FinishedRun,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    # Started after every set-up that calls Prefect's dual sync/async functions (above).
    with chromium_context(chromium, tmp_path_factory.mktemp("chromium-profile")) as context:
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        yield Console(page, ui.url)


@pytest.fixture
def shot(console: Console, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Screenshots of a test's steps; the page as the test left it is ``last.png`` (where a
    failed step shows what the browser saw)."""
    folder = tmp_path / "screens"
    folder.mkdir()

    def take(name: str) -> Path:
        from playwright.sync_api import Error

        path = folder / f"{name}.png"
        for attempt in range(3):
            try:
                console.page.screenshot(path=str(path), full_page=True)
                return path
            except Error:
                # Chromium now and then cannot capture a page that is still laying out.
                if attempt == 2:
                    raise
                console.page.wait_for_timeout(500)
        return path

    yield take
    take("last")


# --- The console -----------------------------------------------------------------------------

def test_the_deployments_page_lists_every_yinqi_deployment(
        console: Console, applied: list[str], shot: Callable[[str], Path]) -> None:
    from playwright.sync_api import expect

    console.home()
    console.go_to("Deployments")
    expect(console.deployments_total(len(applied))).to_be_visible()
    expect(console.deployment("payment-run")).to_be_visible()
    shot("01-deployments")
    # The page shows ten at a time: each deployment is found by its name in the search box.
    for name in applied:
        console.search_deployments(name)
        expect(console.deployment(name)).to_be_visible()
    shot("02-deployment-search")


def test_a_finished_payment_run_shows_its_artifacts(
        console: Console, finished_run: FinishedRun, shot: Callable[[str], Path]) -> None:
    from playwright.sync_api import expect

    console.home()
    console.go_to("Runs")
    console.open_run(finished_run.name)
    expect(console.state("Completed")).to_be_visible()
    console.tab("Artifacts")
    for key in ("batch-summary", "payment-run-progress", "receipts"):
        expect(console.artifact(key)).to_be_visible()
    shot("03-run-artifacts")
    console.artifact("batch-summary").click()
    [batch] = finished_run.result["batches"]
    expect(console.table_cell(batch["message id"])).to_be_visible()
    expect(console.table_cell(batch["total"])).to_be_visible()
    shot("04-batch-summary")


def test_an_approver_resumes_a_paused_run_through_its_form(
        console: Console, world: DemoWorld, finished_run: FinishedRun, tmp_path: Path,
        shot: Callable[[str], Path]) -> None:
    from playwright.sync_api import expect

    from yinqi.demo.vouchers import PAYEES

    run = PaymentRun(vouchers(tmp_path / "second.csv", "UIB", [
        (*PAYEES[7][:4], "3456.78")])).start()
    paused = wait_paused(run)
    try:
        console.home()
        console.go_to("Runs")
        console.open_run(paused.name)
        expect(console.state("Paused")).to_be_visible()
        expect(console.log_line("Pausing flow")).to_be_visible()
        shot("05-paused-run")
        form = console.open_resume_form()
        console.fill(form, "Approver", BROWSER_APPROVER)
        console.fill(form, "Code", code_of(world, BROWSER_APPROVER))
        shot("06-approval-form")
        console.submit(form)
        expect(form).to_be_hidden()
        result = run.result()
    finally:
        if run.alive() and read_run(paused.id).state.is_paused():
            # Let the run end (a wrong code is refused and counts as its one answer).
            resume(paused.id, {"approver": BROWSER_APPROVER, "decision": "approve",
                               "code": "000000"})
    [answer] = result["approvals"]["answers"]
    assert (answer["approver"], answer["decided"], answer["refused"]) == (BROWSER_APPROVER, 1, 0)
    assert result["approvals"]["pending"] == 0
    state = read_run(paused.id).state
    assert state.is_completed(), state

    console.page.reload()
    expect(console.state("Completed")).to_be_visible()
    expect(console.log_line("Resuming flow run execution")).to_be_visible()
    shot("07-resumed-run")

    batches = [b["batch"] for b in result["batches"]]
    first_batches = [b["batch"] for b in finished_run.result["batches"]]
    with world.app.sessions() as s:
        def decided(batch_ids: list[int]) -> set[tuple[str, str, str]]:
            return {tuple(row) for row in s.execute(
                select(Approval.approver, Approval.role, Approval.decision)
                .join(Payment, Payment.id == Approval.payment_id)
                .where(Payment.batch_id.in_(batch_ids)))}

        states = set(s.execute(select(Payment.state).where(
            Payment.batch_id.in_(batches))).scalars())
        assert decided(batches) == {(BROWSER_APPROVER, "approver", "approved")}
        assert decided(first_batches) == {(FIRST_APPROVER, "approver", "approved")}
    assert states == {"RECEIPTED"}
