import json
import os

import pytest
import torch

from tuneforge.errors import TuneforgeError
from tuneforge.model import load
from tuneforge.model.load import fingerprint, load_model, resolve_dtype, weights_fingerprint

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "name, has_bf16, expected",
    [
        ("auto", True, torch.bfloat16),
        ("auto", False, torch.float32),
        ("bf16", False, torch.bfloat16),
        ("fp32", True, torch.float32),
        ("float32", True, torch.float32),
    ],
)
def test_resolve_dtype_on_cpu(monkeypatch, name, has_bf16, expected):
    monkeypatch.setattr(load, "cpu_supports_bf16", lambda: has_bf16)
    assert resolve_dtype(name, CPU) == expected


def test_auto_dtype_is_bf16_on_cuda(monkeypatch):
    monkeypatch.setattr(load, "cpu_supports_bf16", lambda: False)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_unknown_dtype_is_refused():
    with pytest.raises(TuneforgeError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", CPU)


def test_cpu_bf16_check_reads_cpu_flags():
    flags = open("/proc/cpuinfo").read().split()
    assert load.cpu_supports_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_fingerprint_is_stable_cached_and_tracks_the_weights(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    first = fingerprint(tiny_model_dir)
    assert fingerprint(tiny_model_dir) == first
    cache = json.loads((load.tuneforge_home() / "fingerprints.json").read_text())
    assert cache[str(tiny_model_dir.resolve())]["sha256"] == first
    # A cached value is used without reading the weights again.
    monkeypatch.setattr(load.hashlib, "sha256", lambda: pytest.fail("re-hashed a cached model"))
    assert fingerprint(tiny_model_dir) == first
    monkeypatch.undo()
    # A copy with one weight changed has another fingerprint.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    model = load_model(copy, dtype="fp32", device="cpu").model
    with torch.no_grad():
        model.model.norm.weight[0] += 1
    model.save_pretrained(copy)
    assert fingerprint(copy) != first


def test_weights_fingerprint_sees_any_change(tiny_model_dir):
    model = load_model(tiny_model_dir, dtype="fp32", device="cpu").model
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[3, 4] += 1e-3
    assert weights_fingerprint(model) != before


def test_load_a_local_directory(tiny_model_dir):
    loaded = load_model(tiny_model_dir, dtype="fp32", device="cpu")
    assert loaded.dtype == torch.float32 and next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.tokenizer.pad_token_id is not None
    assert loaded.fingerprint == fingerprint(tiny_model_dir)
    assert not loaded.model.training


@pytest.mark.parametrize("model", ["/nonexistent/model", "./missing", "no/such/deep/path"])
def test_unknown_model_path_is_refused(model):
    with pytest.raises(TuneforgeError, match="no such model directory"):
        load_model(model, dtype="fp32")


def test_a_directory_without_config_is_refused(tmp_path):
    with pytest.raises(TuneforgeError, match="no config.json"):
        load_model(tmp_path, dtype="fp32")


def test_a_half_written_conversion_is_not_taken_for_a_model(tmp_path, monkeypatch):
    # What a killed conversion leaves: a temporary sibling, no target.
    stale = tmp_path / "models" / f".{load.DEFAULT_MODEL}.tmp-12345"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    calls = []
    monkeypatch.setattr(load, "convert_gguf", lambda gguf, target: calls.append(target))
    target = load.default_model_dir(tmp_path)
    assert calls == [target], "the conversion runs again"


@pytest.mark.parametrize("inner", ["model", "merged", "student"])
def test_a_run_directory_stands_for_the_model_it_holds(tmp_path, inner):
    from tuneforge.model.load import resolve_model_dir

    (tmp_path / "adapter").mkdir()
    (tmp_path / inner).mkdir()
    (tmp_path / inner / "config.json").write_text("{}")
    assert resolve_model_dir(tmp_path) == tmp_path / inner


def test_a_lora_adapter_directory_loads_on_its_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model(tiny_model_dir, dtype="fp32")
    peft_model = get_peft_model(base.model, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")  # a run holding only its adapter
    loaded = load_model(tmp_path, dtype="fp32")  # the run directory: its adapter, merged on its base
    assert loaded.path == tmp_path / "adapter" and loaded.fingerprint != base.fingerprint
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, peft_model(ids).logits, atol=1e-5)
    config = tmp_path / "adapter" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(TuneforgeError, match="the adapter's base model cannot be loaded: unknown model"):
        load_model(tmp_path / "adapter", dtype="fp32")


def test_a_hub_id_without_a_network_says_so_in_one_line(tmp_path):
    import subprocess
    import sys

    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "tuneforge.cli", "model", "--model", "nobody-here/no-such-model"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "unknown model 'nobody-here/no-such-model': not a local directory" in done.stderr
    assert "the Hugging Face hub cannot be reached from here" in done.stderr and "give a local model directory" in done.stderr


def test_torch_uses_the_physical_cores_unless_told(monkeypatch):
    from tuneforge.model.load import physical_cores, use_physical_cores

    cores = physical_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        use_physical_cores()
        assert torch.get_num_threads() == 1  # a parallel test's or a Ray actor's own setting stays
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.delenv("TORCH_NUM_THREADS", raising=False)
        use_physical_cores()
        assert torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)
