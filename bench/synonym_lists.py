"""Synonym-list quality: the lists the store used to hold against the over-generate-and-verify recipe,
with the base model few-shot and with a LoRA list writer fine-tuned on the train topics.

Every recipe writes lists for all 122 built-in topics (a topic is never its own demonstration; test
topics never demonstrate and never choose). Printed for each: the filter chosen on the 12 dev topics
(by list F1), list precision / recall / F1 with 95% CIs on the 37 test topics, the topic precision
and recall of the matcher over the built-in live queries (what /v1/match answers from those lists),
which list term matched "where can I get my covid jab", and seconds per topic. Targets: list
precision >= 0.6 and recall >= 0.4 on test topics; live-query recall >= 0.8 at precision >= 0.9.

    python bench/synonym_lists.py [--samples 10] [--writer-dir DIR]

The LoRA writer is trained as `writer: lora` trains it (`batch/synonyms.py`: lr 1e-3, up to 10
epochs, early stopping on dev list F1), into `--writer-dir` (reused when a finished one is there).
Seconds per topic count the lists alone (the writer's training is printed beside its name).
"""

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tuneforge.adapt.list_writer import list_writer
from tuneforge.batch.synonyms import (
    ListWriter, evaluate_lists, local_match, run_synonyms, score_lists, score_queries,
)
from tuneforge.data.inputs import builtin_queries_path, read_queries
from tuneforge.data.lists import split_list
from tuneforge.data.splits import load_task
from tuneforge.model.load import load_model
from tuneforge.predict.generate import generate_lines
from tuneforge.settings import SynonymsConfig
from tuneforge.store.sqlite import PredictionStore

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_line  # noqa: E402


def old_lists(loaded, task, topics: list[str]) -> dict[str, str]:
    """What the store held before this recipe: one greedy 3-shot line per topic (the first three
    train topics as demonstrations), cleaned into a list."""
    writer = ListWriter(loaded, task, SynonymsConfig(shots=3, pick="first"))
    lines = generate_lines(loaded.model, loaded.tokenizer, writer.prompts(topics), max_new_tokens=32, batch_size=16)
    return {topic: ", ".join(split_list(line, topic)) for topic, line in zip(topics, lines)}


def row(name: str, test: dict, live: dict, seconds: float, topics: int, choice: str) -> None:
    m = {k: test[k] for k in ("list_precision", "list_recall", "list_f1")}
    cells = "  ".join(f"{v['mean']:.3f} [{v['ci95'][0]:.2f},{v['ci95'][1]:.2f}]" for v in m.values())
    print(f"{name:<34}{cells}   {live['precision']:.3f} / {live['recall']:.3f}   {seconds / topics:6.2f}   {choice}")
    first = live["rows"][0]
    via = ", ".join(f"{t} via {s!r}" for t, s in first["terms"]) or "no topic"
    print(f"{'':<34}{first['query']!r} -> {via}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=SynonymsConfig.samples)
    ap.add_argument("--writer-dir", help="where the LoRA list writer is trained (or found trained)")
    args = ap.parse_args()
    print(cpu_line())
    task = load_task("synonyms")
    topics = [ex.input for ex in task.train + task.dev + task.test]
    queries = read_queries(builtin_queries_path())
    print(f"{len(topics)} topics (train {len(task.train)}, dev {len(task.dev)}, test {len(task.test)}); "
          f"{len(queries)} live queries")
    print(f"{'recipe':<34}{'test list precision':<22}{'recall':<22}{'F1':<20}live P / R      s/topic  filter (dev)")
    base = load_model(None)
    start = time.perf_counter()
    lists = old_lists(base, task, topics)
    terms = {t: split_list(v, t) for t, v in lists.items()}
    row("before: greedy 3-shot, no filter", score_lists(task, lists), score_queries(local_match(terms), queries, topics),
        time.perf_counter() - start, len(topics), "-")
    folder = Path(args.writer_dir or tempfile.mkdtemp(prefix="synonym-writer-"))
    for writer in ("few-shot", "lora"):
        cfg = replace(SynonymsConfig(), samples=args.samples, writer=writer)
        start = time.perf_counter()
        loaded = list_writer(None, task, cfg, folder)
        trained = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            db = PredictionStore(Path(tmp) / "store.sqlite")
            start = time.perf_counter()
            summary = run_synonyms(loaded, task, cfg, topics, db)
            seconds = time.perf_counter() - start
            scores = evaluate_lists(db, summary["setting"], task, queries)
            db.close()
        f = summary["choice"]["filter"]
        name = "few-shot (5 similar)" if writer == "few-shot" else f"LoRA writer ({trained:.0f} s to train)"
        row(f"{name} + {cfg.samples} samples, verified", scores["test"], scores["live"], seconds, len(topics),
            f"p >= {f['threshold']:g}, <= {f['max_terms']} terms, {f['words']} words "
            f"(dev F1 {summary['choice']['dev']['list_f1']['mean']:.3f})")
    print("targets: test list precision >= 0.6 and recall >= 0.4; live-query recall >= 0.8 at precision >= 0.9")


if __name__ == "__main__":
    main()
