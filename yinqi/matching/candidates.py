"""Suggestions for the exceptions queue: for every line and payment no rule matched, the few
most likely counterparts among the other side's unmatched items, with a score and a reason.

Candidates come from a bounded set of vectorised searches (each gives at most one or two
counterparts per item, so nothing explodes on a thousand equal amounts):

* the reference the line carries (end-to-end ID, bank reference, an ID in its text);
* the same account and amount, nearest value date;
* the same amount on any account, nearest value date;
* the same account, nearest amount below and above (fees, typos, partial bookings).

Each pair is then scored on all features at once: ``0.35·reference + 0.25·amount +
0.15·account + 0.10·date + 0.15·name``, where amount is 1 when equal (within the
tolerance), 0.7 within a fee, and falls with the relative difference otherwise; date is 1
within the window and falls to 0 over the next 30 days; name is the bigram similarity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from yinqi.matching import _util as u

if TYPE_CHECKING:
    from yinqi.matching.engine import _Context

COLUMNS = ("side", "line_id", "payment_id", "rank", "score", "why")


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"side": pd.Series([], dtype="str"),
                         "line_id": pd.Series([], dtype=np.int64),
                         "payment_id": pd.Series([], dtype=np.int64),
                         "rank": pd.Series([], dtype=np.int64),
                         "score": pd.Series([], dtype=np.float64),
                         "why": pd.Series([], dtype="str")})


def _nearest(left: pd.DataFrame, right: pd.DataFrame, by: list[str], on: str,
             direction: str, left_id: str, right_id: str) -> tuple[np.ndarray, np.ndarray]:
    # Sorted by the key, then by id: among equally near candidates the choice is stable.
    a = left.sort_values([on, "id"], kind="stable")
    b = right.sort_values([on, "id"], kind="stable")[[*by, on, right_id]]
    m = pd.merge_asof(a[[*by, on, left_id]], b, on=on, by=by, direction=direction,
                      allow_exact_matches=True)
    found = m[right_id].notna().to_numpy()
    return (m[left_id].to_numpy()[found].astype(np.int64),
            m[right_id].to_numpy()[found].astype(np.int64))


def suggest(ctx: _Context) -> pd.DataFrame:
    params = ctx.params
    k = params.candidates_per_item
    lines = np.flatnonzero((ctx.line_match < 0) & ctx.l_booked)
    pays = np.flatnonzero((ctx.pay_match == -1) & ~ctx.pay_returned)  # open payments
    if k == 0 or lines.size == 0 or ctx.np == 0:
        return _empty()

    remit = np.full(ctx.nl, -1, dtype=np.int64)
    remit[lines] = ctx.remit_refs(lines)
    open_pay = np.zeros(ctx.np, dtype=bool)
    open_pay[pays] = True
    found_l: list[np.ndarray] = []
    found_p: list[np.ndarray] = []
    for refs in (ctx.ref_e2e, ctx.ref_bref, remit):
        # Also a payment a match took already: the line may be a repeat (same entry in two
        # statements) or a correction; it is shown on the line's side only.
        r = refs[lines]
        ok = (r >= 0) & (open_pay | (ctx.pay_match >= 0))[np.maximum(r, 0)]
        found_l.append(lines[ok])
        found_p.append(r[ok])

    L = pd.DataFrame({"l": lines, "id": ctx.l_id[lines], "a": ctx.l_acct[lines],
                      "amt": np.abs(ctx.l_amt[lines]),
                      "d": ctx.l_day[lines]})
    P = pd.DataFrame({"p": pays, "id": ctx.p_id[pays], "a": ctx.p_acct[pays],
                      "amt": ctx.p_amt[pays],
                      "d": ctx.p_day[pays]})
    searches = ((["a", "amt"], "d", ("nearest",)), (["amt"], "d", ("nearest",)),
                (["a"], "amt", ("backward", "forward")))
    for by, on, directions in searches if pays.size else ():
        for direction in directions:
            li, pi = _nearest(L, P, by, on, direction, "l", "p")
            found_l.append(li)
            found_p.append(pi)
            pi, li = _nearest(P, L, by, on, direction, "p", "l")
            found_l.append(li)
            found_p.append(pi)

    pairs = pd.DataFrame({"l": np.concatenate(found_l), "p": np.concatenate(found_p)})
    pairs = pairs.drop_duplicates(ignore_index=True)
    li, pi = pairs["l"].to_numpy(), pairs["p"].to_numpy()
    score, why = _score(ctx, li, pi, remit)
    keep = score >= params.candidate_min_score
    li, pi, score, why = li[keep], pi[keep], score[keep], why[keep]

    out = []
    for side, own, other, own_ids, other_ids in (("line", li, pi, ctx.l_id, ctx.p_id),
                                                 ("payment", pi, li, ctx.p_id, ctx.l_id)):
        order = np.lexsort((other_ids[other], -score, own_ids[own]))
        if side == "payment":
            order = order[open_pay[pi[order]]]
        o = own[order]
        start = np.r_[True, o[1:] != o[:-1]] if o.size else np.empty(0, bool)
        pos = np.arange(o.size)
        rank = pos - np.maximum.accumulate(np.where(start, pos, 0))
        top = order[rank < k]
        out.append(pd.DataFrame({
            "side": pd.Series(np.full(top.size, side, dtype=object), dtype="str"),
            "line_id": ctx.l_id[li[top]], "payment_id": ctx.p_id[pi[top]],
            "rank": rank[rank < k] + 1, "score": np.round(score[top], 3),
            "why": pd.Series(why[top], dtype="str")}))
    return pd.concat(out, ignore_index=True) if out else _empty()


def _score(ctx: _Context, li: np.ndarray, pi: np.ndarray,
           remit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    W = ctx.params.date_window_days
    ref = (ctx.ref_e2e[li] == pi) | (ctx.ref_bref[li] == pi) | (remit[li] == pi)
    acct = np.where(ctx.l_acct[li] >= 0, ctx.l_acct[li], np.maximum(ctx.p_acct[pi], 0))
    tol, fee = ctx.acct_tol[acct], ctx.acct_fee[acct]
    diff = np.abs(ctx.l_amt[li]) - ctx.p_amt[pi]
    equal = np.abs(diff) <= tol
    # "a fee?" only where the difference is small beside the payment itself.
    within_fee = ~equal & (np.abs(diff) <= fee) & (2 * np.abs(diff) < ctx.p_amt[pi])
    relative = np.clip(1.0 - np.abs(diff) / ctx.p_amt[pi].astype(np.float64), 0.0, 1.0)
    amount = np.where(equal, 1.0, np.where(within_fee, 0.7, 0.3 * relative))
    same_acct = ctx.l_acct[li] == ctx.p_acct[pi]
    gap = np.abs(ctx.l_day[li] - ctx.p_day[pi])
    date = np.where(gap <= W, 1.0, np.clip(1.0 - (gap - W) / 30.0, 0.0, 1.0))
    parties = ctx.parties()
    covered = parties.p_covered[pi]          # matched payments have no name codes
    sim = np.zeros(len(li))
    sim[covered] = parties.similarity(li[covered], pi[covered])
    both_named = covered & parties.line_named(li) & (parties.p_name[pi] >= 0)
    taken = ctx.pay_match[pi] >= 0
    score = 0.35 * ref + 0.25 * amount + 0.15 * same_acct + 0.10 * date + 0.15 * sim

    amount_t = u.choose(equal, "amount equal", u.join([
        "amount ", u.choose(diff > 0, "+", ""), ctx.money(diff, acct),
        u.choose(within_fee, " (a fee?)", "")]))
    no_day = np.abs(gap) > 100_000
    date_t = u.choose(no_day, "; no value date", u.choose(
        gap == 0, "; same value date",
        u.join(["; value dates ", u.plural_days(np.where(no_day, 0, gap)), " apart"])))
    pct = np.floor(sim * 100).astype(np.int64).astype(str).astype(object)
    why = u.join([u.choose(ref, "reference names it; ", ""),
                  u.choose(taken, u.join(["payment already in match ",
                                          (ctx.pay_match[pi] + 1).astype(str).astype(object),
                                          " (a repeated line?); "]), ""),
                  amount_t,
                  u.choose(same_acct, "; same account", "; other account"), date_t,
                  u.choose(both_named, u.join(["; name ", pct, "% alike"]), "")])
    return score, why
