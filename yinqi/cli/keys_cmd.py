"""``yinqi keys ...``: our signing keys and TLS client keys, without ever showing key material.

``list`` and ``export-cert`` show certificates only; ``rotate`` makes a new signing key (or a
new channel key) and tells the banks; ``verify`` says which of our keys, current or retired,
signed an archived payment file; ``import-tls`` encrypts a channel key handed over in the clear.
"""

from __future__ import annotations

import hashlib
import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.cells import cell_len
from rich.table import Table
from sqlalchemy import select

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json
from yinqi.errors import InvalidValue, SecurityError
from yinqi.i18n import _, use_language
from yinqi.security import channels, keyring
from yinqi.security.keystore import certificate_days_left
from yinqi.store.migrate import ensure_current

app = typer.Typer(help="Keys and certificates: list, rotate, export, verify.",
                  no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print one JSON object.")
_AS = typer.Option(None, "--as", help="Who does it, recorded in the audit log (default: the "
                                     "logged-in user).")
_STATE_HELP = ("The sandbox bank's state folder, to register the new certificate with it "
               "(default: $YINQI_HOME/sandbox, when it exists).")
PURPOSES = ("signing", "tls", "fields", "files")


def _app(ctx: typer.Context) -> App:
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi


@app.command("list")
def list_keys(ctx: typer.Context, json_out: bool = _JSON) -> None:
    """Every key: id, purpose, algorithm, certificate fingerprint, validity, status."""
    yinqi = _app(ctx)
    now = datetime.now(UTC)
    with yinqi.sessions() as s:
        stored = keyring.all_keys(s)
        current = keyring.current_signing_key(s)
        rows: list[dict[str, Any]] = [_row(k, current, now) for k in stored]
    for ch in channels.channel_keys(yinqi):
        cert = ch.certificate
        rows.append({
            "key_id": ch.key_id, "purpose": channels.TLS, "bank": ch.bank,
            "algorithm": cert.algorithm if cert else None,
            "fingerprint": cert.fingerprint if cert else None,
            "not_before": cert.not_before.isoformat() if cert else None,
            "not_after": cert.not_after.isoformat() if cert else None,
            "days_left": certificate_days_left(cert.not_after, now) if cert else None,
            "status": "current" if cert and ch.key_state != "missing" else "missing",
            "retired_at": None, "key_file": ch.key_state})
    if json_out:
        print_json({"keys": rows})
        return
    table = Table(title="yinqi keys", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for col in (_("key"), _("alg"), "sha-256", _("until"), _("days"), _("status"),
                _("key file")):
        table.add_column(col, no_wrap=True, min_width=cell_len(col))
    for r in rows:
        table.add_row(r["key_id"], r["algorithm"] or "-",
                      f"{r['fingerprint'][:8]}…" if r["fingerprint"] else "-",
                      (r["not_after"] or "-")[:10],
                      "-" if r["days_left"] is None else str(r["days_left"]),
                      r["status"], r["key_file"])
    console.print(table)
    console.print(_("full fingerprints and retirement dates: `yinqi keys list --json`"))


def _row(key: Any, current: Any, now: datetime) -> dict[str, Any]:
    # Field keys (purpose "fields") are derived from the master secret: no file, no
    # certificate, no end date.
    derived = not key.certificate_pem
    if key.retired_at is not None:
        status = "retired"
    elif key.purpose != keyring.SIGNING or (current is not None and key.id == current.id):
        status = "current"
    else:
        status = "inactive"
    return {"key_id": key.key_id, "purpose": key.purpose, "bank": None,
            "algorithm": key.algorithm, "fingerprint": None if derived else key.fingerprint,
            "not_before": key.not_before.isoformat(),
            "not_after": None if derived else key.not_after.isoformat(),
            "days_left": None if derived else certificate_days_left(key.not_after, now),
            "status": status,
            "retired_at": key.retired_at.isoformat() if key.retired_at else None,
            "key_file": "derived" if derived else "encrypted"}


@app.command("export-cert")
def export_cert(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="A key id from `yinqi keys list` (signing-N or "
                                           "tls:<bank>)."),
    out: Path | None = typer.Option(None, "--out", help="Write the PEM here instead of "
                                                        "printing it."),
) -> None:
    """The PEM certificate of a key, to hand to the bank (never the key itself)."""
    yinqi = _app(ctx)
    if key_id.startswith("tls:"):
        ch = channels.channel_key(yinqi, key_id.removeprefix("tls:"))
        if ch.certificate is None:
            raise InvalidValue(f"{key_id}: no certificate at {ch.cert_path} yet")
        pem, fingerprint = ch.certificate.certificate_pem, ch.certificate.fingerprint
    else:
        with yinqi.sessions() as s:
            key = keyring.require_key(s, key_id)
            pem, fingerprint = key.certificate_pem, key.fingerprint
        if not pem:
            raise InvalidValue(f"{key_id} is a {key.purpose} key derived from the master "
                               "secret: it has no certificate")
    if out is None:
        sys.stdout.write(pem if pem.endswith("\n") else pem + "\n")
        return
    from yinqi.security.keystore import write_public_file

    write_public_file(out, pem.encode())
    console.print(_("wrote {path}: certificate of {key_id} (SHA-256 fingerprint "
                    "{fingerprint})").format(path=out, key_id=key_id, fingerprint=fingerprint),
                  markup=False, soft_wrap=True)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    purpose: str = typer.Option("signing", "--purpose", help="signing (our payment signing "
                                "key), tls (a bank channel's client key; needs --bank) or "
                                "fields (the database field key: re-encrypts every encrypted "
                                "column; stop the workers first) or files (the archive and "
                                "receipt file key; kept files stay as they are)."),
    bank: str | None = typer.Option(None, "--bank", help="signing: register the new "
                                    "certificate with this bank only; tls: the channel."),
    state_dir: Path | None = typer.Option(None, "--sandbox-state-dir", help=_STATE_HELP),
    user: str | None = _AS,
    json_out: bool = _JSON,
) -> None:
    """A new key in place of the current one; the old signing key is retired, never deleted,
    so everything it signed stays verifiable."""
    yinqi = _app(ctx)
    actor = acting_as(ctx, user)
    if purpose not in PURPOSES:
        raise InvalidValue(f"--purpose must be one of {', '.join(PURPOSES)} (got {purpose!r})")
    if bank is not None:
        channels.bank_config(yinqi, bank)
    state = state_dir or yinqi.settings.home / "sandbox"
    # The report's lines are in --json too, where they stay English in every language.
    with use_language("en") if json_out else nullcontext():
        if purpose == "tls":
            if bank is None:
                raise InvalidValue("--purpose tls needs --bank: each bank channel has its own "
                                   "key")
            report = _rotate_tls(yinqi, bank, state, actor)
        elif purpose in ("fields", "files"):
            if bank is not None:
                raise InvalidValue(f"--purpose {purpose} takes no --bank: one key serves all "
                                   "banks")
            report = _rotate_fields(yinqi, actor) if purpose == "fields" else \
                _rotate_files(yinqi, actor)
        else:
            report = _rotate_signing(yinqi, bank, state, actor)
    if json_out:
        print_json(report)
        return
    for line in report["lines"]:
        console.print(line, markup=False, soft_wrap=True)


def _rotate_signing(yinqi: App, bank: str | None, state: Path, user: str) -> dict[str, Any]:
    from yinqi.cli.sandbox_cmd import register_signing_certificates

    rotation = keyring.rotate_signing_key(yinqi, actor=user)
    new = rotation.new
    if state.is_dir():
        registered, elsewhere = register_signing_certificates(yinqi, state, only=bank)
    else:
        registered, elsewhere = [], [bank] if bank else sorted(yinqi.config.banks)
    lines = [_("new signing key {key_id} ({algorithm}, fingerprint {fingerprint}, valid until "
               "{until}); new batches are signed with it").format(
        key_id=new.key_id, algorithm=new.algorithm, fingerprint=new.fingerprint,
        until=f"{new.not_after:%Y-%m-%d}")]
    lines += [_("retired {key_id} ({fingerprint}...): kept, so what it signed stays "
                "verifiable").format(key_id=key_id, fingerprint=fp[:16])
              for key_id, fp in rotation.retired]
    lines += registered
    lines += [_("{bank}: hand the new certificate to the bank before the next payment run: "
                "`yinqi keys export-cert {key_id} --out {key_id}.pem`").format(
        bank=code, key_id=new.key_id) for code in elsewhere]
    return {"purpose": "signing", "new_key_id": new.key_id, "fingerprint": new.fingerprint,
            "not_after": new.not_after.isoformat(),
            "retired": [{"key_id": k, "fingerprint": fp} for k, fp in rotation.retired],
            "registered": registered, "banks_to_tell": elsewhere, "lines": lines}


def _rotate_fields(yinqi: App, actor: str) -> dict[str, Any]:
    from yinqi.store.field_keys import FIELD_KEY_PREFIX, rotate_field_key

    with yinqi.sessions.begin() as s:
        old, new, count = rotate_field_key(s, yinqi.fields, yinqi.audit, actor=actor)
    old_id, new_id = f"{FIELD_KEY_PREFIX}{old}", f"{FIELD_KEY_PREFIX}{new}"
    return {"purpose": "fields", "new_key_id": new_id, "retired": [{"key_id": old_id}],
            "values": count,
            "lines": [_("field key {key_id} is current: {count} value(s) re-encrypted from "
                        "{old}").format(key_id=new_id, count=count, old=old_id)]}


def _rotate_files(yinqi: App, actor: str) -> dict[str, Any]:
    from yinqi.store.field_keys import FILE_KEY_PREFIX, current_file_key, rotate_file_key

    with yinqi.sessions.begin() as s:
        old, new = rotate_file_key(s, yinqi.audit, current_file_key(yinqi.engine), actor=actor)
    old_id, new_id = f"{FILE_KEY_PREFIX}{old}", f"{FILE_KEY_PREFIX}{new}"
    return {"purpose": "files", "new_key_id": new_id, "retired": [{"key_id": old_id}],
            "lines": [_("file key {key_id} is current: new archive files and receipts are "
                        "sealed with it; files kept under {old} stay readable").format(
                key_id=new_id, old=old_id)]}


def _rotate_tls(yinqi: App, bank: str, state: Path, user: str) -> dict[str, Any]:
    from yinqi.cli.sandbox_cmd import is_sandbox_bank, reissue_channel

    before = channels.channel_key(yinqi, bank)
    old = before.certificate.fingerprint if before.certificate else None
    if is_sandbox_bank(yinqi, bank, state):
        lines = reissue_channel(yinqi, state, bank, actor=user)
        after = channels.channel_key(yinqi, bank)
        assert after.certificate is not None
        return {"purpose": "tls", "bank": bank, "old_fingerprint": old,
                "fingerprint": after.certificate.fingerprint, "pending": None, "csr": None,
                "lines": lines}
    pending = channels.start_rotation(yinqi, bank)[0]
    csr = channels.csr_path(before.cert_path)
    with yinqi.sessions.begin() as s:
        yinqi.audit.append(s, actor=user, action="key.rotation_started", subject_type="key",
                           subject_ids=[before.key_id],
                           details={"purpose": "tls", "bank": bank, "old_fingerprint": old,
                                    "csr": str(csr)})
    lines = [_("{bank}: new channel key {key} (encrypted) and its request {csr}").format(
                 bank=bank, key=pending, csr=csr),
             _("{bank}: send {csr} to the bank; when its certificate arrives, run "
               "`yinqi keys import-tls --bank {bank} --cert FILE`; the current key keeps "
               "working until then").format(bank=bank, csr=csr)]
    return {"purpose": "tls", "bank": bank, "old_fingerprint": old, "fingerprint": None,
            "pending": str(pending), "csr": str(csr), "lines": lines}


@app.command("import-tls")
def import_tls(
    ctx: typer.Context,
    bank: str = typer.Option(..., "--bank", help="The bank channel (an id in banks.toml)."),
    cert: Path | None = typer.Option(None, "--cert", help="The bank's certificate for our key "
                                     "(default: the configured client_cert)."),
    key: Path | None = typer.Option(None, "--key", help="Our key as the bank handed it over "
                                    "(default: the key waiting from `keys rotate --purpose "
                                    "tls`, else the configured client_key, in place)."),
    user: str | None = _AS,
    json_out: bool = _JSON,
) -> None:
    """Install a channel certificate and key where banks.toml points, the key encrypted with
    the keystore password (0600); a plaintext key is encrypted in place."""
    yinqi = _app(ctx)
    after, changes = channels.install(yinqi, bank, cert=cert, key=key,
                                      actor=acting_as(ctx, user))
    assert after.certificate is not None
    report = {"bank": bank, "key_id": after.key_id, "fingerprint": after.certificate.fingerprint,
              "not_after": after.certificate.not_after.isoformat(), "key_file": after.key_state,
              "changes": changes}
    if json_out:
        print_json(report)
        return
    if not changes:
        console.print(_("{bank}: channel key already encrypted; nothing to do").format(
            bank=bank))
    for change in changes:
        console.print(_("{bank}: wrote {path}").format(bank=bank, path=change), markup=False,
                      soft_wrap=True)


@app.command("verify")
def verify(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A signed payment file from the archive."),
    key_id: str | None = typer.Option(None, "--key", help="Check against this key only."),
    signature: str | None = typer.Option(None, "--signature", help="The base64 X-Signature "
                                         "of a direct-connect (JSON) order."),
    json_out: bool = _JSON,
) -> None:
    """Which of our keys (current or retired) signed this file, and whether it is intact."""
    from yinqi.security.signatures import in_service, verify_signed_file

    yinqi = _app(ctx)
    data, stored = _read(yinqi, file)
    digest = hashlib.sha256(data).hexdigest()
    with yinqi.sessions() as s:
        keys = [keyring.require_key(s, key_id)] if key_id else \
            [k for k in keyring.all_keys(s) if k.purpose == keyring.SIGNING]
        trusted = [keyring.trusted(k) for k in keys]
        batch = _batch_of(s, stored)
    result = verify_signed_file(data, trusted, signature=signature)
    problems = [] if result.ok else [result.detail]
    status = None
    if result.ok:
        key = next(k for k in trusted if k.key_id == result.key_id)
        status = "retired" if key.retired_at else "current"
        if batch is not None and batch["signed_at"] is not None and \
                not in_service(key, batch["signed_at"]):
            problems.append(f"batch {batch['msg_id']} was recorded as signed at "
                            f"{batch['signed_at']:%Y-%m-%d %H:%M:%S} UTC, when {key.key_id} "
                            "was not our signing key")
    if batch is not None and batch["sha256"] and batch["sha256"] != digest:
        problems.append(f"the file does not match the SHA-256 recorded for batch "
                        f"{batch['msg_id']}")
    ok = not problems
    report = {"file": stored, "ok": ok, "method": result.method, "key_id": result.key_id,
              "fingerprint": result.fingerprint, "key_status": status, "sha256": digest,
              "batch": batch["msg_id"] if batch else None,
              "signed_at": batch["signed_at"].isoformat() if batch and batch["signed_at"]
              else None,
              "detail": "signature valid" if ok else "; ".join(problems)}
    with yinqi.sessions.begin() as s:
        yinqi.audit.append(s, actor=acting_as(ctx, None, default="cli:keys verify"),
                           action="file.signature_checked",
                           subject_type="file", subject_ids=[stored],
                           details={"ok": ok, "key_id": result.key_id, "sha256": digest,
                                    "detail": report["detail"][:500]})
    if json_out:
        print_json(report)
    elif ok:
        console.print(_("{file}: signature valid, signed by {key_id} ({status}, fingerprint "
                        "{fingerprint})").format(file=stored, key_id=result.key_id,
                                                 status=status,
                                                 fingerprint=result.fingerprint),
                      markup=False, soft_wrap=True)
    else:
        # The detail is also the --json detail and the audit event's: English, as found.
        console.print(_("{file}: NOT VALID: {detail}").format(file=stored,
                                                              detail=report["detail"]),
                      markup=False, soft_wrap=True)
    if not ok:
        raise typer.Exit(1)


def _read(yinqi: App, file: Path) -> tuple[bytes, str]:
    """The plaintext of an archived (encrypted) file, or of a plain file given elsewhere."""
    from yinqi.pipeline.signing import read_archived, relative_to_home

    # As given, or as `yinqi batches list` shows it (relative to $YINQI_HOME).
    candidates = [file] if file.is_absolute() else [Path.cwd() / file,
                                                    yinqi.settings.home / file]
    full = next((c.resolve() for c in candidates if c.is_file()), None)
    if full is None:
        raise InvalidValue(f"{file}: no such file")
    stored = relative_to_home(yinqi, full)
    try:
        if full.is_relative_to((yinqi.settings.home / "archive").resolve()):
            return read_archived(yinqi, stored), stored
        return full.read_bytes(), stored
    except SecurityError as exc:
        raise SecurityError(f"{file}: cannot be read: {exc}") from None


def _batch_of(session: Any, stored: str) -> dict[str, Any] | None:
    from yinqi.store.models import Batch

    row = session.execute(select(Batch.msg_id, Batch.file_sha256, Batch.signed_at)
                          .where(Batch.file_path == stored)).first()
    if row is None:
        return None
    return {"msg_id": row.msg_id, "sha256": row.file_sha256, "signed_at": row.signed_at}
