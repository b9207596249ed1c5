"""Serve the prediction store over HTTP: lookups, synonym matching and OpenAI-shaped completions.

Reads go straight to the store on the event loop: a keyed SELECT is sub-millisecond, and in WAL mode
a batch job in another process may write meanwhile without blocking it. Writes (live predictions,
queued misses, hit counts) and the live model run in worker threads, on a second connection, so the
loop never waits on the store's write lock or on torch."""

import asyncio
import bisect
import hmac
import logging
import threading
import time
from collections import Counter
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
import uvicorn
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from tuneforge.data.lists import split_list
from tuneforge.store.synonyms import SynonymMatcher
from tuneforge.serve.listen import (
    KEEP_ALIVE_SECONDS, MAX_HEAD_BYTES, REQUEST_SECONDS, DeadlineH11Protocol, bind, is_loopback, url,
)
from tuneforge.serve.openai_api import Text, add_error_handlers, error_response, openai_router
from tuneforge.store.keys import normalize_input
from tuneforge.store.sqlite import PredictionStore, describe

log = logging.getLogger(__name__)

MISS_POLICIES = ("reject", "live", "queue")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the request latency histogram."""
FLUSH_SECONDS = 5.0
"""How often hit counts are written to the store."""
MATCHER_CHECK_SECONDS = 1.0
"""How often /v1/match checks whether the synonyms setting gained rows."""


class Metrics:
    """Counters and a latency histogram, written out in the Prometheus text format."""

    def __init__(self):
        self.lookups = {"hit": 0, "miss": 0}
        self.live = 0
        self.in_bucket = [0] * len(BUCKETS)  # requests whose latency falls in each bucket (not cumulative)
        self.seconds, self.requests = 0.0, 0

    def observe(self, seconds: float) -> None:
        self.seconds += seconds
        self.requests += 1
        if (i := bisect.bisect_left(BUCKETS, seconds)) < len(BUCKETS):
            self.in_bucket[i] += 1

    def render(self) -> str:
        lines = ["# HELP tuneforge_lookups_total Inputs looked up, by whether the store had them.",
                 "# TYPE tuneforge_lookups_total counter"]
        lines += [f'tuneforge_lookups_total{{result="{result}"}} {n}' for result, n in self.lookups.items()]
        lines += ["# HELP tuneforge_live_predictions_total Misses predicted by the live model.",
                  "# TYPE tuneforge_live_predictions_total counter", f"tuneforge_live_predictions_total {self.live}",
                  "# HELP tuneforge_request_seconds Time to answer an HTTP request.",
                  "# TYPE tuneforge_request_seconds histogram"]
        cumulative = 0
        for bound, n in zip(BUCKETS, self.in_bucket):
            cumulative += n
            lines.append(f'tuneforge_request_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines += [f'tuneforge_request_seconds_bucket{{le="+Inf"}} {self.requests}',
                  f"tuneforge_request_seconds_sum {self.seconds}", f"tuneforge_request_seconds_count {self.requests}"]
        return "\n".join(lines) + "\n"


def _choose(specs: dict[str, dict], wanted: str | None, default: str | None, what: str, names: dict) -> str | None:
    """The setting id `wanted` names (by its id or its name), else `default`."""
    by_name = {named["name"]: sid for sid, named in names.items()}
    wanted = by_name.get(wanted, wanted)
    if wanted is not None and wanted not in specs:
        known = [names[sid]["name"] if sid in names else sid for sid in specs]
        raise ValueError(f"{what} {wanted!r} is not in the store (it has {', '.join(known) or 'no settings'})")
    return wanted if wanted is not None else default


class Lookups:
    """The store seen through one setting: hits, what a miss does, hit counts and the synonym matcher.

    The setting is served as a model whose id is its name (`<experiment or task>-<route>`), or its
    hash where it has none; either names it in a request."""

    def __init__(self, store_path: str | Path, setting: str | None, miss_policy: str, predictor,
                 match_setting: str | None):
        if miss_policy not in MISS_POLICIES:
            raise ValueError(f"miss_policy must be one of {MISS_POLICIES}, not {miss_policy!r}")
        self.writer = PredictionStore(store_path)  # creates the file and tables when missing
        self.reader = PredictionStore(store_path, readonly=True)
        specs, names = self.reader.settings(), self.reader.names()  # oldest first
        try:
            main = [sid for sid, spec in specs.items() if spec.get("postprocess") != "synonym_lists"]
            self.setting = _choose(specs, setting, (main or list(specs) or [None])[-1], "setting", names)
            if self.setting is None:
                raise ValueError(f"the store {store_path} has no settings yet: run a batch job first")
            generated = [sid for sid, spec in specs.items() if spec.get("mode") == "generate"]
            self.match_setting = _choose(specs, match_setting, generated[-1] if generated else None, "match_setting",
                                         names)
            self.spec = specs[self.setting]
            if miss_policy == "live" and predictor is None:
                from tuneforge.predict.setting import predictor_for_setting, setting_pool  # torch, only when a model answers

                predictor = predictor_for_setting(self.spec, setting_pool(self.reader, self.spec))
        except BaseException:
            self.close()
            raise
        self.described = describe(self.spec, names.get(self.setting))
        self.model_id = self.described["name"] or self.setting
        self.model_ids = {self.model_id, self.setting}
        self.ranks_labels = self.spec.get("labels") is not None
        self.miss_policy, self.predictor = miss_policy, predictor
        self.metrics, self.hits = Metrics(), Counter()
        self.live_lock = asyncio.Lock()  # torch on two cores: one live batch at a time
        self.write_lock = threading.Lock()  # the writer connection is shared by worker threads
        self.matcher, self._matcher_rows, self._matcher_checked = None, -1, 0.0
        self.current_matcher()

    def model_card(self) -> dict:
        """The served setting as /v1/models lists it: OpenAI's four fields and tuneforge's metadata."""
        return {"id": self.model_id, "object": "model", "created": 0, "owned_by": "tuneforge",
                "metadata": {"setting": self.setting, **{k: v for k, v in self.described.items() if k != "name"}}}

    def close(self) -> None:
        self.reader.close()
        self.writer.close()

    def current_matcher(self) -> SynonymMatcher | None:
        """The matcher over the synonyms setting, rebuilt when that setting's row count has changed."""
        now = time.monotonic()
        if self.match_setting is None or now - self._matcher_checked < MATCHER_CHECK_SECONDS:
            return self.matcher
        self._matcher_checked = now
        if (rows := self.reader.count(self.match_setting)) != self._matcher_rows:
            # a topic whose list came out empty is still found by its own name
            synonyms = {row["input"]: split_list(row["output"] or "", row["input"])
                        for row in self.reader.rows(self.match_setting) if row["error"] is None}
            self.matcher, self._matcher_rows = SynonymMatcher(synonyms), rows
        return self.matcher

    def stored(self, inputs: list[str]) -> list[dict | None]:
        """The stored row of each input (None for a miss), with its meta, looked up in its normal form."""
        return self._stored([normalize_input(text) for text in inputs], meta=True)

    async def stream_live(self, text: str):
        """A live miss (`text` in normal form) answered piece by piece: yields each new piece of the
        answer as the model writes it, then the row. The row is stored, and the live lock held, until
        the model is done, even when the client goes away mid-stream (closing this generator)."""
        loop, pieces, finished = asyncio.get_running_loop(), asyncio.Queue(), object()

        def on_text(piece: str) -> None:  # called on the worker thread
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        def predict_and_store() -> list[dict]:
            rows = self.predictor([text], on_text)
            with self.write_lock:
                self.writer.put_many(self.setting, rows)
            return rows

        def done(work: asyncio.Future) -> None:
            self.live_lock.release()
            if not work.cancelled() and work.exception() is None:
                self.metrics.live += 1
            pieces.put_nowait(finished)  # after every piece sent before

        await self.live_lock.acquire()
        work = asyncio.ensure_future(anyio.to_thread.run_sync(predict_and_store))
        work.add_done_callback(done)
        while (piece := await pieces.get()) is not finished:
            yield piece
        rows = work.result()
        yield {"input": text, "output": rows[0].get("output"), "error": rows[0].get("error"),
               "meta": rows[0].get("meta"), "source": "live"}

    async def resolve(self, inputs: list[str], *, meta: bool = True) -> list[dict]:
        """One row {"input", "output", "error", "meta", "source"} per input, looked up (and on a miss
        predicted or queued) in its normal form (`normalize_input`); "input" is the text as the client
        sent it. Without `meta`, a stored row's meta is not read."""
        texts = [normalize_input(text) for text in inputs]
        rows = self._stored(texts, meta)
        missed = list(dict.fromkeys(text for text, row in zip(texts, rows) if row is None))
        answers = await self._on_miss(missed) if missed else {}
        return [{**(row or answers[text]), "input": given} for given, text, row in zip(inputs, texts, rows)]

    def _stored(self, texts: list[str], meta: bool) -> list[dict | None]:
        """The stored row of each input (None for a miss), read in one query; hits and misses counted."""
        found = self.reader.get_many(self.setting, texts, meta=meta)
        for text in texts:
            self.metrics.lookups["hit" if text in found else "miss"] += 1
            if text in found:
                self.hits[(self.setting, text)] += 1
        keys = ("input", "output", "error", "meta") if meta else ("input", "output", "error")  # a lookup: the answer
        return [{**{k: found[text][k] for k in keys}, "source": "store"} if text in found else None for text in texts]

    async def _on_miss(self, texts: list[str]) -> dict[str, dict]:
        if self.miss_policy == "live":
            async with self.live_lock:
                rows = await anyio.to_thread.run_sync(self.predictor, texts)
                await self._write(self.writer.put_many, self.setting, rows)
            self.metrics.live += len(rows)
            return {text: {"input": text, "output": row.get("output"), "error": row.get("error"),
                           "meta": row.get("meta"), "source": "live"} for text, row in zip(texts, rows)}
        if self.miss_policy == "queue":
            await self._write(lambda: [self.writer.record_miss(self.setting, text) for text in texts])
        source = "queued" if self.miss_policy == "queue" else "miss"
        return {text: {"input": text, "output": None, "error": None, "meta": None, "source": source} for text in texts}

    async def _write(self, write, *args):
        def locked():
            with self.write_lock:
                return write(*args)
        return await anyio.to_thread.run_sync(locked)

    async def flush_hits(self) -> None:
        counts, self.hits = self.hits, Counter()
        if counts:
            try:
                await self._write(self.writer.add_hits, dict(counts))
            except Exception:  # e.g. the store stayed locked past its timeout: keep the counts for next time
                log.exception("could not write hit counts; will retry")
                self.hits.update(counts)

    async def flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.flush_hits()


class Guard:
    """ASGI middleware: times every request, checks the API key, and caps the request body's size."""

    def __init__(self, app, *, metrics: Metrics, api_key: str | None, max_body_bytes: int):
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.too_large = f"request body is larger than {max_body_bytes} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.metrics.observe(time.perf_counter() - start)

    async def _guarded(self, scope, receive, send):
        headers = Headers(scope=scope)
        given = headers.get("authorization", "").encode()
        if self.expected and scope["path"] != "/healthz" and not hmac.compare_digest(given, self.expected):
            response = error_response(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                      "authentication_error", headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        length = headers.get("content-length", "")
        if length.isdecimal() and int(length) > self.max_body_bytes:
            return await error_response(413, self.too_large, "request_too_large")(scope, receive, send)
        received = 0

        async def receive_capped():  # Content-Length may be absent (chunked) or lie
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise HTTPException(413, self.too_large)  # FastAPI lets it through; our handler answers
            return message

        await self.app(scope, receive_capped, send)


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


def lookup_router(lookups: Lookups, max_batch: int) -> APIRouter:
    """tuneforge's own endpoints: lookups, synonym matches, health and metrics."""
    router = APIRouter()

    class LookupBatch(BaseModel):
        inputs: list[Text] = Field(max_length=max_batch)

    class MatchRequest(BaseModel):
        text: Text

    async def resolve(inputs: list[str]) -> list[dict]:
        rows = await lookups.resolve(inputs, meta=False)
        return [{k: v for k, v in row.items() if k != "meta"} if "meta" in row else row for row in rows]

    @router.get("/v1/lookup")
    async def lookup(input: Annotated[Text, Query()]):
        row = (await resolve([input]))[0]
        if row["source"] == "miss":
            return error_response(404, "no stored prediction for this input", "not_found", input=input)
        if row["source"] == "queued":
            return JSONResponse({"queued": True, "input": input}, status_code=202)
        return {"results": [row]}

    @router.post("/v1/lookup")
    async def lookup_batch(body: LookupBatch):
        return {"results": await resolve(body.inputs)}

    @router.post("/v1/match")
    async def match(body: MatchRequest):
        matcher = lookups.current_matcher()
        if matcher is None:
            return error_response(404, "the store has no synonyms setting (a `generate` job) to match against",
                                  "not_found")
        return matcher.find(body.text)

    @router.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": lookups.model_id, "setting": lookups.setting,
                "rows": lookups.reader.count(lookups.setting)}

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(lookups.metrics.render(), media_type="text/plain; version=0.0.4")

    return router


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
