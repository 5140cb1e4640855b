"""How long a reply takes to format and split (to_whatsapp, then split_message), as a multiple of str.split.

Run: .venv/bin/python -m bench.formatting [--sizes 10000,40000,100000] [--repeats 5] [--only NAME]

The inputs are the test's shapes (tests/core/whatsapp/test_formatting_linear.py: prose and adversarial Markdown,
each repeated or stretched to the size). For each shape and size, the best of --repeats timings of
split_message(to_whatsapp(text)) in milliseconds, and that time as a multiple of the best time of
text.split() on the same text, measured in the same run (this machine is shared and noisy). `growth` is the
time at the largest size over the time at the smallest: linear is the ratio of the sizes (10 for 10k → 100k),
quadratic its square.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from core.whatsapp.formatting import split_message, to_whatsapp
from tests.core.whatsapp.test_formatting_linear import ADVERSARIAL


def best_time(work: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def run(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.sizes.split(",")]
    names = [name for name in ADVERSARIAL if not args.only or args.only in name]
    header = "".join(f"{f'{size // 1000}k ms':>9}{'x split':>9}" for size in sizes)
    print(f"{'input':<36}{header}{'growth':>8}")
    worst_time, worst_growth = 0.0, 0.0
    for name in names:
        row, times = "", []
        for size in sizes:
            text = ADVERSARIAL[name](size)
            formatted = best_time(lambda: split_message(to_whatsapp(text)), args.repeats)
            baseline = best_time(text.split, args.repeats)
            times.append(formatted)
            row += f"{formatted * 1000:9.2f}{formatted / baseline:9.0f}"
        growth = times[-1] / times[0]
        worst_time, worst_growth = max(worst_time, times[-1]), max(worst_growth, growth)
        print(f"{name:<36}{row}{growth:8.1f}")
    print(f"slowest at {sizes[-1]:,} characters: {worst_time * 1000:.1f} ms; largest growth {worst_growth:.1f} "
          f"(sizes grow {sizes[-1] / sizes[0]:.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,40000,100000", help="text lengths in characters, ascending")
    parser.add_argument("--repeats", type=int, default=5, help="timings per measurement; the best one counts")
    parser.add_argument("--only", default="", help="only the inputs whose name contains this")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
