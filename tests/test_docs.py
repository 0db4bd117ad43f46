"""Generated and checked references: the settings (docs/operations.md, .env.example) and
the error codes (README.md), each equal to what the code defines."""

from pathlib import Path

from gateway.settings_doc import render_env_example, update_operations_doc

ROOT = Path(__file__).resolve().parent.parent


def test_operations_settings_table_matches_the_code() -> None:
    doc = ROOT / "docs" / "operations.md"
    assert doc.read_text() == update_operations_doc(doc), "run `gateway settings-doc`"
    assert "| `GATEWAY_REDIS_URL` | `unset` |" in doc.read_text()


def test_env_example_matches_the_code() -> None:
    assert (ROOT / ".env.example").read_text() == render_env_example(), "run `gateway settings-doc`"


def test_readme_lists_every_error_code_of_the_catalog() -> None:
    from resolvers.errors import CATALOG

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {row.split("`")[1]: row.split(" | ", 1)[1].rstrip(" |") for row in rows}
    assert documented == CATALOG
