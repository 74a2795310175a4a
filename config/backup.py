"""backup.toml: where backups go, how long they are kept, when they and the drill run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from config._problems import Problem
from config.fields import ConfigModel, Text, TimeZoneName

Kept = Annotated[int, Field(ge=1, le=400)]


class BackupSchedules(ConfigModel):
    """Cron expressions in ``timezone``; an empty string turns a schedule off."""

    incremental: str = "0 1 * * *"
    full: str = "0 2 * * 0"
    drill: str = "0 4 * * 0"


class BackupConfig(ConfigModel):
    # A folder (relative paths are under YINQI_HOME) or an fsspec URL such as
    # s3://bucket/yinqi (the URL's driver, e.g. s3fs, must be installed).
    target: Text = "backups"
    keep_daily: Kept = 7
    keep_weekly: Kept = 4
    timezone: TimeZoneName = "Asia/Shanghai"
    # Where the restore drill restores to: empty means a new SQLite file that is deleted
    # afterwards; else the URL of an EMPTY database the drill may fill and empty again.
    drill_database_url: str = ""
    schedules: BackupSchedules = BackupSchedules()


def backup_problems(config: BackupConfig) -> Iterator[Problem]:
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    for name in ("incremental", "full", "drill"):
        cron = getattr(config.schedules, name)
        if not cron:
            continue
        try:
            CronSim(cron, datetime(2026, 1, 1))
        except CronSimError as exc:
            yield Problem(("schedules", name), f"{cron!r} is not a cron expression ({exc})")
    url = config.drill_database_url
    if url and not url.split(":", 1)[0].startswith(("sqlite", "postgresql", "postgres")):
        yield Problem(("drill_database_url",), "must be a sqlite:// or postgresql:// URL")
