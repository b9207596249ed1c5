"""Shared fixtures: a tiny random llama model directory built from a config (no downloads), and a
private tuneforge home so tests never touch the user's cache."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the machine's cores: one torch thread each (and in the subprocesses they start),
    # or two workers' thread pools contend for the same cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:  # a plugin loaded it first
        sys.modules["torch"].set_num_threads(1)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def pytest_collection_modifyitems(session, config, items):
    """The real-model tests first, so that on two workers (`make test`) the longest files start at
    once and the short ones fill in beside them, instead of the long ones running last, one a worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order kept otherwise


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory, monkeypatch):
    """Each test gets a fresh fingerprint cache; the real default model is shared (see real_home)."""
    home = os.environ.get("TUNEFORGE_TEST_HOME")
    if home is None:
        home = str(tmp_path_factory.getbasetemp() / "tuneforge-home")
    monkeypatch.setenv("TUNEFORGE_HOME", home)


def build_tiny_model(path: Path, *, layers: int = 2, seed: int = 0) -> Path:
    """A random llama model with a byte-level BPE tokenizer trained on the built-in tasks' text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tuneforge.data.tasks import builtin_path, builtin_tasks, read_examples

    corpus = [f"{ex.input}: {ex.target}" for name in builtin_tasks() for ex in read_examples(builtin_path(name))]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus + ["N/A", "Give the botanical fruit type."], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """The tiny model loaded in fp32 on the CPU."""
    from tuneforge.model.load import load_model

    return load_model(tiny_model_dir, dtype="fp32", device="cpu")


@pytest.fixture(scope="session")
def tiny_builder():
    """`build_tiny_model` itself, for tests that need a tiny model of another shape."""
    return build_tiny_model


# Chromium 156 logs each console message, errors included, as `...:INFO:CONSOLE:1] "text", source: ...`
# (older versions: `INFO:CONSOLE(1)]`); the reports have no script, so any console line is a failure.
CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught")


class Browser:
    """Headless Chromium (Debian `chromium`; .ci/run installs it) for checking HTML pages."""

    def run(self, page: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
        """Chromium on a local file, with a fresh profile, logging the console to stderr."""
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does this)")
        profile = workdir / f"profile-{len(list(workdir.glob('profile-*')))}"
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, page.as_uri()]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def console_lines(self, stderr: str) -> list[str]:
        return [line for line in stderr.splitlines() if CONSOLE.search(line)]

    def keep(self, screenshot: Path) -> None:
        """List a screenshot in the test run's summary, so its path shows in CI output."""
        SCREENSHOTS.append(screenshot)


SCREENSHOTS: list[Path] = []


def pytest_terminal_summary(terminalreporter):
    for shot in SCREENSHOTS:
        terminalreporter.write_line(f"report screenshot: {shot}")


@pytest.fixture(scope="session")
def browser() -> Browser:
    return Browser()
