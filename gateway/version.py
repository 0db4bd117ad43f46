"""The gateway's version: the installed distribution's, as `gateway --version`, the
`gateway_build_info` metric, the start-up line and /readyz's body report it."""

import platform
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "director-dashboard-gateway"

try:
    VERSION = version(DISTRIBUTION)
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0+unknown"

PYTHON = platform.python_version()
