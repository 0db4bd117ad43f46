"""ASGI entry point for uvicorn: `gateway.main:app` (imported once per worker process)."""

from gateway.app import create_app
from gateway.logs import configure
from gateway.settings import Settings

settings = Settings()
configure(settings.effective_log_format, settings.log_level)
app = create_app(settings)
