"""The server: `create_app` assembles the store's lookups, the guard and both sets of endpoints into
one FastAPI app, and `serve` runs it with one uvicorn worker on a socket bound beforehand.

What a request does once it arrives is in lookup_api.py and openai_api.py; how the store is read and
written while serving, in lookups.py."""

import asyncio
import logging
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from tuneforge.serve.guard import Guard
from tuneforge.serve.listen import (
    KEEP_ALIVE_SECONDS, MAX_HEAD_BYTES, REQUEST_SECONDS, DeadlineH11Protocol, bind, is_loopback, url,
)
from tuneforge.serve.lookup_api import lookup_router
from tuneforge.serve.lookups import FLUSH_SECONDS, Lookups
from tuneforge.serve.openai_api import add_error_handlers, openai_router

log = logging.getLogger(__name__)


def create_app(store_path: str | Path, *, setting: str | None = None, miss_policy: str = "reject", predictor=None,
               api_key: str | None = None, max_body_bytes: int = 65536, max_batch: int = 256,
               match_setting: str | None = None) -> FastAPI:
    """The server over the store at `store_path`.

    `setting` picks the setting lookups use (default: the newest); `miss_policy` says what a lookup the
    store lacks gets: `reject` (404), `live` (`predictor` — or one built from the setting — answers and
    the row is stored) or `queue` (recorded for the next batch job, 202). `match_setting` picks the
    synonyms setting behind /v1/match (default: the newest `generate` one). With `api_key`, every
    request but /healthz needs `Authorization: Bearer KEY`."""
    lookups = Lookups(store_path, setting, miss_policy, predictor, match_setting)
    app = FastAPI(title="tuneforge", summary="Predictions from the tuneforge store", lifespan=_lifespan(lookups))
    app.state.lookups = lookups
    app.add_middleware(Guard, metrics=lookups.metrics, api_key=api_key, max_body_bytes=max_body_bytes)
    add_error_handlers(app)
    app.include_router(lookup_router(lookups, max_batch))
    app.include_router(openai_router(lookups, max_batch))
    return app


def _lifespan(lookups: Lookups):
    """Flush hit counts in the background while serving; flush the rest and close the store at exit."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        flusher = asyncio.create_task(lookups.flush_every(FLUSH_SECONDS))
        try:
            yield
        finally:
            flusher.cancel()
            with suppress(asyncio.CancelledError):
                await flusher
            await lookups.flush_hits()
            lookups.close()

    return lifespan


def startup_lines(lookups: Lookups, address: str, keyed: bool) -> list[str]:
    """What an operator needs to know once the server listens."""
    d = lookups.described
    lines = [f"tuneforge serving {lookups.reader.path} on {address} (OpenAI base URL {address}/v1)",
             f"model {lookups.model_id}: {d['route'] or 'route unknown'} · task {d['task']} · "
             f"{lookups.reader.count(lookups.setting)} rows · setting {lookups.setting[:12]} · model files {d['model']}",
             f"on a miss: {lookups.miss_policy} · API key {'required' if keyed else 'not required'}"]
    if lookups.match_setting:
        lines.append(f"/v1/match reads the synonym lists of setting {lookups.match_setting[:12]}")
    return lines


def serve(store_path: str | Path, host: str = "127.0.0.1", port: int = 8000, *,
          request_seconds: float = REQUEST_SECONDS, announce=log.info, **app_kwargs) -> None:
    """Serve the store with one uvicorn worker, on localhost unless `host` says otherwise (port 0: a
    free one). A client has `request_seconds` to send each whole request. A bad host, port or store
    raises TuneforgeError before anything listens; a public address without an API key is warned of.
    `announce` gets each line of what is served, where and how (`startup_lines`)."""
    sock = bind(host, port)
    try:
        app = create_app(store_path, **app_kwargs)
        if not app_kwargs.get("api_key") and not is_loopback(sock):
            log.warning("warning: %s is reachable from other machines and needs no API key: anyone who can reach "
                        "it can read the store; set TUNEFORGE_API_KEY or --api-key", url(sock))
        protocol = partial(DeadlineH11Protocol, request_seconds=request_seconds)
        config = uvicorn.Config(app, http=protocol, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                                h11_max_incomplete_event_size=MAX_HEAD_BYTES, log_level="warning")
        sock.listen(config.backlog)  # clients may connect from this line on; uvicorn accepts once started
        for line in startup_lines(app.state.lookups, url(sock), bool(app_kwargs.get("api_key"))):
            announce(line)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
