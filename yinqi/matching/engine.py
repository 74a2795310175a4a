"""The matching engine: statement lines against payments, rule by rule, on whole columns.

See :func:`match` and ``docs/reconciliation.md``. Every rule is a handful of joins, lookups
and array comparisons over all lines at once; the only Python loops run over the rules,
over the few rounds of the one-to-one assignment, over the three kinds of reference and
over the distinct currencies of the data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from yinqi.currency import CURRENCIES
from yinqi.matching import _util as u
from yinqi.matching.names import NameBook
from yinqi.matching.params import MatchParams
from yinqi.reconciliation import Match, MatchRule

#: Columns ``payments`` must have. Optional: ``settled`` (bool): the payment's debit was
#: matched in an earlier run, so no debit may match it now, but a return may still name it.
PAYMENT_COLUMNS = ("payment_id", "end_to_end_id", "bank_reference", "batch_key", "account",
                   "currency", "amount_minor", "value_date", "creditor_name",
                   "creditor_account")
#: Columns ``lines`` must have. Optional: ``status`` (BOOK / PDNG / INFO: only
#: ``MatchParams.booked_statuses`` are matched), ``charges_minor`` (a fee the line itemises).
LINE_COLUMNS = ("line_id", "account", "currency", "amount_minor", "booking_date", "value_date",
                "end_to_end_id", "bank_reference", "counterparty_name", "counterparty_account",
                "remittance", "is_reversal", "entry_ref", "batch_key")
MATCH_COLUMNS = ("match_id", "rule", "score", "explanation")
ITEM_COLUMNS = ("match_id", "payment_id", "line_id")
CANDIDATE_COLUMNS = ("side", "line_id", "payment_id", "rank", "score", "why")

RULE_ORDER = (MatchRule.EXACT_REFERENCE, MatchRule.BATCH_BOOKING,
              MatchRule.AMOUNT_ACCOUNT_DATE_NAME, MatchRule.AMOUNT_PLUS_FEE, MatchRule.RETURN)
_RULE_CODE = {rule: n for n, rule in enumerate(MatchRule)}
_ACCOUNT_CHARS = r"[\s\-]+"
# How the counterparty account on a line compares with the payee's account.
_ABSENT, _SAME, _MASKED_SAME, _DIFFERENT = 0, 1, 2, 3
# pay_match values besides a match index.
OPEN, SETTLED_EARLIER = -1, -2


@dataclass(frozen=True)
class MatchResult:
    """What :func:`match` found.

    ``matches``: match_id (int64, 1..n), rule (a :class:`MatchRule` value), score (float in
    [0, 1]: how sure, never money), explanation (str).
    ``items``: match_id, payment_id (Int64, NA on a line's item), line_id (Int64, NA on a
    payment's item): one row per payment and per line of each match, like recon_match_items.
    ``returned_payment_ids``: payments a return line matched: report them RETURNED.
    ``unmatched_payments`` / ``unmatched_lines``: the input rows no match took. A payment is
    matched when a match of rules 1-4 took it or a return named it; ``settled`` payments no
    return named are neither matched nor unmatched (they were reconciled before), and so are
    lines whose status is not booked (pending or information-only entries).
    ``candidates``: suggestions for the exceptions queue, long format: side ("line": the
    unmatched item is ``line_id`` and ``payment_id`` the suggestion; "payment": the other way
    round), rank (1 = best), score, why.
    ``timings``: seconds per step (prepare, each rule by its value, candidates, assemble).
    """

    matches: pd.DataFrame
    items: pd.DataFrame
    returned_payment_ids: pd.Index
    unmatched_payments: pd.DataFrame
    unmatched_lines: pd.DataFrame
    candidates: pd.DataFrame
    timings: Mapping[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Matches per rule, and the unmatched on each side."""
        out = {rule.value: 0 for rule in RULE_ORDER}
        out.update(self.matches["rule"].value_counts().to_dict())
        out["unmatched_payments"] = len(self.unmatched_payments)
        out["unmatched_lines"] = len(self.unmatched_lines)
        out["returned_payments"] = len(self.returned_payment_ids)
        return {k: int(v) for k, v in out.items()}

    def to_matches(self) -> list[Match]:
        """As :class:`yinqi.reconciliation.Match` objects (one Python object per match: for
        persisting a run's result, not for the hot path)."""
        items = self.items
        pays = items.dropna(subset=["payment_id"]).groupby("match_id")["payment_id"].agg(tuple)
        lines = items.dropna(subset=["line_id"]).groupby("match_id")["line_id"].agg(tuple)
        out = []
        for row in self.matches.itertuples(index=False):
            out.append(Match(rule=MatchRule(row.rule), score=float(row.score),
                             payment_ids=tuple(int(x) for x in pays.get(row.match_id, ())),
                             statement_line_ids=tuple(int(x) for x in lines.get(row.match_id, ())),
                             note=row.explanation))
        return out


class _Matches:
    """Matches as they are found: per match a rule, score, explanation; items as rows."""

    def __init__(self) -> None:
        self.rules: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.texts: list[np.ndarray] = []
        self.item_match: list[np.ndarray] = []
        self.item_pay: list[np.ndarray] = []
        self.item_line: list[np.ndarray] = []
        # Fee lines that joined existing matches: (match ids, score caps, text to append).
        self.amendments: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.count = 0

    def add(self, rule: MatchRule, score: np.ndarray, explanation: np.ndarray,
            line_match: np.ndarray, line_rows: np.ndarray,
            pay_match: np.ndarray, pay_rows: np.ndarray) -> np.ndarray:
        """k new matches (scores and explanations aligned); items name them 0..k-1.
        Returns the k global match indices."""
        k = len(score)
        ids = np.arange(self.count, self.count + k, dtype=np.int64)
        self.rules.append(np.full(k, _RULE_CODE[rule], dtype=np.int8))
        self.scores.append(np.clip(np.round(np.asarray(score, dtype=np.float64), 3), 0.0, 1.0))
        self.texts.append(np.asarray(explanation, dtype=object))
        self.item_match += [ids[line_match], ids[pay_match]]
        self.item_line += [np.asarray(line_rows, dtype=np.int64),
                           np.full(len(pay_rows), -1, dtype=np.int64)]
        self.item_pay += [np.full(len(line_rows), -1, dtype=np.int64),
                          np.asarray(pay_rows, dtype=np.int64)]
        self.count += k
        return ids

    def join_lines(self, ids: np.ndarray, line_rows: np.ndarray, cap: np.ndarray,
                   suffix: np.ndarray, per_match: np.ndarray) -> None:
        """Separate fee lines join existing matches (``ids[k]`` takes ``line_rows[k]``);
        ``per_match``: the distinct matches, each capped at ``cap`` and its explanation
        extended by ``suffix``. The match becomes an amount-plus-fee match."""
        self.item_match.append(np.asarray(ids, dtype=np.int64))
        self.item_line.append(np.asarray(line_rows, dtype=np.int64))
        self.item_pay.append(np.full(len(line_rows), -1, dtype=np.int64))
        self.amendments.append((per_match, np.asarray(cap, dtype=np.float64), suffix))

    def finished(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rule codes, scores, explanations) of all matches, amendments applied."""
        if not self.rules:
            return np.empty(0, np.int8), np.empty(0), np.empty(0, dtype=object)
        rules = np.concatenate(self.rules)
        scores = np.concatenate(self.scores)
        texts = np.concatenate(self.texts)
        for ids, cap, suffix in self.amendments:
            rules[ids] = _RULE_CODE[MatchRule.AMOUNT_PLUS_FEE]
            scores[ids] = np.minimum(scores[ids], np.round(cap, 3))
            texts[ids] = texts[ids] + suffix
        return rules, scores, texts

    def items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.item_match:
            e = np.empty(0, np.int64)
            return e, e, e
        return (np.concatenate(self.item_match), np.concatenate(self.item_pay),
                np.concatenate(self.item_line))


class _RefIndex:
    """Payments by a reference column: built once, asked by every rule."""

    def __init__(self, keys: pd.Series) -> None:
        self.rows = np.flatnonzero(keys.notna().to_numpy())
        self.index = pd.Index(keys.iloc[self.rows]) if self.rows.size else None
        if self.index is not None and not self.index.is_unique:
            # Rare: a reference held by several payments names none of them.
            single = ~self.index.duplicated(keep=False)
            self.rows = self.rows[single]
            self.index = self.index[single] if self.rows.size else None

    def find(self, targets: pd.Series) -> np.ndarray:
        """Per target, the payment row holding that reference, or -1 (NA, unknown, or held by
        several payments: an ambiguous reference refers to nothing)."""
        if self.index is None or len(targets) == 0:
            return np.full(len(targets), -1, dtype=np.int64)
        got = self.index.get_indexer(targets)
        return np.where(got >= 0, self.rows[np.maximum(got, 0)], -1).astype(np.int64)


class _Parties:
    """Payee names and accounts as codes, for some lines and payments: those still open
    when the first rule without a reference runs (later rules and the candidates only look
    at those), or the few a return without reference may concern."""

    def __init__(self, ctx: _Context, line_rows: np.ndarray, pay_rows: np.ndarray) -> None:
        self.l_covered = np.zeros(ctx.nl, dtype=bool)
        self.l_covered[line_rows] = True
        self.p_covered = np.zeros(ctx.np, dtype=bool)
        self.p_covered[pay_rows] = True
        npay = len(pay_rows)
        names = pd.concat([ctx.p_name.iloc[pay_rows], ctx.l_name.iloc[line_rows]],
                          ignore_index=True)
        self.book = NameBook(names)
        self.p_name = np.full(ctx.np, -1, dtype=np.int64)
        self.p_name[pay_rows] = self.book.codes[:npay]
        self.l_name = np.full(ctx.nl, -1, dtype=np.int64)
        self.l_name[line_rows] = self.book.codes[npay:]

        accounts = pd.concat([ctx.p_cacct.iloc[pay_rows], ctx.l_cacct.iloc[line_rows]],
                             ignore_index=True)
        codes, uniques = pd.factorize(accounts, use_na_sentinel=True)
        cleaned = pd.Series(uniques, dtype="str").str.replace(_ACCOUNT_CHARS, "", regex=True)
        cleaned = cleaned.str.upper()
        norm, _ = pd.factorize(cleaned.where(cleaned.str.len() > 0), use_na_sentinel=True)
        masked = cleaned.str.contains("*", regex=False).fillna(False).to_numpy(dtype=bool)
        last4, _ = pd.factorize(cleaned.str.slice(-4), use_na_sentinel=True)

        def per_row(values: np.ndarray, missing: int | bool) -> np.ndarray:
            return np.where(codes >= 0, values[np.maximum(codes, 0)] if len(values) else missing,
                            missing)

        acct, is_masked, tail = per_row(norm, -1), per_row(masked, False), per_row(last4, -1)
        self.p_acct = np.full(ctx.np, -1, dtype=np.int64)
        self.p_tail = np.full(ctx.np, -1, dtype=np.int64)
        self.p_acct[pay_rows], self.p_tail[pay_rows] = acct[:npay], tail[:npay]
        self.l_acct = np.full(ctx.nl, -1, dtype=np.int64)
        self.l_masked = np.zeros(ctx.nl, dtype=bool)
        self.l_tail = np.full(ctx.nl, -1, dtype=np.int64)
        self.l_acct[line_rows] = acct[npay:]
        self.l_masked[line_rows] = is_masked[npay:].astype(bool)
        self.l_tail[line_rows] = tail[npay:]

    def check(self, li: np.ndarray, pi: np.ndarray) -> None:
        assert self.l_covered[li].all() and self.p_covered[pi].all(), "rows not covered"

    def similarity(self, li: np.ndarray, pi: np.ndarray) -> np.ndarray:
        self.check(li, pi)
        return self.book.similarity(self.l_name[li], self.p_name[pi])

    def line_named(self, li: np.ndarray) -> np.ndarray:
        """The line carries a usable payee name (MT940's '?????' is none)."""
        return self.l_name[li] >= 0

    def accounts(self, li: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """Per pair: _ABSENT (the line shows no account), _SAME, _MASKED_SAME (a masked
        account whose last four characters agree) or _DIFFERENT."""
        self.check(li, pi)
        la, pa = self.l_acct[li], self.p_acct[pi]
        out = np.full(len(li), _ABSENT, dtype=np.int8)
        shown = la >= 0
        out[shown] = _DIFFERENT
        out[shown & (la == pa)] = _SAME
        masked_same = shown & self.l_masked[li] & (self.l_tail[li] == self.p_tail[pi])
        out[masked_same & (la != pa)] = _MASKED_SAME
        return out


class _Context:
    """Both sides as arrays, the lookups every rule shares, and what is taken so far."""

    def __init__(self, payments: pd.DataFrame, lines: pd.DataFrame, params: MatchParams) -> None:
        _require(payments, PAYMENT_COLUMNS, "payments")
        _require(lines, LINE_COLUMNS, "lines")
        self.params = params
        self.payments, self.lines = payments, lines
        P = payments.reset_index(drop=True)
        L = lines.reset_index(drop=True)
        self.np, self.nl = len(P), len(L)
        self.p_id = _ids(P["payment_id"], "payments.payment_id")
        self.l_id = _ids(L["line_id"], "lines.line_id")
        self.p_amt = u.minor_units(P["amount_minor"], "payments.amount_minor")
        if (self.p_amt <= 0).any():
            raise ValueError("payments.amount_minor must be positive (money out)")
        self.l_amt = u.minor_units(L["amount_minor"], "lines.amount_minor")
        self.p_day = u.days(P["value_date"], u.NO_PAYMENT_DAY)
        vday = u.days(L["value_date"], u.NO_LINE_DAY)
        self.l_bday = u.days(L["booking_date"], u.NO_LINE_DAY)
        self.l_day = np.where(vday == u.NO_LINE_DAY, self.l_bday, vday)
        self.l_bday = np.where(self.l_bday == u.NO_LINE_DAY, self.l_day, self.l_bday)

        # (account, currency) as one code per side; -1 / -2 where unknown: never equal.
        pa, la = u.codes_of(P["account"], L["account"], normalise=_ACCOUNT_CHARS)
        pc, lc = u.codes_of(P["currency"], L["currency"], normalise=r"\s+")
        currencies = pd.concat([P["currency"], L["currency"]], ignore_index=True)
        ncur = int(max(pc.max(initial=-1), lc.max(initial=-1))) + 1 or 1
        self.p_acct = np.where((pa >= 0) & (pc >= 0), pa * ncur + pc, -1)
        self.l_acct = np.where((la >= 0) & (lc >= 0), la * ncur + lc, -2)
        codes = np.unique(np.concatenate([self.p_acct[self.p_acct >= 0],
                                          self.l_acct[self.l_acct >= 0]]))
        size = int(codes.max()) + 1 if codes.size else 1
        # The currency behind each code (a handful of distinct values).
        names = np.full(ncur + 1, "?", dtype=object)
        all_codes = np.concatenate([pc, lc])
        seen = np.flatnonzero(all_codes >= 0)
        first = np.unique(all_codes[seen], return_index=True)[1]
        names[all_codes[seen][first]] = (currencies.iloc[seen[first]].str.strip().str.upper()
                                         .to_numpy(dtype=object))
        exp = np.full(size, 2, np.int64)
        tol = np.full(size, params.amount_tolerance_minor, np.int64)
        fee = np.full(size, params.max_fee_minor, np.int64)
        for code in codes:                     # per distinct (account, currency): a handful
            cur = names[code % ncur]
            exp[code] = CURRENCIES[cur].minor_units if cur in CURRENCIES else 2
            tol[code] = params.tolerance_for(cur)
            fee[code] = params.max_fee_for(cur)
        self.currency_names, self.ncur = names, ncur
        self.acct_exp, self.acct_tol, self.acct_fee = exp, tol, fee
        self.max_tol = int(tol.max()) if codes.size else 0
        self.max_fee = int(fee.max()) if codes.size else 0

        self.p_e2e, self.l_e2e = P["end_to_end_id"], L["end_to_end_id"]
        self.p_bref, self.l_bref = P["bank_reference"], L["bank_reference"]
        self.p_name, self.l_name = P["creditor_name"], L["counterparty_name"]
        self.p_cacct, self.l_cacct = P["creditor_account"], L["counterparty_account"]
        self.l_remit = L["remittance"]
        self.p_settled = (P["settled"].fillna(False).to_numpy(dtype=bool)
                          if "settled" in P.columns else np.zeros(self.np, dtype=bool))
        self.l_rev = L["is_reversal"].fillna(False).to_numpy(dtype=bool)
        if "status" in L.columns:
            status = L["status"].fillna("BOOK").str.strip().str.upper()
            self.l_booked = status.isin(list(params.booked_statuses)).to_numpy(dtype=bool)
        else:
            self.l_booked = np.ones(self.nl, dtype=bool)
        self.l_charges = (u.minor_units(L["charges_minor"].fillna(0).astype(np.int64),
                                        "lines.charges_minor")
                          if "charges_minor" in L.columns else None)
        self.p_batch, self.l_batch = u.codes_of(P["batch_key"], L["batch_key"])
        self.p_batch_keys = P["batch_key"]

        # References: the payment a line's end-to-end ID names, else its bank reference.
        self.e2e_index = _RefIndex(self.p_e2e)
        self.ref_e2e = self.e2e_index.find(self.l_e2e)
        self.ref_bref = np.full(self.nl, -1, dtype=np.int64)
        ask = np.flatnonzero((self.ref_e2e < 0) & self.l_bref.notna().to_numpy())
        if ask.size:
            self.ref_bref[ask] = _RefIndex(self.p_bref).find(self.l_bref.iloc[ask])
        self._remit = np.full(self.nl, -2, dtype=np.int64)    # -2: not read yet
        self._parties: _Parties | None = None

        # Per payment: the match (of rules 1-4) that took it, OPEN, or SETTLED_EARLIER.
        self.pay_match = np.where(self.p_settled, SETTLED_EARLIER, OPEN).astype(np.int64)
        self.line_match = np.full(self.nl, -1, dtype=np.int64)
        self.pay_returned = np.zeros(self.np, dtype=bool)
        self.out = _Matches()

    # --- helpers shared by the rules ------------------------------------------------------

    def open_debits(self) -> np.ndarray:
        """Booked money-out lines no rule has taken (reversals are never payments)."""
        return np.flatnonzero((self.line_match < 0) & self.l_booked & (self.l_amt < 0)
                              & ~self.l_rev)

    def unreferenced(self, rows: np.ndarray) -> np.ndarray:
        """Of these lines, those whose e2e ID / bank reference names none of the payments:
        a line that names a payment is about that payment and no other."""
        return rows[(self.ref_e2e[rows] < 0) & (self.ref_bref[rows] < 0)]

    def open_payments(self) -> np.ndarray:
        return np.flatnonzero(self.pay_match == OPEN)

    def remit_refs(self, rows: np.ndarray) -> np.ndarray:
        """The payment an end-to-end ID in each line's remittance text names, or -1."""
        todo = rows[self._remit[rows] == -2]
        if todo.size:
            remit = self.l_remit.iloc[todo]
            has = remit.notna().to_numpy()
            found = np.full(todo.size, -1, dtype=np.int64)
            if has.any():
                ids = remit[has].str.extract(f"({self.params.reference_pattern})", expand=False)
                found[has] = self.e2e_index.find(ids)
            self._remit[todo] = found
        return self._remit[rows]

    def parties(self) -> _Parties:
        """Names and accounts of the lines and payments open now (built once: later callers
        only ask about rows that are still open)."""
        if self._parties is None:
            self._parties = _Parties(self, np.flatnonzero(self.line_match < 0),
                                     self.open_payments())
        return self._parties

    def money(self, minor: np.ndarray, acct: np.ndarray) -> np.ndarray:
        return u.money(minor, self.acct_exp[np.maximum(acct, 0)])

    def currency(self, acct: np.ndarray) -> np.ndarray:
        return self.currency_names[np.where(acct >= 0, acct % self.ncur, -1)]

    def take(self, rule: MatchRule, score: np.ndarray, explanation: np.ndarray,
             li: np.ndarray, pi: np.ndarray, *, principal: bool = True) -> np.ndarray:
        """Record one-to-one matches (line li[k] with payment pi[k]), in line id order."""
        order = np.argsort(self.l_id[li], kind="stable")
        li, pi = li[order], pi[order]
        score, explanation = np.asarray(score)[order], np.asarray(explanation)[order]
        k = np.arange(len(li))
        ids = self.out.add(rule, score, explanation, k, li, k, pi)
        self.line_match[li] = ids
        if principal:
            self.pay_match[pi] = ids
        return ids


def _require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns: {', '.join(missing)}")


def _ids(values: pd.Series, what: str) -> np.ndarray:
    if values.dtype.kind not in "iu" and not (hasattr(values.dtype, "numpy_dtype")
                                              and values.dtype.numpy_dtype.kind in "iu"):
        raise TypeError(f"{what} must be integers, got {values.dtype}")
    if values.isna().any():
        raise ValueError(f"{what} has missing values")
    ids = values.to_numpy(dtype=np.int64)
    if pd.Series(ids).duplicated().any():
        raise ValueError(f"{what} must be unique")
    return ids


def _first_per_payment(li: np.ndarray, pi: np.ndarray, ctx: _Context,
                       *extra: np.ndarray) -> tuple[np.ndarray, ...]:
    """One line per payment (the lowest line id): a repeated line stays open."""
    order = np.lexsort((ctx.l_id[li], pi))
    pi_sorted = pi[order]
    first = np.r_[True, pi_sorted[1:] != pi_sorted[:-1]] if pi.size else np.empty(0, bool)
    keep = order[first]
    return (li[keep], pi[keep], *(e[keep] for e in extra))


# --- explanation pieces (object arrays of str) ----------------------------------------------

_ACCOUNT_TEXT = np.array(["payee account not shown", "payee account equal",
                          "payee account (masked) agrees", "payee account differs"], dtype=object)
_REF_LABEL = np.array(["e2e ", "bank reference ", "remittance names e2e "], dtype=object)


def _ref_text(ctx: _Context, pi: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """'e2e YQ…' / 'bank reference P…' / 'remittance names e2e YQ…' by reference kind."""
    ref = np.where(kind == 1, u.text(ctx.p_bref.iloc[pi]), u.text(ctx.p_e2e.iloc[pi]))
    return _REF_LABEL[kind] + ref.astype(object)


def _amount_text(ctx: _Context, li: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """'amount 1,234.50 CNY equal' (or '... vs line ... (within tolerance)')."""
    acct = ctx.l_acct[li]
    equal = -ctx.l_amt[li] == ctx.p_amt[pi]
    base = u.join(["amount ", ctx.money(ctx.p_amt[pi], acct), " ", ctx.currency(acct)])
    if equal.all():
        return base + " equal"
    near = u.join([" vs line ", ctx.money(-ctx.l_amt[li], acct), " (within tolerance)"])
    return base + u.choose(equal, " equal", near)


def _gap_text(gap: np.ndarray) -> np.ndarray:
    return u.choose(gap == 0, "same value date",
                    u.join(["value dates ", u.plural_days(gap), " apart"]))


def _ambiguity_text(ambiguity: np.ndarray) -> np.ndarray:
    return u.choose(ambiguity > 1, "; one of several equally good candidates", "")


def _payee_text(ctx: _Context, li: np.ndarray, pi: np.ndarray, sim: np.ndarray,
                agree: np.ndarray, usable: np.ndarray) -> np.ndarray:
    pct = np.floor(sim * 100).astype(np.int64).astype(str).astype(object)
    line_name = u.text(ctx.l_name.iloc[li])
    account = _ACCOUNT_TEXT[agree]
    named = u.join(["payee '", line_name, "' ~ '", u.text(ctx.p_name.iloc[pi]), "' ", pct,
                    "% alike; ", account])
    shown = ctx.l_name.iloc[li].notna().to_numpy()
    unnamed = u.choose(shown, u.join(["payee name unreadable on the line ('", line_name, "'); "]),
                       "no payee name on the line; ") + account
    return u.choose(usable, named, unnamed)


# --- rule 1: exact reference --------------------------------------------------------------

def _exact_reference(ctx: _Context) -> None:
    rows = ctx.open_debits()
    acct = np.maximum(ctx.l_acct[rows], 0)

    def usable(ref: np.ndarray) -> np.ndarray:
        p = np.maximum(ref, 0)
        return ((ref >= 0) & (ctx.pay_match[p] == OPEN) & (ctx.p_acct[p] == ctx.l_acct[rows])
                & (np.abs(-ctx.l_amt[rows] - ctx.p_amt[p]) <= ctx.acct_tol[acct]))

    by_e2e, by_bref = ctx.ref_e2e[rows], ctx.ref_bref[rows]
    chosen = np.where(usable(by_e2e), by_e2e, np.where(usable(by_bref), by_bref, -1))
    sel = chosen >= 0
    li, pi = _first_per_payment(rows[sel], chosen[sel], ctx)
    kind = np.where(ctx.ref_e2e[li] == pi, 0, 1)
    score = np.where(kind == 0, 1.0, 0.95)
    score = np.where(-ctx.l_amt[li] == ctx.p_amt[pi], score, score - 0.05)
    text = u.join([_ref_text(ctx, pi, kind), " equal; ", _amount_text(ctx, li, pi)])
    ctx.take(MatchRule.EXACT_REFERENCE, score, text, li, pi)


# --- rule 2: batch booking ----------------------------------------------------------------

def _batch_booking(ctx: _Context) -> None:
    prow = np.flatnonzero((ctx.p_batch >= 0) & (ctx.pay_match == OPEN))
    if prow.size == 0:
        return
    frame = pd.DataFrame({"b": ctx.p_batch[prow], "a": ctx.p_acct[prow], "d": ctx.p_day[prow]})
    gid = frame.groupby(["b", "a", "d"], sort=False).ngroup().to_numpy()
    order = np.argsort(gid, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(gid[order])) + 1]
    total = np.add.reduceat(ctx.p_amt[prow][order], starts)      # int64: exact
    count = np.diff(np.r_[starts, len(order)])
    first_row = prow[order][starts]                               # one payment of each group
    g_batch, g_acct, g_day = ctx.p_batch[first_row], ctx.p_acct[first_row], ctx.p_day[first_row]
    ngroups = len(starts)
    # A group's id for ordering and ties: its smallest payment id (row order says nothing).
    group_ids = np.minimum.reduceat(ctx.p_id[prow][order], starts)
    W = ctx.params.date_window_days

    def choose(li: np.ndarray, g: np.ndarray, base: float) -> tuple[np.ndarray, ...]:
        gap = np.abs(ctx.l_day[li] - g_day[g])
        ok = (gap <= W) & (np.abs(-ctx.l_amt[li] - total[g])
                           <= ctx.acct_tol[np.maximum(g_acct[g], 0)])
        li, g, gap = li[ok], g[ok], gap[ok]
        score = base - 0.02 * gap
        # Groups stand in for payments in the assignment.
        picked, amb = u.assign(li, g, score, gap, total[g], ctx.l_id, group_ids,
                               ctx.params.max_assignment_rounds)
        score = np.where(amb > 1, score[picked] - 0.1, score[picked])
        return li[picked], g[picked], score, amb

    def record(li: np.ndarray, g: np.ndarray, score: np.ndarray, amb: np.ndarray,
               keyed: bool) -> None:
        order = np.argsort(ctx.l_id[li], kind="stable")
        li, g, score, amb = li[order], g[order], score[order], amb[order]
        k = np.arange(len(li))
        match_of_group = np.full(ngroups, -1, dtype=np.int64)
        match_of_group[g] = k
        mine = match_of_group[gid] >= 0
        pay_rows, pay_match = prow[mine], match_of_group[gid[mine]]
        gap = np.abs(ctx.l_day[li] - g_day[g])
        acct = g_acct[g]
        text = u.join([
            count[g].astype(str).astype(object), " payments of batch ",
            u.text(ctx.p_batch_keys.iloc[first_row[g]]), " sum ", ctx.money(total[g], acct),
            " ", ctx.currency(acct), " = line amount; ",
            "the line names the batch; " if keyed else "the line names no batch; same account; ",
            _gap_text(gap), _ambiguity_text(amb)])
        ids = ctx.out.add(MatchRule.BATCH_BOOKING, score, text, k, li, pay_match, pay_rows)
        ctx.line_match[li] = ids
        ctx.pay_match[pay_rows] = ids[pay_match]

    known = np.zeros(int(max(ctx.p_batch.max(initial=-1), ctx.l_batch.max(initial=-1))) + 1,
                     dtype=bool)
    known[g_batch] = True
    # (a) the line names the batch (its message ID / 批次号).
    lines = ctx.open_debits()
    keyed = lines[ctx.l_batch[lines] >= 0]
    keyed = keyed[known[ctx.l_batch[keyed]]]
    if keyed.size:
        left = pd.DataFrame({"l": keyed, "b": ctx.l_batch[keyed], "a": ctx.l_acct[keyed]})
        right = pd.DataFrame({"g": np.arange(ngroups), "b": g_batch, "a": g_acct})
        m = left.merge(right, on=["b", "a"], how="inner", sort=False)
        record(*choose(m["l"].to_numpy(), m["g"].to_numpy(), 1.0), keyed=True)

    # (b) no batch reference: one debit equal to the sum of a batch of the same account,
    #     within the date window. A "batch" of one payment is left to the rules that check
    #     the payee.
    lines = ctx.unreferenced(ctx.open_debits())
    lines = lines[(ctx.l_batch[lines] < 0) | ~known[np.maximum(ctx.l_batch[lines], 0)]]
    open_groups = np.flatnonzero((count >= 2) & (ctx.pay_match[first_row] == OPEN))
    if lines.size and open_groups.size:
        li, g = u.band_join(lines, ctx.l_acct[lines], -ctx.l_amt[lines],
                            open_groups, g_acct[open_groups], total[open_groups],
                            -ctx.max_tol, ctx.max_tol)
        record(*choose(li, g, 0.9), keyed=False)


# --- rule 3: amount + account + value-date window + payee name ----------------------------

def _amount_pairs(ctx: _Context, lines: np.ndarray, line_val: np.ndarray, pays: np.ndarray,
                  pay_val: np.ndarray, lo: int, hi: int,
                  parties: Callable[[np.ndarray, np.ndarray], _Parties]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of the same account with ``lo <= line_val - pay_val <= hi``. In crowded
    amount buckets (see ``MatchParams.max_pairs_per_amount``) only pairs whose normalised
    payee name or payee account is also the same."""
    cl, cp = u.crowded(ctx.l_acct[lines], line_val, ctx.p_acct[pays], pay_val, lo, hi,
                       ctx.params.max_pairs_per_amount)
    li, pi = u.band_join(lines[~cl], ctx.l_acct[lines[~cl]], line_val[~cl],
                         pays[~cp], ctx.p_acct[pays[~cp]], pay_val[~cp], lo, hi)
    if not (cl.any() and cp.any()):
        return li, pi
    few_l, few_p = lines[cl], pays[cp]
    known = parties(few_l, few_p)
    found_l, found_p = [li], [pi]
    for line_code, pay_code in ((known.l_name, known.p_name), (known.l_acct, known.p_acct)):
        lc, pc = line_code[few_l], pay_code[few_p]
        size = int(max(lc.max(initial=0), pc.max(initial=0))) + 1
        sl, sp = lc >= 0, pc >= 0
        a, b = u.band_join(few_l[sl], ctx.l_acct[few_l[sl]] * size + lc[sl], line_val[cl][sl],
                           few_p[sp], ctx.p_acct[few_p[sp]] * size + pc[sp], pay_val[cp][sp],
                           lo, hi)
        found_l.append(a)
        found_p.append(b)
    both = pd.DataFrame({"l": np.concatenate(found_l), "p": np.concatenate(found_p)})
    both = both.drop_duplicates()
    return both["l"].to_numpy(), both["p"].to_numpy()


def _open_parties(ctx: _Context) -> Callable[[np.ndarray, np.ndarray], _Parties]:
    return lambda _lines, _pays: ctx.parties()


def _payee_pairs(ctx: _Context, li: np.ndarray, pi: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                            np.ndarray]:
    """Of candidate pairs, those within the date window whose payee agrees:
    (li, pi, name similarity, account agreement, date gap, line name usable)."""
    gap = np.abs(ctx.l_day[li] - ctx.p_day[pi])
    ok = gap <= ctx.params.date_window_days
    li, pi, gap = li[ok], pi[ok], gap[ok]
    parties = ctx.parties()
    sim = parties.similarity(li, pi)
    agree = parties.accounts(li, pi)
    named = parties.line_named(li)
    account_ok = (agree == _SAME) | (agree == _MASKED_SAME)
    # A line without a usable name (MT940 turns Chinese into '?') may stand on the account;
    # a line showing another account is another payee, whatever the name.
    keep = (agree != _DIFFERENT) & ((sim >= ctx.params.name_similarity_min)
                                    | (~named & account_ok))
    return li[keep], pi[keep], sim[keep], agree[keep], gap[keep], named[keep]


def _payee_score(sim: np.ndarray, agree: np.ndarray, gap: np.ndarray, window: int,
                 named: np.ndarray) -> np.ndarray:
    """0.6 payee (name similarity; 0.9 for an unreadable name whose account agrees)
    + 0.25 account (1 equal, 0.5 not shown) + 0.15 date (1 same day, falling over the window)."""
    account_ok = (agree == _SAME) | (agree == _MASKED_SAME)
    payee = np.where(named, sim, np.where(account_ok, 0.9, 0.0))
    account = np.where(account_ok, 1.0, 0.5)
    return 0.6 * payee + 0.25 * account + 0.15 * (1.0 - gap / (window + 1.0))


def _amount_account_date_name(ctx: _Context) -> None:
    lines, pays = ctx.unreferenced(ctx.open_debits()), ctx.open_payments()
    li, pi = _amount_pairs(ctx, lines, -ctx.l_amt[lines], pays, ctx.p_amt[pays],
                           -ctx.max_tol, ctx.max_tol, _open_parties(ctx))
    within = (np.abs(-ctx.l_amt[li] - ctx.p_amt[pi])
              <= ctx.acct_tol[np.maximum(ctx.l_acct[li], 0)])
    li, pi, sim, agree, gap, named = _payee_pairs(ctx, li[within], pi[within])
    W = ctx.params.date_window_days
    score = _payee_score(sim, agree, gap, W, named)
    # Interchangeable candidates share account and amount.
    picked, amb = u.assign(li, pi, score, gap, ctx.p_amt[pi], ctx.l_id, ctx.p_id,
                           ctx.params.max_assignment_rounds)
    li, pi, sim, agree, gap, named = (x[picked] for x in (li, pi, sim, agree, gap, named))
    score = np.where(amb > 1, score[picked] - 0.1, score[picked])
    text = u.join([_amount_text(ctx, li, pi), "; same account; ", _gap_text(gap), "; ",
                   _payee_text(ctx, li, pi, sim, agree, named), _ambiguity_text(amb)])
    ctx.take(MatchRule.AMOUNT_ACCOUNT_DATE_NAME, score, text, li, pi)


# --- rule 4: amount plus bank fee ---------------------------------------------------------

def _fee_text(ctx: _Context, li: np.ndarray, pi: np.ndarray) -> np.ndarray:
    acct = ctx.l_acct[li]
    fee = -ctx.l_amt[li] - ctx.p_amt[pi]
    text = u.join(["line ", ctx.money(-ctx.l_amt[li], acct), " = payment ",
                   ctx.money(ctx.p_amt[pi], acct), " + fee ", ctx.money(fee, acct), " ",
                   ctx.currency(acct)])
    if ctx.l_charges is not None:
        text = text + u.choose(ctx.l_charges[li] == fee, " (the line itemises this charge)", "")
    return text


def _amount_plus_fee(ctx: _Context) -> None:
    W = ctx.params.date_window_days
    # (a) fee included, the line names the payment.
    rows = ctx.open_debits()
    acct = np.maximum(ctx.l_acct[rows], 0)

    def usable(ref: np.ndarray) -> np.ndarray:
        p = np.maximum(ref, 0)
        extra = -ctx.l_amt[rows] - ctx.p_amt[p]
        return ((ref >= 0) & (ctx.pay_match[p] == OPEN) & (ctx.p_acct[p] == ctx.l_acct[rows])
                & (extra > ctx.acct_tol[acct]) & (extra <= ctx.acct_fee[acct]))

    by_e2e, by_bref = ctx.ref_e2e[rows], ctx.ref_bref[rows]
    chosen = np.where(usable(by_e2e), by_e2e, np.where(usable(by_bref), by_bref, -1))
    sel = chosen >= 0
    li, pi = _first_per_payment(rows[sel], chosen[sel], ctx)
    if li.size:
        kind = np.where(ctx.ref_e2e[li] == pi, 0, 1)
        text = u.join([_ref_text(ctx, pi, kind), " equal; ", _fee_text(ctx, li, pi)])
        ctx.take(MatchRule.AMOUNT_PLUS_FEE, np.where(kind == 0, 0.95, 0.9), text, li, pi)

    # (b) fee included, no reference: account, date window and payee as in rule 3.
    lines, pays = ctx.unreferenced(ctx.open_debits()), ctx.open_payments()
    li, pi = _amount_pairs(ctx, lines, -ctx.l_amt[lines], pays, ctx.p_amt[pays],
                           1, max(ctx.max_fee, 1), _open_parties(ctx))
    if li.size:
        extra = -ctx.l_amt[li] - ctx.p_amt[pi]
        acct = np.maximum(ctx.l_acct[li], 0)
        ok = (extra > ctx.acct_tol[acct]) & (extra <= ctx.acct_fee[acct])
        li, pi, sim, agree, gap, named = _payee_pairs(ctx, li[ok], pi[ok])
        extra = -ctx.l_amt[li] - ctx.p_amt[pi]
        cap = ctx.acct_fee[np.maximum(ctx.l_acct[li], 0)].astype(np.float64)
        score = (0.9 * _payee_score(sim, agree, gap, W, named)
                 + 0.1 * (1.0 - extra / (cap + 1.0)))
        # Between equally good payees, the smaller fee, then the nearer date.
        picked, amb = u.assign(li, pi, score, extra * (W + 1) + gap, ctx.p_amt[pi],
                               ctx.l_id, ctx.p_id, ctx.params.max_assignment_rounds)
        li, pi, sim, agree, gap, named = (x[picked] for x in (li, pi, sim, agree, gap, named))
        score = np.where(amb > 1, score[picked] - 0.1, score[picked])
        text = u.join([_fee_text(ctx, li, pi), "; same account; ", _gap_text(gap), "; ",
                       _payee_text(ctx, li, pi, sim, agree, named), _ambiguity_text(amb)])
        ctx.take(MatchRule.AMOUNT_PLUS_FEE, score, text, li, pi)

    # (c) a separate fee line that names a payment matched above (its e2e ID or bank
    #     reference, or the e2e ID in its text: "手续费 charges for YQ...").
    rows = ctx.open_debits()
    rows = rows[-ctx.l_amt[rows] <= ctx.acct_fee[np.maximum(ctx.l_acct[rows], 0)]]
    if rows.size == 0:
        return
    refs = np.stack([ctx.ref_e2e[rows], ctx.ref_bref[rows], ctx.remit_refs(rows)])
    named_any = (refs >= 0).any(axis=0)
    p = np.maximum(refs, 0)
    # A line of exactly the payment's amount is a repeat of its debit, not a charge.
    ok = ((refs >= 0) & (ctx.pay_match[p] >= 0) & (ctx.p_acct[p] == ctx.l_acct[rows])
          & (-ctx.l_amt[rows] != ctx.p_amt[p]))
    kind_all = np.argmax(ok, axis=0)
    target = np.where(ok.any(axis=0), refs[kind_all, np.arange(rows.size)], -1)
    sel = target >= 0
    if sel.any():
        # The fee lines join the match of the payment they name (many lines, one payment).
        li, pi, kind = rows[sel], target[sel], kind_all[sel]
        host = ctx.pay_match[pi]
        hosts, k = np.unique(host, return_inverse=True)
        order = np.lexsort((ctx.l_id[li], k))
        firsts = order[np.r_[True, k[order][1:] != k[order][:-1]]]
        kind_of, pay_of = kind[firsts], pi[firsts]      # as the lowest line id names it
        n_lines = np.bincount(k, minlength=len(hosts))
        sums = np.zeros(len(hosts), dtype=np.int64)
        np.add.at(sums, k, -ctx.l_amt[li])
        acct = ctx.p_acct[pay_of]
        suffix = u.join([
            "; plus ", n_lines.astype(str).astype(object), " separate fee line(s) ",
            ctx.money(sums, acct), " ", ctx.currency(acct), " naming it (",
            _ref_text(ctx, pay_of, kind_of), ")"])
        ctx.out.join_lines(host, li, np.where(kind_of == 2, 0.9, 0.95), suffix, hosts)
        ctx.line_match[li] = host

    # (d) a fee line that names nothing but says it is a transfer charge, booked right next
    #     to (same account and day) a line a rule matched: it belongs to that line's payments.
    rows = rows[(ctx.line_match[rows] < 0) & ~named_any]
    if rows.size == 0:
        return
    says_fee = ctx.l_remit.iloc[rows].str.contains(ctx.params.fee_pattern, regex=True)
    rows = rows[says_fee.fillna(False).to_numpy(dtype=bool)]
    if rows.size == 0:
        return
    order = np.lexsort((ctx.l_id, ctx.l_bday, ctx.l_acct))
    position = np.empty(ctx.nl, dtype=np.int64)
    position[order] = np.arange(ctx.nl)
    def neighbour(step: int) -> np.ndarray:
        pos = position[rows] + step
        inside = (pos >= 0) & (pos < ctx.nl)
        other = order[np.clip(pos, 0, ctx.nl - 1)]
        m = ctx.line_match[other]
        good = (inside & (m >= 0) & (ctx.l_acct[other] == ctx.l_acct[rows])
                & (ctx.l_bday[other] == ctx.l_bday[rows]))
        return np.where(good, m, -1)

    before, after = neighbour(-1), neighbour(+1)
    host = np.where(before >= 0, before, after)
    sel = host >= 0
    if not sel.any():
        return
    li, host = rows[sel], host[sel]
    hosts, k = np.unique(host, return_inverse=True)
    n_lines = np.bincount(k, minlength=len(hosts))
    sums = np.zeros(len(hosts), dtype=np.int64)
    np.add.at(sums, k, -ctx.l_amt[li])
    acct = np.zeros(len(hosts), dtype=np.int64)
    acct[k] = ctx.l_acct[li]
    suffix = u.join(["; plus ", n_lines.astype(str).astype(object), " fee line(s) ",
                     ctx.money(sums, acct), " ", ctx.currency(acct),
                     " marked as transfer charges, booked next to it"])
    ctx.out.join_lines(host, li, np.full(len(hosts), 0.7), suffix, hosts)
    ctx.line_match[li] = host


# --- rule 5: returns and reversals --------------------------------------------------------

def _returns(ctx: _Context) -> None:
    rows = np.flatnonzero((ctx.line_match < 0) & ctx.l_booked & (ctx.l_amt > 0))
    if rows.size == 0:
        return
    acct = np.maximum(ctx.l_acct[rows], 0)
    refs = np.stack([ctx.ref_e2e[rows], ctx.ref_bref[rows], ctx.remit_refs(rows)])
    named_any = (refs >= 0).any(axis=0)
    eligible = ((ctx.pay_match >= 0) | (ctx.pay_match == SETTLED_EARLIER)) & ~ctx.pay_returned
    p = np.maximum(refs, 0)
    short = ctx.p_amt[p] - ctx.l_amt[rows]
    ok = ((refs >= 0) & eligible[p] & (ctx.p_acct[p] == ctx.l_acct[rows])
          & (short >= -ctx.acct_tol[acct]) & (short <= ctx.acct_fee[acct]))
    kind_all = np.argmax(ok, axis=0)
    target = np.where(ok.any(axis=0), refs[kind_all, np.arange(rows.size)], -1)
    sel = target >= 0
    li, pi, kind = _first_per_payment(rows[sel], target[sel], ctx, kind_all[sel])
    if li.size:
        short = ctx.p_amt[pi] - ctx.l_amt[li]
        text = u.join([_return_head(ctx, li), _ref_text(ctx, pi, kind), "; payment ",
                       _settled_text(ctx, pi), "; ", _return_amount_text(ctx, li, pi)])
        score = (np.where(kind == 2, 0.95, 1.0)
                 - np.where(short > ctx.acct_tol[np.maximum(ctx.l_acct[li], 0)], 0.05, 0.0))
        ctx.take(MatchRule.RETURN, score, text, li, pi, principal=False)
        ctx.pay_returned[pi] = True

    # No reference: the money comes back from the payee's account, same amount, after the
    # payment and within return_window_days.
    rows = rows[~named_any & (ctx.line_match[rows] < 0)]
    pays = np.flatnonzero(((ctx.pay_match >= 0) | (ctx.pay_match == SETTLED_EARLIER))
                          & ~ctx.pay_returned)
    li, pi = _amount_pairs(ctx, rows, ctx.l_amt[rows], pays, ctx.p_amt[pays],
                           -ctx.max_tol, ctx.max_tol, lambda ls, ps: _Parties(ctx, ls, ps))
    if li.size == 0:
        return
    after = ctx.l_day[li] - ctx.p_day[pi]
    ok = ((after >= 0) & (after <= ctx.params.return_window_days)
          & (np.abs(ctx.l_amt[li] - ctx.p_amt[pi])
             <= ctx.acct_tol[np.maximum(ctx.l_acct[li], 0)]))
    li, pi, after = li[ok], pi[ok], after[ok]
    parties = _Parties(ctx, np.unique(li), np.unique(pi))
    agree = parties.accounts(li, pi)
    sim = parties.similarity(li, pi)
    named = parties.line_named(li)
    account_ok = (agree == _SAME) | (agree == _MASKED_SAME)
    keep = account_ok | ((agree == _ABSENT) & (sim >= ctx.params.name_similarity_min))
    li, pi, after, agree, sim, named, account_ok = (
        x[keep] for x in (li, pi, after, agree, sim, named, account_ok))
    window = ctx.params.return_window_days + 1.0
    score = 0.6 + 0.2 * account_ok + 0.1 * sim - 0.1 * (after / window)
    picked, amb = u.assign(li, pi, score, after, ctx.p_amt[pi], ctx.l_id, ctx.p_id,
                           ctx.params.max_assignment_rounds)
    li, pi, agree, sim, after, named = (x[picked] for x in (li, pi, agree, sim, after, named))
    score = np.where(amb > 1, score[picked] - 0.1, score[picked])
    text = u.join([_return_head(ctx, li), "no reference; payment e2e ", u.text(ctx.p_e2e.iloc[pi]),
                   " ", _settled_text(ctx, pi), "; ", _return_amount_text(ctx, li, pi), "; ",
                   u.plural_days(after), " after its value date; ",
                   _payee_text(ctx, li, pi, sim, agree, named), _ambiguity_text(amb)])
    ctx.take(MatchRule.RETURN, score, text, li, pi, principal=False)
    ctx.pay_returned[pi] = True


def _return_head(ctx: _Context, li: np.ndarray) -> np.ndarray:
    return u.choose(ctx.l_rev[li], "reversal credit; ", "return (退票) credit; ")


def _settled_text(ctx: _Context, pi: np.ndarray) -> np.ndarray:
    here = ctx.pay_match[pi] >= 0
    return u.choose(here, "matched by match " + (ctx.pay_match[pi] + 1).astype(str).astype(object),
                    "settled earlier")


def _return_amount_text(ctx: _Context, li: np.ndarray, pi: np.ndarray) -> np.ndarray:
    acct = ctx.l_acct[li]
    short = ctx.p_amt[pi] - ctx.l_amt[li]
    full = u.join(["amount ", ctx.money(ctx.l_amt[li], acct), " ", ctx.currency(acct),
                   " returned in full"])
    if (short == 0).all():
        return full
    less = u.join(["amount ", ctx.money(ctx.l_amt[li], acct), " returned of ",
                   ctx.money(ctx.p_amt[pi], acct), " ", ctx.currency(acct), " (less ",
                   ctx.money(short, acct), " charges)"])
    return u.choose(short == 0, full, less)


# --- the whole run -----------------------------------------------------------------------------

def match(payments: pd.DataFrame, lines: pd.DataFrame,
          params: MatchParams = MatchParams()) -> MatchResult:
    """Match statement lines against payments; rules run in order, each on what is left.

    1. exact reference: the line's end-to-end ID (or, failing that, bank reference) is the
       payment's, same account and currency, amount equal (within the tolerance);
    2. batch booking: one debit is the sum of a batch's payments, by the batch key the line
       carries, else by account, value-date window and the exact sum;
    3. amount + account + value-date window + payee name similarity (or, on a line whose name
       is unreadable, the payee's account);
    4. amount plus bank fee: the line is payment + a fee up to ``max_fee``, by reference or
       as in rule 3; a separate fee line joins the match of the payment it names or of the
       line it is booked next to (which becomes an amount-plus-fee match);
    5. returns and reversals: a credit naming (or, without a reference, coming back from the
       payee's account for) a payment matched here or ``settled`` earlier.

    ``payments`` and ``lines`` carry the columns in :data:`PAYMENT_COLUMNS` and
    :data:`LINE_COLUMNS`; amounts are integer minor units, dates dates or datetimes.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    ctx = _Context(payments, lines, params)
    timings["prepare"] = time.perf_counter() - start
    steps = ((MatchRule.EXACT_REFERENCE, _exact_reference),
             (MatchRule.BATCH_BOOKING, _batch_booking),
             (MatchRule.AMOUNT_ACCOUNT_DATE_NAME, _amount_account_date_name),
             (MatchRule.AMOUNT_PLUS_FEE, _amount_plus_fee),
             (MatchRule.RETURN, _returns))
    for rule, step in steps:
        t = time.perf_counter()
        if ctx.np and ctx.nl:              # with one side empty there is nothing to match
            step(ctx)
        timings[rule.value] = time.perf_counter() - t
    t = time.perf_counter()
    from yinqi.matching.candidates import suggest

    candidates = suggest(ctx)
    timings["candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    result = _assemble(ctx, candidates, timings)
    timings["assemble"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start
    return result


def _assemble(ctx: _Context, candidates: pd.DataFrame, timings: dict[str, float]) -> MatchResult:
    out = ctx.out
    rule_names = np.array([r.value for r in MatchRule], dtype=object)
    codes, scores, texts = out.finished()
    n = len(codes)
    matches = pd.DataFrame({
        "match_id": np.arange(1, n + 1, dtype=np.int64),
        "rule": pd.Series(rule_names[codes], dtype="str"),
        "score": scores,
        "explanation": pd.Series(texts, dtype="str"),
    })
    m, p, line = out.items()
    pid = np.where(p >= 0, ctx.p_id[np.maximum(p, 0)], 0)
    lid = np.where(line >= 0, ctx.l_id[np.maximum(line, 0)], 0)
    order = np.lexsort((pid, lid, p >= 0, m))          # per match: lines first, then payments
    m, p, line, pid, lid = m[order], p[order], line[order], pid[order], lid[order]
    items = pd.DataFrame({
        "match_id": m + 1,
        "payment_id": pd.arrays.IntegerArray(pid, mask=p < 0),
        "line_id": pd.arrays.IntegerArray(lid, mask=line < 0),
    })
    returned = pd.Index(np.sort(ctx.p_id[ctx.pay_returned]), dtype=np.int64, name="payment_id")
    pay_open = (ctx.pay_match == OPEN) & ~ctx.pay_returned
    return MatchResult(
        matches=matches, items=items, returned_payment_ids=returned,
        unmatched_payments=ctx.payments.iloc[np.flatnonzero(pay_open)],
        unmatched_lines=ctx.lines.iloc[np.flatnonzero((ctx.line_match < 0) & ctx.l_booked)],
        candidates=candidates, timings=timings)
