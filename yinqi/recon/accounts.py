"""Naming our accounts without their numbers: in Prefect parameters, the UI and the CLI.

A deployment's parameters are stored by Prefect and shown in its UI, so they name accounts by
reference instead of by number; references are resolved against the config when a run
starts. A reference is one of:

- ``group:<name>``: the accounts of a ``[[schedules]]`` group of reconciliation.toml;
- ``****1234`` or ``<bank>:****1234``: the one account of ours ending in those digits;
- an account number, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from config import YinqiConfig
from yinqi.errors import InvalidValue
from yinqi.security.masking import account_label, mask_account


def group_ref(name: str) -> str:
    return f"group:{name}"


def resolve_accounts(config: YinqiConfig, refs: Sequence[str] | None) -> list[str] | None:
    """The account numbers ``refs`` name (None: every account, as before)."""
    if refs is None:
        return None
    numbers: list[str] = []
    for ref in refs:
        ref = ref.strip()
        if ref.startswith("group:"):
            numbers += _group(config, ref.removeprefix("group:"))
        elif "*" in ref:
            numbers.append(_by_last_four(config, ref))
        else:
            numbers.append(ref)
    return list(dict.fromkeys(numbers))


def _group(config: YinqiConfig, name: str) -> list[str]:
    for schedule in config.reconciliation.schedules:
        if schedule.name == name:
            return list(schedule.accounts)
    known = ", ".join(s.name for s in config.reconciliation.schedules) or "none"
    raise InvalidValue(f"no account group {name!r} in reconciliation.toml (known: {known})")


def _by_last_four(config: YinqiConfig, ref: str) -> str:
    bank, _, masked = ref.rpartition(":")
    found = [a for a in config.accounts
             if mask_account(a.number) == masked and (not bank or a.bank == bank)]
    if len(found) == 1:
        return found[0].number
    if not found:
        raise InvalidValue(f"no account of ours matches {ref!r}")
    raise InvalidValue(f"{ref!r} matches {len(found)} accounts ("
                       + "; ".join(account_label(a.bank, a.name, a.number) for a in found)
                       + "): write it as <bank>:****1234")


def labels(config: YinqiConfig) -> dict[str, dict[str, str]]:
    """Per account number: its bank, name and masked number, for reports and exports."""
    return {a.number: {"bank": a.bank, "account_name": a.name,
                       "account": mask_account(a.number)} for a in config.accounts}


__all__ = ["group_ref", "labels", "resolve_accounts"]
