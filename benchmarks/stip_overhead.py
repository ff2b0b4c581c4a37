"""STIP overhead, measured side by side in one run (random weights).

For a GPT-2-small-sized and a LLaMA-style (GQA, SwiGLU, RoPE) model:

* server forward latency and throughput, STIP (permuted model on permuted
  embeddings) vs plaintext (same model class, same embeddings): ratio target >= 0.97;
* device-side cost (embed + permute + un-permute) as a share of end to end;
* bytes per token on the wire (up: one permuted embedding, down: permuted logits);
* tokens/s with the KV cache in-process (STIP server + user vs plaintext loop);
* tokens/s over the Flower simulation engine (2 SuperNodes, real messages),
  unless ``--skip-flower``;
* with ``--deployment`` (GPT-2-small): tokens/s of the real protocol in-process
  (``StipServer`` + two ``StipUser``, no transport), and on a loopback TLS +
  SuperNode-auth deployment with 2 SuperNodes over Flower messages and over the
  streamed session (steady state, and with the session set-up counted); target:
  deployed stream >= 0.8 x in-process.

On a GPU too when one is there (``--device cuda``). Writes
``benchmarks/results/stip_overhead_<device>.json``.

Usage: ``python benchmarks/stip_overhead.py [--device cpu|cuda] [--skip-flower]
[--deployment] [--models gpt2-small]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    DynamicCache,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from edgecloud.stip.transform import (
    PermutationSet,
    permute_features,
    permute_state_dict,
    unpermute_outputs,
)

RESULTS = Path(__file__).parent / "results"


def _models() -> dict[str, tuple[Any, type[PreTrainedModel]]]:
    return {
        # 124 M parameters: GPT-2 small
        "gpt2-small": (
            GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257),
            GPT2LMHeadModel,
        ),
        # ~200 M parameters: 12 LLaMA layers, 16 query / 4 KV heads, SwiGLU, RoPE
        "llama-style": (
            LlamaConfig(
                hidden_size=1024,
                intermediate_size=2816,
                num_hidden_layers=12,
                num_attention_heads=16,
                num_key_value_heads=4,
                vocab_size=32000,
            ),
            LlamaForCausalLM,
        ),
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device: str, repeats: int) -> list[float]:
    fn()  # warm-up
    _sync(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - start)
    return out


def _pair(
    plain: Callable[[], object], stip: Callable[[], object], device: str, repeats: int
) -> tuple[float, float]:
    """Median seconds of each, measured alternately so drift hits both alike."""
    a: list[float] = []
    b: list[float] = []
    plain()
    stip()
    for _ in range(repeats):
        a += _time(plain, device, 1)
        b += _time(stip, device, 1)
    return statistics.median(a), statistics.median(b)


@torch.no_grad()
def _generate(
    model: PreTrainedModel,
    embed: torch.nn.Module,
    prompt: torch.Tensor,
    n: int,
    protect: Callable[[torch.Tensor], torch.Tensor],
    reveal: Callable[[torch.Tensor], torch.Tensor],
) -> list[int]:
    """Greedy decoding with a KV cache; ``protect``/``reveal`` are STIP's x @ pi and
    y @ pi_c^T (identities for the plaintext baseline)."""
    cache, pos, tokens = DynamicCache(), 0, []
    x = protect(embed(prompt))
    for _ in range(n):
        positions = torch.arange(pos, pos + x.shape[1], device=x.device)[None]
        out = model(
            inputs_embeds=x,
            past_key_values=cache,
            position_ids=positions,
            use_cache=True,
        )
        pos += x.shape[1]
        tokens.append(int(reveal(out.logits[0, -1]).argmax()))
        x = protect(embed(torch.tensor([[tokens[-1]]], device=x.device)))
    return tokens


def _bench_model(
    name: str, config: Any, cls: type[PreTrainedModel], args: argparse.Namespace
) -> dict[str, Any]:
    device = args.device
    torch.manual_seed(0)
    plain = cls(config).eval()
    perms = PermutationSet.generate(config, np.random.default_rng(0))
    server_config = config.__class__.from_dict(config.to_dict())
    server_config.tie_word_embeddings = False
    server = cls(server_config).eval()
    server.load_state_dict(permute_state_dict(plain.state_dict(), config, perms))
    plain.to(device)
    server.to(device)
    embed = plain.get_input_embeddings()
    ids = torch.randint(0, config.vocab_size, (args.batch, args.tokens), device=device)
    with torch.no_grad():
        x = embed(ids)
        xp = permute_features(x, perms.pi)
        # Exactness on this model: un-permuted STIP logits vs plaintext
        delta = float(
            (
                unpermute_outputs(server(inputs_embeds=xp).logits, perms.pi_c)
                - plain(inputs_embeds=x).logits
            )
            .abs()
            .max()
        )

        plain_s, stip_s = _pair(
            lambda: plain(inputs_embeds=x),
            lambda: server(inputs_embeds=xp),
            device,
            args.repeats,
        )
        logits = server(inputs_embeds=xp).logits
        device_s = statistics.median(
            _time(
                lambda: (
                    permute_features(embed(ids), perms.pi),
                    unpermute_outputs(logits[:, -1], perms.pi_c),
                ),
                device,
                args.repeats,
            )
        )
    tokens = args.batch * args.tokens
    prompt = ids[:1, :16]
    n = args.new_tokens
    start = time.perf_counter()
    same = lambda t: t  # noqa: E731 -- the plaintext baseline's identity
    plain_tokens = _generate(plain, embed, prompt, n, same, same)
    _sync(device)
    plain_gen_s = time.perf_counter() - start
    start = time.perf_counter()
    stip_tokens = _generate(
        server,
        embed,
        prompt,
        n,
        lambda t: permute_features(t, perms.pi),
        lambda t: unpermute_outputs(t, perms.pi_c),
    )
    _sync(device)
    stip_gen_s = time.perf_counter() - start
    d, v = int(config.hidden_size), int(config.vocab_size)
    result = {
        "parameters": sum(p.numel() for p in plain.parameters()),
        "device": device,
        "max_abs_logit_delta": delta,
        "forward_batch_tokens": [args.batch, args.tokens],
        "plaintext_forward_s": plain_s,
        "stip_forward_s": stip_s,
        "plaintext_tokens_per_s": tokens / plain_s,
        "stip_tokens_per_s": tokens / stip_s,
        "throughput_ratio": plain_s / stip_s,
        "device_side_s": device_s,
        "device_share_of_end_to_end": device_s / (device_s + stip_s),
        "bytes_up_per_token": d * 4,
        "bytes_down_per_token": v * 4,
        "kv_generation_tokens": n,
        "plaintext_kv_tokens_per_s": n / plain_gen_s,
        "stip_kv_tokens_per_s": n / stip_gen_s,
        "kv_ratio": plain_gen_s / stip_gen_s,
        "same_greedy_tokens": plain_tokens == stip_tokens,
    }
    r = result
    print(
        f"{name:12} {r['parameters'] / 1e6:6.0f} M  forward "
        f"{plain_s * 1e3:8.1f} ms plain vs {stip_s * 1e3:8.1f} ms STIP -> "
        f"{r['throughput_ratio']:.3f}x throughput; device side {device_s * 1e3:.2f} ms "
        f"({100 * r['device_share_of_end_to_end']:.2f} %); KV decode "
        f"{r['plaintext_kv_tokens_per_s']:.1f} vs {r['stip_kv_tokens_per_s']:.1f} "
        f"tok/s ({r['kv_ratio']:.3f}x); {d * 4} B up / {v * 4 / 1024:.0f} KiB down "
        f"per token; max |dlogit| {delta:.2e}; same tokens {r['same_greedy_tokens']}"
    )
    if not args.skip_flower and device == "cpu":
        r["flower_simulation"] = _bench_flower(plain, args)
        f = r["flower_simulation"]
        print(
            f"{'':12} Flower simulation, 2 SuperNodes x {args.new_tokens} tokens: "
            f"{f['tokens_per_second']:.2f} tok/s overall, "
            f"{f['seconds_per_round_trip']:.3f} s per round trip"
        )
    if args.deployment and device == "cpu" and name == "gpt2-small":
        r["deployment"] = _bench_deployment(plain, args)
        _print_deployment(r["deployment"], r.get("flower_simulation"))
    return result


PROMPT = ",".join(str(i) for i in range(1, 17))


def _in_process(
    instance: Any, n: int, owners: int = 2, repeats: int = 3
) -> dict[str, float]:
    """Tokens/s of the protocol without a transport: one server, ``owners`` users.

    The same work per token as deployed: the server extends every owner's KV cache
    in one batched step, each owner un-permutes, picks greedily, embeds and
    permutes its next token. Best of ``repeats`` (the first pays warm-up).
    """
    from edgecloud.stip.runtime import StipServer, StipUser, sample_next

    server, users = StipServer(instance.server), StipUser(instance.user)
    ids = torch.tensor([[int(t) for t in PROMPT.split(",")]])
    best = float("inf")
    for attempt in range(repeats):
        sids = [f"{attempt}-{o}" for o in range(owners)]
        start = time.perf_counter()
        requests = {sid: users.protect(users.embed(ids))[0] for sid in sids}
        for _ in range(n):
            logits = server.step(requests)
            requests = {
                sid: users.protect(
                    users.embed(
                        torch.tensor([[sample_next(users.reveal(logits[sid]))]])
                    )
                )[0]
                for sid in sids
            }
        best = min(best, time.perf_counter() - start)
        for sid in sids:
            server.end(sid)
    return {"tokens": float(owners * n), "tokens_per_second": owners * n / best}


def _bench_deployment(
    plain: PreTrainedModel, args: argparse.Namespace
) -> dict[str, Any]:
    """In-process vs deployed (messages, stream) tokens/s, 2 data owners."""
    from edgecloud.deploy.federation import start_local_federation
    from edgecloud.deploy.flwr_cli import (
        FINISHED_COMPLETED,
        flwr_env,
        submit_run,
        wait_for_run,
    )
    from edgecloud.local_simulation import PROJECT_DIR
    from edgecloud.stip.developer import make_instances

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain.to("cpu").save_pretrained(root / "model")
        (instance,) = make_instances(root / "model", root / "bundles", seed=1)
        result["in_process"] = _in_process(instance, args.new_tokens)
        env = flwr_env(root / "flwr_home")
        federation = start_local_federation(
            root / "deploy", env, num_supernodes=2, tls=True, supernode_auth=True
        )
        try:
            # over messages every token costs a Flower round trip (seconds): a
            # few tokens give its rate
            for transport, tokens in (
                ("stream", args.new_tokens),
                ("messages", min(args.new_tokens, 6)),
            ):
                out = root / f"deploy-{transport}"
                run_id = submit_run(
                    PROJECT_DIR,
                    federation.connection,
                    env,
                    f'capability="stip" stip.transport="{transport}" '
                    f'stip.server-bundle="{instance.server}" '
                    f'stip.user-bundle="{instance.user}" stip.prompt="{PROMPT}" '
                    f'stip.max-new-tokens={tokens} output-dir="{out}"',
                )
                status = wait_for_run(
                    run_id, federation.connection, env, timeout=1800, stream_logs=False
                )
                if status["status"] != FINISHED_COMPLETED:
                    raise RuntimeError(f"deployed STIP over {transport}: {status}")
                summary = json.loads((out / "results.json").read_text())["summary"]
                result[transport] = {
                    k.replace("-", "_"): float(v)
                    for k, v in summary.items()
                    if isinstance(v, int | float)
                }
        finally:
            federation.stop()
    stream, base = result["stream"], result["in_process"]["tokens_per_second"]
    result["stream_vs_in_process"] = stream["tokens_per_second"] / base
    result["stream_with_setup_vs_in_process"] = (
        stream["tokens_per_second_with_setup"] / base
    )
    result["stream_vs_messages"] = (
        stream["tokens_per_second"] / result["messages"]["tokens_per_second"]
    )
    return result


def _print_deployment(d: dict[str, Any], simulation: dict[str, float] | None) -> None:
    s, m = d["stream"], d["messages"]
    sim = "-" if simulation is None else f"{simulation['tokens_per_second']:.2f}"
    print(
        f"{'':12} tokens/s, 2 data owners: in-process "
        f"{d['in_process']['tokens_per_second']:.2f} | simulation {sim} | deployed "
        f"messages {m['tokens_per_second']:.3f} ({m['seconds_per_round_trip']:.2f} s "
        f"per round trip) | deployed stream {s['tokens_per_second']:.2f} "
        f"({1e3 * s['seconds_per_round_trip']:.1f} ms per round trip), "
        f"{s['tokens_per_second_with_setup']:.2f} with the "
        f"{s['session_setup_seconds']:.1f} s session set-up"
    )
    print(
        f"{'':12} deployed stream / in-process: {d['stream_vs_in_process']:.2f}x "
        f"(target >= 0.8), with set-up {d['stream_with_setup_vs_in_process']:.2f}x; "
        f"stream / messages {d['stream_vs_messages']:.0f}x"
    )


def _bench_flower(plain: PreTrainedModel, args: argparse.Namespace) -> dict[str, float]:
    from edgecloud.local_simulation import run_local_simulation
    from edgecloud.stip.developer import make_instances

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain.to("cpu").save_pretrained(root / "model")
        (instance,) = make_instances(root / "model", root / "bundles", seed=1)
        run_local_simulation(
            {
                "capability": "stip",
                "stip.server-bundle": str(instance.server),
                "stip.user-bundle": str(instance.user),
                "stip.prompt": PROMPT,
                "stip.max-new-tokens": args.new_tokens,
                "output-dir": str(root / "out"),
            },
            num_supernodes=2,
        )
        summary = json.loads((root / "out" / "results.json").read_text())["summary"]
    return {
        k.replace("-", "_"): float(v)
        for k, v in summary.items()
        if isinstance(v, int | float)
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument(
        "--deployment",
        action="store_true",
        help="also in-process vs deployed messages / stream tokens/s (GPT-2-small)",
    )
    parser.add_argument("--models", default="gpt2-small,llama-style")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    report: dict[str, Any] = {"device": args.device, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name()
    for name, (config, cls) in _models().items():
        if name in args.models.split(","):
            report[name] = _bench_model(name, config, cls, args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"stip_overhead_{args.device.split(':')[0]}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
