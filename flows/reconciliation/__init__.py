"""Daily reconciliation: statements -> data-quality checks -> matching -> report."""

from flows.reconciliation.flow import daily_reconciliation, statement_files

__all__ = ["daily_reconciliation", "statement_files"]
