"""A demo installation: a Yinqi home whose banks are a sandbox bank process on loopback."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from config import load_settings
from yinqi.bootstrap import App
from yinqi.demo.bank import (
    SandboxProcess,
    free_port,
    product_config,
    sandbox_config,
    sandbox_process,
)

DEMO_MASTER_SECRET = "yinqi-demo-master-secret-not-for-production-0001"


@dataclass
class DemoWorld:
    app: App
    bank: SandboxProcess
    home: Path

    def control(self, method: str, path: str, **kw: object) -> object:
        """The sandbox's /_sandbox control API (ledger, payments, faults), over mTLS."""
        import ssl

        import httpx

        from yinqi.security.keystore import keystore_password

        home = self.app.settings.home
        ctx = ssl.create_default_context(cafile=str(home / "sandbox" / "ca.pem"))
        ctx.load_cert_chain(str(home / "keys/client-icbc-sandbox.pem"),
                            str(home / "keys/client-icbc-sandbox.key"),
                            password=keystore_password(self.app.master_secret))
        with httpx.Client(base_url=self.bank.url, verify=ctx, timeout=60) as c:
            r = c.request(method, f"/_sandbox/{path}", **kw)  # type: ignore[arg-type]
            r.raise_for_status()
            return r.json()


def demo_app(home: Path, port: int, *, database_url: str | None = None,
             read_timeout: float = 10.0) -> App:
    settings = load_settings(home=home, database_url=database_url or
                             f"sqlite:///{home / 'yinqi.db'}",
                             master_secret=DEMO_MASTER_SECRET,
                             config_dir=product_config(home / "config", port,
                                                       read_timeout=read_timeout))
    return App(settings)


@contextmanager
def demo_world(home: Path, *, database_url: str | None = None, settle_after: float = 1.0,
               faults: Mapping[str, object] | None = None, read_timeout: float = 10.0,
               port: int | None = None) -> Iterator[DemoWorld]:
    """Initialise ``home``, enrol with a fresh sandbox bank and serve it until the end."""
    from yinqi.cli.init_cmd import run_init
    from yinqi.cli.sandbox_cmd import enrol

    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    app = demo_app(home, port, database_url=database_url, read_timeout=read_timeout)
    try:
        run_init(app)
        config = sandbox_config(home / "sandbox-config", settle_after=settle_after,
                                faults=faults)
        enrol(app, config, home / "sandbox")
        with sandbox_process(config, home / "sandbox", port, home / "sandbox-bank.log") as bank:
            yield DemoWorld(app, bank, home)
    finally:
        app.close()
