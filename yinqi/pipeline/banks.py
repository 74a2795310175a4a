"""Bank connectors for the payment pipeline, one per bank, opened on first use."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from yinqi.errors import ConfigError, KeyStoreError

if TYPE_CHECKING:
    from connectors.base import BankConnector, Signer
    from connectors.transport import RetryPolicy
    from yinqi.bootstrap import App


def signer_of(app: App) -> Signer:
    """Our current signing key and certificate, decrypted with the master secret, and the
    keystore password that unlocks our TLS client keys.

    After a rotation this is the new key: batches signed from now on carry its signature,
    while batches signed before keep the bytes (and signature) they were signed with.
    """
    from connectors.base import Signer
    from yinqi.security.keyring import current_signing_key
    from yinqi.security.keystore import keystore_password, load_private_key

    with app.sessions() as s:
        key = current_signing_key(s)
    if key is None:
        raise KeyStoreError("no active signing key: run `yinqi init`")
    return Signer(load_private_key(Path(key.path), app.master_secret),
                  key.certificate_pem.encode(),
                  tls_key_password=keystore_password(app.master_secret))


class BankPool:
    """Connectors by bank id; close it when the run ends."""

    def __init__(self, app: App, retry: RetryPolicy | None = None) -> None:
        self._app, self._retry = app, retry
        self._open: dict[str, BankConnector] = {}
        self._signer: Signer | None = None

    def __getitem__(self, code: str) -> BankConnector:
        if code not in self._open:
            from connectors.registry import connect
            from connectors.transport import RetryPolicy

            try:
                bank = self._app.config.banks[code]
            except KeyError:
                raise ConfigError(f"banks.toml: no bank {code!r}, but a batch is addressed to "
                                  "it; restore its entry to carry the batch forward") from None
            if self._signer is None:
                self._signer = signer_of(self._app)
            self._open[code] = connect(code, bank, self._app.settings.home, self._signer,
                                       files=self._app.files,
                                       retry=self._retry or RetryPolicy())
        return self._open[code]

    def close(self) -> None:
        for connector in self._open.values():
            connector.close()
        self._open.clear()

    def __enter__(self) -> BankPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
