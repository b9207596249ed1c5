"""GGUF export, read back through transformers' GGUF loader (the reader of llama.cpp files we have
offline): the weights are the source's rounded as the format says, the logits agree within what that
rounding allows, the tokenizer encodes identically, and bad input is refused with nothing written."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from tuneforge.errors import TuneforgeError
from tuneforge.model.gguf_export import LLAMA3_SPLIT, export_gguf, pre_tokenizer_name

PROMPTS = ["plum: drupe\npear: pome\nlemon:", "The capital of France is",
           "<|im_start|>user\nIs 2024 a leap year? Ünïcödé, 日本語 🍋<|im_end|>\n<|im_start|>assistant\n"]

# The tolerance on logits, from the precision of the stored weights. Rounding moves each weight by at
# most u: f16 keeps 11 significant bits, so u = 2^-11 of the weight; q8_0 keeps 127 levels a side per
# block of 32 weights, so u = half a level, 1/254 of the block's largest weight. To first order, each
# rounded matrix a logit passes through (n of them: the embedding, 7 per layer, the output head) moves
# it by at most u of its scale, and in the worst case the n moves add: |Δlogit| <= n * u * max|logit|.
# The tiny model (n = 16, max|logit| 4.1): f16 0.032, q8_0 0.26. The default model (n = 212, max|logit|
# 37.8): f16 3.9, loose, so that test also asks for the same top token at every position.
UNIT = {"f16": 2**-11, "q8_0": 1 / 254}


def logit_tolerance(quant: str, layers: int, logits: torch.Tensor) -> float:
    return (2 + 7 * layers) * UNIT[quant] * logits.abs().max().item()


@pytest.fixture
def smollm_tokenizer():
    """The default model's tokenizer: 49,152 byte-level BPE tokens, 17 special ones, a chat template.
    (Per test: the default model lives in the test's tuneforge home, set by an autouse fixture.)"""
    from transformers import AutoTokenizer

    from tuneforge.model.load import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir())


def tiny_llama(path, tokenizer, *, tied: bool):
    """A random 2-layer llama with grouped-query attention (4 heads, 2 of keys and values) and rows of
    64 (two q8_0 blocks). Weights drawn with std 0.1 rather than 0.02: with near-zero queries and keys
    every position gets the same attention weight, and a query/key layout error would not show."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.1, tie_word_embeddings=tied, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def read_back(gguf_file):
    """The model transformers builds from the GGUF alone (it sits in a folder of its own)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                dtype=torch.float32).eval()


def compare(source, exported, tokenizer) -> tuple[float, torch.Tensor, bool]:
    """Over PROMPTS and every position: (max |logit difference|, the source's logits, whether the top
    token is the same everywhere)."""
    worst, logits, same_top = 0.0, [], True
    with torch.no_grad():
        for text in PROMPTS:
            ids = tokenizer(text, return_tensors="pt").input_ids
            expected, got = source(ids).logits, exported(ids).logits  # (1, T, V)
            worst = max(worst, (got - expected).abs().max().item())
            same_top &= torch.equal(got.argmax(-1), expected.argmax(-1))
            logits.append(expected.flatten())
    return worst, torch.cat(logits), same_top


def assert_rounded(source, exported, quant: str) -> None:
    """Each weight read back is the source's rounded as the format says: the 1-D norms kept in f32
    exactly; 2-D weights rounded to f16 exactly, or to q8_0 within half a level of their block (a
    level is the block's largest |w| / 127, itself stored in f16: 127 levels * 2^-11 more)."""
    back = exported.state_dict()
    for name, weight in source.state_dict().items():
        if weight.ndim == 1 or quant == "f16":
            assert torch.equal(back[name], weight if weight.ndim == 1 else weight.half().float()), name
        else:
            blocks = weight.reshape(weight.shape[0], -1, 32)  # (rows, blocks, 32)
            level = blocks.abs().amax(-1, keepdim=True) / 127
            assert ((back[name].reshape(blocks.shape) - blocks).abs() <= level * (0.5 + 127 * 2**-11)).all(), name


@pytest.mark.parametrize("quant, tied", [("f16", True), ("q8_0", False)])  # untied: the output head is written
def test_a_tiny_llama_reads_back_with_its_weights_and_logits(tmp_path, tiny_model_dir, quant, tied):
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)  # 512 byte-level BPE tokens: quick to read back
    model_dir = tiny_llama(tmp_path / "model", tokenizer, tied=tied)
    out = tmp_path / "gguf" / f"model-{quant}.gguf"
    summary = export_gguf(model_dir, out, quant=quant)
    assert summary["path"] == str(out) and summary["bytes"] == out.stat().st_size
    assert summary["tensors"] == 2 + 9 * 2 + (not tied)  # embedding, final norm, 9 per layer, output head
    source = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    exported = read_back(out)
    assert exported.config.tie_word_embeddings == tied
    assert_rounded(source, exported, quant)
    worst, logits, _ = compare(source, exported, tokenizer)
    # Measured with the 512-token tokenizer: f16 0.0047 (tolerance 0.028), q8_0 0.087 (tolerance 0.22) of
    # max|logit| 3.6; with the default model's tokenizer f16 0.0038, q8_0 0.117; without the query/key
    # reordering the gap is 2.74.
    print(f"{quant}: max |logit difference| {worst:.4f}, tolerance {logit_tolerance(quant, 2, logits):.3f}, "
          f"max |logit| {logits.abs().max():.2f}")
    assert worst <= logit_tolerance(quant, 2, logits), worst


def test_the_tokenizer_read_back_encodes_like_the_source(tmp_path, smollm_tokenizer):
    from transformers import AutoTokenizer

    out = tmp_path / "gguf" / "model.gguf"
    export_gguf(tiny_llama(tmp_path / "model", smollm_tokenizer, tied=True), out)
    back = AutoTokenizer.from_pretrained(out.parent, gguf_file=out.name)
    chat = smollm_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                                tokenize=False)
    for text in [*PROMPTS, chat, "  two spaces,\ttab\n\nnew lines", "x", "<|endoftext|><repo_name>code"]:
        assert back(text).input_ids == smollm_tokenizer(text).input_ids, text
    assert back.chat_template == smollm_tokenizer.chat_template
    special = ("bos_token", "eos_token", "pad_token", "unk_token")
    assert [getattr(back, s) for s in special] == [getattr(smollm_tokenizer, s) for s in special]


@pytest.mark.slow
def test_the_default_model_exports_to_f16(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.model.load import default_model_dir

    out = tmp_path / "model-f16.gguf"
    summary = export_gguf(default_model_dir(), out)
    assert summary["tensors"] == 2 + 9 * 30  # tied: no output head
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    source = AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32).eval()
    exported = read_back(out)
    worst, logits, same_top = compare(source, exported, tokenizer)
    # Measured: 0.042 of max|logit| 37.8 (tolerance 3.9), and the same top token at every position.
    assert worst <= logit_tolerance("f16", 30, logits), worst
    assert same_top


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
LLAMA3 = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
    {**BYTE_LEVEL, "use_regex": False}]}


@pytest.mark.parametrize("pre, name", [
    (BYTE_LEVEL, "gpt-2"),  # the default model as converted, and the tiny test model
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL]}, "smollm"),
    (LLAMA3, "llama-bpe"),
])
def test_pre_tokenizers_get_llama_cpp_names(pre, name):
    assert pre_tokenizer_name({"normalizer": None, "pre_tokenizer": pre}) == name


@pytest.mark.parametrize("spec, message", [
    ({"normalizer": {"type": "NFC"}, "pre_tokenizer": BYTE_LEVEL}, "normalises text (NFC)"),
    ({"normalizer": None, "pre_tokenizer": {**BYTE_LEVEL, "add_prefix_space": True}}, "(ByteLevel); supported: gpt-2"),
    ({"normalizer": None, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}}, "(Metaspace)"),
    ({"normalizer": None, "pre_tokenizer": None}, "(none)"),
])
def test_other_pre_tokenizers_are_refused(spec, message):
    with pytest.raises(TuneforgeError, match=re.escape(message)):
        pre_tokenizer_name(spec)


def test_the_llama3_split_is_the_one_transformers_reads_for_llama_bpe():
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    assert GGUF_PRE_TOKENIZER_SPLITS["llama-bpe"] == LLAMA3_SPLIT


def run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *map(str, args)], cwd=cwd, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["not llama", "unknown format", "output exists"])
def test_the_cli_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path, tiny_model_dir, case):
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    existing = tmp_path / "existing.gguf"
    existing.write_text("keep me")
    args, expected = {
        "not llama": ([gpt2, "--format", "gguf"], ["config.json: model_type 'gpt2'", "supported: llama"]),
        "unknown format": ([tiny_model_dir, "--format", "onnx"], ["--format", "'onnx'", "gguf"]),
        "output exists": ([tiny_model_dir, "--out", existing], [str(existing), "--force"]),
    }[case]
    proc = run_cli(["export", *args], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and all(part in lines[0] for part in expected), proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*.gguf*")) == ["existing.gguf"], "something was written"
    assert existing.read_text() == "keep me"
    assert not list(tiny_model_dir.glob("*.gguf*"))


def test_an_unknown_quantisation_is_refused(tmp_path, tiny_model_dir):
    with pytest.raises(TuneforgeError, match="unknown GGUF quantisation 'q4_k': choose f16 or q8_0"):
        export_gguf(tiny_model_dir, tmp_path / "model.gguf", quant="q4_k")
    assert not list(tmp_path.iterdir())


def test_a_run_with_only_its_lora_adapter_is_refused(tmp_path):
    (tmp_path / "run" / "adapter").mkdir(parents=True)
    (tmp_path / "run" / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(TuneforgeError, match="a LoRA adapter without a merged model; fine-tune with --merge"):
        export_gguf(tmp_path / "run", tmp_path / "model.gguf")
    assert not (tmp_path / "model.gguf").exists()


def test_the_cli_exports_a_run_directorys_model_beside_it(tmp_path, tiny_model_dir):
    shutil.copytree(tiny_model_dir, tmp_path / "run" / "merged")
    proc = run_cli(["export", "run", "--quant", "q8_0"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "run" / "model-q8_0.gguf"
    assert out.is_file() and f"wrote {os.path.join('run', 'model-q8_0.gguf')}" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["merged", "model-q8_0.gguf"]  # no temporary left
