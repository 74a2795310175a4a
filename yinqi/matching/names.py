"""Counterparty names: normalisation and a vectorised character-bigram similarity.

Names on statements differ from the names we paid to in ways that mean nothing: full-width
against half-width characters (``（上海）`` / ``(上海)``, ``ＡＢＣ`` / ``ABC``), spaces, letter
case, ``有限责任公司`` against ``有限公司``, ``Co., Ltd.`` against ``Company Limited``, and the
``?`` that MT940 writes for every character outside the SWIFT set. :func:`normalise_names`
removes those differences; :func:`dice` then says how alike two normalised names are: the
share of character pairs (bigrams, with the start and end of the name as pseudo-characters)
the two names have in common, ``2·|A∩B| / (|A|+|B|)`` (Sørensen–Dice), 1.0 for equal names.
The legal form at the end (``有限公司``, ``Co. Ltd``) is left out of the comparison, and names
of at most :data:`SHORT_NAME` characters (personal names) that are not equal score at most
:data:`SHORT_NAME_CAP`.

Everything works on whole arrays. Normalisation runs once per *distinct* name (pandas string
methods), the similarity is numpy set arithmetic on integer-coded bigrams: no Python loop per
line or per pair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Legal-form spellings that name the same thing; applied after NFKC and lower-casing.
_LITERAL_VARIANTS = (
    ("有限责任公司", "有限公司"),
    ("有限責任公司", "有限公司"),
    ("&", " and "),
)
_WORD_VARIANTS = (
    (r"\bcompany\b", "co"),
    (r"\blimited\b", "ltd"),
    (r"\bcorporation\b", "corp"),
    (r"\bincorporated\b", "inc"),
)
# Everything that is not a letter, digit or CJK character (punctuation, spaces, MT940's '?').
_NOT_WORD = r"[\W_]+"
# The legal form at the end says little about who it is and, being long and shared by most
# companies, would make different companies look alike ("…华联信息技术有限公司" against
# "…安达信息技术有限公司"): it is left out of the comparison.
_LEGAL_FORM = (r"(?:(?:\s+(?:co\s+ltd|ltd|inc|corp|llc|plc|co))+"
               r"|股份有限公司|有限公司|股份公司|公司)$")
_CJK_LEGAL_FORM = r"(?:股份有限公司|有限公司|股份公司|公司)$"
# Names this short (after normalisation; typically a person's name such as 王芳) must be equal:
# one character more or less is a different person, though most bigrams agree.
SHORT_NAME = 4
SHORT_NAME_CAP = 0.75


def normalise_names(names: pd.Series) -> pd.Series:
    """Each name in its comparable form (``str`` dtype); missing or empty names become NA.

    Works per distinct name, so a column with a million lines and twenty thousand payees
    normalises twenty thousand strings.
    """
    codes, uniques = pd.factorize(pd.Series(names, copy=False), use_na_sentinel=True)
    if len(uniques) == 0:
        return pd.Series(pd.NA, index=names.index, dtype="str")
    u = pd.Series(uniques, dtype="str").str.normalize("NFKC").str.lower()
    for old, new in _LITERAL_VARIANTS:
        u = u.str.replace(old, new, regex=False)
    # Words matter only in Latin-script names (company/limited/co ltd); the rest loses its
    # punctuation and spaces in one pass.
    latin = u.str.contains("[a-z]", regex=True).fillna(False).to_numpy(dtype=bool)
    full = u.str.replace(_NOT_WORD, "", regex=True)
    core = full.str.replace(_CJK_LEGAL_FORM, "", regex=True)
    if latin.any():
        w = u[latin].str.replace(_NOT_WORD, " ", regex=True).str.strip()
        for pattern, new in _WORD_VARIANTS:
            w = w.str.replace(pattern, new, regex=True)
        core[latin] = w.str.replace(_LEGAL_FORM, "", regex=True).str.replace(" ", "",
                                                                            regex=False)
    u = core.where(core.str.len() > 0, full)
    u = u.where(u.str.len() > 0)
    values = u.to_numpy(dtype=object, na_value=None)
    out = np.empty(len(codes), dtype=object)
    known = codes >= 0
    out[known] = values[codes[known]]
    out[~known] = None
    return pd.Series(out, index=names.index, dtype="str")


class BigramSets:
    """The bigram sets of a list of distinct names, in CSR form (one run of codes per name)."""

    __slots__ = ("codes", "counts", "offsets")

    def __init__(self, names: np.ndarray) -> None:
        n = len(names)
        if n == 0:
            self.codes = np.empty(0, np.int64)
            self.counts = np.zeros(0, np.int64)
            self.offsets = np.zeros(1, np.int64)
            return
        # One string: "\0name0\0name1\0...\0"; the separators double as start/end markers.
        text = "\0" + "\0".join(names) + "\0"
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        owner = np.cumsum(cp == 0)[:-1] - 1          # which name bigram (i, i+1) belongs to
        pair = (cp[:-1] << np.uint64(32)) | cp[1:]
        keep = pair != 0                             # "\0\0": an empty name has no bigrams
        owner, pair = owner[keep], pair[keep]
        bigram, _ = pd.factorize(pair)
        width = np.int64(bigram.max() + 1) if len(bigram) else np.int64(1)
        key = np.unique(owner.astype(np.int64) * width + bigram)
        owner = key // width
        self.codes = key % width
        self.counts = np.bincount(owner, minlength=n).astype(np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(self.counts)))

    def gather(self, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``which``, bigram code) for every bigram of every name in ``which``."""
        counts = self.counts[which]
        total = int(counts.sum())
        pos = np.repeat(np.arange(len(which), dtype=np.int64), counts)
        starts = np.repeat(self.offsets[which] - np.cumsum(counts) + counts, counts)
        return pos, self.codes[starts + np.arange(total, dtype=np.int64)]


class NameBook:
    """Names as codes: each row's normalised name is a code (-1: none), and every distinct
    normalised name has its bigram set, so similarities are array work on codes."""

    def __init__(self, names: pd.Series) -> None:
        codes, uniques = pd.factorize(pd.Series(names, copy=False), use_na_sentinel=True)
        normalised = normalise_names(pd.Series(uniques, dtype="str"))
        ncodes, distinct = pd.factorize(normalised, use_na_sentinel=True)
        ncodes = np.append(ncodes, -1)              # code -1 (no name) stays -1
        self.codes = ncodes[codes].astype(np.int64)
        self.names = np.asarray(distinct, dtype=object).astype(str)
        self.lengths = np.strings.str_len(self.names).astype(np.int64)
        self.sets = BigramSets(self.names)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Bigram similarity of the names with codes ``a`` and ``b`` (aligned arrays)."""
        return _similarity(np.asarray(a, np.int64), np.asarray(b, np.int64), self.sets,
                           self.lengths)


def _similarity(ca: np.ndarray, cb: np.ndarray, sets: BigramSets,
                lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(ca), dtype=np.float64)
    usable = (ca >= 0) & (cb >= 0)
    equal = usable & (ca == cb)
    out[equal] = 1.0
    todo = np.flatnonzero(usable & ~equal)
    if todo.size == 0:
        return out
    size = np.int64(len(sets.counts))
    # Each distinct (name, name) combination once.
    distinct, back = np.unique(ca[todo] * size + cb[todo], return_inverse=True)
    ua, ub = distinct // size, distinct % size
    width = np.int64(sets.codes.max() + 1) if len(sets.codes) else np.int64(1)
    pa, ga = sets.gather(ua)
    pb, gb = sets.gather(ub)
    both = np.concatenate([pa * width + ga, pb * width + gb])
    both.sort()
    shared = both[1:][both[1:] == both[:-1]] // width   # a key in both sets appears twice
    inter = np.bincount(shared, minlength=len(distinct)).astype(np.float64)
    total = (sets.counts[ua] + sets.counts[ub]).astype(np.float64)
    sim = np.divide(2.0 * inter, total, out=np.zeros_like(inter), where=total > 0)
    short = np.minimum(lengths[ua], lengths[ub]) <= SHORT_NAME
    sim[short] = np.minimum(sim[short], SHORT_NAME_CAP)
    out[todo] = sim[back]
    return out


def dice(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Element-wise bigram similarity of two aligned columns of *normalised* names.

    1.0 for equal names, 0.0 where either side is missing; float64 in [0, 1].
    """
    n = len(left)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    both = pd.concat([pd.Series(left, copy=False).reset_index(drop=True),
                      pd.Series(right, copy=False).reset_index(drop=True)], ignore_index=True)
    codes, uniques = pd.factorize(both, use_na_sentinel=True)
    names = np.asarray(uniques, dtype=object).astype(str)
    lengths = np.strings.str_len(names).astype(np.int64)
    return _similarity(codes[:n].astype(np.int64), codes[n:].astype(np.int64),
                       BigramSets(names), lengths)


def name_similarity(left: str | None, right: str | None) -> float:
    """The similarity of two raw names, as the matcher sees it (for docs, tests, the UI)."""
    a = normalise_names(pd.Series([left], dtype="str"))
    b = normalise_names(pd.Series([right], dtype="str"))
    return float(dice(a, b)[0])
