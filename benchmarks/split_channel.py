"""Cost of the protected smashed-data channel and of each transport, in one run.

1. Bytes per sample, up (smashed data + labels) and down (gradients), for each codec,
   next to the raw input and a FedAvg update (digits-cnn and cifar10-cnn).
2. AES-256-GCM throughput and its share of one split training step.
3. Accuracy of SplitFed-v1 with int8 vs fp32 smashed data on digits-cnn.
4. Seconds per step of ``split`` and ``splitfed-v1`` (digits-cnn, batch 64, 2
   SuperNodes): compute only (in-process), the Flower simulation, a loopback
   TLS + SuperNode-auth deployment over Flower messages and over the streamed
   session; the stream's loopback round trip for a step's payload; the target
   deployed stream step <= 1.2 x (compute + stream round trip).
5. Round time of SplitFed-v1 and local-loss SplitFed on that deployment over
   messages (one exchange per round for local-loss).

Prints tables with ratios and writes ``benchmarks/results/split_channel.json``.

    python benchmarks/split_channel.py [--skip-deployment] [--rounds 10]
    python benchmarks/split_channel.py --only-steps    # redo 4 and 5 only
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from edgecloud.channel import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    FrameContext,
    Handshake,
    SecureChannel,
)
from edgecloud.data.partitioning import PartitionSpec
from edgecloud.deploy.federation import start_local_federation
from edgecloud.deploy.flwr_cli import (
    FINISHED_COMPLETED,
    flwr_env,
    submit_run,
    wait_for_run,
)
from edgecloud.local_simulation import PROJECT_DIR, run_local_simulations
from edgecloud.tasks import get_task
from edgecloud.tasks.split_steps import (
    DeviceSide,
    ServerSide,
    batch_schedule,
    make_optimizer,
)
from edgecloud.transport.measure import round_trips

OUT = Path(__file__).resolve().parent / "results"
CTX = FrameContext(1, 1, "train.split_step", 1, 1)
console = Console(width=120)


def _channels(encrypted: bool) -> tuple[SecureChannel, SecureChannel]:
    if not encrypted:
        return (
            SecureChannel(None, send_direction=CLIENT_TO_SERVER),
            SecureChannel(None, send_direction=SERVER_TO_CLIENT),
        )
    client, server = Handshake(), Handshake()
    return (
        SecureChannel(
            client.derive(server.public_bytes, is_server=False, run_id=1, node_id=1),
            send_direction=CLIENT_TO_SERVER,
        ),
        SecureChannel(
            server.derive(client.public_bytes, is_server=True, run_id=1, node_id=1),
            send_direction=SERVER_TO_CLIENT,
        ),
    )


def bytes_per_sample(batch: int = 32) -> dict[str, Any]:
    """Frame bytes per sample for every codec vs raw input and a FedAvg update."""
    report: dict[str, Any] = {}
    for name, raw_bytes, rows_per_client in (
        ("digits-cnn", 64, 115),
        ("cifar10-cnn", 3072, 5000),
    ):
        task = get_task(name)
        torch.manual_seed(0)
        model = task.build_model()
        shape = (batch, 1, 8, 8) if name == "digits-cnn" else (batch, 3, 32, 32)
        with torch.no_grad():
            smashed = model.front(torch.randn(shape)).numpy()
        labels = np.zeros(batch, dtype=np.int64)
        update = sum(p.numel() * 4 for p in model.parameters())
        entry: dict[str, Any] = {
            "raw_input_bytes_per_sample": raw_bytes,
            "fedavg_update_bytes": update,
            "fedavg_update_bytes_per_sample": update / rows_per_client,
        }
        for codec in ("fp32", "fp16", "bf16", "int8"):
            up, down = _channels(True)
            frame_up = up.seal({"activations": smashed, "labels": labels}, CTX, codec)
            frame_down = down.seal({"grad": smashed}, CTX, codec)
            entry[codec] = {
                "up_bytes_per_sample": len(frame_up) / batch,
                "down_bytes_per_sample": len(frame_down) / batch,
            }
        entry["int8_reduction_vs_fp32"] = (
            entry["fp32"]["up_bytes_per_sample"] / entry["int8"]["up_bytes_per_sample"]
        )
        report[name] = entry
    return report


def aes_throughput(megabytes: int = 8, repeats: int = 5) -> dict[str, float]:
    """MB/s of seal + open of one frame of ``megabytes`` fp32 values."""
    values = np.random.default_rng(0).normal(size=megabytes * 2**18).astype(np.float32)
    result = {}
    for encrypted in (True, False):
        best = float("inf")
        for _ in range(repeats):
            sender, receiver = _channels(encrypted)
            start = time.perf_counter()
            receiver.open(sender.seal({"x": values}, CTX), CTX)
            best = min(best, time.perf_counter() - start)
        result["encrypted" if encrypted else "plain"] = megabytes / best
    return result


def step_share(
    task_name: str, batch: int, steps: int = 20, repeats: int = 5
) -> dict[str, float]:
    """Seconds of one in-process split step, and what AES-GCM adds to it.

    The compute of a step (device forward, server loss step, device recompute and
    update) and the channel work (seal + open of activations, labels, gradients)
    are timed separately, each the median of ``repeats`` after a warm-up, so the
    share does not depend on which variant ran first.
    """
    task = get_task(task_name)
    if task_name == "digits-cnn":
        spec = PartitionSpec("iid", 1, 0)
        data = task.load_client_data("digits", spec, 0, Path("."), False).train
    else:  # random CIFAR-sized data: only the timing matters here
        from edgecloud.data.arrays import LabeledArrays

        rng = np.random.default_rng(0)
        data = LabeledArrays(
            rng.integers(0, 256, (batch * steps, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, 10, batch * steps).astype(np.int64),
            10,
        )
    torch.manual_seed(0)
    model = task.build_model()
    schedule = batch_schedule(len(data), batch, 100, 0)[:steps]
    device = DeviceSide(
        task, model.front, make_optimizer(model.front, 0.01, 0.9), data, schedule
    )
    server = ServerSide(
        model.back,
        make_optimizer(model.back, 0.01, 0.9),
        model,
        loss_fn=task.loss,
        predict_fn=task.predict,
    )
    tensors = []

    def compute() -> float:
        start = time.perf_counter()
        for step in range(len(schedule)):
            a, y = device.activations(step)
            grad, _ = server.loss_step(a, y)
            device.apply_gradient(step, grad)
            if len(tensors) < len(schedule):
                tensors.append((a, y, grad))
        return (time.perf_counter() - start) / len(schedule)

    def channel(encrypted: bool) -> float:
        up, down = _channels(encrypted)
        start = time.perf_counter()
        for a, y, grad in tensors:
            down.open(up.seal({"activations": a, "labels": y}, CTX), CTX)
            up.open(down.seal({"grad": grad}, CTX), CTX)
        return (time.perf_counter() - start) / len(tensors)

    compute()  # warm-up, also collects the tensors of every step
    channel(True)
    step = float(np.median([compute() for _ in range(repeats)]))
    sealed = float(np.median([channel(True) for _ in range(repeats)]))
    framed = float(np.median([channel(False) for _ in range(repeats)]))
    up, down = _channels(True)
    a, y, grad = tensors[0]
    return {
        "compute_s": step,
        "channel_encrypted_s": sealed,
        "channel_plain_s": framed,
        "encryption_share": (sealed - framed) / (step + sealed),
        "frame_up_bytes": len(up.seal({"activations": a, "labels": y}, CTX)),
        "frame_down_bytes": len(down.seal({"grad": grad}, CTX)),
    }


def accuracy_int8_vs_fp32(rounds: int, work: Path) -> dict[str, Any]:
    """Final test accuracy of SplitFed-v1 with fp32 and int8 channels (10 clients)."""
    shared = {
        "capability": "split",
        "split.mode": "splitfed-v1",
        "num-server-rounds": rounds,
        "partitioning": "dirichlet",
        "dirichlet-alpha": 0.5,
    }
    runs = {
        c: {"split.channel-codec": c, "output-dir": str(work / f"acc-{c}")}
        for c in ("fp32", "int8")
    }
    errors = run_local_simulations(runs, shared=shared, num_supernodes=10)
    result: dict[str, Any] = {}
    for codec in runs:
        if errors[codec] is not None:
            raise RuntimeError(f"{codec} run failed: {errors[codec]!r}")
        history = json.loads((work / f"acc-{codec}" / "results.json").read_text())
        last = history["rounds"][-1]
        result[codec] = {
            "final_accuracy": last["central_accuracy"],
            "bytes_up": sum(r["bytes_up"] for r in history["rounds"]),
            "seconds": sum(r["seconds"] for r in history["rounds"]),
            "exchanges": sum(r["extra"].get("exchanges", 0) for r in history["rounds"]),
        }
    result["accuracy_drop_points"] = 100 * (
        result["fp32"]["final_accuracy"] - result["int8"]["final_accuracy"]
    )
    return result


STEP_RUN: dict[str, int] = {"local-epochs": 1, "batch-size": 64}
STEP_MODES = ("split", "splitfed-v1")


def steps_by_transport(work: Path, deployment: bool) -> dict[str, Any]:
    """Seconds per step of each mode: compute only, simulation, deployed transports.

    A step is one exchange (device forward + server loss step + device update and
    the sealing both ways); the figure is the median over a round's exchanges after
    each conversation's first (which also loads the data and builds the model).
    In ``split`` one device steps at a time; in ``splitfed-v1`` both devices step
    in each exchange, so its compute is two client steps (serial upper bound: on
    the deployment the two devices run in parallel processes).
    """
    compute = step_share("digits-cnn", int(STEP_RUN["batch-size"]))
    per_client = compute["compute_s"] + compute["channel_encrypted_s"]
    # the same step with the thread budget the deployed processes get (one each)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = step_share("digits-cnn", int(STEP_RUN["batch-size"]))
    finally:
        torch.set_num_threads(threads)
    per_client_1t = single["compute_s"] + single["channel_encrypted_s"]
    payload = int(compute["frame_up_bytes"] + compute["frame_down_bytes"]) // 2
    rtt = round_trips(payload, 200, client_process=True)
    result: dict[str, Any] = {
        "batch_size": STEP_RUN["batch-size"],
        "torch_threads": threads,
        "compute_per_client_step_s": per_client,
        "compute_per_client_step_1thread_s": per_client_1t,
        "stream_rtt_s": rtt.median,
        "stream_rtt_payload_bytes": payload,
        "modes": {},
    }
    for mode in STEP_MODES:
        clients = 2 if mode.startswith("splitfed") else 1
        result["modes"][mode] = {
            "compute_s": clients * per_client,
            "compute_1thread_s": clients * per_client_1t,
        }
    runs = {
        mode: {"split.mode": mode, "output-dir": str(work / f"sim-{mode}")}
        for mode in STEP_MODES
    }
    errors = run_local_simulations(
        runs,
        shared={"capability": "split", "num-server-rounds": 2, **STEP_RUN},
        num_supernodes=2,
    )
    for mode in STEP_MODES:
        if errors[mode] is not None:
            raise RuntimeError(f"simulation of {mode} failed: {errors[mode]!r}")
        result["modes"][mode]["simulation"] = _round_figures(work / f"sim-{mode}")
    if deployment:
        result |= _deployed(work, result)
    return result


def _deployed(work: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The same modes on a loopback TLS + auth deployment, both transports.

    One torch thread per process: the ServerApp and both ClientApps compute at
    once on this machine's cores, and torch's default (a thread per core in every
    process) oversubscribes them; measured on 2 cores, SplitFed-v1 steps took
    24-110 ms with the default and 13-17 ms with one thread each. Each device of a
    real deployment has its own cores. (The compute-only baseline keeps torch's
    default threads: the bound it gives is the tighter one.)
    """
    env = flwr_env(work / "flwr_home") | {"OMP_NUM_THREADS": "1"}
    runs: list[tuple[str, str, str, int]] = [  # (name, mode, transport, rounds)
        *((f"stream-{m}", m, "stream", 2) for m in STEP_MODES),
        ("messages-splitfed-v1", "splitfed-v1", "messages", 1),
        ("messages-splitfed-local-loss", "splitfed-local-loss", "messages", 1),
    ]
    deployed: dict[str, Any] = {}
    federation = start_local_federation(
        work / "deploy", env, num_supernodes=2, tls=True, supernode_auth=True
    )
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("loopback deployment runs", total=len(runs))
            for name, mode, transport, rounds in runs:
                progress.update(task, description=f"deployment: {name}")
                config = {
                    "capability": "split",
                    "split.mode": mode,
                    "split.transport": transport,
                    "num-server-rounds": rounds,
                    **STEP_RUN,
                }
                out = work / f"deploy-{name}"
                overrides = " ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
                run_id = submit_run(
                    PROJECT_DIR,
                    federation.connection,
                    env,
                    f'{overrides} output-dir="{out}"',
                )
                status = wait_for_run(
                    run_id, federation.connection, env, timeout=1800, stream_logs=False
                )
                if status["status"] != FINISHED_COMPLETED:
                    raise RuntimeError(f"deployment run {name} ended {status}")
                deployed[name] = _round_figures(out)
                progress.advance(task)
    finally:
        federation.stop()
    modes = result["modes"]
    for mode in STEP_MODES:
        modes[mode]["deployment_stream"] = deployed[f"stream-{mode}"]
        stream_step = deployed[f"stream-{mode}"]["step_s"]
        bound = modes[mode]["compute_s"] + result["stream_rtt_s"]
        modes[mode]["stream_vs_compute_plus_rtt"] = stream_step / bound
        bound_1t = modes[mode]["compute_1thread_s"] + result["stream_rtt_s"]
        modes[mode]["stream_vs_compute_1thread_plus_rtt"] = stream_step / bound_1t
    modes["splitfed-v1"]["deployment_messages"] = deployed["messages-splitfed-v1"]
    modes["splitfed-v1"]["messages_vs_stream"] = (
        deployed["messages-splitfed-v1"]["step_s"]
        / deployed["stream-splitfed-v1"]["step_s"]
    )
    return {"local_loss_round": deployed["messages-splitfed-local-loss"]}


def _round_figures(output_dir: Path) -> dict[str, float]:
    """The last training round's step time, set-up time and totals."""
    history = json.loads((output_dir / "results.json").read_text())
    record = [r for r in history["rounds"] if r["round"] > 0][-1]
    extra = record["extra"]
    return {
        "round": record["round"],
        "round_seconds": record["seconds"],
        "exchanges": extra["exchanges"],
        "step_s": extra.get("step-seconds", record["seconds"] / extra["exchanges"]),
        "session_setup_s": extra.get("session-seconds", 0.0),
        "accuracy": record["central_accuracy"],
        "bytes": record["bytes_up"] + record["bytes_down"],
    }


def remeasure_steps() -> None:
    """Redo only the per-transport step times and update the JSON report."""
    path = OUT / "split_channel.json"
    report = json.loads(path.read_text())
    with tempfile.TemporaryDirectory(prefix="split-bench-") as tmp:
        report["steps"] = steps_by_transport(Path(tmp), deployment=True)
    report.pop("seconds_per_step", None)  # the figures of earlier versions
    _share_of_simulated_step(report)
    path.write_text(json.dumps(report, indent=2))
    _print(report)


def _share_of_simulated_step(report: dict[str, Any]) -> None:
    """The encryption share of a step as it runs in simulation (with its trip)."""
    sim_step = report["steps"]["modes"]["split"]["simulation"]["step_s"]
    for entry in report["step"].values():
        extra = entry["channel_encrypted_s"] - entry["channel_plain_s"]
        entry["encryption_share_of_simulated_step"] = extra / (sim_step + extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--skip-deployment", action="store_true")
    parser.add_argument(
        "--only-steps",
        action="store_true",
        help="redo only seconds per step and update the JSON",
    )
    args = parser.parse_args()
    if args.only_steps:
        remeasure_steps()
        return
    report: dict[str, Any] = {"machine": platform.platform(), "time": time.time()}
    with console.status("bytes per sample"):
        report["bytes"] = bytes_per_sample()
    with console.status("AES-GCM throughput and step share"):
        report["aes_mb_per_s"] = aes_throughput()
        report["step"] = {
            "digits-cnn (batch 16)": step_share("digits-cnn", 16),
            "cifar10-cnn (batch 32)": step_share("cifar10-cnn", 32),
        }
    with tempfile.TemporaryDirectory(prefix="split-bench-") as tmp:
        # Timing first: a simulation started after another one in the same
        # process was measured 15x slower per step (engine shutdown still running).
        with console.status("seconds per step: compute / simulation / deployment"):
            report["steps"] = steps_by_transport(Path(tmp), not args.skip_deployment)
        with console.status(
            f"SplitFed-v1 fp32 vs int8, 10 clients, {args.rounds} rounds"
        ):
            report["accuracy"] = accuracy_int8_vs_fp32(args.rounds, Path(tmp))
    _share_of_simulated_step(report)
    OUT.mkdir(exist_ok=True)
    (OUT / "split_channel.json").write_text(json.dumps(report, indent=2))
    _print(report)
    console.print(f"wrote {OUT / 'split_channel.json'}")


def _print(report: dict[str, Any]) -> None:
    table = Table(title="bytes per sample on the wire (sealed frames, batch 32)")
    for column in (
        "task",
        "raw input",
        "FedAvg update/sample",
        "fp32 up/down",
        "fp16 up/down",
        "bf16 up/down",
        "int8 up/down",
        "int8 vs fp32",
    ):
        table.add_column(column, justify="right")
    for name, e in report["bytes"].items():
        table.add_row(
            name,
            f"{e['raw_input_bytes_per_sample']}",
            f"{e['fedavg_update_bytes_per_sample']:.0f}",
            *(
                f"{e[c]['up_bytes_per_sample']:.0f}/{e[c]['down_bytes_per_sample']:.0f}"
                for c in ("fp32", "fp16", "bf16", "int8")
            ),
            f"{e['int8_reduction_vs_fp32']:.2f}x",
        )
    console.print(table)
    aes = report["aes_mb_per_s"]
    console.print(
        f"AES-256-GCM seal+open: {aes['encrypted']:.0f} MB/s "
        f"(unencrypted framing {aes['plain']:.0f} MB/s)"
    )
    for name, s in report["step"].items():
        console.print(
            f"{name}: compute {s['compute_s'] * 1000:.2f} ms/step, channel "
            f"{s['channel_encrypted_s'] * 1000:.3f} ms sealed vs "
            f"{s['channel_plain_s'] * 1000:.3f} ms plain -> encryption "
            f"{100 * s['encryption_share']:.2f} % of the compute-only step, "
            f"{100 * s['encryption_share_of_simulated_step']:.2f} % of a simulated "
            "step with its round trip (target <= 5 %)"
        )
    acc = report["accuracy"]
    console.print(
        f"SplitFed-v1 digits-cnn: fp32 {acc['fp32']['final_accuracy']:.4f}, int8 "
        f"{acc['int8']['final_accuracy']:.4f} -> drop "
        f"{acc['accuracy_drop_points']:.2f} points (target <= 1); uplink "
        f"{acc['fp32']['bytes_up'] / acc['int8']['bytes_up']:.2f}x smaller"
    )
    _print_steps(report["steps"])


def _print_steps(steps: dict[str, Any]) -> None:
    table = Table(
        title=f"seconds per step, digits-cnn batch {steps['batch_size']}, 2 SuperNodes"
    )
    for column in (
        "mode",
        f"compute only ({steps['torch_threads']} threads / 1)",
        "simulation",
        "deployed, messages",
        "deployed, stream",
        "stream / (compute + RTT)",
        "stream set-up / round",
    ):
        table.add_column(column, justify="right")
    for mode, m in steps["modes"].items():
        stream = m.get("deployment_stream")
        messages = m.get("deployment_messages")
        table.add_row(
            mode,
            f"{m['compute_s'] * 1e3:.1f} / {m['compute_1thread_s'] * 1e3:.1f} ms",
            f"{m['simulation']['step_s'] * 1e3:.0f} ms",
            "-" if messages is None else f"{messages['step_s']:.2f} s",
            "-" if stream is None else f"{stream['step_s'] * 1e3:.1f} ms",
            "-"
            if stream is None
            else f"{m['stream_vs_compute_plus_rtt']:.2f}x / "
            f"{m['stream_vs_compute_1thread_plus_rtt']:.2f}x (target <= 1.2)",
            "-" if stream is None else f"{stream['session_setup_s']:.1f} s",
        )
    console.print(table)
    console.print(
        f"stream round trip on loopback (TLS, client process, "
        f"{steps['stream_rtt_payload_bytes']} B each way): "
        f"{steps['stream_rtt_s'] * 1e3:.2f} ms"
    )
    sfl = steps["modes"]["splitfed-v1"]
    if "messages_vs_stream" in sfl:
        console.print(
            f"splitfed-v1 deployed: messages {sfl['messages_vs_stream']:.0f}x slower "
            f"per step than the stream"
        )
    if "local_loss_round" in steps:
        ll, v1 = steps["local_loss_round"], sfl["deployment_messages"]
        console.print(
            f"deployed round over messages: splitfed-local-loss "
            f"{ll['round_seconds']:.1f} s ({ll['exchanges']:.0f} exchanges) vs "
            f"splitfed-v1 {v1['round_seconds']:.1f} s ({v1['exchanges']:.0f} "
            f"exchanges) -> {v1['round_seconds'] / ll['round_seconds']:.1f}x"
        )


if __name__ == "__main__":
    main()
