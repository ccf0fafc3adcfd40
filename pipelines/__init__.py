"""Prefect orchestration of pdmlens: the main flow, its task runner, and its schedule.

Importing this package sets Prefect defaults that suit a small machine (when the user has
not set them): a generous start-up timeout for the temporary local server Prefect starts
when no server is configured, and no analytics.
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
