"""Process settings from ``YINQI_*`` environment variables: where things live, which database."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config._problems import one_line, problems_from
from config.fields import TimeZoneName

# SQLAlchemy driver names by URL scheme; plain postgres URLs get psycopg 3, the driver we ship.
_DATABASE_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "sqlite": "sqlite",
}


class Settings(BaseSettings):
    """Settings for one Yinqi process; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="YINQI_",
        extra="ignore",
        frozen=True,
        validate_default=True,
        # `YINQI_X=` left blank by a deployment template means "not set", not "empty".
        env_ignore_empty=True,
    )

    home: Path = Path("var")
    database_url: str | None = None
    config_dir: Path | None = None
    master_secret: SecretStr | None = None
    lang: Literal["en", "zh"] = "en"
    timezone: TimeZoneName = "Asia/Shanghai"
    # How long a `yinqi login` lasts (a working day by default).
    session_hours: int = Field(default=8, ge=1, le=24 * 7)

    @field_validator("lang", mode="before")
    @classmethod
    def _language_code(cls, value: object) -> object:
        # zh_CN, zh-CN, zh_CN.UTF-8, en_US ... name the same catalogues as zh and en; any
        # other value is refused below, naming the two.
        from yinqi.i18n import language_of

        return (language_of(value) or value) if isinstance(value, str) else value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        # Fixed once at start, so a later chdir cannot move the data directory.
        return home.expanduser().resolve()

    @field_validator("config_dir")
    @classmethod
    def _existing_config_dir(cls, folder: Path | None) -> Path | None:
        # A mistyped folder would otherwise fall back to the demo defaults without a word.
        if folder is None:
            return None
        folder = folder.expanduser().resolve()
        if not folder.is_dir():
            raise ValueError(f"{str(folder)!r} is not an existing folder")
        return folder

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme, separator, rest = url.partition("://")
        driver = _DATABASE_DRIVERS.get(scheme.lower()) if separator else None
        if driver is None:
            # Show only the scheme: the rest of a database URL may hold a password.
            shown = f"scheme {scheme!r}" if separator else "value (no scheme://)"
            raise ValueError(
                f"unsupported database URL {shown}; use postgresql://user@host:5432/yinqi "
                "or sqlite:///path/to/yinqi.db"
            )
        return f"{driver}://{rest}"

    @field_validator("master_secret")
    @classmethod
    def _non_blank_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and not secret.get_secret_value().strip():
            raise ValueError("must not be blank")
        return secret

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL to use: the configured one, else SQLite under ``home``."""
        return self.database_url or f"sqlite:///{self.home / 'yinqi.db'}"

    @property
    def master_secret_file(self) -> Path:
        return self.home / "secrets" / "master.key"

    @property
    def archive_dir(self) -> Path:
        return self.home / "archive"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def receipts_dir(self) -> Path:
        return self.home / "receipts"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with ``overrides`` (e.g. CLI options) taking precedence.

    Raises ConfigError with one line naming the variable (or override) and the fault.
    """
    unknown = sorted(overrides.keys() - Settings.model_fields.keys())
    if unknown:
        raise TypeError(f"load_settings() got unexpected setting(s): {', '.join(unknown)}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = problems_from(exc, Settings, redact={"master_secret"})
    first = problems[0]
    name = str(first.loc[0])  # settings are flat: every fault is at a top-level name
    where = f"setting {name}" if name in overrides else f"environment variable YINQI_{name.upper()}"
    raise one_line(f"{where}: {first.message}", len(problems) - 1, "in the settings")
