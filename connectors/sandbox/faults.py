"""Seeded, reproducible fault injection.

Each request draws its faults from a generator seeded by (seed, request key, attempt), so
the same sequence of requests meets the same faults on every run, and a retry of the same
request is a fresh draw (as in life: the second try usually gets through).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, fields, replace

from connectors.sandbox.settings import FaultSpec

NAMES = ("latency", "maintenance", "http_5xx", "reset", "timeout_after_booking",
         "duplicate_status", "out_of_order_status", "tampered_answer", "unsigned_answer")


@dataclass(frozen=True, slots=True)
class Faults:
    latency: bool = False
    maintenance: bool = False
    http_5xx: bool = False
    reset: bool = False
    timeout_after_booking: bool = False
    duplicate_status: bool = False
    out_of_order_status: bool = False
    # The answer is changed after the bank signed it, or sent without its signature: what a
    # man in the middle or a broken gateway would deliver. The work itself is done.
    tampered_answer: bool = False
    unsigned_answer: bool = False

    @property
    def refuses_before_processing(self) -> bool:
        return self.maintenance or self.http_5xx or self.reset

    def named(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


class FaultPlan:
    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def update(self, spec: FaultSpec) -> None:
        with self._lock:
            self.spec = spec
            self._attempts.clear()

    def draw(self, key: str, forced: str | None = None) -> Faults:
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
            spec = self.spec
        if forced:
            chosen = Faults(**{name: True for name in forced.split(",") if name in NAMES})
        else:
            rng = random.Random(f"{spec.seed}|{key}|{attempt}")
            chosen = Faults(
                latency=rng.random() < spec.latency_rate,
                maintenance=rng.random() < spec.maintenance_rate,
                http_5xx=rng.random() < spec.http_5xx_rate,
                reset=rng.random() < spec.reset_rate,
                timeout_after_booking=rng.random() < spec.timeout_after_booking_rate,
                duplicate_status=rng.random() < spec.duplicate_status_rate,
                out_of_order_status=rng.random() < spec.out_of_order_status_rate,
                # Drawn last, so the draws above stay what they were for every seed.
                tampered_answer=rng.random() < spec.tampered_answer_rate,
                unsigned_answer=rng.random() < spec.unsigned_answer_rate,
            )
            # One refusal at a time, and a refused request is never processed, so nothing
            # after the refusal can happen to it (counts stay honest).
            if chosen.maintenance:
                chosen = replace(chosen, http_5xx=False, reset=False)
            elif chosen.http_5xx:
                chosen = replace(chosen, reset=False)
            if chosen.refuses_before_processing:
                chosen = replace(chosen, timeout_after_booking=False, duplicate_status=False,
                                 out_of_order_status=False)
        with self._lock:
            self.injected.update(chosen.named())
        return chosen

    def draw_report(self, key: str, forced: str | None = None) -> Faults:
        """Faults of a status report only (duplicates, stale order): the request itself
        already met its transport faults."""
        drawn = self.draw(key, forced) if forced else None
        if drawn is None:
            with self._lock:
                attempt = self._attempts[key]
                self._attempts[key] += 1
                spec = self.spec
            rng = random.Random(f"{spec.seed}|{key}|{attempt}")
            drawn = Faults(duplicate_status=rng.random() < spec.duplicate_status_rate,
                           out_of_order_status=rng.random() < spec.out_of_order_status_rate)
            with self._lock:
                self.injected.update(drawn.named())
        return replace(drawn, latency=False, maintenance=False, http_5xx=False, reset=False,
                       timeout_after_booking=False)

    def _chance(self, purpose: str, key: str, rate: float) -> bool:
        return rate > 0 and random.Random(f"{self.spec.seed}|{purpose}|{key}").random() < rate

    def returns(self, end_to_end_id: str) -> bool:
        """Whether a settled payment comes back as 退票 later (decided once per payment)."""
        hit = self._chance("return", end_to_end_id, self.spec.return_rate)
        if hit:
            with self._lock:
                self.injected["return"] += 1
        return hit

    def statement_twice(self, key: str) -> bool:
        return self._chance("stmt-twice", key, self.spec.statement_twice_rate)

    def statement_gap(self, key: str) -> bool:
        return self._chance("stmt-gap", key, self.spec.statement_gap_rate)
