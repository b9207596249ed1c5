"""Quieter libraries for a process tuneforge starts: called once by an entry point (the `tuneforge`
command, an experiment stage's process), never by library code, which leaves the environment,
warnings and logging as the caller set them."""

import logging
import os
import sys
import warnings


def quiet_libraries() -> None:
    """Library progress bars and advice would bury tuneforge's own output; tuneforge's own status
    lines (e.g. the one-time model conversion) go to stderr."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader's own tqdm bar
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray session (batch --engine ray) needs no token
    # peft's PeftModel probes transformers' deprecated `is_gradient_checkpointing` on every LoRA model;
    # the only FutureWarning a run meets, and nothing a tuneforge user can act on
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    logging.basicConfig(format="tuneforge: %(message)s", level=logging.WARNING)
    logging.getLogger("tuneforge").setLevel(logging.INFO)
    # transformers reads HF_HUB_DISABLE_PROGRESS_BARS when it is imported (not here: a command refused
    # for a bad setting never imports it); one imported already is told directly
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
