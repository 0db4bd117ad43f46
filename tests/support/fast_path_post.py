"""What the tests share from tests/http/test_fast_path_post.py."""


def apq(op) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": op.sha256}}


def bodies(op, variables: dict | None = None) -> dict[str, dict]:
    """Every way a client POSTs a known document."""
    base = {"operationName": op.name, "variables": variables}
    return {
        "apq hash": {**base, "extensions": apq(op)},
        "apq hash and query": {**base, "query": op.body, "extensions": apq(op)},
        "documentId": {**base, "documentId": f"sha256:{op.sha256}"},
        "bare documentId": {**base, "documentId": op.sha256},
        "query text": {**base, "query": op.body},
    }
