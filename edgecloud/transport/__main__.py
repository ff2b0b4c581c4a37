"""``python -m edgecloud.transport``: measure the session stream on loopback (TLS).

Prints the median round trip (with 10th/90th percentiles) of a tiny and a 1 MiB
message over one session, with the client in a thread of this process and in a
process of its own (as deployed), and how long ``connect()`` takes.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from edgecloud.transport.measure import connect_times, round_trips


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, no usage block: bad input is reported like every edgecloud CLI
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value} must be at least 2")
    return value


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of byte counts"
        ) from None
    if any(size < 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be >= 0")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print one line per payload size."""
    parser = _Parser(prog="python -m edgecloud.transport", description=__doc__)
    parser.add_argument("--n", type=_positive, default=200, help="round trips per size")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[1, 1 << 20],
        help="payload bytes each way, comma-separated (default 1,1048576)",
    )
    parser.add_argument(
        "--connects", type=_positive, default=20, help="connect() samples"
    )
    args = parser.parse_args(argv)
    print("session stream on loopback, TLS, one session, server-driven ping-pong")
    for where, client_process in (("thread", False), ("process", True)):
        for size in args.sizes:
            timing = round_trips(size, args.n, client_process=client_process)
            print(
                f"round trip {size:>9} B each way, client {where:<7}: median "
                f"{timing.median * 1e3:.3f} ms (p10 {timing.p10 * 1e3:.3f}, "
                f"p90 {timing.p90 * 1e3:.3f}; n={timing.n})"
            )
    timing = connect_times(args.connects)
    print(
        f"connect() (TLS + hello + acceptance): median {timing.median * 1e3:.2f} ms "
        f"(p10 {timing.p10 * 1e3:.2f}, p90 {timing.p90 * 1e3:.2f}; n={timing.n})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
