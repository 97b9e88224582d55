"""How many replies smtp_guard.classify reads per second, on one core.

The corpus is every real reply in tests/data (dev and held-out, several hundred providers'
texts in several languages), classified with its phase. The process is pinned to one CPU
where the OS allows it; the rules are warmed up first (their per-phase indexes are built on
first use). Each repetition classifies the whole corpus ``--passes`` times; the figure printed
is the median over ``--repeat`` repetitions, with the spread.

    python bench/classify.py [--repeat 9] [--passes 20]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smtp_guard.classify import classify  # noqa: E402

DATA = ROOT / "tests" / "data"


def load() -> list[tuple[int, str, str | None]]:
    replies: list[tuple[int, str, str | None]] = []
    for name in ("replies_dev.tsv", "replies_heldout.tsv"):
        with (DATA / name).open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                text = row["text"].replace("\\n", "\n")
                replies.append((int(row["code"]), text, row["phase"] or None))
    return replies


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity here)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="repetitions (median is shown)")
    parser.add_argument("--passes", type=int, default=20, help="corpus passes per repetition")
    args = parser.parse_args(argv)

    replies = load()
    pinned = pin_one_core()
    for code, text, phase in replies:  # warm-up: builds each phase's rule index once
        classify(code, text, phase)

    # Each repetition is timed next to a fixed pure-Python workload (the reference), so that
    # a repetition slowed by other processes is scaled back: replies per second x reference
    # time is comparable across loads and machines (roughly). The shared machine's load
    # changes within seconds, so the reference is timed right before each repetition.
    rates: list[float] = []
    scaled: list[float] = []
    references: list[float] = []
    for _ in range(args.repeat):
        reference = min(timeit.repeat("sum(range(100))", number=20_000, repeat=3)) / 20_000
        started = time.perf_counter()
        for _ in range(args.passes):
            for code, text, phase in replies:
                classify(code, text, phase)
        elapsed = time.perf_counter() - started
        rate = args.passes * len(replies) / elapsed
        rates.append(rate)
        references.append(reference)
        scaled.append(rate * reference * 1000)

    load_note = ""
    if hasattr(os, "getloadavg"):
        load_note = f", load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    print(f"corpus: {len(replies)} real replies; python {platform.python_version()}; {pinned}")
    print(
        f"reference: sum(range(100)) takes {statistics.median(references) * 1e6:.2f} us "
        f"(median; {min(references) * 1e6:.2f} at best) on this machine now"
    )
    print(
        f"classify: median {statistics.median(rates):,.0f} replies/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; {args.repeat} x {args.passes} passes"
        f"{load_note})"
    )
    print(
        f"load-scaled: median {statistics.median(scaled):.1f} replies per 1,000 reference runs"
        f" (each repetition scaled by the reference timed just before it)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
