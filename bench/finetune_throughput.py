"""LoRA fine-tuning throughput: tuneforge's training step (target-position logits, the shared loop's
train_step) against transformers.Trainer + peft, on the same rows, batches and settings.

Both train LoRA adapters (r=16, alpha=32, dropout 0.05, every linear layer of a llama block) on the
default model with fp32 master weights, under bf16 autocast where tuneforge would use it (a CPU with
native bf16; `--dtype` forces one), on the zero-shot rows of the fruit train
split, and see the very same batches in the same order (tuneforge's length-grouped epoch order, full
batches only). After a warm-up, both time the same number of optimizer steps. Prints all (non-pad)
tokens/s and target tokens/s for each and their ratio; the LoRA throughput as a fraction of the
roofline (tokens/s × 4·N FLOP against a 2048² matmul in the dtype used, timed in the same run); and the peak RSS of
a process that runs only the tuneforge LoRA steps (a child process, so the baseline does not count).

    python bench/finetune_throughput.py [--steps 12] [--warmup 2] [--batch-size 16] [--dtype auto|bf16|fp32]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import torch

from tuneforge.adapt.finetune import FinetuneConfig
from tuneforge.adapt.loop import TargetLogits, train_step
from tuneforge.adapt.rows import build_rows, epoch_batches
from tuneforge.data.splits import load_task
from tuneforge.model.load import load_model
from tuneforge.model.lora import add_lora, base_model
from tuneforge.model.params import count_parameters
from tuneforge.prompts.formats import PromptFormat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_line  # noqa: E402

LORA_R, LORA_ALPHA, LORA_DROPOUT = 16, 32.0, 0.05
TARGETS = FinetuneConfig().lora_targets  # every linear layer of a llama block
LR, MAX_GRAD_NORM = 1e-3, 1.0  # the route's LoRA defaults
RSS_GOAL_GB = 2.0


def setup(batch_size: int, n_steps: int):
    """The default model (fp32 weights), the fruit train rows and the batches both paths train on:
    the first `n_steps` full batches of tuneforge's epoch order (seed 0)."""
    task = load_task("fruit")
    loaded = load_model(None, dtype="fp32")
    rows = build_rows(task.train, PromptFormat("plain", task.info.instruction), loaded.tokenizer)
    lengths = [len(r.ids) for r in rows]
    plan, epoch = [], 0
    while len(plan) < n_steps:
        plan += [b for b in epoch_batches(len(rows), lengths, batch_size, 0, epoch) if len(b) == batch_size]
        epoch += 1
    return loaded, rows, plan[:n_steps]


def run_tuneforge(loaded, rows, plan, warmup: int, bf16: bool) -> float:
    """Seconds for the optimizer steps after `warmup`, done as the route does them: LoRA through
    add_lora, the TargetLogits net prepared by the route's Accelerator, train_step, clip, step, zero_grad."""
    from tuneforge.adapt.finetune import loss, use_training_attention
    from tuneforge.adapt.recipe import accelerator_for

    accelerator = accelerator_for(loaded, bf16)
    use_training_attention(loaded.model, loaded.device)
    torch.manual_seed(0)
    model = add_lora(loaded.model, LORA_R, LORA_ALPHA, LORA_DROPOUT, TARGETS)
    net = TargetLogits(base_model(model).get_decoder(), base_model(model).get_output_embeddings())
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    prepared = accelerator.prepare(net)
    pad = loaded.tokenizer.pad_token_id
    ticks = []
    for batch in plan:
        train_step(prepared, [[rows[i] for i in batch]], loss, accelerator, pad)
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ticks.append(time.perf_counter())
    return ticks[-1] - ticks[warmup - 1]


def run_baseline(loaded, rows, plan, warmup: int, batch_size: int, bf16: bool) -> float:
    """Seconds for the optimizer steps after `warmup` of transformers.Trainer on a peft model, fed the
    same batches in the same order (sequential sampler over the flattened plan)."""
    from peft import LoraConfig, get_peft_model
    from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(0)
    config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
                        target_modules=list(TARGETS), task_type="CAUSAL_LM")
    model = get_peft_model(loaded.model, config)
    data = []
    for batch in plan:
        for i in batch:
            ids, n_prompt = list(rows[i].ids), len(rows[i].ids) - rows[i].n_target
            data.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * n_prompt + ids[n_prompt:]})
    pad_id = loaded.tokenizer.pad_token_id

    def right_pad(features):
        width = max(len(f["input_ids"]) for f in features)
        return {key: torch.tensor([f[key] + [fill] * (width - len(f[key])) for f in features])
                for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("labels", -100))}

    class Clock(TrainerCallback):
        def __init__(self):
            self.ticks = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ticks.append(time.perf_counter())

    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch_size, max_steps=len(plan), bf16=bf16, use_cpu=True,
            learning_rate=LR, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=MAX_GRAD_NORM,
            logging_steps=len(plan), report_to=[], save_strategy="no", dataloader_num_workers=0,
            dataloader_pin_memory=False, remove_unused_columns=False, train_sampling_strategy="sequential",
            disable_tqdm=True, seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=right_pad, callbacks=[clock])
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.train()
    assert len(clock.ticks) == len(plan), f"Trainer ran {len(clock.ticks)} steps, not {len(plan)}"
    return clock.ticks[-1] - clock.ticks[warmup - 1]


def matmul_flops(dtype: torch.dtype, n: int = 2048, reps: int = 40) -> float:
    """Achieved FLOP/s of an n×n matmul in `dtype`, after a warm-up."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(5):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def uses_bf16(dtype: str) -> bool:
    """Whether training runs under bf16 autocast: tuneforge's own choice for `auto`."""
    return FinetuneConfig().uses_bf16(torch.device("cpu")) if dtype == "auto" else dtype == "bf16"


def peak_rss_kb() -> tuple[int, int]:
    """ru_maxrss (KB) and this address space's own high-water mark, VmHWM (KB): ru_maxrss also keeps the
    peak of the image a child replaced at exec, VmHWM does not."""
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, hwm


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all cores busy over `seconds`, from /proc/stat (before the run: other load)."""
    def sample():
        values = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    (total0, idle0), _, (total1, idle1) = sample(), time.sleep(seconds), sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def rss_child(args) -> None:
    loaded, rows, plan = setup(args.batch_size, args.warmup + args.steps)
    seconds = run_tuneforge(loaded, rows, plan, args.warmup, uses_bf16(args.dtype))
    tokens = sum(len(rows[i].ids) for b in plan[args.warmup:] for i in b)
    maxrss, hwm = peak_rss_kb()
    print(json.dumps({"maxrss_kb": maxrss, "vmhwm_kb": hwm, "tokens_per_s": tokens / seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed optimizer steps of each path")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before them")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"],
                        help="auto: bf16 autocast where the CPU has native bf16 (what tuneforge does), else fp32")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    if args.rss_child:
        return rss_child(args)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' own deprecations, inside Trainer
    busy = cpu_busy()  # 2 cores: anything else running skews both paths (OpenMP threads stall)
    # The memory run goes first, while this process is small: a child started by vfork inherits the
    # parent's peak into ru_maxrss at exec.
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", "--steps", str(args.steps),
                            "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--dtype", args.dtype],
                           capture_output=True, text=True)
    if child.returncode:
        sys.exit(f"the memory run failed:\n{child.stderr[-3000:]}")
    mem = json.loads(child.stdout.strip().splitlines()[-1])

    bf16 = uses_bf16(args.dtype)
    flops = matmul_flops(torch.bfloat16 if bf16 else torch.float32)
    loaded, rows, plan = setup(args.batch_size, args.warmup + args.steps)
    n_params = count_parameters(loaded.model)["total"]
    timed = plan[args.warmup:]
    tokens = sum(len(rows[i].ids) for b in timed for i in b)
    targets = sum(rows[i].n_target for b in timed for i in b)
    fast_s = run_tuneforge(loaded, rows, plan, args.warmup, bf16)
    del loaded
    loaded = load_model(None, dtype="fp32")  # a fresh base model: the adapters above were added in place
    base_s = run_baseline(loaded, rows, plan, args.warmup, args.batch_size, bf16)

    def roofline(tok_per_s: float) -> float:
        return tok_per_s * 4 * n_params / flops

    width = max(len(rows[i].ids) for b in timed for i in b)
    print(f"LoRA fine-tuning · fruit train · plain zero-shot rows · batch {args.batch_size} · "
          f"{args.steps} timed steps after {args.warmup} warm-up · {tokens} tokens ({targets} targets), rows ≤ {width}")
    print(f"  LoRA r={LORA_R} alpha={LORA_ALPHA:g} dropout={LORA_DROPOUT} on {len(TARGETS)} modules; "
          f"fp32 weights{' + bf16 autocast' if bf16 else ''}; N = {n_params / 1e6:.1f} M")
    print(f"  {cpu_line()}; torch threads {torch.get_num_threads()}")
    print(f"  baseline  (transformers.Trainer + peft): {tokens / base_s:8.1f} tokens/s  "
          f"{targets / base_s:7.1f} target tokens/s  ({1000 * base_s / args.steps:.0f} ms/step)")
    print(f"  tuneforge (train_step, target logits)  : {tokens / fast_s:8.1f} tokens/s  "
          f"{targets / fast_s:7.1f} target tokens/s  ({1000 * fast_s / args.steps:.0f} ms/step)")
    print(f"  speed-up: {base_s / fast_s:.2f}x (goal 4x)")
    print(f"  roofline: {'bf16' if bf16 else 'fp32'} 2048² matmul {flops / 1e12:.2f} TFLOP/s; LoRA at 4·N FLOP/token -> "
          f"{flops / (4 * n_params):.0f} tokens/s")
    print(f"    tuneforge {roofline(tokens / fast_s):.1%} of roofline, baseline {roofline(tokens / base_s):.1%} (goal 40%)")
    print(f"  peak RSS of a tuneforge LoRA run (own process): {mem['maxrss_kb'] * 1024 / 1e9:.2f} GB "
          f"(goal ≤ {RSS_GOAL_GB:g} GB; VmHWM {mem['vmhwm_kb'] * 1024 / 1e9:.2f} GB; it trained at {mem['tokens_per_s']:.0f} tokens/s)")
    print(f"  CPU busy before the run: {busy:.0%}{'  (something else is running: numbers unreliable)' if busy > 0.2 else ''}")


if __name__ == "__main__":
    main()
