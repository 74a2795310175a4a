"""Addresses of the local Prefect server and links into its UI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote, urljoin

#: Where the Prefect UI shows one flow run, as Prefect's own ``url_for("flow-run", id)``
#: writes it (prefect.utilities.urls). A Prefect 3 server sends only its root page on to the
#: V2 UI (``/v2``); a deep link like this one opens in the UI it names. Not imported from
#: Prefect: that import costs a second in commands that answer at once;
#: tests/unit/test_ops_plan.py holds the two equal.
FLOW_RUN_PAGE = "runs/flow-run/{obj_id}"


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def ui_url_of(api: str) -> str:
    """The UI of a self-hosted Prefect server: the API's address without ``/api``."""
    base = api.rstrip("/")
    return base[: -len("/api")] if base.endswith("/api") else base


def ui_base(*, ui_url: str | None = None, api_url: str | None = None,
            env: Mapping[str, str] | None = None) -> str | None:
    """The Prefect UI's address, or None when no server is known.

    ``ui_url``, else ``PREFECT_UI_URL``, else the API's (``api_url``, else
    ``PREFECT_API_URL``) without ``/api``. Prefect Cloud's UI lives elsewhere than its API:
    set PREFECT_UI_URL there.
    """
    env = os.environ if env is None else env
    base = ui_url or env.get("PREFECT_UI_URL", "").strip()
    if not base:
        api = api_url or env.get("PREFECT_API_URL", "").strip()
        base = ui_url_of(api) if api else ""
    return base or None


def run_url(flow_run_id: object, *, ui_url: str | None = None, api_url: str | None = None,
            env: Mapping[str, str] | None = None) -> str | None:
    """The page of one flow run in the Prefect UI (the UI as :func:`ui_base` finds it), or
    None when no server is known."""
    base = ui_base(ui_url=ui_url, api_url=api_url, env=env)
    if base is None:
        return None
    page = FLOW_RUN_PAGE.format(obj_id=quote(str(flow_run_id), safe=""))
    return urljoin(base if base.endswith("/") else base + "/", page)


def configured_run_url(flow_run_id: object) -> str | None:
    """:func:`run_url` for a process that runs flows: its Prefect settings (environment or
    profile) name the server and its UI. None while flows run on a temporary server, which
    is gone when they end."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    api = PREFECT_API_URL.value()
    if not api:
        return None
    return run_url(flow_run_id, ui_url=PREFECT_UI_URL.value(), api_url=api)
