"""The Ray Data engine for batch jobs: the same job as `run_batch`, spread over a pool of actors.

Each actor loads the setting's model once and predicts batches of inputs; the driver alone writes
the store (SQLite has one writer), in chunks of `commit_every` rows as results stream back. So a
job killed at any moment loses at most the chunk in flight and, run again, computes only the rest."""

import json
import os
from contextlib import contextmanager

import numpy as np
import torch

from tuneforge.batch.job import write_predictions
from tuneforge.predict.setting import predictor_for_setting
from tuneforge.errors import TuneforgeError
from tuneforge.store.keys import canonical_json

ROW_KEYS = ("input", "output", "error", "meta")


class _PredictBatches:
    """One actor: the setting's model, loaded once, mapped over numpy batches {"input": (B,)}."""

    def __init__(self, setting: dict, pool: list[list[str]] | None, batch_size: int):
        os.environ["OMP_NUM_THREADS"] = "1"  # one thread per actor (`load_model` keeps to it): `actors`
        torch.set_num_threads(1)  # actors share the machine's cores
        self.predict = predictor_for_setting(setting, pool, batch_size)

    def __call__(self, batch: dict) -> dict:
        rows = self.predict([str(text) for text in batch["input"]])
        for row in rows:  # meta travels as JSON text
            row["meta"] = canonical_json(row["meta"]) if row.get("meta") is not None else None
        # object arrays keep None as None (a row has an output or an error, never both)
        return {key: np.array([r.get(key) for r in rows], dtype=object) for key in ROW_KEYS}


def run_batch_ray(setting: dict, store, setting_id: str, inputs: list[str], *, pool: list[list[str]] | None = None,
                  actors: int = 2,
                  batch_size: int = 16, commit_every: int = 64, failed: list[dict] | None = None,
                  progress=None) -> dict:
    """Predict the inputs the store lacks on `actors` Ray actors (one model each); the driver writes
    through the same loop as the local engine (`write_predictions`), committing every `commit_every` rows."""
    if min(actors, batch_size, commit_every) < 1:
        raise TuneforgeError("actors, batch size and commit size must be >= 1")

    def chunks(todo: list[str]):
        with _ray_session() as ray:
            ds = ray.data.from_items([{"input": text} for text in todo]).map_batches(
                _PredictBatches, fn_constructor_args=(setting, pool if setting.get("demos") else None, batch_size), batch_size=batch_size,
                batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=actor_cpus(int(ray.cluster_resources().get("CPU", 1)), actors))
            yield from _chunks(ds.iter_rows(), commit_every)

    return write_predictions(chunks, store, setting_id, inputs, failed=failed, progress=progress)


def actor_cpus(cpus: int, actors: int) -> float:
    """Each actor's share of the machine: one CPU is left to Ray's read tasks (at 1 CPU each, two
    actors on a 2-core machine starve them and the job hangs), the rest split among the actors."""
    return max(0.1, min(1.0, (cpus - 1) / actors))


def _chunks(results, size: int):
    """Lists of at most `size` rows {"input", "output", "error", "meta"} from Ray's rows, in arrival order."""
    chunk = []
    for row in results:
        chunk.append({key: None if row[key] is None else str(row[key]) for key in ROW_KEYS})
        chunk[-1]["meta"] = json.loads(chunk[-1]["meta"]) if chunk[-1]["meta"] is not None else None
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def _ray_session():
    """Ray, started here with this machine's CPUs unless the caller already started it (then kept)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise TuneforgeError("--engine ray needs Ray: pip install 'ray[data]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
