"""Label-ranking throughput: tuneforge's batched scoring with the shared prompt prefix run once and the
labels packed into one row per prompt, against the same without prefix sharing (each prompt run
whole), the path before either (commit BEFORE, read from git: each prompt whole, its cache copied
once per label, the labels padded to the longest) and a naive loop that runs one fp32 forward pass
per (example, candidate label).

All score 5-shot plain prompts of the fruit test split with ONE random draw of demonstrations for
every input (as prompting does for random, balanced and first-k picks), in one run, after a warm-up:
the batched paths on the default model in its `auto` dtype (bf16 where the CPU has it natively) and
in fp32, the naive loop in fp32 on fewer examples. Prints examples/s for each, the ratios
shared/before and shared/naive, and whether shared and the path before pick the same label in fp32
on every fruit example (train, dev and test).

    python bench/label_ranking.py [--examples 48] [--naive-examples 6] [--shots 5] [--batch-size 16]
"""

import argparse
import os
import subprocess
import sys
import time
import types

import torch

from tuneforge.data.splits import load_task
from tuneforge.model.load import load_model
from tuneforge.predict.score import prefix_groups, score_continuations, score_naive
from tuneforge.prompts.formats import PromptFormat, encode_continuation, encode_prompt, render_continuation
from tuneforge.prompts.formats import render_prompt
from tuneforge.prompts.shots import pick_demos

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_line  # noqa: E402

GOAL_TODAY, GOAL_NAIVE = 3, 30  # shared-prefix speed-up goals over the path before and the naive loop
BEFORE = "e3846f0"  # the last commit before prefix sharing and packed labels


def path_before():
    """`score_continuations` as it was at BEFORE, read from git (None outside a git checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    src = subprocess.run(["git", "-C", here, "show", f"{BEFORE}:src/tuneforge/predict/score.py"],
                         capture_output=True, text=True)
    if src.returncode:
        return None
    module = types.ModuleType("score_before")
    exec(compile(src.stdout, f"score.py@{BEFORE}", "exec"), module.__dict__)
    return module.score_continuations


def build_inputs(tokenizer, task, items, shots: int):
    """Prompts after the same random draw (seed 0) for every item (an item never demonstrates itself,
    so a train item in the draw gets the next one instead), and the label continuations."""
    fmt = PromptFormat("plain", task.info.instruction)
    demos = [pick_demos(task.train, ex, shots, "random", 0) for ex in items]
    prompts = [encode_prompt(fmt, tokenizer, render_prompt(fmt, tokenizer, d, ex.input)) for d, ex in zip(demos, items)]
    conts = [encode_continuation(tokenizer, render_continuation(fmt, tokenizer, label)) for label in task.labels]
    return prompts, conts


def rate(fn, n: int) -> tuple[torch.Tensor, float]:
    """fn's scores and examples/s over its n examples."""
    start = time.perf_counter()
    out = fn()
    return out, n / (time.perf_counter() - start)


def batched(loaded, prompts, conts, batch_size: int, path) -> torch.Tensor:
    """Scores by `path`: True shared prefix, False prompt per item, else a score_continuations."""
    if callable(path):
        return path(loaded.model, prompts, conts, pad_id=loaded.tokenizer.pad_token_id, batch_size=batch_size)
    return score_continuations(loaded.model, prompts, conts, pad_id=loaded.tokenizer.pad_token_id,
                               batch_size=batch_size, share_prefix=path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=48, help="test examples scored by the batched paths")
    parser.add_argument("--naive-examples", type=int, default=6, help="test examples scored by the naive loop")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    load = os.getloadavg()[0]  # 2 cores: anything else running skews every path
    task = load_task("fruit")
    models = {"auto": load_model(dtype="auto"), "fp32": load_model(dtype="fp32")}
    if models["auto"].dtype == torch.float32:
        del models["auto"]  # no native bf16: auto is fp32
    fp32 = models["fp32"]
    prompts, conts = build_inputs(fp32.tokenizer, task, task.test[: args.examples], args.shots)
    few, n, k = prompts[: args.naive_examples], len(prompts), len(conts)

    before = path_before()
    paths = {"before": before, False: False, True: True} if before else {False: False, True: True}
    rates = {}
    for name, loaded in models.items():
        for key, path in paths.items():
            batched(loaded, prompts[: args.batch_size], conts, args.batch_size, path)  # warm-up: oneDNN kernels
            _, rates[name, key] = rate(lambda: batched(loaded, prompts, conts, args.batch_size, path), n)
    score_naive(fp32.model, few[0], conts[0])
    naive_scores, naive_rate = rate(lambda: torch.tensor([[score_naive(fp32.model, p, c) for c in conts] for p in few]),
                                    len(few))
    shared_few = batched(fp32, few, conts, args.batch_size, True)
    naive_agree = (shared_few.argmax(-1) == naive_scores.argmax(-1)).sum().item()

    # Identity on every fruit example: the shared-prefix path against the one before (else prompt per item), fp32.
    everything = task.train + task.dev + task.test
    all_prompts, _ = build_inputs(fp32.tokenizer, task, everything, args.shots)
    shared_all = batched(fp32, all_prompts, conts, args.batch_size, True)
    today_all = batched(fp32, all_prompts, conts, args.batch_size, before or False)
    same = (shared_all.argmax(-1) == today_all.argmax(-1)).sum().item()
    diff = (shared_all - today_all).abs().max().item()
    groups = prefix_groups(all_prompts)

    padded, packed = k * (max(map(len, conts)) - 1), sum(len(c) - 1 for c in conts)  # label positions per prompt
    shared_pos = sum(width + sum(len(prompts[i]) - width for i in rows) for width, rows in prefix_groups(prompts)) / n
    print(f"label ranking · fruit test · {args.shots}-shot plain prompts, one random draw for all · "
          f"{n} examples × {k} labels (naive loop: {len(few)} examples) · batch {args.batch_size}")
    print(f"  {cpu_line()}; torch threads {torch.get_num_threads()}; load average at the start {load:.2f}")
    print(f"  prefix found on all {len(all_prompts)} fruit prompts: " + ", ".join(
        f"{width} tokens × {len(rows)} prompts" for width, rows in groups)
          + f" (prompts {min(map(len, all_prompts))}–{max(map(len, all_prompts))} tokens)")
    print(f"  positions run per example: before {sum(map(len, prompts)) / n:.1f} + {padded} for the labels (padded), "
          f"prompt per item {sum(map(len, prompts)) / n:.1f} + {packed} (packed), shared {shared_pos:.1f} + {packed}")
    print(f"  {'examples/s':<40}" + "".join(f"{str(m.dtype).removeprefix('torch.'):>10}" for m in models.values()))
    print(f"  {'naive (fp32, one forward per label)':<40}" + "".join(
        f"{naive_rate:10.2f}" if name == "fp32" else f"{'-':>10}" for name in models))
    labels = {"before": f"before ({BEFORE}: labels padded)", False: "prompt per item, labels packed",
              True: "shared prefix, labels packed"}
    for key in paths:
        print(f"  {labels[key]:<40}" + "".join(f"{rates[name, key]:10.2f}" for name in models))
    base = "before" if before else False
    goal = f"shared / {'before' if before else 'prompt per item'} (goal ≥ {GOAL_TODAY}x)"
    print(f"  {goal:<40}" + "".join(f"{rates[name, True] / rates[name, base]:9.1f}x" for name in models))
    print(f"  {f'shared / naive fp32 (goal ≥ {GOAL_NAIVE}x)':<40}" + "".join(
        f"{rates[name, True] / naive_rate:9.1f}x" for name in models))
    print(f"  agreement of shared (fp32) with the naive loop: {naive_agree}/{len(few)}")
    print(f"  identical predictions in fp32 (shared vs {'the path before' if before else 'prompt per item'}, every fruit example): "
          f"{'yes' if same == len(all_prompts) else 'no'} ({same}/{len(all_prompts)}); max |Δscore| {diff:.1e}")


if __name__ == "__main__":
    main()
