"""The settings reference, rendered from the Settings class so docs cannot drift.

`gateway settings-doc` rewrites docs/operations.md's table and .env.example; a test
fails when either differs from what the code would write."""

import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from gateway.settings import Settings

TABLE_BEGIN = "<!-- settings:begin -->"
TABLE_END = "<!-- settings:end -->"


def _default(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(a development value: set it)"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value)) or "empty"
    return str(value)


def rows() -> list[tuple[str, str, str]]:
    out = []
    # The gateway's own settings first, then those of the mixins it inherits (the figures').
    own = [name for name in Settings.model_fields if name in Settings.__annotations__]
    names = own + [name for name in Settings.model_fields if name not in own]
    for name in names:
        field = Settings.model_fields[name]
        default = field.default if field.default_factory is None else field.default_factory()  # type: ignore[call-arg]
        out.append((f"GATEWAY_{name.upper()}", _default(default), field.description or ""))
    return out


def render_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{var}` | `{default}` | {meaning} |" for var, default, meaning in rows()]
    return "\n".join(lines)


def render_env_example() -> str:
    lines = [
        "# Every setting of the gateway, with its default (generated: gateway settings-doc).",
        "# Uncomment to change; unset means the default.",
        "",
    ]
    for var, default, meaning in rows():
        lines.append(f"# {meaning}")
        shown = "" if default in ("unset", "empty") or default.startswith("(") else default
        lines.append(f"# {var}={shown}")
        lines.append("")
    return "\n".join(lines)


def update_operations_doc(path: Path) -> str:
    text = path.read_text()
    pattern = re.compile(re.escape(TABLE_BEGIN) + ".*?" + re.escape(TABLE_END), re.DOTALL)
    return pattern.sub(f"{TABLE_BEGIN}\n{render_table()}\n{TABLE_END}", text)
