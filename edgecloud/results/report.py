"""Human-facing run output: the per-round table, the final summary and the plot."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

from edgecloud.results.history import RoundRecord, RunHistory

_COLUMNS = (
    ("round", 5),
    ("train loss", 10),
    ("test loss", 9),
    ("test acc", 8),
    ("fed acc", 7),
    ("bytes up", 10),
    ("bytes down", 10),
    ("seconds", 7),
    ("failed", 6),
)


def human_bytes(num: float) -> str:
    """``1536 -> '1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(num) < 1024 or unit == "GiB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    raise AssertionError("unreachable")


def table_header() -> str:
    """Header line of the per-round table."""
    return " | ".join(name.rjust(width) for name, width in _COLUMNS)


def table_row(record: RoundRecord) -> str:
    """One line of the per-round table (``-`` where nothing was measured)."""
    cells = (
        str(record.round),
        _num(record.train_loss, 4),
        _num(record.central_loss, 4),
        _num(record.central_accuracy, 4),
        _num(record.federated_accuracy, 4),
        human_bytes(record.bytes_up),
        human_bytes(record.bytes_down),
        f"{record.seconds:.2f}",
        str(record.failures),
    )
    return " | ".join(c.rjust(w) for c, (_, w) in zip(cells, _COLUMNS, strict=True))


def summary_table(history: RunHistory) -> str:
    """The whole run as a rich table, rendered to plain text for the logs."""
    table = Table(title="edgecloud run summary")
    for name, _ in _COLUMNS:
        table.add_column(name, justify="right")
    for record in history.rounds:
        table.add_row(*(c.strip() for c in table_row(record).split(" | ")))
    buffer = io.StringIO()
    Console(file=buffer, width=120, force_terminal=False, color_system=None).print(
        table
    )
    return buffer.getvalue()


def summary_lines(history: RunHistory, output_dir: Path) -> list[str]:
    """Closing lines: final accuracy, totals and where the files are."""
    done = [r for r in history.rounds if r.round > 0]
    last = history.last
    lines = [f"status: {history.status}, completed rounds: {history.completed_rounds}"]
    if last is not None and last.central_accuracy is not None:
        lines.append(
            f"final test accuracy {last.central_accuracy:.4f} "
            f"(loss {_num(last.central_loss, 4)}) after round {last.round}"
        )
    if done:
        lines.append(
            f"traffic: {human_bytes(sum(r.bytes_up for r in done))} up, "
            f"{human_bytes(sum(r.bytes_down for r in done))} down; "
            f"{sum(r.seconds for r in done):.1f} s in rounds; "
            f"{sum(r.failures for r in done)} failed replies"
        )
    if history.summary:
        lines.append(
            "summary: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in history.summary.items())
        )
    lines.append(f"outputs: {output_dir}")
    return lines


def plot_accuracy(history: RunHistory, path: Path) -> None:
    """Accuracy (and loss) against round, written as a PNG."""
    rounds = [r for r in history.rounds if r.central_accuracy is not None]
    fed = [r for r in history.rounds if r.federated_accuracy is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(
        [r.round for r in rounds],
        [float(r.central_accuracy or 0.0) for r in rounds],
        marker="o",
        label="global model, held-out test set",
    )
    if fed:
        ax.plot(
            [r.round for r in fed],
            [float(r.federated_accuracy or 0.0) for r in fed],
            marker="s",
            linestyle="--",
            label="federated evaluation (client validation)",
        )
    ax.set_title(history.label or "edgecloud run")
    ax.set_xlabel("server round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
