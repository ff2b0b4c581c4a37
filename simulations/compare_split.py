"""Compare FedAvg and every split mode (local-loss SplitFed included) side by side.

Same task, partitions and seeds for every strategy; all run in one simulation (the
engine starts once). Writes a CSV, a text table and PNG plots of accuracy against
round, bytes on the wire and wall time into ``--out``.

    python simulations/compare_split.py                      # 10 clients, Dirichlet 0.5
    python simulations/compare_split.py --rounds 3 --num-supernodes 4   # quick look
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

from edgecloud.local_simulation import run_local_simulations
from edgecloud.results.report import human_bytes

STRATEGIES = (
    "fedavg",
    "split",
    "split-ushaped",
    "splitfed-v1",
    "splitfed-v2",
    "splitfed-local-loss",
)
console = Console(width=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--num-supernodes", type=int, default=10)
    parser.add_argument("--partitioning", default="dirichlet")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--task", default="digits-cnn")
    parser.add_argument("--codec", default="fp32")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="redo the table and plots from the results already in --out",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "compare_split"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.strategies.split(",")
    shared = {
        "num-server-rounds": args.rounds,
        "partitioning": args.partitioning,
        "dirichlet-alpha": args.alpha,
        "task": args.task,
        "split.channel-codec": args.codec,
    }
    runs = {n: {**_selects(n), "output-dir": str(args.out / n)} for n in names}
    errors: dict[str, Exception | None] = dict.fromkeys(names)
    if not args.plot_only:
        status = f"running {', '.join(names)} on {args.num_supernodes} clients"
        with console.status(status):
            errors = run_local_simulations(
                runs, shared=shared, num_supernodes=args.num_supernodes
            )
    histories = {}
    for name in names:
        if errors[name] is not None:
            console.print(f"[red]{name} failed: {errors[name]!r}")
            continue
        histories[name] = json.loads((args.out / name / "results.json").read_text())
    rows = _rows(histories)
    _write_csv(rows, args.out / "results.csv")
    _print_table(histories)
    _plot(rows, args.out)
    console.print(f"wrote {args.out}")


def _selects(name: str) -> dict[str, str]:
    """Run-config keys that choose ``name``: FedAvg or one of the split modes."""
    if name == "fedavg":
        return {"capability": "fl", "fl.strategy": name}
    return {"capability": "split", "split.mode": name}


def _rows(histories: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, history in histories.items():
        total_bytes = total_seconds = 0.0
        for record in history["rounds"]:
            total_bytes += record["bytes_up"] + record["bytes_down"]
            total_seconds += record["seconds"]
            rows.append(
                {
                    "strategy": name,
                    "round": record["round"],
                    "accuracy": record["central_accuracy"],
                    "loss": record["central_loss"],
                    "bytes_up": record["bytes_up"],
                    "bytes_down": record["bytes_down"],
                    "cumulative_bytes": total_bytes,
                    "cumulative_seconds": total_seconds,
                    "failures": record["failures"],
                }
            )
    return rows


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _print_table(histories: dict[str, dict[str, Any]]) -> None:
    table = Table(title="split learning vs FedAvg (same task, partitions, seeds)")
    for column in (
        "strategy",
        "final acc",
        "best acc",
        "rounds",
        "bytes up",
        "bytes down",
        "seconds",
    ):
        table.add_column(column, justify="right")
    for name, history in histories.items():
        rounds = [r for r in history["rounds"] if r["round"] > 0]
        table.add_row(
            name,
            f"{rounds[-1]['central_accuracy']:.4f}",
            f"{max(r['central_accuracy'] for r in rounds):.4f}",
            str(len(rounds)),
            human_bytes(sum(r["bytes_up"] for r in rounds)),
            human_bytes(sum(r["bytes_down"] for r in rounds)),
            f"{sum(r['seconds'] for r in rounds):.1f}",
        )
    console.print(table)


def _plot(rows: list[dict[str, Any]], out: Path) -> None:
    for x_key, label, name in (
        ("round", "server round", "accuracy_vs_round.png"),
        (
            "cumulative_mib",
            "MiB on the wire (up + down, cumulative, log scale)",
            "accuracy_vs_bytes.png",
        ),
        (
            "cumulative_seconds",
            "wall time in rounds (s, cumulative)",
            "accuracy_vs_time.png",
        ),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        for strategy in dict.fromkeys(r["strategy"] for r in rows):
            points = [r for r in rows if r["strategy"] == strategy]
            if (
                x_key == "cumulative_mib"
            ):  # round 0 sent nothing: no point on a log axis
                points = [
                    {**p, "cumulative_mib": p["cumulative_bytes"] / 2**20}
                    for p in points
                    if p["round"] > 0
                ]
            ax.plot(
                [p[x_key] for p in points],
                [p["accuracy"] for p in points],
                marker="o",
                label=strategy,
            )
        if x_key == "cumulative_mib":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (global model)")
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)


if __name__ == "__main__":
    main()
