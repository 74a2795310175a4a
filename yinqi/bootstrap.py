"""Wiring: settings, config, database and keys, built once per process on first use.

Nothing here runs at import time; the CLI, the flows and the tests each make an ``App``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from config import Settings, YinqiConfig, load_config, load_settings
from yinqi.security.fields import FieldCipher, FieldCrypto
from yinqi.security.files import FileCipher, file_cipher
from yinqi.security.master import derive_key, load_master_secret
from yinqi.store.audit_log import AuditLog
from yinqi.store.engine import make_engine, session_factory
from yinqi.store.field_keys import current_field_key, current_file_key

if TYPE_CHECKING:
    from yinqi.security.rbac import Actor


class App:
    def __init__(self, settings: Settings | None = None, config: YinqiConfig | None = None):
        self.settings = settings or load_settings()
        # Who runs this process's commands: set by the CLI's access check (yinqi.cli.access);
        # None in flows, the demo and tests that build an App themselves.
        self.actor: Actor | None = None
        if config is not None:
            self.__dict__["config"] = config

    @cached_property
    def config(self) -> YinqiConfig:
        return load_config(self.settings)

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.settings.resolved_database_url, fields=self.fields)
        self.fields.current = current_field_key(engine)
        return engine

    @cached_property
    def fields(self) -> FieldCrypto:
        """The keys of the database's encrypted columns (account numbers, names, vouchers)."""
        return FieldCrypto(lambda: self.master_secret)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def master_secret(self) -> bytes:
        return load_master_secret(self.settings)

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(derive_key(self.master_secret, "audit/chain"))

    @cached_property
    def files(self) -> FileCipher:
        """Seals archived bank messages and receipts (see yinqi.security.files)."""
        return file_cipher(self.master_secret, current_file_key(self.engine))

    @cached_property
    def field_cipher(self) -> FieldCipher:
        self.engine  # noqa: B018 - the database says which field key is current
        return self.fields.cipher()

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
