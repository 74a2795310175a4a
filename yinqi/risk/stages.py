"""The moments a payment is screened (apart from the rules, which need pandas: importing this
costs nothing, so every command can name a stage without loading the screen)."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """The moment a payment is screened."""

    INTAKE = "intake"          # a voucher became a payment (REQUESTED -> PENDING_APPROVAL)
    CORRECTED = "corrected"    # a corrected payment goes back into approval (rerun)
    APPROVAL = "approval"      # an approver decided a level
    FAILURE = "failure"        # the bank rejected or returned it
