"""``yinqi sandbox-bank ...``: run the sandbox bank and connect this Yinqi to it."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import typer

from yinqi.bootstrap import App
from yinqi.cli.output import console

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
    console.print(f"sandbox bank on https://{host}:{port} (state in {state}); Ctrl-C stops it")
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
    from connectors.sandbox.pki import ensure_ca, issue_client_cert
    from connectors.sandbox.runner import open_sandbox

    running = open_sandbox(config, state)
    running.sandbox.engine.dispose()
    ensure_ca(state)
    signing_cert = yinqi.settings.keys_dir / "signing-1.cert.pem"
    if not signing_cert.exists():
        raise typer.BadParameter(f"{signing_cert} is missing: run `yinqi init` first")
    home, done = yinqi.settings.home, []
    for code, bank in sorted(yinqi.config.banks.items()):
        parts = urlsplit(str(bank.endpoint))
        sandbox_code = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if parts.hostname not in ("127.0.0.1", "localhost") or \
                sandbox_code not in running.sandbox.banks:
            done.append(f"{code}: not a sandbox bank here, skipped")
            continue
        cert = bank.resolve_path(home, bank.client_cert)
        key = bank.resolve_path(home, bank.client_key)
        if not cert.exists() or not key.exists():
            issue_client_cert(state, f"{yinqi.config.company.name} ({code})", cert, key)
            done.append(f"{code}: issued channel certificate {cert}")
        folder = state / "signers" / sandbox_code
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(signing_cert, folder / "yinqi-signing-1.pem")
        done.append(f"{code}: signing certificate registered with sandbox bank {sandbox_code}")
        # The bank's CA and signing certificate, where banks.toml expects them.
        for source, rel in ((state / "ca.pem", bank.ca_cert),
                            (state / "bank-signing.pem", bank.signing_cert)):
            target = bank.resolve_path(home, rel)
            if source.resolve() != target.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    return done
