"""The payment risk rules as pure, vectorised functions: frames in, hits out, no I/O.

Each rule looks at a chunk of *candidate* payments (the ones being screened, all at the
moment ``now``) and, where it needs them, at frames of history the store loaded for that
chunk. Every frame's columns are fixed (see ``COLUMNS``); :func:`frame` builds one from rows.

- ``candidates``: payment_id, amount_minor, currency, account, name
- ``recent``: payment_id, created_at, amount_minor, currency, account — earlier payments to the
  candidates' payee accounts (not rejected or cancelled), the candidates themselves left out
- ``accounts_seen``: account, first_seen — when each candidate payee account was first paid
- ``names_seen``: name, account, first_seen — every account a candidate payee name was paid to
- ``failures``: account, failed_at — bank rejections and returns of payments to those accounts

Candidates are ordered by payment_id: where two candidates compete (a duplicate, a running
total) the lower id came first. A history row at the same moment as ``now`` (an earlier chunk
of the same import) counts as earlier than every candidate.

Amounts are integer minor units. Thresholds are in the rules' currency; amount rules compare
payments in that currency only (see docs/risk.md). Nothing here puts a whole account number
or payee name in a hit: messages and details carry ``****1234`` and masked names.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from config.risk import (
    AmountRule,
    BlacklistRule,
    OutOfHoursRule,
    RepeatedFailuresRule,
    RiskRule,
    SplitPaymentsRule,
    WithinDaysRule,
)
from yinqi.money import Money
from yinqi.security.masking import mask_account, mask_name

COLUMNS: dict[str, dict[str, str]] = {
    "candidates": {"payment_id": "int64", "amount_minor": "int64", "currency": "object",
                   "account": "object", "name": "object"},
    "recent": {"payment_id": "int64", "created_at": "datetime64[us, UTC]",
               "amount_minor": "int64", "currency": "object", "account": "object"},
    "accounts_seen": {"account": "object", "first_seen": "datetime64[us, UTC]"},
    "names_seen": {"name": "object", "account": "object", "first_seen": "datetime64[us, UTC]"},
    "failures": {"account": "object", "failed_at": "datetime64[us, UTC]"},
}


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule that fired for one payment."""

    payment_id: int
    rule: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def frame(kind: str, rows: Iterable[Sequence[Any]] | Iterable[Mapping[str, Any]] = ()
          ) -> pd.DataFrame:
    """A frame of ``kind`` (a key of ``COLUMNS``) with its fixed columns and dtypes."""
    columns = COLUMNS[kind]
    listed = list(rows)
    if listed and isinstance(listed[0], Mapping):
        data = pd.DataFrame(listed, columns=list(columns))
    else:
        # Column by column: far faster than pandas reading row tuples one by one.
        data = pd.DataFrame(dict(zip(columns, map(list, zip(*listed)), strict=True))
                            if listed else {name: [] for name in columns})
    for name, dtype in columns.items():
        if dtype.startswith("datetime64"):
            data[name] = pd.to_datetime(data[name], utc=True).astype(dtype)
        else:
            data[name] = data[name].astype(dtype)
    return data


# --- normalising what people type -----------------------------------------------------------

_SPACES = re.compile(r"\s+")
_ACCOUNT_SEPARATORS = re.compile(r"[\s\-]+")


def normalise_name(name: str) -> str:
    """One spelling per name: full-width and half-width forms folded (NFKC), case folded,
    every space (also the ideographic one) removed. "ＡＢＣ 公司" == "abc公司"."""
    return _SPACES.sub("", unicodedata.normalize("NFKC", name).casefold())


def normalise_account(number: str) -> str:
    return _ACCOUNT_SEPARATORS.sub("", unicodedata.normalize("NFKC", number)).upper()


def _names(series: pd.Series) -> pd.Series:
    return (series.astype(str).str.normalize("NFKC").str.casefold()
            .str.replace(_SPACES.pattern, "", regex=True))


def _accounts(series: pd.Series) -> pd.Series:
    return (series.astype(str).str.normalize("NFKC")
            .str.replace(_ACCOUNT_SEPARATORS.pattern, "", regex=True).str.upper())


# --- helpers --------------------------------------------------------------------------------


def to_minor(amount: Decimal, currency: str) -> int:
    """A config amount (Decimal) in ``currency``'s minor units."""
    return Money.of(amount, currency).minor


def _money(minor: Any, currency: str) -> str:
    return Money.from_minor(int(minor), currency).format()


def _stamp(moment: datetime) -> pd.Timestamp:
    if moment.tzinfo is None:
        raise ValueError("risk rules need a timezone-aware moment")
    return pd.Timestamp(moment).tz_convert(UTC)


def _ordered(history: pd.DataFrame, candidates: pd.DataFrame, now: datetime,
             by: str = "account") -> pd.DataFrame:
    """History rows (at their time) and candidates (at ``now``) in the order they came."""
    hist = pd.DataFrame({"payment_id": history["payment_id"], "t": history["created_at"],
                         "amount_minor": history["amount_minor"],
                         "currency": history["currency"], by: history[by],
                         "candidate": False})
    cand = pd.DataFrame({"payment_id": candidates["payment_id"], "t": _stamp(now),
                         "amount_minor": candidates["amount_minor"],
                         "currency": candidates["currency"], by: candidates[by],
                         "candidate": True})
    parts = [p for p in (hist, cand) if not p.empty]
    if not parts:
        return cand
    both = pd.concat(parts, ignore_index=True)
    both["t"] = pd.to_datetime(both["t"], utc=True)
    return both.sort_values([by, "t", "payment_id"], kind="stable", ignore_index=True)


def _hits(rule: str, rows: pd.DataFrame, message: Callable[[Any], str],
          details: Callable[[Any], dict[str, Any]]) -> list[Hit]:
    return [Hit(int(r.payment_id), rule, message(r), details(r))
            for r in rows.itertuples(index=False)]


# --- the rules ------------------------------------------------------------------------------


def large_single_amount(candidates: pd.DataFrame, rule: AmountRule, *, currency: str
                        ) -> list[Hit]:
    """One payment of ``threshold`` or more."""
    limit = to_minor(rule.threshold, currency)
    fired = candidates[(candidates["currency"] == currency)
                       & (candidates["amount_minor"] >= limit)]
    return _hits(
        "large_single_amount", fired,
        lambda r: (f"payment of {_money(r.amount_minor, currency)} to {mask_account(r.account)} "
                   f"is at or above the single-payment threshold {_money(limit, currency)}"),
        lambda r: {"amount": _money(r.amount_minor, currency),
                   "threshold": _money(limit, currency), "account": mask_account(r.account)})


def daily_total_per_payee(candidates: pd.DataFrame, recent: pd.DataFrame, rule: AmountRule, *,
                          currency: str, timezone: str, now: datetime) -> list[Hit]:
    """Payments to one payee account on one calendar day (in ``timezone``) reaching
    ``threshold``: the payment that reaches it fires, and every later one that day."""
    limit = to_minor(rule.threshold, currency)
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date()
    day_start = datetime.combine(day, time(0), zone).astimezone(UTC)
    history = recent[(recent["created_at"] >= _stamp(day_start))
                     & (recent["created_at"] <= _stamp(now)) & (recent["currency"] == currency)]
    mine = candidates[candidates["currency"] == currency]
    if mine.empty:
        return []
    both = _ordered(history, mine, now)
    both["total"] = both.groupby("account")["amount_minor"].cumsum()
    fired = both[both["candidate"] & (both["total"] >= limit)]
    return _hits(
        "daily_total_per_payee", fired,
        lambda r: (f"payments to {mask_account(r.account)} on {day.isoformat()} reach "
                   f"{_money(r.total, currency)} with this one (threshold "
                   f"{_money(limit, currency)} a day)"),
        lambda r: {"account": mask_account(r.account), "day": day.isoformat(),
                   "total": _money(r.total, currency), "threshold": _money(limit, currency),
                   "timezone": timezone})


def new_payee(candidates: pd.DataFrame, accounts_seen: pd.DataFrame, rule: RiskRule, *,
              now: datetime) -> list[Hit]:
    """A payment to a payee account no earlier payment went to. Payments entered at the same
    moment (one import) are not earlier than each other: all of them fire."""
    known = accounts_seen.loc[accounts_seen["first_seen"] < _stamp(now), "account"]
    fired = candidates[~candidates["account"].isin(set(known))]
    return _hits(
        "new_payee", fired,
        lambda r: f"first payment to payee account {mask_account(r.account)}",
        lambda r: {"account": mask_account(r.account)})


def payee_account_changed(candidates: pd.DataFrame, accounts_seen: pd.DataFrame,
                          names_seen: pd.DataFrame, rule: WithinDaysRule, *, now: datetime
                          ) -> list[Hit]:
    """The payee's name was paid to another account before this account was first seen, and
    this account was first seen within ``within_days`` days (a changed bank account is the
    classic way to divert a supplier's money)."""
    if candidates.empty:
        return []
    at = _stamp(now)
    since = _stamp(now - timedelta(days=rule.within_days))
    first = accounts_seen.groupby("account", as_index=False)["first_seen"].min()
    cand = pd.DataFrame({"payment_id": candidates["payment_id"],
                         "account": candidates["account"],
                         "name_key": _names(candidates["name"]),
                         "name": candidates["name"]}).merge(first, on="account", how="left")
    # An account nobody paid before is first seen now.
    cand["first_seen"] = pd.to_datetime(cand["first_seen"], utc=True).fillna(at)
    pairs = pd.concat([
        pd.DataFrame({"name_key": _names(names_seen["name"]),
                      "other": names_seen["account"],
                      "other_seen": pd.to_datetime(names_seen["first_seen"], utc=True)}),
        pd.DataFrame({"name_key": cand["name_key"], "other": cand["account"],
                      "other_seen": cand["first_seen"]}),
    ], ignore_index=True)
    pairs = pairs.groupby(["name_key", "other"], as_index=False)["other_seen"].min()
    joined = cand[cand["first_seen"] >= since].merge(pairs, on="name_key")
    joined = joined[(joined["other"] != joined["account"])
                    & (joined["other_seen"] < joined["first_seen"])]
    if joined.empty:
        return []
    # The account the payee used most recently before this one is the one it "changed" from.
    fired = (joined.sort_values(["payment_id", "other_seen"], kind="stable")
             .groupby("payment_id", as_index=False).last())
    return _hits(
        "payee_account_changed", fired,
        lambda r: (f"payee {mask_name(r.name)} was paid to {mask_account(r.other)} before; "
                   f"account {mask_account(r.account)} is new since "
                   f"{r.first_seen:%Y-%m-%d} (within {rule.within_days} days)"),
        lambda r: {"payee": mask_name(r.name), "account": mask_account(r.account),
                   "previous_account": mask_account(r.other),
                   "first_seen": r.first_seen.isoformat(),
                   "previous_first_seen": r.other_seen.isoformat()})


def duplicate_payment(candidates: pd.DataFrame, recent: pd.DataFrame, rule: WithinDaysRule, *,
                      now: datetime) -> list[Hit]:
    """Same payee account, amount and currency as an earlier payment within ``within_days``
    days; inside one chunk the later payment (higher id) is the duplicate."""
    since = _stamp(now - timedelta(days=rule.within_days))
    history = recent[(recent["created_at"] >= since) & (recent["created_at"] <= _stamp(now))]
    both = _ordered(history, candidates, now)
    key = ["account", "amount_minor", "currency"]
    both = both.sort_values([*key, "t", "payment_id"], kind="stable", ignore_index=True)
    grouped = both.groupby(key, sort=False)
    both["first_id"] = grouped["payment_id"].transform("first")
    both["previous_t"] = grouped["t"].shift(1)
    fired = both[both["candidate"] & both["previous_t"].notna()]
    return _hits(
        "duplicate_payment", fired,
        lambda r: (f"same payee {mask_account(r.account)}, amount and currency "
                   f"({_money(r.amount_minor, r.currency)}) as payment {int(r.first_id)} "
                   f"within {rule.within_days} days"),
        lambda r: {"account": mask_account(r.account),
                   "amount": _money(r.amount_minor, r.currency),
                   "duplicate_of": int(r.first_id),
                   "previous_at": r.previous_t.isoformat()})


def split_payments(candidates: pd.DataFrame, recent: pd.DataFrame, rule: SplitPaymentsRule, *,
                   currency: str, now: datetime) -> list[Hit]:
    """Two or more payments to one payee account within ``within_hours`` hours, each below
    ``threshold`` but together at or above it: the one that crosses it fires, and later ones."""
    limit = to_minor(rule.threshold, currency)
    since = _stamp(now - timedelta(hours=rule.within_hours))
    history = recent[(recent["created_at"] >= since) & (recent["created_at"] <= _stamp(now))
                     & (recent["currency"] == currency) & (recent["amount_minor"] < limit)]
    mine = candidates[(candidates["currency"] == currency) & (candidates["amount_minor"] < limit)]
    if mine.empty:
        return []
    both = _ordered(history, mine, now)
    grouped = both.groupby("account")
    both["total"] = grouped["amount_minor"].cumsum()
    both["n"] = grouped.cumcount() + 1
    # Each is below the threshold, so reaching it always takes two or more.
    fired = both[both["candidate"] & (both["total"] >= limit)]
    return _hits(
        "split_payments", fired,
        lambda r: (f"{int(r.n)} payments to {mask_account(r.account)} within "
                   f"{rule.within_hours} h, each below {_money(limit, currency)}, add up to "
                   f"{_money(r.total, currency)}"),
        lambda r: {"account": mask_account(r.account), "payments": int(r.n),
                   "total": _money(r.total, currency), "threshold": _money(limit, currency),
                   "within_hours": rule.within_hours})


def blacklist(candidates: pd.DataFrame, rule: BlacklistRule) -> list[Hit]:
    """A payee account or payee name on the blacklist (names compared normalised)."""
    accounts = {normalise_account(a) for a in rule.accounts}
    names = {normalise_name(n) for n in rule.names}
    if candidates.empty or not (accounts or names):
        return []
    by_account = _accounts(candidates["account"]).isin(accounts)
    by_name = _names(candidates["name"]).isin(names)
    fired = candidates.assign(by_account=by_account, by_name=by_name)[by_account | by_name]

    def what(r: Any) -> str:
        if r.by_account:
            return f"payee account {mask_account(r.account)}"
        return f"payee name {mask_name(r.name)} (account {mask_account(r.account)})"

    return _hits(
        "blacklist", fired,
        lambda r: f"{what(r)} is on the blacklist",
        lambda r: {"account": mask_account(r.account), "payee": mask_name(r.name),
                   "matched": "account" if r.by_account else "name"})


def out_of_hours(candidates: pd.DataFrame, rule: OutOfHoursRule, *, now: datetime,
                 doing: str = "entered") -> list[Hit]:
    """Payments ``doing`` (entered, approved, corrected) at ``now``, outside start..end in the
    rule's time zone: before ``start`` or from ``end`` on."""
    local = now.astimezone(ZoneInfo(rule.timezone))
    if rule.start <= local.time().replace(tzinfo=None) < rule.end:
        return []
    window = f"{rule.start:%H:%M}-{rule.end:%H:%M} {rule.timezone}"
    return _hits(
        "out_of_hours", candidates,
        lambda r: f"{doing} at {local:%Y-%m-%d %H:%M} {rule.timezone}, outside business hours "
                  f"{window}",
        lambda r: {"at": local.isoformat(), "doing": doing, "business_hours": window})


def repeated_failures(candidates: pd.DataFrame, failures: pd.DataFrame,
                      rule: RepeatedFailuresRule, *, now: datetime) -> list[Hit]:
    """Payments to a payee account the bank rejected (or returned) ``count`` times or more in
    the last ``within_hours`` hours."""
    since = _stamp(now - timedelta(hours=rule.within_hours))
    recent = failures[(failures["failed_at"] >= since) & (failures["failed_at"] <= _stamp(now))]
    counts = recent.groupby("account", as_index=False).size().rename(
        columns={"size": "failures"})
    if counts.empty or candidates.empty:
        return []
    seen = candidates.merge(counts, on="account", how="left")
    seen["failures"] = seen["failures"].fillna(0).astype(int)
    fired = seen[seen["failures"] >= rule.count]
    return _hits(
        "repeated_failures", fired,
        lambda r: (f"{r.failures} payments to {mask_account(r.account)} were rejected by the "
                   f"bank within {rule.within_hours} h (limit {rule.count})"),
        lambda r: {"account": mask_account(r.account), "failures": int(r.failures),
                   "count": rule.count, "within_hours": rule.within_hours})


__all__ = [
    "COLUMNS", "Hit", "blacklist", "daily_total_per_payee", "duplicate_payment", "frame",
    "large_single_amount", "new_payee", "normalise_account", "normalise_name", "out_of_hours",
    "payee_account_changed", "repeated_failures", "split_payments", "to_minor",
]
