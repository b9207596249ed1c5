"""Export a model as one GGUF file, the format llama.cpp, Ollama and LM Studio run: the architecture's
settings, the tokenizer (vocabulary, merges, special tokens, chat template) and the weights in f16 or
q8_0.

It does what llama.cpp's own converter (convert_hf_to_gguf.py) does for a llama model, for the models
tuneforge makes (a merged fine-tune, a distilled student) and any local llama directory with a
byte-level BPE tokenizer (SmolLM2, Llama 3). tests/model/test_gguf_export.py reads the files back
through transformers' GGUF loader and compares logits and token ids with the source model."""

import json
from pathlib import Path

import gguf
import numpy as np
import torch

from tuneforge.atomic import atomic_path, check_writable
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import RUN_MODEL_DIRS, fingerprint, resolve_model_dir


F16, F32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
# --quant: the type of every 2-D weight, and the file type llama.cpp reports for the whole file.
QUANTS = {
    "f16": (F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
ARCHITECTURES = ("llama",)  # config.json model_type values whose graph llama.cpp's `llama` computes

# Llama 3's split pattern, as its tokenizer.json and llama.cpp's `llama-bpe` pre-tokenizer write it.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# How a byte-level BPE tokenizer cuts text before merging (its tokenizer.json `pre_tokenizer`, as
# `_pre_steps` spells it), by llama.cpp's name for the same cut (`tokenizer.ggml.pre`). llama.cpp
# applies no pre-tokenizer it is not told, so one missing here is refused rather than guessed.
PRE_TOKENIZERS = {
    (("ByteLevel", False, True),): "gpt-2",
    (("Digits", True), ("ByteLevel", False, True)): "smollm",
    (("Split", LLAMA3_SPLIT, "Isolated", False), ("ByteLevel", False, False)): "llama-bpe",
}


def export_gguf(model_dir: str | Path, out_file: str | Path, *, quant: str = "f16", force: bool = False) -> dict:
    """Write the model in `model_dir` (a model directory, or a run directory holding one) to `out_file`
    as GGUF; `quant` is f16 or q8_0. The file appears whole or not at all. Returns a summary."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    qtype, file_type = _check_quant(quant)
    out = Path(out_file)
    check_writable(out, folder=False)
    if out.exists() and not force:
        raise TuneforgeError(f"{out}: already exists; give --force to replace it")
    path = resolve_model_dir(model_dir)
    config = _llama_config(path)
    writer = gguf.GGUFWriter(None, "llama")  # holds everything in memory until the file is written
    _add_settings(writer, config, file_type, name=_model_name(path), source=fingerprint(path))
    _add_tokenizer(writer, AutoTokenizer.from_pretrained(path), config.vocab_size)  # refused before the weights load
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    tensors = _add_tensors(writer, model.state_dict(), config, qtype)
    with atomic_path(out) as tmp:
        try:
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return {"path": str(out), "bytes": out.stat().st_size, "tensors": tensors, "quant": quant, "source": str(path)}


def _check_quant(quant: str) -> tuple:
    if quant not in QUANTS:
        raise TuneforgeError(f"unknown GGUF quantisation {quant!r}: choose {' or '.join(QUANTS)}")
    return QUANTS[quant]


def _llama_config(path: Path):
    """The model's config, refused unless llama.cpp's llama graph computes this very model."""
    from transformers import AutoConfig

    config_file = path / "config.json"
    if not config_file.is_file():  # a run that kept its LoRA adapter alone
        raise TuneforgeError(f"{path}: a LoRA adapter without a merged model; fine-tune with --merge to export it")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in ARCHITECTURES:
        raise TuneforgeError(f"{config_file}: model_type {model_type!r} cannot be exported to GGUF; supported: "
                             f"{', '.join(ARCHITECTURES)} (LlamaForCausalLM: SmolLM2, Llama 3 and their fine-tunes)")
    config = AutoConfig.from_pretrained(path)
    rope_type = config.rope_parameters.get("rope_type", "default")
    if rope_type != "default":
        raise TuneforgeError(f"{config_file}: rope_type {rope_type!r} is not exported; only the default rotary "
                             f"embedding is")
    if config.attention_bias or config.mlp_bias:
        raise TuneforgeError(f"{config_file}: attention_bias / mlp_bias are not exported; only bias-free llama is")
    return config


def _model_name(path: Path) -> str:
    """`lora-merged` for the run `runs/lora`'s `merged/`, else the folder's own name."""
    return f"{path.parent.name}-{path.name}" if path.name in RUN_MODEL_DIRS else path.name


def _add_settings(writer, config, file_type, *, name: str, source: str) -> None:
    """The architecture's settings under llama.cpp's `llama.*` keys (what transformers reads back as
    the config), and the source model's fingerprint for provenance."""
    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_string("tuneforge.source_fingerprint", source)


def _add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    """A byte-level BPE tokenizer as llama.cpp's `gpt2` tokenizer model: tokens with their types,
    merges, the pre-tokenizer's name, special token ids, and the chat template."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    kind = spec["model"]["type"] + (" with byte fallback" if spec["model"].get("byte_fallback") else "")
    if kind != "BPE":  # a SentencePiece-style vocabulary (Llama 2, TinyLlama) needs scores: not written here
        raise TuneforgeError(f"{tokenizer.name_or_path}: the tokenizer is {kind}; only byte-level BPE tokenizers "
                             f"(GPT-2 style: SmolLM2, Llama 3) are exported")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(spec, where=tokenizer.name_or_path))
    tokens, types = _tokens(tokenizer, vocab_size)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    keys = gguf.Keys.Tokenizer
    special = {keys.BOS_ID: tokenizer.bos_token_id, keys.EOS_ID: tokenizer.eos_token_id,
               keys.UNK_ID: tokenizer.unk_token_id, keys.PAD_ID: tokenizer.pad_token_id}
    for key, token_id in special.items():
        if token_id is not None:
            writer.add_uint32(key, token_id)
    with_special, plain = tokenizer("a")["input_ids"], tokenizer("a", add_special_tokens=False)["input_ids"]
    writer.add_add_bos_token(len(with_special) > len(plain) and with_special[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(len(with_special) > len(plain) and with_special[-1] == tokenizer.eos_token_id)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def pre_tokenizer_name(spec: dict, where: str = "tokenizer") -> str:
    """llama.cpp's name for how a tokenizer.json (`spec`) cuts text before BPE; refused where it has none."""
    if spec.get("normalizer") is not None:
        raise TuneforgeError(f"{where}: the tokenizer normalises text ({spec['normalizer']['type']}), which "
                             f"llama.cpp's BPE tokenizer does not; only tokenizers without a normalizer are exported")
    steps = _pre_steps(spec.get("pre_tokenizer") or {"type": "none"})
    if steps not in PRE_TOKENIZERS:
        raise TuneforgeError(f"{where}: llama.cpp has no pre-tokenizer known to cut text like this one "
                             f"({' + '.join(s[0] for s in steps)}); supported: {', '.join(PRE_TOKENIZERS.values())}")
    return PRE_TOKENIZERS[steps]


def _pre_steps(pre: dict) -> tuple:
    """A tokenizer.json `pre_tokenizer` as a tuple of its steps, each with the fields that change the cut."""
    fields = {"ByteLevel": ("add_prefix_space", "use_regex"), "Digits": ("individual_digits",),
              "Split": ("pattern", "behavior", "invert")}
    steps = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
    return tuple((s["type"], *(_plain(s[f]) for f in fields.get(s["type"], ()))) for s in steps)


def _plain(value):
    """A Split pattern ({"Regex": ...} or {"String": ...}) as its text; other values as they are."""
    return next(iter(value.values())) if isinstance(value, dict) else value


def _tokens(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id's token and llama.cpp token type: an added special token is CONTROL (matched whole,
    never split), another added one USER_DEFINED; ids the tokenizer lacks pad to the model's size."""
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise TuneforgeError(f"{tokenizer.name_or_path}: the tokenizer has ids up to {max(by_id)}, beyond the "
                             f"model's vocabulary of {vocab_size}")
    added = tokenizer.added_tokens_decoder

    def kind(i: int) -> gguf.TokenType:
        if i not in by_id:
            return gguf.TokenType.UNUSED
        if i not in added:
            return gguf.TokenType.NORMAL
        return gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED

    return [by_id.get(i, f"[PAD{i}]") for i in range(vocab_size)], [kind(i) for i in range(vocab_size)]


def _add_tensors(writer, state: dict[str, torch.Tensor], config, qtype) -> int:
    """Every weight under its llama.cpp name, in llama.cpp's layout and type; returns how many."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    count = 0
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp uses token_embd as the output head when there is no `output`
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise TuneforgeError(f"{hf_name}: a weight llama.cpp's llama architecture has no place for")
        data, kind = _encode(_llama_layout(hf_name, tensor.detach().float(), config).numpy(), qtype)
        writer.add_tensor(name, data, raw_dtype=kind)
        count += 1
    return count


def _llama_layout(hf_name: str, weight: torch.Tensor, config) -> torch.Tensor:
    """transformers rotates the two halves of each query/key head against each other, llama.cpp
    neighbouring pairs of dimensions: reorder each head's rows (x0..x_{d/2-1}, y0..) -> (x0, y0, x1, y1..)."""
    if hf_name.endswith("q_proj.weight"):
        return rope_interleave(weight, config.num_attention_heads)
    if hf_name.endswith("k_proj.weight"):
        return rope_interleave(weight, config.num_key_value_heads)
    return weight


def rope_interleave(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Within each of `heads` blocks of rows, interleave the first half of the rows with the second."""
    rows = weight.shape[0]  # weight: (heads * head_dim, hidden)
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _encode(data: np.ndarray, qtype) -> tuple[np.ndarray, "gguf.GGMLQuantizationType"]:
    """`(bytes or values, type)`: 1-D tensors (the norms) stay f32 as llama.cpp keeps them; a weight
    whose rows do not split into q8_0's blocks of 32 falls back to f16, as llama.cpp's converter does."""
    if data.ndim == 1:
        return data.astype(np.float32), F32
    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.QuantError:
        return gguf.quants.quantize(data, F16), F16
