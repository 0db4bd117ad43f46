"""GraphiQL (development profile): served offline from vendored files, and driven in
headless Chromium (Debian's `chromium`, through Playwright) against the real gateway."""

import json
import shutil

import pytest
from playwright.async_api import async_playwright

from gateway.auth import mint_token
from gateway.settings import Settings
from tests.dataset import DANA
from tests.gateway_client import GatewayClient, gateway_client
from tests.harness.waiting import CEILING_S
from tests.live_gateway import live_gateway

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Named like the page's default query: GraphiQL updates the operation name it sends a
# moment after an edit, so a new name could race the click on Run.
QUERY = "query Me { me { id name summary { totalCohorts } } }"
EXPECTED = {"data": {"me": {"id": DANA, "name": "Dana Director", "summary": {"totalCohorts": 3}}}}
TIMEOUT_MS = int(CEILING_S * 1000)  # each wait ends when what it waits for appears
RESULT_TEXT_WITH = """word => {
  const value = document.querySelector(".result-window .CodeMirror").CodeMirror.getValue();
  return value.includes(word) && value;
}"""


@pytest.fixture(scope="module")
def backend() -> str:
    """The browser test needs one database, not one per backend."""
    return "sqlite"


@pytest.fixture(scope="module")
async def api(dataset_url: str):
    async with gateway_client(Settings(database_url=dataset_url)) as client:
        yield client


async def test_page_and_assets_are_served_without_a_cdn(api: GatewayClient) -> None:
    page = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "https://" not in page.text and "http://" not in page.text
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
        assert len(asset.content) > 10_000
    missing = await api.http.get("/graphql", params={"graphiql-asset": "../settings.py"})
    assert missing.status_code == 404


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")
async def test_graphiql_runs_a_query_in_chromium(dataset_url: str) -> None:
    token = mint_token(Settings(), DANA, "director", 600)
    with live_gateway(dataset_url) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
            )
            try:
                page = await browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)  # navigation and clicks too
                requested: list[str] = []
                page.on("request", lambda request: requested.append(request.url))
                await page.goto(f"{url}/graphql", wait_until="networkidle")
                query_editor = page.locator(".graphiql-query-editor .CodeMirror")
                headers_editor = page.locator(".graphiql-editor:not(.hidden) .CodeMirror").last
                await query_editor.wait_for(timeout=TIMEOUT_MS)

                await headers_editor.click()
                await page.keyboard.press("Control+A")
                # insert_text types without key events, so the editor does not auto-close braces.
                await page.keyboard.insert_text(json.dumps({"Authorization": f"Bearer {token}"}))
                await query_editor.click()
                await page.keyboard.press("Control+A")
                await page.keyboard.insert_text(QUERY)
                await page.locator(".graphiql-execute-button").click()

                # The result pane holds the answer once it mentions a field of this query.
                text = await (
                    await page.wait_for_function(
                        RESULT_TEXT_WITH, arg="totalCohorts", timeout=TIMEOUT_MS
                    )
                ).json_value()
                assert json.loads(text) == EXPECTED
                # Everything the page loaded came from the gateway itself.
                assert requested and all(u.startswith(f"{url}/") for u in requested), requested
            finally:
                await browser.close()
