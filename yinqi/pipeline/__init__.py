"""The payment pipeline after approval: batching, signing, sending, polling, receipts, reruns.

Plain functions over the store and the bank connectors; the Prefect tasks wrap them.
"""

from yinqi.pipeline.banks import BankPool, signer_of
from yinqi.pipeline.batches import BatchingResult, form_batches
from yinqi.pipeline.receipts import ReceiptResult, collect_receipts
from yinqi.pipeline.sending import Pacing, StageResult, poll_batches, send_batches
from yinqi.pipeline.signing import SigningResult, sign_batches
from yinqi.pipeline.run import Progress, drive, open_work, totals_by_state, worker_name

__all__ = [
    "BankPool", "BatchingResult", "Pacing", "Progress", "ReceiptResult", "SigningResult",
    "StageResult", "collect_receipts", "drive", "form_batches", "open_work", "poll_batches",
    "send_batches", "sign_batches", "signer_of", "totals_by_state", "worker_name",
]
