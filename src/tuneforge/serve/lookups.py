"""The store as the server sees it: one served setting, what a miss does, hit counts, synonym matching.

Reads go straight to the store on the event loop: a keyed SELECT is sub-millisecond, and in WAL mode
a batch job in another process may write meanwhile without blocking it. Writes (live predictions,
queued misses, hit counts) and the live model run in worker threads, on a second connection, so the
loop never waits on the store's write lock or on torch."""

import asyncio
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import anyio

from tuneforge.data.lists import split_list
from tuneforge.serve.metrics import Metrics
from tuneforge.store.keys import normalize_input
from tuneforge.store.sqlite import PredictionStore, describe
from tuneforge.store.synonyms import SynonymMatcher

log = logging.getLogger(__name__)

MISS_POLICIES = ("reject", "live", "queue")
FLUSH_SECONDS = 5.0
"""How often hit counts are written to the store."""
MATCHER_CHECK_SECONDS = 1.0
"""How often /v1/match checks whether the synonyms setting gained rows."""

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
                self.metrics.count_live(1)
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
        hits = [text for text in texts if text in found]
        self.metrics.count_lookups(hits=len(hits), misses=len(texts) - len(hits))
        self.hits.update((self.setting, text) for text in hits)
        keys = ("input", "output", "error", "meta") if meta else ("input", "output", "error")  # a lookup: the answer
        return [{**{k: found[text][k] for k in keys}, "source": "store"} if text in found else None for text in texts]

    async def _on_miss(self, texts: list[str]) -> dict[str, dict]:
        if self.miss_policy == "live":
            async with self.live_lock:
                rows = await anyio.to_thread.run_sync(self.predictor, texts)
                await self._write(self.writer.put_many, self.setting, rows)
            self.metrics.count_live(len(rows))
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

