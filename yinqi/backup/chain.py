"""Chains: a full backup and the incrementals that follow it, each linked to its predecessor
by name and by the SHA-256 of the predecessor's manifest.

An incremental is only as good as every backup before it, so a chain is always walked and
checked whole: a missing predecessor, a predecessor replaced by another backup of the same
name, or a gap in the sequence stops the walk with one error naming the backup that is
missing, and nothing is restored from a broken chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from yinqi.backup.errors import BackupError, NoBackup
from yinqi.backup.index import FileState, TableDelta, TableIndex, apply_files
from yinqi.backup.manifest import Manifest, load
from yinqi.backup.parts import read_part, records_of
from yinqi.backup.target import BackupSource, BackupTarget


@dataclass(frozen=True)
class Member:
    source: BackupSource
    manifest: Manifest


@dataclass(frozen=True)
class Chain:
    """Oldest first: the full backup, then its incrementals in order."""

    members: tuple[Member, ...]

    @property
    def head(self) -> Member:
        return self.members[-1]

    @property
    def names(self) -> list[str]:
        return [m.source.name for m in self.members]


def load_chain(source: BackupSource, master: bytes) -> Chain:
    """``source`` and every backup it builds on, authenticated and linked."""
    members = [Member(source, load(source, master))]
    while members[0].manifest.kind == "incremental":
        later = members[0]
        link = later.manifest.previous
        if link is None:
            raise BackupError(f"incremental backup {later.source.name} names no predecessor: "
                              "its manifest is inconsistent")
        earlier_source = later.source.sibling(link["folder"])
        if earlier_source is None:
            raise BackupError(
                f"backup {link['folder']} is missing: incremental {later.source.name} builds "
                f"on it, so the chain from full backup {later.manifest.base} is broken; "
                "restore an older complete chain, and take a full backup now")
        earlier = Member(earlier_source, load(earlier_source, master))
        if earlier.manifest.name != link["name"] or \
                earlier.manifest.sha256 != link["manifest_sha256"]:
            raise BackupError(
                f"backup {link['folder']} is not the one incremental {later.source.name} "
                "builds on (it was replaced by another backup of that name); the chain is "
                "broken")
        if earlier.manifest.sequence != later.manifest.sequence - 1 or \
                earlier.manifest.base != later.manifest.base:
            raise BackupError(f"backups {link['folder']} and {later.source.name} do not "
                              "follow each other in one chain; the chain is inconsistent")
        members.insert(0, earlier)
    if members[0].manifest.kind != "full" or members[0].manifest.sequence != 0:
        raise BackupError(f"backup {members[0].source.name} is a "
                          f"{members[0].manifest.kind} backup; a chain starts with a full one")
    return Chain(tuple(members))


@dataclass(frozen=True)
class Entry:
    """One backup in a target, as ``yinqi backup list`` shows it."""

    name: str
    kind: str
    created_at: datetime | None
    previous: str | None
    sequence: int | None
    base: str | None
    parts: int
    stored_bytes: int
    rows_written: int
    problem: str | None = None


def catalog(target: BackupTarget, master: bytes) -> list[Entry]:
    """Every finished backup in the target, oldest first, with its authenticated facts; a
    backup whose manifest does not authenticate is listed with its problem."""
    entries = []
    for name in target.names():
        try:
            manifest = load(target.open(name), master)
        except BackupError as exc:
            entries.append(Entry(name, "?", None, None, None, None, 0, 0, 0, str(exc)))
            continue
        previous = manifest.previous
        entries.append(Entry(
            name=name, kind=manifest.kind, created_at=manifest.created_at,
            previous=previous["folder"] if previous else None, sequence=manifest.sequence,
            base=manifest.base, parts=len(manifest.parts),
            stored_bytes=sum(int(p["size"]) for p in manifest.parts),
            rows_written=sum(int(t["written"]) for t in manifest.tables)))
    entries.sort(key=lambda e: (e.created_at is None, e.created_at or datetime.min, e.name))
    return entries


def latest(target: BackupTarget, master: bytes) -> str:
    """The newest backup whose manifest authenticates."""
    entries = catalog(target, master)
    usable = [e for e in entries if e.problem is None]
    if not entries:
        raise NoBackup(f"there is no backup in {target.location}; take one with "
                       "`yinqi backup create`")
    if not usable:
        raise BackupError(f"there is no readable backup in {target.location} ({len(entries)} "
                          "whose manifest does not authenticate: `yinqi backup list`); take "
                          "one with `yinqi backup create`")
    return usable[-1].name


def resolve(target: BackupTarget, name: str | None, master: bytes) -> BackupSource:
    return target.open(name if name is not None else latest(target, master))


@dataclass
class ChainState:
    """The database and files as the chain last saw them, for the next incremental."""

    tables: dict[str, TableIndex]
    files: FileState
    table_specs: dict[str, dict[str, Any]]


def chain_state(chain: Chain, master: bytes) -> ChainState:
    """Apply every member's row and file index in order (parts checked as they are read)."""
    tables: dict[str, TableIndex] = {}
    files: FileState = {}
    specs: dict[str, dict[str, Any]] = {}
    for member in chain.members:
        manifest = member.manifest
        records = records_of(manifest)
        for table in manifest.tables:
            name = str(table["index"])
            delta = TableDelta.unpack(
                read_part(member.source, manifest, records[name], master), name)
            tables[table["name"]] = tables.get(table["name"], TableIndex()).apply(delta)
            specs[table["name"]] = table
        files = apply_files(files, files_index(member, master))
    return ChainState(tables, files, specs)


def files_index(member: Member, master: bytes) -> dict[str, Any]:
    name = str(member.manifest.body["files_index"])
    data = read_part(member.source, member.manifest, records_of(member.manifest)[name], master)
    try:
        return dict(json.loads(data))
    except ValueError:
        raise BackupError(f"backup part {name} is not a readable file index") from None
