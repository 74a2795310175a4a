"""Reconciliation: statements in (checked), matched against payments, exceptions, reports."""

from yinqi.recon.exceptions import confirm, list_exceptions, match_by_hand, write_off
from yinqi.recon.intake import FetchResult, fetch_statements, import_statement_file
from yinqi.recon.report import AccountDay, as_markdown, daily_report, export_xlsx
from yinqi.recon.run import ReconSummary, reconcile

__all__ = ["AccountDay", "FetchResult", "ReconSummary", "as_markdown", "confirm",
           "daily_report", "export_xlsx", "fetch_statements", "import_statement_file",
           "list_exceptions", "match_by_hand", "reconcile", "write_off"]
