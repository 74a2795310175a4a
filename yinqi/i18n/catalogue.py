"""The message catalogues: read a ``.po``, compile it to ``.mo``, and check both against the
messages the code asks for.

The ``.mo`` files are committed next to their ``.po``, compiled by :func:`compile_po` (after
CPython's Tools/i18n/msgfmt.py, written byte for byte the same on every machine), because a
compiled catalogue must be there on a fresh clone and in the wheel with nothing run by hand,
and compiling at import would need a writable folder beside the code (site-packages often is
not) shared by concurrent workers. :func:`problems` finds a ``.mo`` that lags its ``.po``.
"""

from __future__ import annotations

import ast
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter

from yinqi.i18n import CATALOGUES, LOCALE_DIR, catalogue_path

#: Folders of the source tree whose ``_()`` / ``ngettext()`` calls need a translation.
SOURCES = ("yinqi", "flows", "tasks", "connectors", "config")
#: Function names that mark a message for translation, and their literal arguments.
MARKERS = {"_": ("msgid",), "gettext": ("msgid",), "ngettext": ("msgid", "msgid_plural"),
           "pgettext": ("msgctxt", "msgid")}
_MAGIC = 0x950412DE


@dataclass
class Entry:
    msgid: str
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    fuzzy: bool = False
    line: int = 0

    @property
    def translated(self) -> bool:
        return not self.fuzzy and bool(self.msgstr) and all(self.msgstr.values())

    @property
    def key(self) -> tuple[str | None, str]:
        return self.msgctxt, self.msgid


def read_po(path: Path) -> list[Entry]:
    """The entries of a ``.po`` file, the header (msgid "") first."""
    entries: list[Entry] = []
    entry: Entry | None = None
    target: tuple[str, int] | None = None  # which string a continuation line extends
    fuzzy = False
    context: str | None = None

    def finish() -> None:
        nonlocal entry
        if entry is not None:
            entries.append(entry)
        entry = None

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        where = f"{path}:{number}"
        if not line:
            continue
        if line.startswith("#"):
            if target is not None and target[0] == "msgstr":
                finish()
                target = None
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.startswith('"'):
            if target is not None and target[0] == "msgctxt" and context is not None:
                context += _literal(line, where)
            elif entry is not None and target is not None:
                _extend(entry, target, _literal(line, where))
            else:
                raise ValueError(f"{where}: a string outside an entry")
            continue
        if keyword == "msgctxt":
            if target is not None and target[0] == "msgstr":
                finish()
            context = _literal(rest, where)
            target = ("msgctxt", 0)
        elif keyword == "msgid":
            if target is not None and target[0] == "msgstr":
                finish()
            if entry is not None:
                raise ValueError(f"{where}: msgid without a msgstr before it")
            entry = Entry(msgid=_literal(rest, where), msgctxt=context, fuzzy=fuzzy,
                          line=number)
            fuzzy, context = False, None
            target = ("msgid", 0)
        elif keyword == "msgid_plural" and entry is not None:
            entry.msgid_plural = _literal(rest, where)
            target = ("msgid_plural", 0)
        elif keyword.startswith("msgstr") and entry is not None:
            index = int(keyword[7:-1]) if keyword.startswith("msgstr[") else 0
            entry.msgstr[index] = _literal(rest, where)
            target = ("msgstr", index)
        else:
            raise ValueError(f"{where}: cannot read {line[:40]!r}")
    finish()
    return entries


def _literal(text: str, where: str) -> str:
    text = text.strip()
    if not (text.startswith('"') and text.endswith('"') and len(text) >= 2):
        raise ValueError(f"{where}: expected a quoted string")
    value = ast.literal_eval(text)  # the C escapes of a .po (\n, \", \\) are Python's too
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a quoted string")
    return value


def _extend(entry: Entry, target: tuple[str, int], more: str) -> None:
    kind, index = target
    if kind == "msgid":
        entry.msgid += more
    elif kind == "msgid_plural":
        entry.msgid_plural = (entry.msgid_plural or "") + more
    else:
        entry.msgstr[index] += more


def compile_po(path: Path) -> bytes:
    """The ``.mo`` of a ``.po``: translated entries only, keys sorted, little endian, no
    hash table, so the same ``.po`` always gives the same bytes (GNU ``msgfmt --no-hash``'s
    on a little-endian machine)."""
    messages: dict[bytes, bytes] = {}
    for e in read_po(path):
        if not e.translated:
            continue
        key = e.msgid if e.msgid_plural is None else f"{e.msgid}\0{e.msgid_plural}"
        if e.msgctxt is not None:
            key = f"{e.msgctxt}\x04{key}"  # how GNU gettext files a message with a context
        value = "\0".join(e.msgstr[i] for i in sorted(e.msgstr))
        messages[key.encode("utf-8")] = value.encode("utf-8")
    keys = sorted(messages)
    ids = strs = b""
    offsets = []
    for key in keys:
        offsets.append((len(ids), len(key), len(strs), len(messages[key])))
        ids += key + b"\0"
        strs += messages[key] + b"\0"
    key_start = 7 * 4 + 16 * len(keys)
    value_start = key_start + len(ids)
    table: list[int] = []
    for id_at, id_len, _, _ in offsets:
        table += [id_len, id_at + key_start]
    for _, _, str_at, str_len in offsets:
        table += [str_len, str_at + value_start]
    # No hash table (size 0), its offset where one would start: `msgfmt --no-hash` bytes.
    header = struct.pack("<7I", _MAGIC, 0, len(keys), 7 * 4, 7 * 4 + 8 * len(keys), 0,
                         key_start)
    return header + struct.pack(f"<{len(table)}I", *table) + ids + strs


def po_paths(locale_dir: Path = LOCALE_DIR) -> Iterator[tuple[str, Path]]:
    """(catalogue folder, its ``.po``) for every language that has a catalogue."""
    for folder in CATALOGUES.values():
        if folder is not None:
            yield folder, catalogue_path(folder, locale_dir).with_suffix(".po")


def compile_all(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Write every ``.mo`` from its ``.po``; returns the files written."""
    written = []
    for folder, po in po_paths(locale_dir):
        mo = catalogue_path(folder, locale_dir)
        data = compile_po(po)
        if not mo.is_file() or mo.read_bytes() != data:
            mo.write_bytes(data)
            written.append(mo)
    return written


@dataclass(frozen=True)
class Wanted:
    """A message the code asks for, and where."""

    msgid: str
    msgid_plural: str | None
    msgctxt: str | None
    where: str

    @property
    def key(self) -> tuple[str | None, str]:
        return self.msgctxt, self.msgid


def extract(root: Path | None = None) -> tuple[list[Wanted], list[str]]:
    """Every literal message in ``_()``, ``gettext()``, ``ngettext()`` and ``pgettext()``
    calls under the source folders of ``root`` (default: this source tree), and the calls
    whose message is not a literal (no catalogue can hold it: translate a literal, then
    ``.format()`` it)."""
    root = root or LOCALE_DIR.parent.parent
    wanted: list[Wanted] = []
    not_literal: list[str] = []
    for path in _sources(root):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in MARKERS):
                continue
            where = f"{rel}:{node.lineno}"
            names = MARKERS[node.func.id]
            texts = {name: a.value for name, a in zip(names, node.args, strict=False)
                     if isinstance(a, ast.Constant) and isinstance(a.value, str)}
            if len(texts) != len(names):
                not_literal.append(where)
                continue
            wanted.append(Wanted(texts["msgid"], texts.get("msgid_plural"),
                                 texts.get("msgctxt"), where))
    return wanted, not_literal


def _sources(root: Path) -> Iterable[Path]:
    machinery = root / "yinqi" / "i18n"  # passes messages on, never a literal
    for folder in SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            if machinery not in path.parents:
                yield path


def _shown(key: tuple[str | None, str]) -> str:
    context, msgid = key
    return repr(msgid) if context is None else f"{msgid!r} (context {context!r})"


def _fields(text: str) -> set[str]:
    try:
        return {name for _, name, _, _ in Formatter().parse(text) if name is not None}
    except ValueError:  # a lone brace: .format() would raise when the message is printed
        return {"(unbalanced brace)"}


def problems(root: Path | None = None, locale_dir: Path = LOCALE_DIR) -> list[str]:
    """What is wrong with the catalogues, one line each: messages the code asks for that a
    catalogue lacks or leaves untranslated, entries nothing asks for, placeholders a
    translation changed, and a ``.mo`` that is not its ``.po`` compiled."""
    wanted, not_literal = extract(root)
    out = [f"{where}: the message is not a string literal" for where in not_literal]
    asked = {w.key: w for w in wanted}
    for folder, po in po_paths(locale_dir):
        entries = {e.key: e for e in read_po(po) if e.msgid}
        for key, w in asked.items():
            e = entries.get(key)
            if e is None:
                out.append(f"{w.where}: not in {folder}: {_shown(key)}")
            elif not e.translated:
                out.append(f"{po.name}:{e.line}: {folder} has no translation of {_shown(key)}")
            elif e.msgid_plural != w.msgid_plural:
                out.append(f"{po.name}:{e.line}: plural {e.msgid_plural!r} but {w.where} "
                           f"asks for {w.msgid_plural!r}")
        for key, e in entries.items():
            if key not in asked:
                out.append(f"{po.name}:{e.line}: nothing asks for {_shown(key)} any more")
            expected = _fields(e.msgid) | _fields(e.msgid_plural or "")
            for text in e.msgstr.values():
                if text and _fields(text) != expected:
                    out.append(f"{po.name}:{e.line}: placeholders {sorted(_fields(text))} "
                               f"in the translation of {_shown(key)}, expected "
                               f"{sorted(expected)}")
        mo = catalogue_path(folder, locale_dir)
        if not mo.is_file() or mo.read_bytes() != compile_po(po):
            out.append(f"{mo}: not compiled from {po.name}: run python -m yinqi.i18n compile")
    return out
