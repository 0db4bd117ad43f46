"""Secrets from files: `GATEWAY_<NAME>_FILE=/path` reads GATEWAY_<NAME> from that file.

Container orchestrators mount secrets as files (Kubernetes Secret volumes, Docker and
Compose secrets, systemd credentials), each at a path the operator chooses. pydantic-settings'
own `secrets_dir` reads one directory whose file names must be the variable names; the
`<NAME>_FILE` convention (the one official database and server images follow) names each
file where it is, so this small source reads them. One trailing newline is dropped (what
`echo` and most editors leave); setting both GATEWAY_<NAME> and GATEWAY_<NAME>_FILE is
refused, as is a file that cannot be read.
"""

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from gateway.settings_checks import PREFIX
from loaders import MODULES

# The upstream modules' database URLs, one setting per module.
UPSTREAM_URL_SETTINGS = tuple(f"upstream_{module}_url" for module in MODULES)
# The settings that may hold a secret (a password in a URL too).
FILE_SETTINGS = (
    "jwt_secret",
    "webhook_secret",
    "internal_token",
    "database_url",
    "redis_url",
    "queue_redis_url",
    *UPSTREAM_URL_SETTINGS,
)


class SettingsFileError(ValueError):
    """A `_FILE` setting that cannot be used; its message is one line naming it."""


def read_secret_file(variable: str, path: str) -> str:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise SettingsFileError(f"{variable}_FILE: cannot read {path}: {reason}") from None
    return text.removesuffix("\n").removesuffix("\r")


class FileSecretsSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], environ: dict[str, str] | None = None):
        super().__init__(settings_cls)
        self.environ = dict(os.environ if environ is None else environ)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = f"{PREFIX}{field_name.upper()}"
        path = self.environ.get(f"{variable}_FILE")
        if path is None:
            return None, field_name, False
        if variable in self.environ:
            raise SettingsFileError(f"{variable} and {variable}_FILE are both set: keep one")
        return read_secret_file(variable, path), field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for name in FILE_SETTINGS:
            field = self.settings_cls.model_fields[name]
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found
