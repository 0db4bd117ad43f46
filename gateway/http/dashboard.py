"""GET /dashboard: a reference dashboard page for directors (gateway/http/static/dashboard).

Plain HTML, CSS and JavaScript with one vendored library (graphql-ws, licence beside it):
no build step, no CDN. Every read is one of the dashboard's persisted GET operations, as
the mobile app sends them (registered once through APQ when the gateway has no manifest),
and the page stays live through the DashboardUpdates and CohortUpdates subscriptions.
The operations' hashes and texts are written into the page (a JSON script element); the
token comes from the URL's fragment (`#token=…`, which no server or Referer sees) or a
sign-in form, and lives in the tab's sessionStorage. On by default in development;
GATEWAY_DASHBOARD_PAGE turns it on (or off) anywhere.
"""

import hashlib
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from gateway.documents.dashboard import dashboard_operations
from gateway.http.errors import error_body
from gateway.http.pages import NOSNIFF, page_headers
from gateway.http.responses import json_response
from gateway.settings import Settings
from resolvers.errors import NOT_FOUND

STATIC_DIR = Path(__file__).parent / "static" / "dashboard"
ASSETS = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "graphql-ws.min.js": "text/javascript",
}
ASSET_MAX_AGE_S = 86_400


class DashboardPage:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.dashboard_page_enabled
        operations = {
            name: {"sha256": op.sha256, "body": op.body}
            for name, op in dashboard_operations().items()
        }
        # In a <script> element: "</" must not close it.
        config = orjson.dumps({"operations": operations}).replace(b"</", b"<\\/").decode()
        html = (STATIC_DIR / "index.html").read_text().replace("{{config}}", config)
        for name in ASSETS:  # cache-busting versions of the files, by content
            digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
            html = html.replace(f"{{{{v:{name}}}}}", digest)
        self.html = html
        # Everything from this origin only; WebSocket included ('self' matches ws: and wss:).
        self.headers = {**page_headers(html), "Cache-Control": "no-store"}

    def _disabled(self) -> Response:
        return json_response(error_body("The dashboard page is disabled.", NOT_FOUND), 404)

    async def page(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled()
        return HTMLResponse(self.html, headers=self.headers)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not self.enabled:
            return self._disabled()
        if name not in ASSETS:
            return json_response(error_body("No such file.", NOT_FOUND), 404)
        return FileResponse(
            STATIC_DIR / name,
            media_type=ASSETS[name],
            headers={
                "Cache-Control": f"public, max-age={ASSET_MAX_AGE_S}",
                **NOSNIFF,
            },
        )
