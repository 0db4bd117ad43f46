"""GraphiQL, vendored (gateway/http/static/graphiql): the page and its files, served from
/graphql itself (`?graphiql-asset=NAME`), so it needs no route of its own and no CDN.

The page opens with the README's Dashboard query (dashboard.graphql) and signs in from the
URL fragment (`/graphql#token=<JWT>`, the link `gateway run` prints), which no request
carries."""

import json
from pathlib import Path

from starlette.responses import FileResponse, HTMLResponse, Response

from gateway.http.errors import error_body
from gateway.http.pages import NOSNIFF, page_headers
from gateway.http.responses import json_response
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
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        # `<` escaped: the query is embedded in a <script>.
        query = json.dumps(DASHBOARD_QUERY.read_text()).replace("<", "\\u003c")
        self.html = (STATIC_DIR / "index.html").read_text().replace("__DASHBOARD_QUERY__", query)
        self.headers = page_headers(self.html)

    def page(self, headers: dict[str, str]) -> Response:
        if self.enabled:
            return HTMLResponse(self.html, headers={**headers, **self.headers})
        body = error_body("GraphiQL is disabled.", NOT_FOUND, requestId=headers["X-Request-Id"])
        return json_response(body, 404, headers)

    def asset(self, name: str, headers: dict[str, str]) -> Response:
        if not self.enabled or name not in ASSETS:
            body = error_body("No such asset.", NOT_FOUND, requestId=headers["X-Request-Id"])
            return json_response(body, 404, headers)
        return FileResponse(
            STATIC_DIR / name,
            media_type=ASSETS[name],
            headers={**headers, **NOSNIFF, "Cache-Control": f"public, max-age={ASSET_MAX_AGE_S}"},
        )
