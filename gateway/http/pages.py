"""Security headers of the gateway's HTML pages (GraphiQL, the dashboard page) and of the
files they load.

A page's Content-Security-Policy allows what the page loads and nothing else: its own
origin's files, its inline scripts and styles by their sha256 only (computed once, from the
very text served), `data:` images and fonts, connections to its own origin (fetch and
WebSocket). No other site may frame it (`frame-ancestors 'none'`, and X-Frame-Options for
older browsers); no file is read as another type than the one it is served as (nosniff);
no address leaves in a Referer.
"""

import base64
import hashlib
import re

NOSNIFF = {"X-Content-Type-Options": "nosniff"}
_INLINE = re.compile(r"<(script|style)\b([^>]*)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
_DATA_TYPE = re.compile(r"\btype=\"(?!text/javascript|module)[^\"]*\"")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_headers(html: str) -> dict[str, str]:
    """The security headers of the page `html`, exactly as served."""
    scripts, styles = ["'self'"], ["'self'"]
    for kind, attributes, text in _INLINE.findall(html):
        if kind.lower() == "style":
            styles.append(_sha256(text))
        elif "src=" not in attributes and not _DATA_TYPE.search(attributes):
            scripts.append(_sha256(text))  # a data block (JSON) is never run: no hash
    policy = (
        f"default-src 'none'; script-src {' '.join(scripts)}; style-src {' '.join(styles)}; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        **NOSNIFF,
    }
