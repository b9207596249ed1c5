"""Fine-tuning throughput: tuneforge's training step against transformers.Trainer (+ peft for LoRA), on
the same rows, batches and settings, in each dtype this CPU runs well, against this machine's roofline.

For each dtype (bf16 autocast over fp32 master weights where the CPU has native bf16, and fp32; only
fp32 where bf16 would be emulated), each kind of row (fruit's short zero-shot rows; ~128-token rows:
the same items behind 24 demonstrations) and each method (LoRA with tuneforge's defaults, full), both
paths train the default model on the very same batches in the same order (tuneforge's length-grouped
epoch order, full batches only) and time the same optimizer steps after a warm-up. tuneforge runs its
route's step: `finetune`'s model preparation (LoRA: frozen base in bf16 under bf16 autocast), the
`TargetLogits` net, `train_step`, clipping, its AdamW. Prints tokens/s, ms/step and the speed-up; and
the share of this machine's roofline: the step's useful FLOPs (forward and input gradients through
every matrix, weight gradients for what trains, the output head at the target positions only;
attention scores left out) per second, against the FLOP/s of the model's own matmul shapes at the
step's token count, timed in the same run and dtype. Last, the peak RSS of a process that runs only
tuneforge's LoRA steps in the dtype tuneforge chooses here.

    python bench/finetune_throughput.py [--steps 4] [--warmup 2] [--batch-size 16] [--dtype auto|both|bf16|fp32]
                                        [--rows short,long] [--methods lora,full]
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

from tuneforge.adapt.finetune import FinetuneConfig, frozen_in_bf16, loop_config, token_loss as loss
from tuneforge.adapt.loop import TargetLogits, adamw, train_step
from tuneforge.adapt.recipe import accelerator_for, use_training_attention
from tuneforge.adapt.rows import build_rows, epoch_batches
from tuneforge.data.splits import load_task
from tuneforge.model.load import cpu_supports_bf16, load_model, use_physical_cores
from tuneforge.model.lora import add_lora, base_model
from tuneforge.prompts.formats import PromptFormat
from tuneforge.prompts.shots import pick_demos

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_line  # noqa: E402

LRS = {"lora": 1e-3, "full": 5e-5}
GOALS = {"lora": 4.0, "full": 3.0}
ROOFLINE_GOAL, RSS_GOAL_GB, LONG_SHOTS = 0.40, 1.5, 24


def route_config(method: str) -> FinetuneConfig:
    """The route's defaults for `method` (LoRA: r, alpha, dropout, targets), at the bench's rate."""
    return FinetuneConfig(method=method, lr=LRS[method])


def setup(rows_kind: str, batch_size: int, n_steps: int):
    """The default model (fp32 weights), the fruit train rows (`short`: zero-shot; `long`: behind
    LONG_SHOTS demonstrations, ~128 tokens) and the batches both paths train on: the first `n_steps`
    full batches of tuneforge's epoch order (seed 0)."""
    task = load_task("fruit")
    loaded = load_model(None, dtype="fp32", device="cpu")
    instruction = task.info.instruction
    if rows_kind == "long":  # one fixed set of demonstrations in front of every item
        demos = pick_demos(task.train, task.dev[0], LONG_SHOTS, "random", 0)
        instruction += "\n" + "".join(f"{d.input}: {d.target}\n" for d in demos)
    rows = build_rows(task.train, PromptFormat("plain", instruction), loaded.tokenizer)
    lengths = [len(r.ids) for r in rows]
    plan, epoch = [], 0
    while len(plan) < n_steps:
        plan += [b for b in epoch_batches(len(rows), lengths, batch_size, 0, epoch) if len(b) == batch_size]
        epoch += 1
    return loaded, rows, plan[:n_steps]


def run_tuneforge(loaded, rows, plan, warmup: int, method: str, bf16: bool) -> float:
    """Seconds for the optimizer steps after `warmup`, each done as the route does it."""
    cfg = route_config(method)
    accelerator = accelerator_for(loaded, bf16)
    use_training_attention(loaded.model, loaded.device)
    torch.manual_seed(0)
    if method == "lora":
        if bf16:
            frozen_in_bf16(loaded.model)
        model = add_lora(loaded.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    else:
        model = loaded.model.requires_grad_(True)
    net = TargetLogits(base_model(model).get_decoder(), base_model(model).get_output_embeddings())
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = adamw(params, loop_config(cfg, has_dev=False))
    prepared = accelerator.prepare(net)
    pad = loaded.tokenizer.pad_token_id
    ticks = []
    for batch in plan:
        train_step(prepared, [[rows[i] for i in batch]], loss, accelerator, pad)
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ticks.append(time.perf_counter())
    return ticks[-1] - ticks[warmup - 1]


def run_baseline(loaded, rows, plan, warmup: int, batch_size: int, method: str, bf16: bool) -> float:
    """Seconds for the optimizer steps after `warmup` of transformers.Trainer (on a peft model for
    LoRA, with the same LoRA settings), fed the same batches in the same order."""
    from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback, TrainingArguments

    cfg = route_config(method)
    torch.manual_seed(0)
    model = loaded.model
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                 target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM"))
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
            learning_rate=cfg.lr, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=cfg.max_grad_norm,
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


def linear_shapes(config) -> list[tuple[int, int]]:
    """(out, in) of every linear layer of one llama block."""
    h, i = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    return [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)]


def useful_flops(config, tokens: int, targets: int, method: str, lora_r: int) -> float:
    """FLOPs a training step needs: forward and input gradients through every block matrix (2 + 2 per
    weight and token), their weight gradients when they train (full: 2 more; LoRA: the adapters'
    three), the output head at the target positions only; attention scores left out."""
    shapes = linear_shapes(config) * config.num_hidden_layers
    body = sum(o * n for o, n in shapes)
    head = config.hidden_size * config.vocab_size
    if method == "full":
        return 6 * body * tokens + 6 * head * targets
    adapters = sum(lora_r * (o + n) for o, n in shapes)
    return 4 * body * tokens + 6 * adapters * tokens + 4 * head * targets


def roofline(config, tokens: int, dtype: torch.dtype, method: str, reps: int = 3) -> float:
    """FLOP/s this CPU reaches on the model's own matmuls at `tokens` rows in `dtype`: each block
    matrix forward (x @ W.T) and backward to its input (g @ W), and to its weight (g.T @ x) for full."""
    torch.manual_seed(0)
    weights = [torch.randn(o, n, dtype=dtype) for o, n in linear_shapes(config)]
    acts = {n: torch.randn(tokens, n, dtype=dtype) for n in {w.shape[1] for w in weights}}
    grads = {o: torch.randn(tokens, o, dtype=dtype) for o in {w.shape[0] for w in weights}}

    def once():
        for w in weights:
            acts[w.shape[1]] @ w.T
            grads[w.shape[0]] @ w
            if method == "full":
                grads[w.shape[0]].T @ acts[w.shape[1]]

    once()
    start = time.perf_counter()
    for _ in range(reps):
        once()
    per_matrix = 3 if method == "full" else 2
    return reps * sum(per_matrix * 2 * tokens * o * n for o, n in linear_shapes(config)) / (time.perf_counter() - start)


def peak_rss_kb() -> tuple[int, int]:
    """ru_maxrss (KB) and this address space's own high-water mark, VmHWM (KB)."""
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
    loaded, rows, plan = setup("short", args.batch_size, args.warmup + args.steps)
    seconds = run_tuneforge(loaded, rows, plan, args.warmup, "lora", tuneforge_bf16())
    tokens = sum(len(rows[i].ids) for b in plan[args.warmup:] for i in b)
    maxrss, hwm = peak_rss_kb()
    print(json.dumps({"maxrss_kb": maxrss, "vmhwm_kb": hwm, "tokens_per_s": tokens / seconds}))


def measure(args, bf16: bool) -> None:
    """One line per kind of row and method, both paths in `bf16` or fp32."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' own deprecations, inside Trainer
    lora_r = route_config("lora").lora_r
    for rows_kind in args.rows.split(","):
        for method in args.methods.split(","):
            loaded, rows, plan = setup(rows_kind, args.batch_size, args.warmup + args.steps)
            config = loaded.model.config
            timed = plan[args.warmup:]
            tokens = sum(len(rows[i].ids) for b in timed for i in b)
            targets = sum(rows[i].n_target for b in timed for i in b)
            fast_s = run_tuneforge(loaded, rows, plan, args.warmup, method, bf16)
            loaded, _, _ = setup(rows_kind, args.batch_size, 1)  # a fresh base: LoRA was added in place
            base_s = run_baseline(loaded, rows, plan, args.warmup, args.batch_size, method, bf16)
            peak = roofline(config, tokens // len(timed), torch.bfloat16 if bf16 else torch.float32, method)
            need = useful_flops(config, tokens, targets, method, lora_r)
            label = f"{'bf16' if bf16 else 'fp32'} · {method:4} · {rows_kind:5} rows ({tokens // len(timed)} tokens/step)"
            print(f"  {label}: tuneforge {tokens / fast_s:6.0f} tok/s {1000 * fast_s / args.steps:6.0f} ms/step | "
                  f"Trainer {tokens / base_s:6.0f} tok/s {1000 * base_s / args.steps:6.0f} ms/step | "
                  f"speed-up {base_s / fast_s:.2f}x (goal {GOALS[method]:g}x) | roofline {peak / 1e12:.2f} TFLOP/s: "
                  f"tuneforge {need / fast_s / peak:.0%}, Trainer {need / base_s / peak:.0%}"
                  f"{f' (goal {ROOFLINE_GOAL:.0%})' if method == 'lora' else ''}", flush=True)
            del loaded


def tuneforge_bf16() -> bool:
    """Whether tuneforge trains under bf16 autocast here (its `auto`)."""
    return FinetuneConfig().uses_bf16(torch.device("cpu"))


def dtypes(choice: str) -> list[bool]:
    """The dtypes to run, as bf16-or-not: `auto` what tuneforge uses, `both` bf16 and fp32 where the
    CPU has native bf16 (fp32 alone where it would be emulated)."""
    if choice == "both":
        return [True, False] if cpu_supports_bf16() else [False]
    return [tuneforge_bf16()] if choice == "auto" else [choice == "bf16"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps of each path")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before them")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="both", choices=["auto", "both", "bf16", "fp32"],
                        help="both: bf16 and fp32 where the CPU has native bf16, else fp32; auto: tuneforge's choice")
    parser.add_argument("--rows", default="short,long", help="short (zero-shot fruit rows), long (~128 tokens)")
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["bf16", "fp32"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    if args.rss_child:
        return rss_child(args)
    if args.measure:
        return measure(args, args.measure == "bf16")

    busy = cpu_busy()  # 2 cores: anything else running skews both paths (OpenMP threads stall)
    # The memory run goes first, while this process is small: a child started by vfork inherits the
    # parent's peak into ru_maxrss at exec.
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", "--steps", str(args.steps),
                            "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)],
                           capture_output=True, text=True)
    if child.returncode:
        sys.exit(f"the memory run failed:\n{child.stderr[-3000:]}")
    mem = json.loads(child.stdout.strip().splitlines()[-1])

    use_physical_cores()  # torch's threads, as tuneforge sets them
    print(f"fine-tuning step · fruit train · batch {args.batch_size} · {args.steps} timed steps after "
          f"{args.warmup} warm-up · the default model, fp32 master weights")
    print(f"  {cpu_line()}; torch threads {torch.get_num_threads()}; tuneforge trains here with "
          f"{'bf16 autocast' if tuneforge_bf16() else 'fp32'}")
    lora = route_config("lora")
    print(f"  LoRA as the route: r={lora.lora_r} alpha={lora.lora_alpha:g} dropout={lora.lora_dropout} on "
          f"{len(lora.lora_targets)} modules per block; baseline: transformers.Trainer (+ peft), same settings",
          flush=True)
    for bf16 in dtypes(args.dtype):  # one process per dtype: accelerate fixes its mixed precision per process
        one = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure", "bf16" if bf16 else "fp32",
                              "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size",
                              str(args.batch_size), "--rows", args.rows, "--methods", args.methods],
                             stderr=subprocess.PIPE, text=True)
        if one.returncode:
            sys.exit(f"the {'bf16' if bf16 else 'fp32'} run failed:\n{one.stderr[-3000:]}")
    print(f"  peak RSS of a tuneforge LoRA run ({'bf16' if tuneforge_bf16() else 'fp32'}, own process): "
          f"{mem['maxrss_kb'] * 1024 / 1e9:.2f} GB (goal ≤ {RSS_GOAL_GB:g} GB; VmHWM "
          f"{mem['vmhwm_kb'] * 1024 / 1e9:.2f} GB; it trained at {mem['tokens_per_s']:.0f} tokens/s)")
    print(f"  CPU busy before the run: {busy:.0%}{'  (something else is running: numbers unreliable)' if busy > 0.2 else ''}")


if __name__ == "__main__":
    main()
