"""Benchmark the reconciliation matcher on a generated month of statement lines.

    python -m bench.reconcile [--lines N ...] [--seed S] [--json]

Each size prints one line (one JSON object with ``--json``): ``lines``, ``payments``,
``matches``, ``total_seconds`` (``yinqi.matching.match`` from DataFrames in to result out,
candidates for the exceptions queue included), ``rule_seconds`` (per rule, plus prepare,
candidates and assemble), ``generate_seconds`` (making the data, not counted in the total),
``cpu_seconds`` (this process's CPU time during the total: steadier than wall time on a
shared machine), ``peak_rss_mb`` (the whole process, data included), ``input_rss_mb`` (resident size once the
data is made, before matching), ``precision`` and ``recall`` against the generator's truth
(per line: the payments a match gives it must be exactly the true ones; recall counts the
lines the truth matches), ``false_matches`` and ``lines_per_second``. With several sizes each
runs in its own process, so the peak RSS belongs to that size alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

from yinqi.matching import match
from yinqi.matching.generate import evaluate, generate

DEFAULT_SIZES = (100_000, 1_000_000)
STEPS = ("prepare", "exact_reference", "batch_booking", "amount_account_date_name",
         "amount_plus_fee", "return", "candidates", "assemble")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(lines: int, seed: int) -> dict[str, object]:
    start = time.perf_counter()
    payments, statement, truth = generate(lines, seed)
    generated = time.perf_counter() - start
    before = _rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    result = match(payments, statement)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    quality = evaluate(result, truth)
    return {
        "lines": len(statement),
        "payments": len(payments),
        "matches": len(result.matches),
        "total_seconds": round(total, 3),
        "cpu_seconds": round(cpu, 3),
        "rule_seconds": {step: round(result.timings.get(step, 0.0), 3) for step in STEPS},
        "generate_seconds": round(generated, 3),
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "input_rss_mb": round(before, 1),
        "precision": quality["precision"],
        "recall": quality["recall"],
        "false_matches": quality["false_matches"],
        "lines_per_second": round(len(statement) / total),
        "seed": seed,
    }


def report(figures: dict[str, object], as_json: bool) -> str:
    if as_json:
        return json.dumps(figures)
    return "  ".join(f"{name}={value}" for name, value in figures.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, action="append", metavar="N",
                        help=f"statement lines; repeatable (default: {DEFAULT_SIZES})")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default: 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args(argv)
    sizes = args.lines or list(DEFAULT_SIZES)
    if any(size < 1 for size in sizes):
        parser.error("--lines must be 1 or more")
    if len(sizes) == 1:
        print(report(measure(sizes[0], args.seed), args.json), flush=True)
        return 0
    for size in sizes:
        command = [sys.executable, "-m", "bench.reconcile", "--lines", str(size),
                   "--seed", str(args.seed)]
        subprocess.run(command + (["--json"] if args.json else []), check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
