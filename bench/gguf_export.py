"""GGUF export of the embedded default model, f16 and q8_0: the file's size, the time to write it, and
how far the logits transformers computes from the file alone are from the source model's (fp32 on
both sides), over every position of 20 five-shot prompts of the fruit task and 2 chat prompts.

    python bench/gguf_export.py
"""

import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.data.tasks import builtin_path, read_examples
from tuneforge.model.gguf_export import export_gguf
from tuneforge.model.load import default_model_dir
from tuneforge.model.params import count_parameters
from tuneforge.units import seconds, size


def prompts(tokenizer) -> list[str]:
    examples = read_examples(builtin_path("fruit"))
    fruit = ["".join(f"{ex.input}: {ex.target}\n" for ex in examples[k:k + 5]) + f"{examples[k + 5].input}:"
             for k in range(0, 120, 6)]  # 20 prompts that share no demonstration
    chats = [[{"role": "user", "content": "What kind of fruit is a lemon?"}],
             [{"role": "user", "content": "Name three synonyms of 'vaccine'."}]]
    return fruit + [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in chats]


def logits_of(model, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(ids).logits[0] for ids in batches]  # (T, V) each


def main() -> None:
    source_dir = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    source = AutoModelForCausalLM.from_pretrained(source_dir, dtype=torch.float32).eval()
    parameters = count_parameters(source)["total"]
    batches = [tokenizer(text, return_tensors="pt").input_ids for text in prompts(tokenizer)]
    expected = logits_of(source, batches)
    positions = sum(e.shape[0] for e in expected)
    scale = max(e.abs().max().item() for e in expected)
    print(f"{source_dir.name}: {parameters:,} parameters; {len(batches)} prompts, {positions} positions, "
          f"max |logit| {scale:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for quant in ("f16", "q8_0"):
            out = Path(tmp) / f"model-{quant}.gguf"
            start = time.perf_counter()
            summary = export_gguf(source_dir, out, quant=quant)
            took = time.perf_counter() - start
            exported = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=out.name, dtype=torch.float32).eval()
            got = logits_of(exported, batches)
            gap = max((g - e).abs().max().item() for g, e in zip(got, expected))
            mean_gap = sum((g - e).abs().sum().item() for g, e in zip(got, expected)) / (positions * got[0].shape[-1])
            same_top = sum((g.argmax(-1) == e.argmax(-1)).sum().item() for g, e in zip(got, expected))
            print(f"{quant:>5}: {size(summary['bytes'])} ({summary['bytes'] / parameters:.2f} bytes/parameter), "
                  f"written in {seconds(took)}; max |Δlogit| {gap:.3f}, mean {mean_gap:.4f}; "
                  f"same top token at {same_top}/{positions} positions")


if __name__ == "__main__":
    main()
