"""Turn validation failures into the one-line messages operators see.

Pydantic reports every failure as a multi-line block with its own wording; operators get one
line instead: the file, the key path as they would write it in TOML, and what is wrong.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from yinqi.errors import ConfigError

Loc = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class Problem:
    """One fault at a key path, e.g. ``("accounts", 2, "bank")`` for ``accounts[2].bank``."""

    loc: Loc
    message: str


def dotted(loc: Loc) -> str:
    """Spell a key path the way TOML would: ``banks.icbc-sandbox.cutoff``, ``tiers[1].up_to``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for "the dict key itself"; the path has it
            continue
        else:
            key = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
            text += f".{key}" if text else key
    return text


def one_line(head: str, more: int, scope: str) -> ConfigError:
    """The error for ``head``, counting the ``more`` problems left unreported in ``scope``."""
    if more:
        head += f" (and {more} more problem{'s' if more > 1 else ''} {scope})"
    # A value with a newline must not break the one-line promise.
    return ConfigError(" ".join(head.splitlines()))


def file_error(path: Path, problems: Sequence[Problem]) -> ConfigError:
    """``<file>: <key>: <what>`` for the first problem, with the rest counted."""
    first = problems[0]
    where = f"{path}: {dotted(first.loc)}" if first.loc else str(path)
    return one_line(f"{where}: {first.message}", len(problems) - 1, "in this file")


def problems_from(
    error: ValidationError, model: type[BaseModel], redact: Iterable[str] = ()
) -> list[Problem]:
    """Reword pydantic's errors; never echo the input of a top-level key listed in ``redact``."""
    hidden = set(redact)
    details = error.errors()
    # A typo shows up twice: the misspelled key is unknown and the real one is missing.
    # Report the typo (it names the fix) and drop the missing key it explains.
    suggested: set[Loc] = set()
    problems: list[Problem] = []
    for detail in details:
        if detail["type"] == "extra_forbidden":
            loc = tuple(detail["loc"])
            known = _keys_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            if close:
                suggested.add((*loc[:-1], close[0]))
                problems.append(Problem(loc, f"unknown key, did you mean '{close[0]}'?"))
            elif known:
                problems.append(Problem(loc, f"unknown key (known keys: {', '.join(known)})"))
            else:
                problems.append(Problem(loc, "unknown key"))
    for detail in details:
        loc = tuple(detail["loc"])
        if detail["type"] == "extra_forbidden" or (
            detail["type"] == "missing" and loc in suggested
        ):
            continue
        # A list whose bad entry was dropped then also looks too short: only the entry counts.
        if detail["type"] == "too_short" and any(_inside(other["loc"], loc) for other in details):
            continue
        message = _describe(detail)
        if detail["type"] not in _SELF_EXPLAINED and (not loc or loc[0] not in hidden):
            message += f" (got {_show(detail['input'])})"
        problems.append(Problem(loc, message))
    return problems


# Messages that either show the value themselves or have no value worth showing.
_SELF_EXPLAINED = frozenset({"value_error", "assertion_error", "missing", "too_short"})

_PLAIN = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text in quotes",
    "list_type": "must be a list like [..., ...]",
    "tuple_type": "must be a list like [..., ...]",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "path_type": "must be a file path in quotes",
    "missing": "missing required key",
}


def _inside(loc: Sequence[str | int], parent: Loc) -> bool:
    return len(loc) > len(parent) and tuple(loc[: len(parent)]) == parent


def _describe(detail: ErrorDetails) -> str:
    kind = detail["type"]
    ctx: Mapping[str, Any] = detail.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        return str(ctx["error"])
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    if kind == "too_short":
        minimum = ctx["min_length"]
        return "must not be empty" if minimum == 1 else f"must have at least {minimum} entries"
    if kind in _PLAIN:
        return _PLAIN[kind]
    message = detail["msg"]
    return message[:1].lower() + message[1:]


def _show(value: object) -> str:
    text = value.isoformat() if isinstance(value, date | time) else repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _keys_at(model: type[BaseModel], parent: Loc) -> list[str]:
    """The keys allowed in the table at ``parent``, found by walking the model's annotations."""
    annotation: Any = model
    for part in parent:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, tuple, list):
            args = typing.get_args(annotation)
            annotation = args[-1] if typing.get_origin(annotation) is dict else args[0]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        # The key as written in the file: `from`, not the Python name `from_`.
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to the type that holds the keys."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
