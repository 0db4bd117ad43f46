"""GraphiQL (development profile): served offline from vendored files, and opened in
headless Chromium (Debian's `chromium`, through Playwright) from the link `gateway run`
prints: signed in, the Dashboard query loaded, docs and autocomplete ready, the query run,
no error shown at any step. Screenshots of each step land in tests/artifacts/graphiql/."""

import base64
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright

from gateway.http.graphiql import DASHBOARD_QUERY
from gateway.settings import Settings
from tests.harness.processes import (
    running,
)
from tests.harness.waiting import CEILING_S
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, RunProcess
from tests.support.gateway_client import GatewayClient, gateway_client

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "graphiql"

TIMEOUT_MS = int(CEILING_S * 1000)  # each wait ends when what it waits for appears
EDITOR_TEXT = """selector => document.querySelector(selector).CodeMirror.getValue()"""
RESULT_TEXT_WITH = """word => {
  const value = document.querySelector(".result-window .CodeMirror").CodeMirror.getValue();
  return value.includes(word) && value;
}"""
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
RESULT_PANE = ".result-window .CodeMirror"


@pytest.fixture(scope="module")
def backend() -> str:
    """The browser test needs one database, not one per backend."""
    return "sqlite"


@pytest.fixture(scope="module")
async def api(dataset_url: str):
    async with gateway_client(Settings(database_url=dataset_url)) as client:
        yield client


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_page_and_assets_are_served_without_a_cdn(api: GatewayClient) -> None:
    page = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "https://" not in page.text and "http://" not in page.text
    # Only what the page loads: its files, its one inline script and style by their hashes.
    inline_script = page.text.split("<script>", 1)[1].split("</script>", 1)[0]
    inline_style = page.text.split("<style>", 1)[1].split("</style>", 1)[0]
    assert page.headers["content-security-policy"] == (
        f"default-src 'none'; script-src 'self' {csp_hash(inline_script)}; "
        f"style-src 'self' {csp_hash(inline_style)}; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    for name, media_type in [
        ("graphiql.min.js", "text/javascript"),
        ("graphiql.min.css", "text/css"),
        ("react.production.min.js", "text/javascript"),
        ("react-dom.production.min.js", "text/javascript"),
    ]:
        assert f"?graphiql-asset={name}&amp;v=" in page.text
        asset = await api.http.get("/graphql", params={"graphiql-asset": name})
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].split(";")[0] == media_type
        assert asset.headers["cache-control"] == "public, max-age=86400"
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert len(asset.content) > 10_000
    missing = await api.http.get("/graphql", params={"graphiql-asset": "../settings.py"})
    assert missing.status_code == 404


def test_the_page_opens_with_the_readme_dashboard_query() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "```graphql\n" + DASHBOARD_QUERY.read_text() + "```" in readme


async def test_root_redirects_to_graphiql_in_development(
    api: GatewayClient, dataset_url: str
) -> None:
    response = await api.http.get("/")
    assert (response.status_code, response.headers["location"]) == (307, "/graphql")
    production = Settings(
        database_url=dataset_url,
        env="production",
        jwt_secret="a-production-secret-0123456789abcdef",
        webhook_secret="a-production-webhook-secret-0123456",
        cors_origins=["https://dashboard.example.test"],
    )
    async with gateway_client(production) as api_in_production:
        assert (await api_in_production.http.get("/")).status_code == 404


class Watch:
    """Everything the page did that would show a person an error."""

    def __init__(self, page: Page) -> None:
        self.requests: list[str] = []
        self.fetches: list[str] = []  # what the page's script asked for (GraphQL requests)
        self.failures: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on(
            "request",
            lambda r: r.resource_type in ("fetch", "xhr") and self.fetches.append(r.url),
        )
        page.on(
            "response", lambda r: r.status >= 400 and self.failures.append(f"{r.status} {r.url}")
        )
        page.on("requestfailed", lambda r: self.failures.append(f"failed {r.url}"))
        page.on("pageerror", lambda e: self.failures.append(f"page error {e}"))
        page.on(
            "console",
            lambda m: m.type in ("error", "warning") and self.failures.append(f"{m.type} {m.text}"),
        )


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}.png")


async def result_text(page: Page) -> str:
    return await page.evaluate(EDITOR_TEXT, RESULT_PANE)


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")
async def test_the_run_link_opens_graphiql_signed_in_and_runs_the_dashboard(
    dataset_url: str,
) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-run-") as tmp:
        run = RunProcess(dataset_url, Path(tmp))
        with running(run):
            director_link, admin_link = run.links()
            token = director_link.split("#token=", 1)[1]
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                try:
                    page = await (
                        await browser.new_context(viewport={"width": 1400, "height": 900})
                    ).new_page()
                    watch = Watch(page)
                    await page.goto(director_link, wait_until="networkidle")
                    await page.locator(QUERY_EDITOR).wait_for(timeout=TIMEOUT_MS)
                    # The token left the address bar; the Dashboard query and the header are in.
                    assert page.url == f"{run.url}/graphql"
                    assert (
                        await page.evaluate(EDITOR_TEXT, QUERY_EDITOR)
                        == DASHBOARD_QUERY.read_text()
                    )
                    await shot(page, "1-opened")

                    # The schema loaded on opening: the docs show the root type's fields.
                    await page.locator(
                        ".graphiql-sidebar button[aria-label='Show Documentation Explorer']"
                    ).click()
                    docs = page.locator(".graphiql-doc-explorer")
                    await docs.get_by_text("Query", exact=True).first.click(timeout=TIMEOUT_MS)
                    await docs.get_by_text("directors", exact=True).first.wait_for(
                        timeout=TIMEOUT_MS
                    )
                    await shot(page, "2-docs")
                    assert await result_text(page) == ""  # nothing shown, no error

                    await page.locator(".graphiql-execute-button").click()
                    text = await (
                        await page.wait_for_function(
                            RESULT_TEXT_WITH, arg="totalCount", timeout=TIMEOUT_MS
                        )
                    ).json_value()
                    await shot(page, "3-result")
                    result = json.loads(text)
                    assert "errors" not in result
                    me = result["data"]["me"]
                    assert me["name"] == "Dana Director"
                    assert (me["summary"]["activeCohorts"], me["cohorts"]["totalCount"]) == (2, 3)
                    # Seat utilization ascending: 0.0, 0.3, 0.75.
                    assert [
                        (e["node"]["id"], e["node"]["seats"]["utilization"])
                        for e in me["cohorts"]["edges"]
                    ] == [(104, 0.0), (102, 0.3), (101, 0.75)]

                    # Autocomplete from the same schema: typing in the editor offers fields.
                    await page.locator(QUERY_EDITOR).click()
                    await page.keyboard.press("Control+End")
                    await page.keyboard.type("\n{ me { na")
                    hints = page.locator(".CodeMirror-hints .CodeMirror-hint")
                    await hints.first.wait_for(timeout=TIMEOUT_MS)
                    assert "name" in await hints.all_inner_texts()
                    await shot(page, "4-autocomplete")

                    assert watch.failures == []
                    # The token went to the gateway in a header only: no URL, no log line.
                    assert watch.requests and all(
                        u.startswith(f"{run.url}/") for u in watch.requests
                    )
                    assert not [u for u in watch.requests if token in u]
                    # Introspection and the run: both to /graphql, both answered.
                    assert watch.fetches and set(watch.fetches) == {f"{run.url}/graphql"}
                finally:
                    await browser.close()
        assert token not in run.log().split(admin_link, 1)[1]


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")
async def test_without_a_token_graphiql_says_how_to_sign_in(dataset_url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-run-") as tmp:
        run = RunProcess(dataset_url, Path(tmp))
        with running(run):
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page()
                    watch = Watch(page)
                    await page.goto(f"{run.url}/", wait_until="networkidle")  # redirected
                    await page.locator(QUERY_EDITOR).wait_for(timeout=TIMEOUT_MS)
                    assert page.url == f"{run.url}/graphql"
                    query = await page.evaluate(EDITOR_TEXT, QUERY_EDITOR)
                    assert query.startswith("# Not signed in: open the link `make run` prints,\n")
                    assert query.endswith(DASHBOARD_QUERY.read_text())
                    await shot(page, "0-not-signed-in")
                    assert await result_text(page) == ""
                    assert watch.failures == []
                    # No introspection without a token (it could only answer 401).
                    assert watch.fetches == []
                finally:
                    await browser.close()
