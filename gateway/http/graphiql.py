"""GraphiQL, vendored (gateway/http/static/graphiql): the page and its files, served from
/graphql itself (`?graphiql-asset=NAME`), so it needs no route of its own and no CDN.

The page opens with the README's Dashboard query (dashboard.graphql) and signs in from the
URL fragment (`/graphql#token=<JWT>`, the link `gateway run` prints), which no request
carries. The page and the files are held in memory, gzip-compressed once at start (about
4 MB, 1 MB compressed, in development only: the files are read only when GraphiQL is on)."""

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from gateway.http.compression import Coding
from gateway.http.errors import error_body
from gateway.http.pages import NOSNIFF, page_headers
from gateway.http.responses import Precompressed, json_response
from resolvers.errors import NOT_FOUND

STATIC_DIR = Path(__file__).parent / "static" / "graphiql"
ASSETS = {
    "graphiql.min.js": "text/javascript",
    "graphiql.min.css": "text/css",
    "react.production.min.js": "text/javascript",
    "react-dom.production.min.js": "text/javascript",
}
ASSET_MAX_AGE_S = 86_400
DASHBOARD_QUERY = STATIC_DIR / "dashboard.graphql"


class GraphiQL:
    def __init__(self, enabled: bool, gzip_min_bytes: int | None = None) -> None:
        self.enabled = enabled
        self.files: dict[str, Precompressed] = {}
        if not enabled:
            return
        # `<` escaped: the query is embedded in a <script>.
        query = json.dumps(DASHBOARD_QUERY.read_text()).replace("<", "\\u003c")
        html = (STATIC_DIR / "index.html").read_text().replace("__DASHBOARD_QUERY__", query)
        self.headers = page_headers(html)
        self.html = Precompressed.of(html.encode(), "text/html", gzip_min_bytes)
        self.files = {
            name: Precompressed.of((STATIC_DIR / name).read_bytes(), media_type, gzip_min_bytes)
            for name, media_type in ASSETS.items()
        }

    def page(self, headers: dict[str, str], coding: Coding) -> Response:
        if self.enabled:
            return self.html.response(coding, {**headers, **self.headers})
        body = error_body("GraphiQL is disabled.", NOT_FOUND, requestId=headers["X-Request-Id"])
        return json_response(body, 404, headers)

    def asset(
        self, name: str, headers: dict[str, str], coding: Coding, request: Request
    ) -> Response:
        file = self.files.get(name)
        if file is None:
            body = error_body("No such asset.", NOT_FOUND, requestId=headers["X-Request-Id"])
            return json_response(body, 404, headers)
        return file.response(
            coding,
            {**headers, **NOSNIFF, "Cache-Control": f"public, max-age={ASSET_MAX_AGE_S}"},
            request.headers.get("if-none-match"),
        )
