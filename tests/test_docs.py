"""The settings reference in docs/operations.md and .env.example is generated from the code."""

from pathlib import Path

from gateway.settings_doc import render_env_example, update_operations_doc

ROOT = Path(__file__).resolve().parent.parent


def test_operations_settings_table_matches_the_code() -> None:
    doc = ROOT / "docs" / "operations.md"
    assert doc.read_text() == update_operations_doc(doc), "run `gateway settings-doc`"
    assert "| `GATEWAY_REDIS_URL` | `unset` |" in doc.read_text()


def test_env_example_matches_the_code() -> None:
    assert (ROOT / ".env.example").read_text() == render_env_example(), "run `gateway settings-doc`"
