"""The reference dashboard page (GET /dashboard) in headless Chromium (Debian's chromium,
Playwright with executable_path, as tests/system/test_graphiql.py): every KPI and cohort cell
equals the API's answer for the signed-in director, a webhook-triggered refresh updates
it without a reload, another director sees only their cohorts, and it is usable from the
keyboard with labelled controls. Screenshots land in tests/artifacts/ (not committed)."""

import asyncio
import json
import re
import shutil
import tempfile
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright
from sqlalchemy import update

from gateway.auth import TokenVerifier, mint_token
from gateway.documents.dashboard import dashboard_operations
from gateway.settings import Settings
from loaders.programs import cohorts
from resolvers.caller import Caller
from tests.harness.processes import running
from tests.support import dataset
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, RunProcess
from tests.support.dataset import DANA, DREW
from tests.support.gateway_client import gateway_client
from tests.support.live_gateway import live_gateway, send_change_event

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
SECRET = "page-webhook-secret"
SETTINGS = Settings(webhook_secret=SECRET)
TIMEOUT_MS = 60_000
OPERATIONS = dashboard_operations()
# The page's first cohort page: its controls' defaults.
LIST_VARIABLES = {
    "first": 20,
    "after": None,
    "filter": None,
    "orderBy": {"field": "START_DATE", "direction": "ASC"},
}
KPIS = {
    "totalCohorts": "int",
    "activeCohorts": "int",
    "activePrograms": "int",
    "seats.total": "int",
    "seats.used": "int",
    "seats.utilization": "rate",
    "averageReadiness": "avg",
    "completionRate": "rate",
    "mentorCoverage": "rate",
    "sessionCompletionRate": "rate",
    "alertCounts.critical": "int",
    "alertCounts.warning": "int",
}
COLUMNS = {
    "name": "text",
    "status": "lower",
    "mode": "lower",
    "track.name": "text",
    "program.name": "text",
    "startDate": "text",
    "seats.used": "int",
    "seats.total": "int",
    "seats.utilization": "rate",
    "enrollment.enrolled": "int",
    "enrollment.active": "int",
    "enrollment.completionRate": "rate",
    "mentorship.mentorCoverage": "rate",
    "mentorship.sessionCompletionRate": "rate",
    "readiness.average": "avg",
    "readiness.ready": "int",
    "flags": "list",
    "computedAt": "instant",
}
needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed"
)


def shown(kind: str, value: Any) -> str:
    """The page's formatting rules (dashboard.js `fmt`): JavaScript's toFixed rounds the
    exact binary value half up."""
    if value is None or value == "":
        return "—"
    if kind == "rate":
        return f"{Decimal(value * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"
    if kind == "avg":
        return str(Decimal(value).quantize(Decimal("0.1"), ROUND_HALF_UP))
    if kind == "lower":
        return str(value).lower()
    if kind == "list":
        return "".join(value) or "—"  # one badge per flag, no separator
    if kind == "instant":
        return value[:19].replace("T", " ") + " UTC"
    return str(value)


def at(obj: Any, path: str) -> Any:
    for key in path.split("."):
        obj = obj[key]
    return obj


async def api(url: str, user: int, name: str, variables: dict[str, Any]) -> dict[str, Any]:
    """What the API answers this director for one of the dashboard's operations."""
    headers = {"Authorization": f"Bearer {mint_token(SETTINGS, user, 'director', 600)}"}
    body = {"query": OPERATIONS[name].body, "variables": variables}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        response = await http.post("/graphql", json=body, headers=headers)
    answer = response.json()
    assert "errors" not in answer, answer
    return answer["data"]  # type: ignore[no-any-return]


async def check_against_api(page: Page, url: str, user: int) -> list[int]:
    """Every KPI and every cohort cell equals the API's answer; returns the row ids."""
    summary = (await api(url, user, "DirectorSummary", {}))["me"]["summary"]
    kpis = await page.eval_on_selector_all(
        "#kpis dd", "els => els.map(e => [e.dataset.kpi, e.dataset.value, e.textContent])"
    )
    assert {k for k, _, _ in kpis} == set(KPIS)
    for path, value, text in kpis:
        assert (json.loads(value), text) == (
            at(summary, path),
            shown(KPIS[path], at(summary, path)),
        )
    listing = (await api(url, user, "CohortList", LIST_VARIABLES))["me"]["cohorts"]
    rows = await page.eval_on_selector_all(
        "#cohort-rows tr",
        """rows => rows.map(r => [Number(r.dataset.cohortId),
             [...r.cells].map(c => [c.dataset.field, c.dataset.value, c.textContent])])""",
    )
    assert [r[0] for r in rows] == [e["node"]["id"] for e in listing["edges"]]
    for (_, cells), edge in zip(rows, listing["edges"], strict=True):
        node = edge["node"]
        assert [c[0] for c in cells] == list(COLUMNS)
        for path, value, text in cells:
            expected = at(node, path)
            assert (json.loads(value), text) == (expected, shown(COLUMNS[path], expected)), path
    count = await page.text_content("#cohorts-count")
    assert count == f"{listing['totalCount']} cohorts"
    return [r[0] for r in rows]


async def webhook(url: str, cohort_ids: list[int]) -> None:
    await send_change_event(url, SECRET, cohort_ids, "programs")


async def set_capacity(url: str, cohort_id: int, seats: int) -> None:
    stmt = update(cohorts).where(cohorts.c.id == cohort_id).values(seat_capacity=seats)
    await dataset.execute(url, stmt)


async def open_page(browser: Any, url: str, user: int) -> Page:
    token = mint_token(SETTINGS, user, "director", 3600)
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A Content-Security-Policy violation is reported on the console only.
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(f"{url}/dashboard#token={token}")
    await page.wait_for_selector("body[data-ready=true]", timeout=TIMEOUT_MS)
    await page.wait_for_selector("#connection[data-state=live]", timeout=TIMEOUT_MS)
    # The token left the address bar as soon as it was read.
    assert page.url == f"{url}/dashboard"
    return page


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@needs_chromium
async def test_the_page_equals_the_api_and_follows_a_webhook_live(db: str, manifest: str) -> None:
    # With the manifest, as in production: every read is a persisted GET from the start.
    settings = {"webhook_secret": SECRET, "persisted_manifest": manifest, "persisted_only": "true"}
    with live_gateway(db, **settings) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await open_page(browser, url, DANA)
                requested: list[str] = []
                page.on("request", lambda r: requested.append(f"{r.method} {r.url}"))
                assert await check_against_api(page, url, DANA) == [102, 101, 104]
                assert await page.text_content("#connection-text") == "Live"
                await screenshot(page, "dashboard-dana")

                # Upstream changes, its module says so: the page follows without a reload.
                await page.evaluate("window.notReloaded = true")
                await set_capacity(db, 101, 8)
                await webhook(url, [101])
                await page.wait_for_selector(
                    '#cohort-rows tr[data-cohort-id="101"] td[data-field="seats.total"]'
                    '[data-value="8"]',
                    timeout=TIMEOUT_MS,
                )
                await page.wait_for_selector('#kpis dd[data-kpi="seats.total"][data-value="18"]')
                assert await page.evaluate("window.notReloaded") is True
                assert await check_against_api(page, url, DANA) == [102, 101, 104]
                await screenshot(page, "dashboard-dana-after-webhook")

                # The cohort detail, live too.
                await page.get_by_role("button", name="Open Analytics Nov").click()
                await page.wait_for_selector("#detail:not([hidden])")
                detail = (await api(url, DANA, "CohortDetail", {"id": 101}))["cohort"]
                utilization = await page.get_attribute(
                    '#detail-kpis dd[data-detail="seats.utilization"]', "data-value"
                )
                assert json.loads(utilization or "null") == detail["seats"]["utilization"] == 0.375
                await set_capacity(db, 101, 6)
                await webhook(url, [101])
                await page.wait_for_selector(
                    '#detail-kpis dd[data-detail="seats.total"][data-value="6"]',
                    timeout=TIMEOUT_MS,
                )
                await screenshot(page, "dashboard-dana-detail")
                # Every read was a persisted GET of the dashboard's operations, by hash
                # alone; nothing came from elsewhere.
                reads = [r for r in requested if "/graphql" in r]
                assert reads and all(
                    r.startswith(f"GET {url}/graphql?operationName=") and "query=" not in r
                    for r in reads
                ), reads
                assert all(r.split()[1].startswith(f"{url}/") for r in requested), requested
                assert page.errors == []  # type: ignore[attr-defined]
            finally:
                await browser.close()


@needs_chromium
async def test_another_director_sees_only_their_cohorts(db: str) -> None:
    with live_gateway(db) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await open_page(browser, url, DREW)
                assert await check_against_api(page, url, DREW) == [103, 102]
                assert await page.text_content("#who") == "Drew Director · drew@example.test"
                await screenshot(page, "dashboard-drew")
            finally:
                await browser.close()


@needs_chromium
async def test_keyboard_navigation_labelled_controls_filters_and_pages(db: str) -> None:
    with live_gateway(db) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await open_page(browser, url, DANA)
                # Every form control has a label; every button a name.
                unlabelled = await page.evaluate(
                    """() => [...document.querySelectorAll('input, select, textarea')]
                        .filter(e => !e.labels.length).map(e => e.id)
                      .concat([...document.querySelectorAll('button')]
                        .filter(b => !(b.getAttribute('aria-label') || b.textContent.trim()))
                        .map(b => b.id))"""
                )
                assert unlabelled == []
                for label in ("Status", "Name contains", "Sort by", "Direction", "Rows per page"):
                    assert await page.get_by_label(label, exact=True).count() == 1, label

                # The first Tab reaches the skip link; it leads to the cohorts.
                await page.keyboard.press("Tab")
                assert await page.evaluate("document.activeElement.textContent") == (
                    "Skip to the cohorts"
                )
                await page.keyboard.press("Enter")
                assert await page.evaluate("document.activeElement.id") == "cohorts-title"
                await page.keyboard.press("Tab")
                assert await page.evaluate("document.activeElement.id") == "filter-status"

                # Filter and sort from the keyboard.
                await page.keyboard.press("ArrowDown")  # Any → Planned
                await page.keyboard.press("ArrowDown")  # → Running
                await page.focus("#cohort-controls button[type=submit]")
                await page.keyboard.press("Enter")
                await until(page, "document.querySelectorAll('#cohort-rows tr').length === 2")
                assert await row_ids(page) == [102, 101]
                await page.select_option("#filter-status", "")
                await page.fill("#filter-name", "jan")
                await page.keyboard.press("Enter")  # submits the form
                await until(page, "document.querySelectorAll('#cohort-rows tr').length === 1")
                assert await row_ids(page) == [104]
                await page.fill("#filter-name", "")
                await page.select_option("#order-field", "NAME")
                await page.select_option("#order-direction", "DESC")
                await page.select_option("#page-size", "2")
                await page.click("#cohort-controls button[type=submit]")
                await until(
                    page,
                    "document.querySelector('#page-info').textContent === 'Page 1'"
                    " && document.querySelectorAll('#cohort-rows tr').length === 2",
                )
                assert await row_ids(page) == [102, 101]
                await page.click("#next-page")
                await until(page, "document.querySelector('#page-info').textContent === 'Page 2'")
                assert await row_ids(page) == [104]
                assert await page.is_disabled("#next-page")
                await page.click("#prev-page")
                await until(page, "document.querySelector('#page-info').textContent === 'Page 1'")
                assert await row_ids(page) == [102, 101]

                # A cohort opens with Enter; its heading takes the focus; Escape closes it
                # and gives the focus back to the row.
                await page.focus('#cohort-rows tr[data-cohort-id="101"] button')
                await page.keyboard.press("Enter")
                await page.wait_for_selector("#detail:not([hidden])")
                await until(page, "document.activeElement.id === 'detail-title'")
                assert await page.text_content("#detail-title") == (
                    "Analytics Nov — Analytics, Data"
                )
                await page.keyboard.press("Escape")
                assert await page.is_hidden("#detail")
                assert await page.evaluate("document.activeElement.textContent") == (
                    "Analytics Nov"
                )
                assert page.errors == []  # type: ignore[attr-defined]
            finally:
                await browser.close()


async def until(page: Page, expression: str) -> None:
    """Polls a JavaScript expression until true (page.wait_for_function evaluates strings,
    which the page's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not await page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        await asyncio.sleep(0.05)


async def row_ids(page: Page) -> list[int]:
    return await page.eval_on_selector_all(  # type: ignore[no-any-return]
        "#cohort-rows tr", "rows => rows.map(r => Number(r.dataset.cohortId))"
    )


async def test_served_offline_on_in_development_a_setting_in_production(db: str) -> None:
    async with gateway_client(Settings(database_url=db)) as client:
        page = await client.http.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        )
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "https://" not in page.text and "http://" not in page.text
        for name in ("dashboard.js", "dashboard.css", "graphql-ws.min.js"):
            asset = await client.http.get(f"/dashboard/{name}")
            assert asset.status_code == 200, name
        assert (await client.http.get("/dashboard/../settings.py")).status_code == 404
    production = {
        "database_url": db,
        "env": "production",
        "jwt_secret": "a-production-secret-0123456789abcdef",
        "webhook_secret": "a-production-webhook-secret-0123456789",
    }
    async with gateway_client(Settings(**production)) as client:
        off = await client.http.get("/dashboard")
        assert off.status_code == 404
        assert off.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    async with gateway_client(Settings(**production, dashboard_page=True)) as client:
        assert (await client.http.get("/dashboard")).status_code == 200


@needs_chromium
async def test_make_runs_link_opens_the_page_signed_in_as_the_demo_director(db: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-run-") as tmp:
        run = RunProcess(db, Path(tmp))
        with running(run):
            [link] = re.findall(r"http://\S+/dashboard#token=\S+", run.log())
            token = link.split("#token=", 1)[1]
            assert TokenVerifier.from_settings(Settings()).verify(f"Bearer {token}") == Caller(
                DANA, "director"
            )
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                    await page.goto(link)
                    await page.wait_for_selector("body[data-ready=true]", timeout=TIMEOUT_MS)
                    await page.wait_for_selector("#connection[data-state=live]", timeout=TIMEOUT_MS)
                    assert page.url == f"{run.url}/dashboard"
                    assert await page.text_content("#who") == "Dana Director · dana@example.test"
                    assert await row_ids(page) == [102, 101, 104]
                finally:
                    await browser.close()
