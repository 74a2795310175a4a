"""Addresses of the local Prefect server and links into its UI."""

from __future__ import annotations

import os
from collections.abc import Mapping


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def ui_url_of(api: str) -> str:
    """The UI of a self-hosted Prefect server: the API's address without ``/api``."""
    base = api.rstrip("/")
    return base[: -len("/api")] if base.endswith("/api") else base


def run_url(flow_run_id: object, *, ui_url: str | None = None, api_url: str | None = None,
            env: Mapping[str, str] | None = None) -> str | None:
    """The page of one flow run in the Prefect UI, or None when no server is known.

    The UI's address is ``ui_url``, else ``PREFECT_UI_URL``, else the API's (``api_url``,
    else ``PREFECT_API_URL``) without ``/api``. Prefect Cloud's UI lives elsewhere than its
    API: set PREFECT_UI_URL there.
    """
    env = os.environ if env is None else env
    base = ui_url or env.get("PREFECT_UI_URL", "").strip()
    if not base:
        api = api_url or env.get("PREFECT_API_URL", "").strip()
        base = ui_url_of(api) if api else ""
    if not base:
        return None
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}"
