"""Quieting the libraries silences the one deprecation a run meets, not every FutureWarning."""

import logging
import os
import warnings

from tuneforge.logs import quiet_libraries


def test_only_the_known_deprecation_is_silenced(monkeypatch):
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE", "TRANSFORMERS_VERBOSITY"):
        monkeypatch.delenv(name, raising=False)  # monkeypatch puts back what quiet_libraries sets
    root, level = logging.getLogger(), logging.getLogger("tuneforge").level
    handlers = list(root.handlers)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_libraries()
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
            warnings.warn("some other library's future", FutureWarning)
    finally:
        root.handlers[:] = handlers
        logging.getLogger("tuneforge").setLevel(level)
    assert [str(w.message) for w in caught] == ["some other library's future"]
    assert os.environ["TQDM_DISABLE"] == "1"
