"""The payment flows: payment run, status sweep, receipts, reruns, voucher intake."""

from flows.payment.flow import (
    ApprovalDecision,
    payment_run,
    receipts_flow,
    rerun_batch,
    status_sweep,
    voucher_intake,
)

__all__ = ["ApprovalDecision", "payment_run", "receipts_flow", "rerun_batch", "status_sweep",
           "voucher_intake"]
