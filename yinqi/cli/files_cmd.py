"""``yinqi receipts show`` and ``yinqi archive show``: one kept file, decrypted, for a person.

Receipts and bank messages are encrypted at rest (docs/security.md, "Files at rest"); these
commands are how an authorised operator sees one. The plaintext is checked against the SHA-256
recorded in the database and written to a file only its owner can read (0600), never to the
terminal: a payment file or a receipt is full of account numbers. Every decryption, and every
refusal, is in the audit log with who asked.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import select

from yinqi.bootstrap import App
from yinqi.cli.access import acting_as
from yinqi.cli.output import console, print_json
from yinqi.errors import InvalidValue, SecurityError
from yinqi.i18n import _, use_language
from yinqi.security.files import key_id_of
from yinqi.store.migrate import ensure_current

receipts_app = typer.Typer(help="电子回单 (bank receipts): see one, decrypted.",
                           no_args_is_help=True)
archive_app = typer.Typer(help="The bank message archive: see one kept file, decrypted.",
                          no_args_is_help=True)

_OUT = typer.Option(None, "--out", help="Write the decrypted file here (mode 0600; it must not "
                                        "exist yet). Default: a new private folder in the "
                                        "system's temporary folder.")
_AS = typer.Option(None, "--as", help="Who asks: you (default: the logged-in user).")
_JSON = typer.Option(False, "--json", help="Print one JSON object.")


def _app(ctx: typer.Context) -> App:
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    return yinqi


@receipts_app.command("show")
def show_receipt(
    ctx: typer.Context,
    payment: str = typer.Argument(..., help="The payment's id or end-to-end ID."),
    out: Path | None = _OUT,
    user: str | None = _AS,
    json_out: bool = _JSON,
) -> None:
    """Decrypt a payment's receipt, check it against the hash recorded when it was collected
    and write the PDF to a file only you can read."""
    from yinqi.pipeline.receipts import read_receipt
    from yinqi.pipeline.signing import home_path

    yinqi = _app(ctx)
    user = acting_as(ctx, user)
    pid = _payment_id(yinqi, payment)
    try:
        kept = read_receipt(yinqi, pid)
    except SecurityError as exc:
        _audit(yinqi, user, "receipt.view_refused", "payment", [pid], {"reason": str(exc)[:500]})
        raise
    target = _write(yinqi, user, out, f"receipt-{pid}.pdf", kept.content,
                    action="receipt.viewed", subject=("payment", [pid]),
                    details={"file": kept.file_path, "sha256": kept.sha256})
    report = {"payment_id": pid, "file": kept.file_path, "sha256": kept.sha256,
              "bank_reference": kept.bank_reference, "bytes": len(kept.content),
              "encrypted": _key_id(home_path(yinqi, kept.file_path)) is not None,
              "checked": "sha256 recorded when collected", "written_to": str(target)}
    _print(report, json_out, _("receipt of payment {payment} (bank reference {reference}) "
                               "decrypted and matches its recorded SHA-256; written to {path} "
                               "(readable by you only)").format(
        payment=pid, reference=kept.bank_reference or "-", path=target))


@archive_app.command("show")
def show_archived(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="The file as listed, relative to $YINQI_HOME (e.g. "
                                         "archive/<bank>/<day>/<file>), or absolute."),
    out: Path | None = _OUT,
    user: str | None = _AS,
    json_out: bool = _JSON,
) -> None:
    """Decrypt one archived bank message (signed order, status report, statement, bank
    answer or receipt), check it against any hash the database recorded for it and write it
    to a file only you can read."""
    from yinqi.pipeline.signing import read_archived, relative_to_home

    yinqi = _app(ctx)
    user = acting_as(ctx, user)
    full = _inside_archive(yinqi, path)
    stored = relative_to_home(yinqi, full)
    recorded = _recorded(yinqi, stored)
    try:
        data = read_archived(yinqi, stored)
    except FileNotFoundError:
        raise InvalidValue(f"{path}: no such file in the archive") from None
    except SecurityError as exc:
        _audit(yinqi, user, "archive.view_refused", "file", [stored], {"reason": str(exc)[:500]})
        raise
    digest = hashlib.sha256(data).hexdigest()
    encrypted = _key_id(full) is not None
    # The error, the audit event and --json say it in English whatever the language.
    with use_language("en"):
        wrong = sorted(_what(kind, ref) for kind, ref, sha in recorded if sha != digest)
        checked = _checked(recorded, encrypted)
    if wrong:
        reason = (f"{stored}: does not match the SHA-256 recorded for {', '.join(wrong)}; do "
                  "not trust it")
        _audit(yinqi, user, "archive.view_refused", "file", [stored], {"reason": reason})
        raise SecurityError(reason)
    target = _write(yinqi, user, out, full.name, data, action="archive.viewed",
                    subject=("file", [stored]), details={"sha256": digest, "checked": checked})
    report = {"file": stored, "sha256": digest, "bytes": len(data), "encrypted": encrypted,
              "checked": checked, "written_to": str(target)}
    _print(report, json_out, _("{file} decrypted (checked: {checked}); written to {path} "
                               "(readable by you only)").format(
        file=stored, checked=_checked(recorded, encrypted), path=target))


def _payment_id(yinqi: App, value: str) -> int:
    from yinqi.store.models import Payment

    if value.isdigit():
        return int(value)
    with yinqi.sessions() as s:
        pid = s.execute(select(Payment.id).where(Payment.end_to_end_id == value)
                        ).scalar_one_or_none()
    if pid is None:
        raise InvalidValue(f"no payment with id or end-to-end ID {value!r}")
    return pid


def _inside_archive(yinqi: App, path: str) -> Path:
    given = Path(path).expanduser()
    full = (given if given.is_absolute() else yinqi.settings.home / given).resolve()
    root = (yinqi.settings.home / "archive").resolve()
    if not full.is_relative_to(root):
        raise InvalidValue(f"{path}: not in the archive ({root}); give a path as "
                           "`yinqi batches list` shows it")
    if not full.is_file():
        raise InvalidValue(f"{path}: no such file in the archive")
    return full


def _recorded(yinqi: App, stored: str) -> list[tuple[str, str, str]]:
    """Every hash the database holds for this file: (kind of record, its id, the hash)."""
    from yinqi.store.models import Batch, Receipt, StatusReport

    with yinqi.sessions() as s:
        found = [("batch", m, sha) for m, sha in s.execute(
            select(Batch.msg_id, Batch.file_sha256).where(Batch.file_path == stored))]
        found += [("receipt", str(p), sha) for p, sha in s.execute(
            select(Receipt.payment_id, Receipt.sha256).where(Receipt.file_path == stored))]
        found += [("status report", "", sha) for (sha,) in s.execute(
            select(StatusReport.sha256).where(StatusReport.archive_path == stored).distinct())]
    return [(kind, ref, sha) for kind, ref, sha in found if sha]


def _what(kind: str, ref: str) -> str:
    """The record that holds a hash (see :func:`_recorded`), in words."""
    if kind == "batch":
        return _("batch {msg_id}").format(msg_id=ref)
    if kind == "receipt":
        return _("receipt of payment {payment}").format(payment=ref)
    return _("status report")


def _checked(recorded: list[tuple[str, str, str]], encrypted: bool) -> str:
    """What the plaintext was checked against."""
    if recorded:
        return _("sha256 recorded for {records}").format(
            records=", ".join(sorted({_what(kind, ref) for kind, ref, _sha in recorded})))
    if encrypted:
        return _("authenticated decryption")
    return _("none: a legacy unencrypted file no record names")


def _key_id(path: Path) -> int | None:
    with open(path, "rb") as fh:
        return key_id_of(fh.read(8))


def _write(yinqi: App, user: str, out: Path | None, name: str, data: bytes, *, action: str,
           subject: tuple[str, list[Any]], details: dict[str, Any]) -> Path:
    """Create the output file (0600, never over an existing one), audit, then fill it: a
    disclosure the audit log could not record does not happen."""
    target = out if out is not None else Path(tempfile.mkdtemp(prefix="yinqi-")) / name
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidValue(f"{target} already exists: choose another --out or remove it") \
            from None
    except OSError as exc:
        raise InvalidValue(f"cannot create {target}: {exc.strerror}") from None
    try:
        _audit(yinqi, user, action, subject[0], subject[1],
               {**details, "written_to": str(target)})
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return target


def _audit(yinqi: App, user: str, action: str, subject_type: str, ids: list[Any],
           details: dict[str, Any]) -> None:
    with yinqi.sessions.begin() as s:
        yinqi.audit.append(s, actor=user, action=action, subject_type=subject_type,
                           subject_ids=ids, details=details)


def _print(report: dict[str, Any], json_out: bool, line: str) -> None:
    if json_out:
        print_json(report)
    else:
        console.print(line, markup=False, soft_wrap=True)
