"""Backup targets on real filesystems: a local folder, and fsspec's ``memory://`` and
``file://``. Each writes and reads parts, lists only finished backups, discards aborted ones,
deletes, and refuses unsafe names; ``open_target`` picks the right kind from a path or URL and
names the package a missing driver needs. A real full backup round-trips through
``memory://``."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import pytest

from conftest import MASTER_SECRET
from yinqi.backup.errors import BackupError
from yinqi.backup.fsspec_target import FsspecTarget
from yinqi.backup.manifest import load
from yinqi.backup.target import MANIFEST, BackupSink, BackupTarget, LocalTarget
from yinqi.backup.targets import open_target

MASTER = MASTER_SECRET.encode()
NAME = "20261125T020000Z-full"
PARTS = {
    "db/payments/00001.jsonl": b"sealed rows \x00\xff",
    "db/payments/00002.jsonl": b"more sealed rows",
    "files/receipts/00001.tar": bytes(range(256)) * 64,
}


def memory_url() -> str:
    # The memory filesystem is one per process: every test gets its own root.
    return f"memory://yinqi-tests-{uuid.uuid4().hex}/backups"


@pytest.fixture
def memory_target() -> Iterator[FsspecTarget]:
    target = FsspecTarget(memory_url())
    yield target
    if target.fs.exists(target.root):
        target.fs.rm(target.root, recursive=True)


@pytest.fixture(params=["local", "fsspec-file", "fsspec-memory"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> BackupTarget:
    if request.param == "local":
        return LocalTarget(tmp_path / "backups")
    if request.param == "fsspec-file":
        return FsspecTarget(f"file://{tmp_path}/backups")
    memory: FsspecTarget = request.getfixturevalue("memory_target")
    return memory


def finish(target: BackupTarget, name: str, parts: dict[str, bytes] = PARTS) -> BackupSink:
    sink = target.create(name)
    for part, data in parts.items():
        sink.write(part, data)
    sink.write(MANIFEST, json.dumps({"name": name}).encode())
    sink.commit()
    return sink


# --- the contract every target keeps -------------------------------------------------------

def test_parts_round_trip(target: BackupTarget) -> None:
    sink = finish(target, NAME)
    assert sink.name == NAME and sink.location.endswith(f"backups/{NAME}")
    assert target.names() == [NAME]
    source = target.open(NAME)
    assert source.name == NAME
    for part, data in PARTS.items():
        assert source.exists(part) and source.read(part) == data
    assert json.loads(source.read(MANIFEST)) == {"name": NAME}
    assert not source.exists("db/payments/00003.jsonl")
    assert not source.exists("db/payments")           # a folder is not a part


def test_unfinished_backups_are_not_listed(target: BackupTarget) -> None:
    crashed = target.create("20261124T020000Z-full")
    crashed.write("db/payments/00001.jsonl", b"half a backup")   # then the process died
    assert target.names() == []
    finish(target, NAME)
    finish(target, "20261126T020000Z-incr")
    assert target.names() == [NAME, "20261126T020000Z-incr"]


def test_abort_discards_the_backup(target: BackupTarget) -> None:
    sink = target.create(NAME)
    for part, data in PARTS.items():
        sink.write(part, data)
    sink.abort()
    assert target.names() == []
    with pytest.raises(BackupError, match=f"no backup named {NAME}"):
        target.open(NAME)
    finish(target, NAME)                      # the name is free again
    assert target.names() == [NAME]


def test_delete_removes_one_backup(target: BackupTarget) -> None:
    finish(target, NAME)
    finish(target, "20261126T020000Z-full")
    target.delete(NAME)
    assert target.names() == ["20261126T020000Z-full"]
    with pytest.raises(BackupError, match=f"no backup named {NAME}"):
        target.open(NAME)
    target.delete(NAME)                       # already gone: nothing to do
    assert target.open("20261126T020000Z-full").read("db/payments/00002.jsonl") == \
        PARTS["db/payments/00002.jsonl"]


def test_a_missing_backup_or_part_is_a_backup_error(target: BackupTarget) -> None:
    with pytest.raises(BackupError, match="no backup named 20990101T000000Z-full"):
        target.open("20990101T000000Z-full")
    finish(target, NAME)
    with pytest.raises(BackupError, match="backup part db/audit_events/00001.jsonl is missing"):
        target.open(NAME).read("db/audit_events/00001.jsonl")
    with pytest.raises(BackupError, match="already exists"):
        target.create(NAME)


@pytest.mark.parametrize("part", ["../escaped", "/etc/escaped", "", ".", "db/../../escaped",
                                  "db/.."])
def test_unsafe_part_names_are_refused(target: BackupTarget, tmp_path: Path,
                                       part: str) -> None:
    sink = target.create(NAME)
    with pytest.raises(BackupError, match="not a plain relative path"):
        sink.write(part, b"x")
    finish(target, "20261126T020000Z-full")
    source = target.open("20261126T020000Z-full")
    with pytest.raises(BackupError, match="not a plain relative path"):
        source.read(part)
    with pytest.raises(BackupError, match="not a plain relative path"):
        source.exists(part)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "backups/escaped").exists()


@pytest.mark.parametrize("name", ["../outside", "/abs", ""])
def test_unsafe_backup_names_are_refused(target: BackupTarget, name: str) -> None:
    for use in (target.create, target.open, target.delete):
        with pytest.raises(BackupError):
            use(name)


def test_a_backup_finds_its_finished_siblings(target: BackupTarget) -> None:
    finish(target, NAME)
    finish(target, "20261126T020000Z-incr")
    target.create("20261127T020000Z-incr").write("db/payments/00001.jsonl", b"unfinished")
    source = target.open("20261126T020000Z-incr")
    assert source.location.endswith("backups/20261126T020000Z-incr")
    sibling = source.sibling(NAME)
    assert sibling is not None and sibling.name == NAME
    assert sibling.read("db/payments/00002.jsonl") == PARTS["db/payments/00002.jsonl"]
    assert source.sibling("20261127T020000Z-incr") is None      # not finished
    assert source.sibling("20990101T000000Z-full") is None
    with pytest.raises(BackupError):
        source.sibling("../elsewhere")


# --- what only the fsspec target does ------------------------------------------------------

def test_the_manifest_written_last_finishes_the_backup(memory_target: FsspecTarget) -> None:
    sink = memory_target.create(NAME)
    sink.write("db/payments/00001.jsonl", b"rows")
    with pytest.raises(BackupError, match="already written"):
        sink.write("db/payments/00001.jsonl", b"rows again")
    with pytest.raises(BackupError, match="has no manifest.json: it did not finish"):
        sink.commit()
    assert memory_target.names() == []
    sink.write(MANIFEST, b"{}")
    assert memory_target.names() == [NAME]    # visible from the moment the manifest lands
    with pytest.raises(BackupError, match="comes too late"):
        sink.write("db/payments/00002.jsonl", b"late rows")
    sink.commit()
    assert not memory_target.open(NAME).exists("db/payments/00002.jsonl")


def test_a_crashed_backup_is_unfinished_not_corrupt(memory_target: FsspecTarget) -> None:
    crashed = memory_target.create(NAME)
    crashed.write("db/payments/00001.jsonl", b"half a backup")
    # Its folder can be opened, and reading it says plainly that it never finished.
    with pytest.raises(BackupError, match="missing from backup .* never finished"):
        load(memory_target.open(NAME), MASTER)
    with pytest.raises(BackupError, match="unfinished backup: delete it"):
        memory_target.create(NAME)
    memory_target.delete(NAME)
    assert not memory_target.fs.exists(f"{memory_target.root}/{NAME}")
    finish(memory_target, NAME)
    assert memory_target.names() == [NAME]


def test_abort_and_delete_leave_no_objects(memory_target: FsspecTarget) -> None:
    fs, root = memory_target.fs, memory_target.root
    finish(memory_target, NAME)
    assert len(fs.find(f"{root}/{NAME}")) == len(PARTS) + 1
    memory_target.delete(NAME)
    assert fs.find(root) == []
    sink = memory_target.create(NAME)
    sink.write("db/payments/00001.jsonl", b"rows")
    sink.write(MANIFEST, b"{}")
    sink.abort()                              # even after its manifest
    assert fs.find(root) == [] and memory_target.names() == []


def test_a_backup_name_is_one_plain_folder(memory_target: FsspecTarget) -> None:
    for name in ("nested/backup", ".hidden"):
        with pytest.raises(BackupError, match="not a plain folder name"):
            memory_target.create(name)


def test_names_read_the_store_not_the_object(memory_target: FsspecTarget) -> None:
    url = memory_target.location
    finish(memory_target, NAME)
    other = FsspecTarget(url)
    assert other.names() == [NAME]
    other.delete(NAME)
    assert memory_target.names() == []


def test_a_missing_root_lists_nothing(tmp_path: Path) -> None:
    assert FsspecTarget(memory_url()).names() == []
    assert FsspecTarget(f"file://{tmp_path}/never-made").names() == []
    assert not (tmp_path / "never-made").exists()


def test_locations_are_urls() -> None:
    url = memory_url()
    assert FsspecTarget(url).location == url.replace("memory://", "memory:///")
    assert FsspecTarget("file:///srv/yinqi/backups/").location == "file:///srv/yinqi/backups"


# --- open_target ---------------------------------------------------------------------------

def test_paths_and_file_urls_open_local_targets(tmp_path: Path) -> None:
    for spec, root in [(tmp_path / "a", tmp_path / "a"), (str(tmp_path / "b"), tmp_path / "b"),
                       (f"file://{tmp_path}/c", tmp_path / "c"),
                       (f"file://localhost{tmp_path}/d%20e", tmp_path / "d e"),
                       ("~/yinqi-backups", Path.home() / "yinqi-backups")]:
        target = open_target(spec)
        assert isinstance(target, LocalTarget) and target.root == root


def test_other_urls_open_fsspec_targets() -> None:
    url = memory_url()
    target = open_target(url)
    assert isinstance(target, FsspecTarget) and target.location == \
        url.replace("memory://", "memory:///")
    finish(target, NAME)
    assert open_target(url).names() == [NAME]
    target.delete(NAME)


@pytest.mark.parametrize(("spec", "message"), [
    ("nosuchfs://bucket/backups", "protocol nosuchfs:// is not known"),
    ("file://backup-host/srv/backups", "not a local folder URL"),
    ("memory://", "names no folder"),
    ("   ", "empty"),
])
def test_unusable_targets_are_refused(spec: str, message: str) -> None:
    with pytest.raises(BackupError, match=message):
        open_target(spec)


def test_a_missing_driver_names_the_package() -> None:
    protocol = f"yinqitest{uuid.uuid4().hex[:8]}"
    fsspec.register_implementation(protocol, "yinqi_absent_driver.FileSystem",
                                   errtxt="Install yinqi-absent-driver to reach it")
    with pytest.raises(BackupError) as info:
        open_target(f"{protocol}://bucket/backups")
    message = str(info.value)
    assert f"{protocol}://" in message and "Install yinqi-absent-driver" in message
    assert "pip install yinqi_absent_driver" in message


def test_s3_without_s3fs_says_to_install_it() -> None:
    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed here, so s3:// opens")
    with pytest.raises(BackupError, match=r"s3://.*s3fs.*pip install s3fs"):
        open_target("s3://treasury-backups/yinqi")


# --- a real backup through an object-store-like target -------------------------------------

def test_a_backup_chain_round_trips_through_memory(tmp_path: Path,
                                                   memory_target: FsspecTarget) -> None:
    from config import load_settings
    from yinqi.backup import create_backup, verify_backup
    from yinqi.bootstrap import App
    from yinqi.cli.init_cmd import run_init

    home = tmp_path / "home"
    app = App(load_settings(home=home, database_url=f"sqlite:///{tmp_path / 'yinqi.db'}",
                            master_secret=MASTER_SECRET))
    try:
        run_init(app)
        full = create_backup(app.engine, memory_target, app.master_secret, kind="full",
                             home=home, config_dir=app.settings.config_dir,
                             now=datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
        receipt = home / "receipts/icbc/2026-11-25/R-0001.pdf"
        receipt.parent.mkdir(parents=True)
        receipt.write_bytes(app.files.seal(b"%PDF-1.7 R-0001", "receipts/icbc/R-0001"))
        incr = create_backup(app.engine, memory_target, app.master_secret, kind="incremental",
                             home=home, config_dir=app.settings.config_dir,
                             now=datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    finally:
        app.close()
    assert memory_target.names() == [full.name, incr.name] == \
        ["20261125T020000Z-full", "20261126T020000Z-incr"]
    assert incr.kind == "incremental" and incr.previous == full.name
    assert incr.location == f"{memory_target.location}/{incr.name}"
    # Verifying the incremental finds its full backup through the target.
    verified = verify_backup(memory_target.open(incr.name), MASTER)
    assert verified.parts == full.parts + incr.parts
    assert verified.chain.names == [full.name, incr.name]
    # The receipt archived after the full backup is held by the incremental (member 1).
    assert {path: member for path, (member, _) in verified.files["receipts"].items()} == \
        {"icbc/2026-11-25/R-0001.pdf": 1}
    memory_target.delete(full.name)
    with pytest.raises(BackupError, match=f"backup {full.name} is missing"):
        verify_backup(memory_target.open(incr.name), MASTER)
