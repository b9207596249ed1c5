"""Label-ranking throughput: tuneforge's batched, shared-prefix scoring (model dtype auto: bf16 where the
CPU has it) against a naive loop that runs one fp32 forward pass per (example, candidate label).

Both score the same 5-shot prompts of the fruit test split, in one run, after a warm-up. Prints
examples/s for each, their ratio, and how often the two pick the same label.

    python bench/label_ranking.py [--examples 24] [--shots 5]
"""

import argparse
import time

import torch

from tuneforge.data.splits import load_task
from tuneforge.model.load import load_model
from tuneforge.predict.score import score_continuations, score_naive
from tuneforge.prompts.formats import PromptFormat, encode_continuation, encode_prompt, render_continuation
from tuneforge.prompts.formats import render_prompt
from tuneforge.prompts.shots import pick_demos


def build_inputs(tokenizer, task, items, shots: int):
    fmt = PromptFormat("plain", task.info.instruction)
    prompts = [encode_prompt(fmt, tokenizer, render_prompt(fmt, tokenizer, pick_demos(task.train, ex, shots, "random", 0),
                                                           ex.input)) for ex in items]
    conts = [encode_continuation(tokenizer, render_continuation(fmt, tokenizer, label)) for label in task.labels]
    return prompts, conts


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=24, help="test examples scored by both paths")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    task = load_task("fruit")
    fast = load_model(dtype="auto")
    naive = load_model(dtype="fp32")
    prompts, conts = build_inputs(fast.tokenizer, task, task.test[: args.examples], args.shots)
    pad = fast.tokenizer.pad_token_id

    def run_fast():
        return score_continuations(fast.model, prompts, conts, pad_id=pad, batch_size=args.batch_size)

    def run_naive():
        return torch.tensor([[score_naive(naive.model, p, c) for c in conts] for p in prompts])

    # Warm-up: the first bf16 calls pay for oneDNN kernel selection.
    score_continuations(fast.model, prompts[: args.batch_size], conts, pad_id=pad, batch_size=args.batch_size)
    score_naive(naive.model, prompts[0], conts[0])

    fast_scores, fast_s = timed(run_fast)
    naive_scores, naive_s = timed(run_naive)
    agree = (fast_scores.argmax(-1) == naive_scores.argmax(-1)).float().mean().item()
    # Agreement on every example of the task (demonstrations from train, never the item itself): the
    # batched path in fp32 gives the naive scores (tests check this to 1e-4), so it stands in for the
    # naive loop where that would take minutes. A benchmark, not an evaluation: no accuracy is read.
    everything = task.train + task.dev + task.test
    all_prompts, _ = build_inputs(fast.tokenizer, task, everything, args.shots)
    bf = score_continuations(fast.model, all_prompts, conts, pad_id=pad, batch_size=args.batch_size)
    fp = score_continuations(naive.model, all_prompts, conts, pad_id=pad, batch_size=args.batch_size)
    agree_all = (bf.argmax(-1) == fp.argmax(-1)).float().mean().item()
    n, k = len(prompts), len(conts)
    print(f"label ranking · fruit test · {args.shots}-shot plain prompts · {n} examples × {k} labels")
    print(f"  naive  (fp32, one forward per label)       : {n / naive_s:8.2f} examples/s")
    print(f"  tuneforge ({str(fast.dtype).removeprefix('torch.')}, batched, prefix once): {n / fast_s:8.2f} examples/s")
    print(f"  speed-up: {naive_s / fast_s:.1f}x   agreement with the naive loop: {agree:.1%} ({n} examples)")
    print(f"  agreement with fp32 on every fruit example: {agree_all:.1%} ({len(all_prompts)} examples)")


if __name__ == "__main__":
    main()
