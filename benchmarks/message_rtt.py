"""Median message round-trip time, tiny vs 1 MB, simulation vs loopback deployment.

Runs the probe app in ``benchmarks/rtt_app`` twice in one go: through ``flwr run`` on
the managed local simulation (1 virtual SuperNode), and through a real
``flower-superlink`` + ``flower-supernode`` on 127.0.0.1 (insecure). Prints a table
with ratios and writes ``benchmarks/results/message_rtt.json``.

    python benchmarks/message_rtt.py [--sim-samples 30] [--deploy-samples 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgecloud.deploy.federation import start_local_federation
from edgecloud.deploy.flwr_cli import (
    FINISHED_COMPLETED,
    flwr,
    flwr_env,
    submit_run,
    wait_for_run,
)
from edgecloud.deploy.local_superlink import stop_local_superlinks
from edgecloud.deploy.processes import free_port

APP = Path(__file__).resolve().parent / "rtt_app"
OUT = Path(__file__).resolve().parent / "results"
SIZES = (0, 1_048_576)
console = Console()


def _probe(
    env: dict[str, str], connection: str, samples: int, work: Path
) -> dict[str, Any]:
    result_path = work / f"{connection}.json"
    run_config = (
        f'samples={samples} payload-bytes="{",".join(map(str, SIZES))}" '
        f'result-path="{result_path}"'
    )
    run_id = submit_run(APP, connection, env, run_config)
    status = wait_for_run(run_id, connection, env, timeout=1800, stream_logs=False)
    if status["status"] != FINISHED_COMPLETED:
        raise RuntimeError(f"probe run on {connection} ended {status}")
    return dict(json.loads(result_path.read_text()))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sim-samples", type=int, default=30)
    parser.add_argument("--deploy-samples", type=int, default=8)
    args = parser.parse_args()
    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rtt-") as tmp:
        work = Path(tmp)
        port = free_port()
        env = flwr_env(
            work / "flwr_home", {"FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(port)}
        )
        try:
            with console.status("simulation: flwr run on the local SuperLink (Ray)"):
                flwr(
                    [
                        "federation",
                        "simulation-config",
                        "--num-supernodes",
                        "1",
                        "--client-resources-num-cpus",
                        "1",
                    ],
                    env,
                    cwd=APP,
                )
                measured["simulation"] = _probe(env, "local", args.sim_samples, work)
        finally:
            stop_local_superlinks(port)
        federation = start_local_federation(work / "deploy", env, num_supernodes=1)
        try:
            with console.status("deployment: flower-superlink + flower-supernode"):
                measured["deployment"] = _probe(
                    env, federation.connection, args.deploy_samples, work
                )
        finally:
            federation.stop()

    table = Table(title="Message round trip (one send_and_receive to one node)")
    for col in ("setting", "payload each way", "median", "p10", "p90", "n"):
        table.add_column(col, justify="right")
    report: dict[str, Any] = {
        "machine": platform.platform(),
        "time": time.time(),
        "results": {},
    }
    for setting, by_size in measured.items():
        for size_text, entry in by_size.items():
            times = entry["samples"]
            label = (
                "tiny" if int(size_text) == 0 else f"{int(size_text) / 2**20:.0f} MiB"
            )
            table.add_row(
                setting,
                label,
                f"{entry['median_s'] * 1000:.1f} ms",
                f"{_percentile(times, 0.1) * 1000:.1f} ms",
                f"{_percentile(times, 0.9) * 1000:.1f} ms",
                str(len(times)),
            )
            report["results"][f"{setting}/{label}"] = {
                "median_ms": entry["median_s"] * 1000,
                "p10_ms": _percentile(times, 0.1) * 1000,
                "p90_ms": _percentile(times, 0.9) * 1000,
                "samples_ms": [t * 1000 for t in times],
            }
    console.print(table)
    for label in ("tiny", "1 MiB"):
        sim = report["results"][f"simulation/{label}"]["median_ms"]
        dep = report["results"][f"deployment/{label}"]["median_ms"]
        report["results"][f"ratio deployment/simulation {label}"] = dep / sim
        console.print(
            f"{label}: deployment is {dep / sim:.1f}x slower than simulation "
            f"({dep:.0f} ms vs {sim:.0f} ms)"
        )
    size_cost = statistics.median(
        report["results"][f"{s}/1 MiB"]["median_ms"]
        - report["results"][f"{s}/tiny"]["median_ms"]
        for s in ("simulation", "deployment")
    )
    console.print(f"1 MiB vs tiny: +{size_cost:.0f} ms (median of both settings)")
    OUT.mkdir(exist_ok=True)
    (OUT / "message_rtt.json").write_text(json.dumps(report, indent=2))
    console.print(f"wrote {OUT / 'message_rtt.json'}")


if __name__ == "__main__":
    main()
