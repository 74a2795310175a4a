"""Reconciliation matching: bank statement lines against payments, vectorised with pandas.

Pure: no database, no Prefect, no I/O. Give it two DataFrames, get a :class:`MatchResult`::

    from yinqi.matching import MatchParams, match
    result = match(payments_df, lines_df, MatchParams(date_window_days=3))

The rules, their order, the scores and the column contracts are described in
``docs/reconciliation.md`` and in :func:`match`. :mod:`yinqi.matching.generate` makes
realistic test data with the truth attached.
"""

from yinqi.matching.engine import (
    CANDIDATE_COLUMNS,
    ITEM_COLUMNS,
    LINE_COLUMNS,
    MATCH_COLUMNS,
    PAYMENT_COLUMNS,
    RULE_ORDER,
    MatchResult,
    match,
)
from yinqi.matching.names import dice, name_similarity, normalise_names
from yinqi.matching.params import MatchParams

__all__ = [
    "CANDIDATE_COLUMNS",
    "ITEM_COLUMNS",
    "LINE_COLUMNS",
    "MATCH_COLUMNS",
    "PAYMENT_COLUMNS",
    "RULE_ORDER",
    "MatchParams",
    "MatchResult",
    "dice",
    "match",
    "name_similarity",
    "normalise_names",
]
