"""The manifest: what a backup holds and what the restored database must look like."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from yinqi.backup.errors import BackupError
from yinqi.backup.sealing import check_manifest_mac, manifest_mac
from yinqi.backup.target import MANIFEST, BackupSource

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """The authenticated manifest body (see ``create.py`` for its fields)."""

    body: dict[str, Any]
    #: SHA-256 of the manifest file as stored: what the next incremental links to.
    sha256: str = ""

    @property
    def name(self) -> str:
        """The backup's identity (its folder name and a random suffix), bound into every
        part's associated data."""
        return str(self.body["name"])

    @property
    def folder(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.body["created_at"])

    @property
    def sequence(self) -> int:
        """0 for a full backup, n for the n-th incremental of its chain."""
        return int(self.body["chain"]["sequence"])

    @property
    def base(self) -> str:
        """The folder name of the chain's full backup."""
        return str(self.body["chain"]["base"])

    @property
    def previous(self) -> dict[str, str] | None:
        """The backup this incremental follows: ``folder``, ``name``, ``manifest_sha256``."""
        previous = self.body["chain"]["previous"]
        return dict(previous) if previous is not None else None

    @property
    def key_id(self) -> int:
        return int(self.body["key_id"])

    @property
    def schema_revision(self) -> str | None:
        return self.body["schema_revision"]

    @property
    def parts(self) -> list[dict[str, Any]]:
        return list(self.body["parts"])

    @property
    def tables(self) -> list[dict[str, Any]]:
        return list(self.body["tables"])

    @property
    def file_areas(self) -> list[dict[str, Any]]:
        return list(self.body["files"])

    @property
    def row_counts(self) -> dict[str, int]:
        return {t["name"]: int(t["rows"]) for t in self.tables}

    @property
    def payment_totals(self) -> list[dict[str, Any]]:
        return list(self.body["payment_totals"])

    @property
    def audit_head(self) -> dict[str, Any]:
        return dict(self.body["audit_head"])


def dump(body: dict[str, Any], master: bytes) -> bytes:
    mac = manifest_mac(body, master, int(body["key_id"]))
    document = {"yinqi_backup": FORMAT_VERSION, "body": body, "hmac_sha256": mac}
    return json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True).encode()


def load(source: BackupSource, master: bytes) -> Manifest:
    """The manifest, authenticated; BackupError when it is missing, damaged or was not made
    with this master secret."""
    if not source.exists(MANIFEST):
        raise BackupError(f"{MANIFEST} is missing from backup {source.name}: not a Yinqi "
                          "backup, or one that never finished")
    raw = source.read(MANIFEST)
    try:
        document = json.loads(raw)
        version, body, mac = document["yinqi_backup"], document["body"], document["hmac_sha256"]
        key_id = int(body["key_id"])
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{MANIFEST} of backup {source.name} is damaged (not a backup "
                          "manifest); restore from another backup") from None
    if version != FORMAT_VERSION:
        raise BackupError(f"backup {source.name} has format {version}; this Yinqi reads "
                          f"format {FORMAT_VERSION}")
    if not isinstance(mac, str) or not check_manifest_mac(body, mac, master, key_id):
        raise BackupError(f"{MANIFEST} of backup {source.name} does not authenticate: the "
                          "master secret is not the one the backup was made with, or the "
                          "manifest was altered")
    return Manifest(body, hashlib.sha256(raw).hexdigest())
