"""Array helpers of the matcher: joins, one-to-one assignment, text. No Python loop per row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Days for a missing date: far apart from every real day and from each other's side, so a
# line without a date is never "within the window" of a payment without one.
NO_LINE_DAY = -(1 << 40)
NO_PAYMENT_DAY = 1 << 40
_THOUSANDS = r"(\d)(?=(?:\d{3})+$)"


def days(values: pd.Series, missing: int) -> np.ndarray:
    """Days since 1970-01-01 as int64 (dates, datetimes or ISO strings); ``missing`` for NA."""
    s = values
    if not (isinstance(s.dtype, np.dtype) and s.dtype.kind == "M"):
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_localize(None)
        else:
            s = pd.to_datetime(s)
    arr = s.to_numpy(dtype="datetime64[D]")
    out = arr.astype(np.int64)
    out[np.isnat(arr)] = missing
    return out


def minor_units(values: pd.Series, what: str) -> np.ndarray:
    """An integer money column as int64; floats are refused (money is exact minor units)."""
    dtype = values.dtype
    if dtype.kind == "f" or (hasattr(dtype, "numpy_dtype") and dtype.numpy_dtype.kind == "f"):
        raise TypeError(f"{what} must be integer minor units, not floating point ({dtype})")
    if dtype.kind not in "iu" and not (hasattr(dtype, "numpy_dtype")
                                       and dtype.numpy_dtype.kind in "iu"):
        raise TypeError(f"{what} must be integer minor units, got {dtype}")
    if values.isna().any():
        raise ValueError(f"{what} has missing values")
    return values.to_numpy(dtype=np.int64)


def codes_of(*columns: pd.Series, normalise: str | None = None) -> list[np.ndarray]:
    """Joint integer codes of several string columns (same value, same code; NA is -1).

    ``normalise``: a regex of characters to drop before comparing (done per distinct value).
    """
    joined = pd.concat([pd.Series(c, copy=False).reset_index(drop=True) for c in columns],
                       ignore_index=True)
    codes, uniques = pd.factorize(joined, use_na_sentinel=True)
    if normalise is not None and len(uniques):
        cleaned = pd.Series(uniques, dtype="str").str.replace(normalise, "", regex=True)
        cleaned = cleaned.str.upper().where(lambda s: s.str.len() > 0)
        remap, _ = pd.factorize(cleaned, use_na_sentinel=True)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    out, start = [], 0
    for c in columns:
        out.append(codes[start:start + len(c)].astype(np.int64))
        start += len(c)
    return out


def band_join(left_rows: np.ndarray, left_key: np.ndarray, left_val: np.ndarray,
              right_rows: np.ndarray, right_key: np.ndarray, right_val: np.ndarray,
              lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (left row, right row) with equal keys and ``lo <= left_val - right_val <= hi``.

    An equi-join on (key, value bucket): buckets are ``hi - lo + 1`` wide, so each left row
    looks into at most two of them. With ``lo == hi == 0`` it is a plain join on (key, value).
    """
    if len(left_rows) == 0 or len(right_rows) == 0 or hi < lo:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    width = hi - lo + 1
    right = pd.DataFrame({"k": right_key, "b": right_val // width, "r": right_rows,
                          "rv": right_val})
    first = (left_val - hi) // width
    last = (left_val - lo) // width
    two = first != last
    left = pd.DataFrame({
        "k": np.concatenate([left_key, left_key[two]]),
        "b": np.concatenate([first, last[two]]),
        "l": np.concatenate([left_rows, left_rows[two]]),
        "lv": np.concatenate([left_val, left_val[two]]),
    })
    m = left.merge(right, on=["k", "b"], how="inner", sort=False)
    diff = m["lv"].to_numpy() - m["rv"].to_numpy()
    keep = (diff >= lo) & (diff <= hi)
    return m["l"].to_numpy()[keep], m["r"].to_numpy()[keep]


def crowded(left_key: np.ndarray, left_val: np.ndarray, right_key: np.ndarray,
            right_val: np.ndarray, lo: int, hi: int, limit: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of :func:`band_join` that fall in a bucket whose left × right count exceeds
    ``limit`` (a thousand equal salaries: a million pairs). (left mask, right mask)."""
    nl, nr = len(left_key), len(right_key)
    if nl == 0 or nr == 0 or hi < lo:
        return np.zeros(nl, dtype=bool), np.zeros(nr, dtype=bool)
    width = hi - lo + 1
    first = (left_val - hi) // width
    last = (left_val - lo) // width
    two = np.flatnonzero(first != last)
    k = np.concatenate([right_key, left_key, left_key[two]]).astype(np.int64)
    b = np.concatenate([right_val // width, first, last[two]]).astype(np.int64)
    k, b = k - k.min(), b - b.min()
    if int(k.max()) < (1 << 20) and int(b.max()) < (1 << 42):
        code, _ = pd.factorize((k << 42) | b)          # one int64 key: a fast hash
    else:
        code = pd.DataFrame({"k": k, "b": b}).groupby(["k", "b"], sort=False).ngroup()
        code = code.to_numpy()
    c_right, c_first, c_last = code[:nr], code[nr:nr + nl], code[nr + nl:]
    size = int(code.max()) + 1
    on_right = np.bincount(c_right, minlength=size)
    on_left = np.bincount(np.concatenate([c_first, c_last]), minlength=size)
    too_many = on_left * on_right > limit
    left = too_many[c_first]
    left[two] |= too_many[c_last]
    return left, too_many[c_right]


def group_rank(group: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rank (0, 1, ...) of each id among the distinct ids of its group, ascending."""
    n = len(group)
    if n == 0:
        return np.empty(0, np.int64)
    order = np.lexsort((ids, group))
    g, i = group[order], ids[order]
    new_pair = np.r_[True, (g[1:] != g[:-1]) | (i[1:] != i[:-1])]
    dense = np.cumsum(new_pair) - 1
    new_group = np.r_[True, g[1:] != g[:-1]]
    start = np.maximum.accumulate(np.where(new_group, dense, 0))
    rank = np.empty(n, np.int64)
    rank[order] = dense - start
    return rank


def assign(line: np.ndarray, payment: np.ndarray, score: np.ndarray, tie: np.ndarray,
           group: np.ndarray, line_id: np.ndarray, payment_id: np.ndarray,
           max_rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one choice among candidate pairs: (indices of the chosen pairs, ambiguity).

    Pairs are ranked once, globally: higher ``score``, then lower ``tie`` (a distance), then
    interchangeable candidates pair up in id order (the k-th line of a ``group`` with the k-th
    payment), then ids. Each round accepts every pair that is the best remaining pair of both
    its line and its payment (the globally best one always is, so each round makes progress)
    and drops the pairs those two took part in. This is the greedy assignment, computed in
    a few vectorised rounds instead of one pair at a time.

    ``ambiguity`` counts, per chosen pair, the candidates its line or payment had that were
    exactly as good (same score and tie): 1 means there was no doubt.
    """
    n = len(line)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rank_gap = np.abs(group_rank(group, line_id[line]) - group_rank(group, payment_id[payment]))
    order = np.lexsort((payment_id[payment], line_id[line], rank_gap, tie, -score))
    alive = np.ones(n, dtype=bool)
    line_taken = np.zeros(int(line.max()) + 1, dtype=bool)
    pay_taken = np.zeros(int(payment.max()) + 1, dtype=bool)
    chosen: list[np.ndarray] = []
    for _ in range(max_rounds):
        live = order[alive[order]]
        if live.size == 0:
            break
        _, first_l = np.unique(line[live], return_index=True)
        _, first_p = np.unique(payment[live], return_index=True)
        best = np.intersect1d(first_l, first_p, assume_unique=True)
        picked = live[best]
        chosen.append(picked)
        line_taken[line[picked]] = True
        pay_taken[payment[picked]] = True
        alive &= ~(line_taken[line] | pay_taken[payment])
    picked = np.sort(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)
    frame = pd.DataFrame({"l": line, "p": payment, "s": score, "t": tie})
    same_l = frame.groupby(["l", "s", "t"], sort=False)["p"].transform("size").to_numpy()
    same_p = frame.groupby(["p", "s", "t"], sort=False)["l"].transform("size").to_numpy()
    return picked, np.maximum(same_l, same_p)[picked]


def money(minor: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """Amounts as text with thousands separators: 123456 (exponent 2) -> '1,234.56'.

    Built digit by digit in a byte matrix (one column per character, all rows at once)."""
    minor = np.asarray(minor, dtype=np.int64)
    exponent = np.broadcast_to(np.asarray(exponent, dtype=np.int64), minor.shape)
    out = np.empty(len(minor), dtype=object)
    for e in np.unique(exponent):
        sel = exponent == e
        e = int(e)
        v = np.abs(minor[sel])
        whole, frac = np.divmod(v, 10 ** e)
        digits = 1 + sum((whole >= 10 ** k).astype(np.int64) for k in range(1, 19))
        tail = e + 1 if e else 0
        width = 1 + 19 + 6 + tail
        m = np.full((len(v), width), ord(" "), dtype=np.uint8)
        col = width - 1
        for k in range(e):
            m[:, col] = ord("0") + (frac // 10 ** k) % 10
            col -= 1
        if e:
            m[:, col] = ord(".")
            col -= 1
        for k in range(19):
            if k and k % 3 == 0:
                m[:, col] = np.where(k < digits, ord(","), ord(" "))
                col -= 1
            m[:, col] = np.where(k < digits, ord("0") + (whole // 10 ** k) % 10, ord(" "))
            col -= 1
        neg = minor[sel] < 0
        if neg.any():
            sign_at = width - 1 - tail - (digits + (digits - 1) // 3)
            m[np.flatnonzero(neg), sign_at[neg]] = ord("-")
        packed = np.strings.lstrip(m.view(f"S{width}").ravel())
        out[sel] = packed.astype(f"U{width}").astype(object)
    return out


def text(values: np.ndarray | pd.Series) -> np.ndarray:
    """Anything as an object array of str, NA as "" (for explanations)."""
    if isinstance(values, pd.Series):
        if values.dtype.kind in "iu":
            return values.to_numpy().astype(str).astype(object)
        return values.to_numpy(dtype=object, na_value="")
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        return np.where(pd.isna(arr), "", arr).astype(object)
    return arr.astype(str).astype(object)


def join(parts: Sequence[np.ndarray | str]) -> np.ndarray:
    """Element-wise concatenation of aligned object arrays of str and constant strings."""
    n = max((len(p) for p in parts if not isinstance(p, str)), default=0)
    out: np.ndarray | None = None
    pending = ""
    for p in parts:
        if isinstance(p, str):
            pending += p          # constants next to each other are joined once
            continue
        if out is None:
            out = pending + p if pending else p
        else:
            out = out + pending + p if pending else out + p
        pending = ""
    if out is None:
        return np.full(n, pending, dtype=object)
    return out + pending if pending else out


def choose(condition: np.ndarray, yes: np.ndarray | str, no: np.ndarray | str) -> np.ndarray:
    return np.where(condition, yes, no).astype(object)


def plural_days(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=np.int64)
    return d.astype(str).astype(object) + np.where(d == 1, " day", " days").astype(object)
