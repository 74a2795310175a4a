"""Bank connectors for the payment pipeline, one per bank, opened on first use."""

from __future__ import annotations

from datetime import datetime
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


def check_signing_certificate(app: App, now: datetime | None = None) -> None:
    """Refuse to sign new orders when our current signing certificate is expired or not yet
    valid: the bank would refuse every order signed with it. Batches signed before keep
    their bytes and are still sent."""
    from cryptography import x509

    from connectors.certificates import Expiry, status_of
    from yinqi.security.keyring import current_signing_key

    with app.sessions() as s:
        key = current_signing_key(s)
    if key is None:
        raise KeyStoreError("no active signing key: run `yinqi init`")
    status = status_of(x509.load_pem_x509_certificate(key.certificate_pem.encode()), now)
    rotate = ("an administrator rotates it (`yinqi keys rotate`) and registers the new "
              "certificate with the bank (docs/keys.md)")
    if status.state is Expiry.EXPIRED:
        raise KeyStoreError(f"our signing certificate {key.key_id} EXPIRED on "
                            f"{status.not_after:%Y-%m-%d}: no new payment order is signed "
                            f"with it (the bank would refuse it); {rotate}")
    if status.state is Expiry.NOT_YET_VALID:
        raise KeyStoreError(f"our signing certificate {key.key_id} is not valid before "
                            f"{status.not_before:%Y-%m-%d %H:%M} UTC: check this machine's "
                            f"clock, or {rotate}")


class BankPool:
    """Connectors by bank id; close it when the run ends."""

    def __init__(self, app: App, retry: RetryPolicy | None = None) -> None:
        self._app, self._retry = app, retry
        self._open: dict[str, BankConnector] = {}
        #: Connectors that prepare orders only: their TLS channel is never opened.
        self._preparing: dict[str, BankConnector] = {}
        self._signer: Signer | None = None
        self._signing_checked = False

    def __getitem__(self, code: str) -> BankConnector:
        if code not in self._open:
            self._open[code] = self._connect(code, channel=True)
        return self._open[code]

    def for_signing(self, code: str) -> BankConnector:
        """A connector that builds and signs ``code``'s orders. Signing needs our signing key
        and the bank's entry in banks.toml, not the TLS channel: a bank whose client
        certificate expired still gets its orders signed, and they wait to be sent."""
        if not self._signing_checked:
            check_signing_certificate(self._app)
            self._signing_checked = True
        if code in self._open:
            return self._open[code]
        if code not in self._preparing:
            self._preparing[code] = self._connect(code, channel=False)
        return self._preparing[code]

    def _connect(self, code: str, *, channel: bool) -> BankConnector:
        from connectors.registry import connect
        from connectors.transport import RetryPolicy

        try:
            bank = self._app.config.banks[code]
        except KeyError:
            raise ConfigError(f"banks.toml: no bank {code!r}, but a batch is addressed to "
                              "it; restore its entry to carry the batch forward") from None
        if self._signer is None:
            self._signer = signer_of(self._app)
        return connect(code, bank, self._app.settings.home, self._signer,
                       files=self._app.files, retry=self._retry or RetryPolicy(),
                       channel=channel)

    def close(self) -> None:
        for connector in (*self._open.values(), *self._preparing.values()):
            connector.close()
        self._open.clear()
        self._preparing.clear()

    def __enter__(self) -> BankPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
