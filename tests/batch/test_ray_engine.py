import sys

import pytest

from tuneforge.batch.job import BatchConfig, run_batch
from tuneforge.predict.setting import SettingPredictor, build_setting, demo_pool
from tuneforge.batch.ray_engine import run_batch_ray
from tuneforge.data.splits import load_task
from tuneforge.errors import TuneforgeError
from tuneforge.store.sqlite import PredictionStore


def stored(store, sid):
    return sorted((r["input"], r["output"], r["error"]) for r in store.rows(sid))


def metas(store, sid) -> tuple[list, list]:
    """Each row's token counts and label log-probabilities, by input."""
    rows = sorted((r for r in store.rows(sid) if r["meta"]), key=lambda r: r["input"])
    counts = [(r["input"], r["meta"]["prompt_tokens"], r["meta"]["completion_tokens"]) for r in rows]
    return counts, [lp for r in rows for _, lp in r["meta"].get("logprobs", [])]


@pytest.mark.parametrize("task, cfg", [("fruit", BatchConfig(shots=1, pick="similar", max_input_tokens=128)),
                                       ("synonyms", BatchConfig(shots=1, max_new_tokens=8, max_input_tokens=128))])
def test_ray_fills_the_store_with_the_local_engines_rows_and_a_rerun_computes_nothing(tiny, tmp_path, task, cfg):
    data = load_task(task)
    setting = build_setting(tiny, data, cfg)
    texts = [ex.input for ex in data.test[:20]] + ["x " * 100, data.test[0].input]  # too long; a duplicate
    local, remote = PredictionStore(tmp_path / "local.db"), PredictionStore(tmp_path / "ray.db")
    sid = local.add_setting(setting)
    assert remote.add_setting(setting) == sid

    expected = run_batch(SettingPredictor(tiny, setting, demo_pool(data), batch_size=4), local, sid, texts,
                         commit_every=5)
    got = run_batch_ray(setting, remote, sid, texts, pool=demo_pool(data), actors=2, batch_size=4, commit_every=5)

    assert {k: got[k] for k in ("done", "skipped", "failed", "inputs")} == \
        {k: expected[k] for k in ("done", "skipped", "failed", "inputs")} == \
        {"done": 20, "skipped": 0, "failed": 1, "inputs": 22}
    assert stored(remote, sid) == stored(local, sid)
    (counts, logprobs), (local_counts, local_logprobs) = metas(remote, sid), metas(local, sid)
    assert counts == local_counts and len(counts) == 20
    assert logprobs == pytest.approx(local_logprobs, abs=1e-4)  # other batches: the last float digits move
    assert "more than 128" in remote.get(sid, "x " * 100)["error"]
    import ray

    assert not ray.is_initialized()  # started by the job, so shut down by it
    again = run_batch_ray(setting, remote, sid, texts + [texts[1]], commit_every=5)
    assert (again["done"], again["failed"], again["skipped"]) == (0, 0, 21)
    assert stored(remote, sid) == stored(local, sid)


def test_without_ray_the_engine_says_how_to_install_it(tiny, tmp_path, monkeypatch):
    setting = build_setting(tiny, load_task("fruit"), BatchConfig())
    store = PredictionStore(tmp_path / "p.db")
    sid = store.add_setting(setting)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(TuneforgeError, match=r"pip install 'ray\[data\]'"):
        run_batch_ray(setting, store, sid, ["lemon"])
    assert list(store.rows(sid)) == []


@pytest.mark.parametrize("cpus, actors, share", [(2, 2, 0.5), (2, 1, 1.0), (16, 2, 1.0), (16, 30, 0.5), (1, 4, 0.1)])
def test_actor_share_leaves_a_cpu_to_the_read_tasks(cpus, actors, share):
    from tuneforge.batch.ray_engine import actor_cpus

    assert actor_cpus(cpus, actors) == share
