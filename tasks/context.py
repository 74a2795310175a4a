"""What every task needs: the process's Yinqi app, and the rule for which failures retry."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ClassVar, ParamSpec, TypeVar

from prefect.tasks import exponential_backoff

from yinqi.bootstrap import App
from yinqi.security.masking import install_redaction

# Prefect configured its loggers on import (above): every run log line of this process now
# passes the account-number filter before it reaches the console or the Prefect API.
install_redaction()

P = ParamSpec("P")
R = TypeVar("R")

_app: App | None = None


def app() -> App:
    """One App per process, built from the environment (YINQI_HOME, YINQI_DATABASE_URL ...)."""
    global _app
    if _app is None:
        install_redaction()  # handlers Prefect added since the import are covered too
        _app = App()
    return _app


def use_app(instance: App | None) -> None:
    """Make tasks in this process use ``instance`` (the demo and tests build their own)."""
    global _app
    install_redaction()
    _app = instance


def transient(_task: object, _run: object, state: Any) -> bool:
    """Retry only what may pass by itself: the bank unreachable, the database busy.

    A refusal, a bad signature, a broken file or an illegal transition would fail again
    the same way; retrying them only hides the problem from the operator.
    """
    from sqlalchemy.exc import OperationalError

    from connectors.errors import CertificateError, NotDelivered
    from yinqi.errors import ConcurrencyConflict

    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as raised:  # noqa: BLE001 - classifying, not handling
            exc = raised
    if isinstance(exc, CertificateError):
        return False  # nothing gets through until someone replaces the certificate
    return isinstance(exc, NotDelivered | OperationalError | ConcurrencyConflict)


#: Keyword arguments for every stage task: back-off with jitter, transient errors only.
RETRYING: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": transient,
}


class Timed:
    """Wall time spent inside task bodies in this process: the benchmark's denominator.

    ``by_task`` splits it by task function name (``sign_batches``, ``collect_receipts`` ...)
    so the benchmark can report each stage of a flow run without timing anything itself.
    """

    seconds: float = 0.0
    by_task: ClassVar[dict[str, float]] = {}


def timed(fn: Callable[P, R]) -> Callable[P, R]:
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.perf_counter() - started
            Timed.seconds += spent
            Timed.by_task[name] = Timed.by_task.get(name, 0.0) + spent

    return wrapper
