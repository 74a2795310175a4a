"""``yinqi sandbox-bank ...``: run the sandbox bank and connect this Yinqi to it."""

from __future__ import annotations

import shutil
from collections.abc import Container
from pathlib import Path
from urllib.parse import urlsplit

import typer

from yinqi.bootstrap import App
from yinqi.cli.output import console
from yinqi.i18n import _

app = typer.Typer(help="The sandbox bank: a real mTLS bank server for demos and tests.",
                  no_args_is_help=True)

CONFIG_HELP = "Sandbox config (TOML); default: the shipped two-bank sandbox."
STATE_HELP = "Where the bank keeps its database, CA and keys; default: $YINQI_HOME/sandbox."


def _state_dir(ctx: typer.Context, state_dir: Path | None) -> Path:
    yinqi: App = ctx.obj
    return state_dir or yinqi.settings.home / "sandbox"


@app.command("serve")
def serve(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    port: int = typer.Option(8443, "--port", help="TCP port on the host."),
    host: str = typer.Option("127.0.0.1", "--host", help="Listen address (loopback by default)."),
    state_dir: Path = typer.Option(None, "--state-dir", help=STATE_HELP),
) -> None:
    """Serve the sandbox bank(s) over HTTPS with client certificates required."""
    from connectors.sandbox.runner import serve as run

    state = _state_dir(ctx, state_dir)
    console.print(_("sandbox bank on {url} (state in {state}); Ctrl-C stops it").format(
        url=f"https://{host}:{port}", state=state))
    run(config, host=host, port=port, state_dir=state)


@app.command("connect")
def connect(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    state_dir: Path = typer.Option(None, "--state-dir", help=STATE_HELP),
) -> None:
    """Enrol this Yinqi with the sandbox banks: channel certificates and signer registration.

    What a bank does once per customer: it issues the company's TLS client certificate and
    registers the company's signing certificate. Safe to rerun.
    """
    for line in enrol(ctx.obj, config, _state_dir(ctx, state_dir)):
        console.print(f"  {line}")


def enrol(yinqi: App, config: Path | None, state: Path) -> list[str]:
    """Issue the channel certificates and register our signing certificates: what
    ``yinqi sandbox-bank connect`` does. Safe to rerun."""
    from connectors.sandbox.pki import ensure_ca
    from connectors.sandbox.runner import open_sandbox

    running = open_sandbox(config, state)
    running.sandbox.engine.dispose()
    ensure_ca(state)
    keys = _signing_certificates(yinqi)
    if not keys:
        raise typer.BadParameter("no signing key yet: run `yinqi init` first")
    home, done = yinqi.settings.home, []
    for code, bank in sorted(yinqi.config.banks.items()):
        sandbox_code = _sandbox_code(str(bank.endpoint), running.sandbox.banks)
        if sandbox_code is None:
            done.append(_("{bank}: not a sandbox bank here, skipped").format(bank=code))
            continue
        done += _channel(yinqi, state, code)
        done += _register(state, code, sandbox_code, keys)
        # The bank's CA and signing certificate, where banks.toml expects them.
        for source, rel in ((state / "ca.pem", bank.ca_cert),
                            (state / "bank-signing.pem", bank.signing_cert)):
            target = bank.resolve_path(home, rel)
            if source.resolve() != target.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    return done


def register_signing_certificates(yinqi: App, state: Path, only: str | None = None
                                  ) -> tuple[list[str], list[str]]:
    """Hand every signing certificate (current and retired) to the sandbox banks in ``state``.

    Returns (what was registered, the banks that are not sandbox banks here). A running
    sandbox reads its signer folders again when they change: no restart is needed.
    """
    keys, known = _signing_certificates(yinqi), _sandbox_banks(state)
    done, elsewhere = [], []
    for code, bank in sorted(yinqi.config.banks.items()):
        if only is not None and code != only:
            continue
        sandbox_code = _sandbox_code(str(bank.endpoint), known)
        if sandbox_code is None:
            elsewhere.append(code)
        else:
            done += _register(state, code, sandbox_code, keys)
    return done, elsewhere


def is_sandbox_bank(yinqi: App, code: str, state: Path) -> bool:
    """Whether bank ``code`` is served by the sandbox whose state folder is ``state``."""
    from yinqi.security import channels

    bank = channels.bank_config(yinqi, code)
    return _sandbox_code(str(bank.endpoint), _sandbox_banks(state)) is not None


def reissue_channel(yinqi: App, state: Path, code: str, *, actor: str) -> list[str]:
    """A new channel key for a sandbox bank: our CSR, the sandbox CA's certificate, installed."""
    from connectors.sandbox.pki import certify_csr
    from yinqi.security import channels

    if not is_sandbox_bank(yinqi, code, state):
        raise typer.BadParameter(f"{code} is not a sandbox bank in {state}")
    cert_path = channels.paths(yinqi, code)[0]
    csr = channels.start_rotation(yinqi, code)[1]
    issued = cert_path.with_name(f".{cert_path.stem}.issued")
    try:
        fp = certify_csr(state, csr, issued)
        changes = channels.install(yinqi, code, cert=issued, actor=actor,
                                   action="key.rotated")[1]
    finally:
        issued.unlink(missing_ok=True)
    return [_("{bank}: new channel certificate {fingerprint}... issued by the sandbox "
              "CA").format(bank=code, fingerprint=fp[:16])] + \
        [_("{bank}: wrote {path}").format(bank=code, path=c) for c in changes]


def _sandbox_banks(state: Path) -> set[str]:
    folders = state / "signers"
    return {p.name for p in folders.iterdir() if p.is_dir()} if folders.is_dir() else set()


def _sandbox_code(endpoint: str, known: Container[str]) -> str | None:
    parts = urlsplit(endpoint)
    code = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if parts.hostname not in ("127.0.0.1", "localhost") or code not in known:
        return None
    return code


def _signing_certificates(yinqi: App) -> list[tuple[str, bytes]]:
    from sqlalchemy import select

    from yinqi.store.models import Key

    with yinqi.sessions() as s:
        rows = s.execute(select(Key.key_id, Key.certificate_pem).where(Key.purpose == "signing")
                         .order_by(Key.created_at, Key.id)).all()
    return [(key_id, pem.encode()) for key_id, pem in rows]


def _channel(yinqi: App, state: Path, code: str) -> list[str]:
    """Our channel key and certificate: made if missing, the key encrypted if it was not."""
    from connectors.sandbox.pki import certify_csr
    from yinqi.security import channels
    from yinqi.security.keystore import create_tls_client_key, encrypt_key_file

    cert, key = channels.paths(yinqi, code)
    if cert.exists() and key.exists():
        if encrypt_key_file(key, yinqi.master_secret):
            return [_("{bank}: encrypted the channel key {key}").format(bank=code, key=key)]
        return []
    csr = create_tls_client_key(key, yinqi.master_secret, channels.common_name(yinqi, code))
    certify_csr(state, csr, cert)
    return [_("{bank}: issued channel certificate {cert} (key encrypted, {key})").format(
        bank=code, cert=cert, key=key)]


def _register(state: Path, code: str, sandbox_code: str,
              keys: list[tuple[str, bytes]]) -> list[str]:
    from yinqi.security.keystore import write_public_file

    folder = state / "signers" / sandbox_code
    folder.mkdir(parents=True, exist_ok=True)
    added = []
    for key_id, pem in keys:
        target = folder / f"yinqi-{key_id}.pem"
        if not target.exists() or target.read_bytes() != pem:
            write_public_file(target, pem)
            added.append(key_id)
    if not added:
        return [_("{bank}: signing certificates already registered with sandbox bank "
                  "{sandbox}").format(bank=code, sandbox=sandbox_code)]
    return [_("{bank}: signing certificate {keys} registered with sandbox bank "
              "{sandbox}").format(bank=code, keys=", ".join(added), sandbox=sandbox_code)]
