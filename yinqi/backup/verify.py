"""Checking a backup and every backup it builds on, end to end, without restoring anything.

Every failure is one :class:`BackupError` naming the backup and the part: a missing backup in
the chain, a missing part, a part whose size or SHA-256 differs from the manifest, a part that
does not decrypt (altered, swapped, or the wrong master secret), a manifest that does not
authenticate, and a chain whose row indexes do not add up to the rows its manifests promise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yinqi.backup.chain import Chain, files_index, load_chain
from yinqi.backup.errors import BackupError
from yinqi.backup.index import TableDelta, TableIndex
from yinqi.backup.manifest import Manifest
from yinqi.backup.parts import read_part, records_of, tar_members
from yinqi.backup.target import BackupSource, as_source


@dataclass(frozen=True)
class Verified:
    chain: Chain
    parts: int
    stored_bytes: int
    #: Per file area, each file of the restored state -> (chain member, part) holding its
    #: newest version.
    files: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)

    @property
    def manifest(self) -> Manifest:
        return self.chain.head.manifest


def verify_backup(backup: Path | str | BackupSource, master: bytes) -> Verified:
    """Authenticate the chain's manifests, then read, check, decrypt and decompress every part
    of every backup in it."""
    chain = load_chain(as_source(backup), master)
    _one_schema(chain)
    tables: dict[str, TableIndex] = {}
    where: dict[str, dict[str, tuple[int, str]]] = {}
    parts = stored = 0
    for position, member in enumerate(chain.members):
        manifest, source = member.manifest, member.source
        records = records_of(manifest)
        parts += len(records)
        stored += sum(int(r["size"]) for r in records.values())
        for table in manifest.tables:
            lines = sum(read_part(source, manifest, records[name], master).count(b"\n")
                        for name in table["parts"])
            delta = TableDelta.unpack(
                read_part(source, manifest, records[table["index"]], master), table["index"])
            if lines != int(table["written"]) or len(delta.keys) != lines or \
                    len(delta.deleted) != int(table["deleted"]):
                raise BackupError(f"table {table['name']} in backup {source.name} holds "
                                  f"{lines} rows but the manifest says {table['written']}")
            state = tables.get(table["name"], TableIndex()).apply(delta)
            if len(state) != int(table["rows"]):
                raise BackupError(f"the chain up to backup {source.name} gives table "
                                  f"{table['name']} {len(state)} rows but the manifest says "
                                  f"{table['rows']}; the chain is inconsistent")
            tables[table["name"]] = state
        index = files_index(member, master)
        for area_name, change in index.items():
            paths = where.setdefault(str(area_name), {})
            for path in change["removed"]:
                paths.pop(path, None)
        for area in manifest.file_areas:
            found: dict[str, str] = {}
            for name in area["parts"]:
                found.update((m.name, name) for m in tar_members(
                    name, read_part(source, manifest, records[name], master)))
            expected = index.get(area["area"], {"files": {}, "removed": []})
            if set(found) != set(expected["files"]):
                raise BackupError(f"file area {area['area']} of backup {source.name} holds "
                                  f"{len(found)} files but its index lists "
                                  f"{len(expected['files'])}")
            where.setdefault(str(area["area"]), {}).update((path, (position, part)) for path, part in found.items())
    return Verified(chain=chain, parts=parts, stored_bytes=stored, files=where)


def _one_schema(chain: Chain) -> None:
    base = chain.members[0].manifest
    columns = {t["name"]: t["columns"] for t in base.tables}
    for member in chain.members[1:]:
        if member.manifest.schema_revision != base.schema_revision or \
                {t["name"]: t["columns"] for t in member.manifest.tables} != columns:
            raise BackupError(f"backup {member.source.name} has another schema than its full "
                              f"backup {chain.members[0].source.name}; the chain is "
                              "inconsistent")
