"""Batch jobs: predict ahead of time for known inputs and fill the prediction store.

A job's *setting* (`predict/setting.py`: everything that changes an output) is written into the
store once, with the train split it picks demonstrations from (by its content hash); each input's
key is the setting plus the input. Every prompting condition the experiment can choose is a
setting: the demonstrations depend only on the input and the train split, and batch calibration's
prior is estimated once on dev and kept. A re-run computes only what the store lacks; rows are
committed in chunks, so a job killed at any moment loses at most the chunk in flight and stores
nothing twice."""

import time

from tuneforge.data.splits import Task
from tuneforge.model import provenance
from tuneforge.model.load import LoadedModel
from tuneforge.predict.setting import SettingPredictor, build_setting, demo_pool
from tuneforge.settings import BatchConfig
from tuneforge.store.keys import normalize_input


def store_setting(store, loaded: LoadedModel, task: Task, cfg: BatchConfig, *, prior: list[float] | None = None,
                  route: str | None = None) -> tuple[dict, str]:
    """The job's setting, its pool and its name kept in `store`; returns the setting and its id. The
    name is the config's, else `<task>-<route>`."""
    setting = build_setting(loaded, task, cfg, prior)
    route = route or provenance.route(provenance.read(loaded.path))  # lora, full, distilled or prompting
    return setting, keep_setting(store, setting, task, cfg.name, route)


def keep_setting(store, setting: dict, task: Task, name: str | None, route: str) -> str:
    """`setting`, the train split it picks demonstrations from (if any) and its name (`name`, else
    `<task>-<route>`) kept in `store`; returns the setting's id."""
    sid = store.add_setting(setting)
    if setting["demos"]:
        store.add_pool(demo_pool(task))
    store.name_setting(name or f"{task.info.name}-{route}", sid, route)
    return sid


def fill_store(store, loaded: LoadedModel, task: Task, cfg: BatchConfig, inputs: list[str], *,
               failed: list[dict] | None = None, from_misses: bool = False, engine: str = "local", actors: int = 2,
               progress=None) -> dict:
    """The batch job: `loaded`'s predictions for `inputs` (and, `from_misses`, the misses the server
    queued) into `store`, in `task`'s prompt format and label set, on the `local` engine or on Ray
    Data (`actors` model replicas). Returns the writer loop's counts with the setting and its name."""
    setting, sid = store_setting(store, loaded, task, cfg)
    if from_misses:
        inputs = list(dict.fromkeys(inputs + store.misses(sid)))
    if engine == "ray":
        from tuneforge.batch.ray_engine import run_batch_ray

        summary = run_batch_ray(setting, store, sid, inputs, pool=demo_pool(task), actors=actors,
                                batch_size=cfg.batch_size, commit_every=cfg.commit_every, failed=failed,
                                progress=progress)
    else:
        summary = run_batch(local_predictor(loaded, setting, cfg, demo_pool(task)), store, sid, inputs,
                            commit_every=cfg.commit_every, failed=failed, progress=progress)
    return {**summary, "setting": sid, "name": store.names()[sid]["name"]}


def local_predictor(loaded: LoadedModel, setting: dict, cfg: BatchConfig, pool: list[list[str]] | None = None):
    """The local engine's predictor for `setting`."""
    return SettingPredictor(loaded, setting, pool, cfg.batch_size)


def run_batch(predict, store, setting_id: str, inputs: list[str], *, commit_every: int = 64,
              failed: list[dict] | None = None, progress=None) -> dict:
    """The local engine: `predict` over chunks of `commit_every` inputs, through the one writer loop."""

    def chunks(todo: list[str]):
        for begin in range(0, len(todo), commit_every):
            yield predict(todo[begin : begin + commit_every])

    return write_predictions(chunks, store, setting_id, inputs, failed=failed, progress=progress)


def write_predictions(chunks, store, setting_id: str, inputs: list[str], *, failed: list[dict] | None = None,
                      progress=None) -> dict:
    """The one writer loop of every engine: predict what the store lacks and commit each chunk of rows
    `chunks(todo)` yields in one transaction, so a killed job loses at most the chunk in flight.
    `failed` rows (e.g. undecodable lines) are recorded as they are. Returns done/skipped/failed counts."""
    todo = store.missing(setting_id, inputs)
    counts = {"done": 0, "skipped": len({normalize_input(t) for t in inputs}) - len(todo), "failed": 0,
              "inputs": len(inputs)}
    if failed:
        counts["failed"] += store.put_many(setting_id, failed)
    start, written = time.perf_counter(), 0
    for rows in chunks(todo) if todo else ():  # nothing to compute: start no engine
        store.put_many(setting_id, rows)
        counts["failed"] += sum(r.get("error") is not None for r in rows)
        counts["done"] += sum(r.get("error") is None for r in rows)
        written += len(rows)
        if progress:
            progress(written, len(todo), time.perf_counter() - start)
    counts["seconds"] = time.perf_counter() - start
    return counts
