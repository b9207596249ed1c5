"""A real uvicorn server on a free localhost port, over a real SQLite store filled by hand."""

import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import uvicorn

from tuneforge.serve.app import create_app
from tuneforge.store.keys import setting_id
from tuneforge.store.sqlite import PredictionStore

FRUIT = {"task": "fruit", "mode": "labels", "labels": ["drupe", "pome", "berry", "hesperidium"]}
SYNONYMS = {"task": "synonyms", "mode": "generate"}
FRUIT_ID, SYNONYMS_ID = setting_id(FRUIT), setting_id(SYNONYMS)
MODEL = "fruit-lora"
"""The fruit setting's name: the model id it is served as."""
PLUM_META = {"prompt_tokens": 12, "completion_tokens": 3,
             "logprobs": [["drupe", -0.1], ["pome", -2.5], ["berry", -3.0], ["hesperidium", -4.0]]}
FRUIT_ROWS = [{"input": "plum", "output": "drupe", "meta": PLUM_META}, {"input": "pear", "output": "pome"},
              {"input": "lemon", "output": "hesperidium"}, {"input": "durian", "error": "prompt has 600 tokens"}]
SYNONYM_ROWS = [{"input": "vaccine", "output": "1. Jab 2. shot, covid jab; immunization (formal)"},
                {"input": "influenza", "output": "flu, the flu, grippe"},
                {"input": "broken", "error": "prompt has 900 tokens"}]


def fill_store(path: Path, *, synonyms: bool = True) -> Path:
    """The synonyms setting first, then the fruit one, so fruit is the newest (the default)."""
    store = PredictionStore(path)
    if synonyms:
        store.put_many(store.add_setting(SYNONYMS), SYNONYM_ROWS)
        time.sleep(0.01)  # settings are ordered by creation time
    store.put_many(store.add_setting(FRUIT), FRUIT_ROWS)
    store.name_setting(MODEL, FRUIT_ID, "lora")
    store.close()
    return path


@contextmanager
def running(app):
    """Serve `app` with uvicorn in a background thread; yields the base URL, stops it (lifespan included)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def store_path(tmp_path) -> Path:
    return fill_store(tmp_path / "store.db")


@pytest.fixture
def serve(store_path):
    """serve(**create_app keyword arguments) -> the base URL of a running server over `store_path`."""
    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(running(create_app(store_path, **kwargs)))
