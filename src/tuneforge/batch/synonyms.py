"""Synonym lists worth serving: the offline job that writes them, and how good they are.

A small model's greedy list is short and noisy ("car -> carrer, carr"). Offline, a slower recipe is
affordable, since each list is computed once:

1. **Over-generation**: each topic's greedy list plus `samples` lists sampled at `temperature`
   (seeded by the job's seed and the topic, so a resumed job draws the same lines).
2. **Verification**: every distinct term written is scored by the same model in a fixed frame, the
   topic's own prompt: the probability that it writes that term first (" term,") after the topic.
3. **The filter chosen on dev**: terms at or above a probability threshold, at most `max_terms` of
   them, the likeliest first, optionally only those made of whole words of the tokenizer's
   vocabulary. Which threshold, length and filter is chosen on the task's dev topics by list F1;
   test topics are never demonstrations and never choose.

The writer may be any model: the base model few-shot (demonstrations from the task's train topics),
a bigger local model than the one that serves, or a list writer fine-tuned on the train topics (a
tuneforge artifact, trained beforehand by `adapt/list_writer.py`: prompted as it was trained,
zero-shot). The store records which model and recipe
produced the lists. `score_queries` measures what a user sees: topics found in live queries.
"""

import math
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, replace

import torch

from tuneforge.data.lists import split_list, term_key, words
from tuneforge.data.splits import Task
from tuneforge.data.tasks import Example
from tuneforge.evaluate.metrics import METRICS, summarize
from tuneforge.model import provenance
from tuneforge.model.load import LoadedModel
from tuneforge.predict.generate import generate_lines
from tuneforge.predict.predictor import Predictor
from tuneforge.predict.score import score_continuations
from tuneforge.prompts.formats import PromptFormat
from tuneforge.prompts.shots import pick_demos
from tuneforge.settings import SynonymsConfig
from tuneforge.store.synonyms import SynonymMatcher

CANDIDATES_KEPT = 24
"""Most scored candidates recorded in a row's meta (the likeliest), beside the list kept."""


@dataclass(frozen=True)
class Candidate:
    """A term the writer wrote for a topic."""

    term: str
    probability: float
    """The model's probability of writing `term,` first after the topic, in the topic's prompt."""
    votes: int
    """In how many of the topic's lines (greedy and sampled) it appears."""
    known: bool
    """Every word of it is a whole word of the tokenizer's vocabulary (or a number)."""


@dataclass(frozen=True)
class ListFilter:
    """Which candidates a list keeps."""

    threshold: float
    max_terms: int
    words: str

    def keep(self, candidates: list[Candidate]) -> list[str]:
        """The kept terms, likeliest first (`candidates` come ordered so)."""
        kept = [c.term for c in candidates
                if c.probability >= self.threshold and (self.words == "any" or c.known)]
        return kept[: self.max_terms]


def vocabulary_words(tokenizer) -> set[str]:
    """Lower-case words the tokenizer holds as one word-initial token (GPT-2's `Ġ`, SentencePiece's
    `▁`). Empty for a vocabulary with neither mark: the `known` filter then keeps every term."""
    return {token[1:].lower() for token in tokenizer.get_vocab() if token[:1] in ("Ġ", "▁") and token[1:].isalpha()}


def topic_seed(seed: int, topic: str) -> int:
    """The first sampling seed of one topic's lists (its draws take this and the next ones): the
    job's seed and the topic, nothing else."""
    return zlib.crc32(f"{seed}\0{topic}".encode()) * 1000


class ListWriter:
    """Writes scored candidate terms for topics with one model (see the module's note)."""

    def __init__(self, loaded: LoadedModel, task: Task, cfg: SynonymsConfig):
        prompt = provenance.prompt(provenance.read(loaded.path))
        if prompt is not None:  # a list writer tuneforge trained: its own prompt, zero-shot
            fmt, self.shots = PromptFormat(prompt["format"], prompt["instruction"]), 0
        else:
            fmt, self.shots = PromptFormat(cfg.format, task.info.instruction), cfg.shots
        self.loaded, self.task, self.cfg, self.fmt = loaded, task, cfg, fmt
        self.predictor = Predictor(loaded, fmt, None, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens)
        self.vocabulary = vocabulary_words(loaded.tokenizer)

    def prompts(self, topics: list[str]) -> list[list[int]]:
        """Each topic's prompt: the instruction, its demonstrations from train (never itself), the topic."""
        items = [Example(topic, "", "\0") for topic in topics]
        demos = [pick_demos(self.task.train, ex, self.shots, self.cfg.pick, self.cfg.seed, labelled=False)
                 for ex in items]
        return self.predictor.encode(items, demos)

    def candidates(self, topics: list[str]) -> tuple[list[str], list[list[Candidate]]]:
        """Each topic's greedy line, and its candidates, likeliest first."""
        model, tok, cfg = self.loaded.model, self.loaded.tokenizer, self.cfg
        prompts, n = self.prompts(topics), cfg.samples
        greedy = generate_lines(model, tok, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
        seeds = [topic_seed(cfg.seed, topic) + draw for topic in topics for draw in range(n)]
        sampled = generate_lines(model, tok, [p for p in prompts for _ in range(n)], max_new_tokens=cfg.max_new_tokens,
                                 batch_size=cfg.batch_size, seeds=seeds, temperature=cfg.temperature)
        found = []
        for i, (topic, prompt, line) in enumerate(zip(topics, prompts, greedy)):
            lines = [line, *sampled[i * n : (i + 1) * n]]
            votes, spelling = Counter(), {}  # by term key: its count, its first spelling
            for text in lines:
                for term in split_list(text, topic):
                    key = term_key(term)
                    votes[key] += 1
                    spelling.setdefault(key, term)
            found.append(self._scored(prompt, list(spelling.values()), [votes[key] for key in spelling]))
        return greedy, found

    @torch.inference_mode()
    def _scored(self, prompt: list[int], terms: list[str], votes: list[int]) -> list[Candidate]:
        if not terms:
            return []
        tok = self.loaded.tokenizer
        continuations = [tok(f" {term},", add_special_tokens=False).input_ids for term in terms]
        logp = score_continuations(self.loaded.model, [prompt], continuations, pad_id=tok.pad_token_id,
                                   batch_size=1)[0].tolist()
        found = [Candidate(term, math.exp(lp), n, all(w.isdigit() or w in self.vocabulary for w, _, _ in words(term))
                           or not self.vocabulary)
                 for term, lp, n in zip(terms, logp, votes)]
        return sorted(found, key=lambda c: -c.probability)

    def choose(self) -> dict:
        """The filter with the best list F1 on the task's dev topics (the first of equals, in the order
        the settings list them), with every filter's dev scores; the settings' first values where the
        task has no dev topics."""
        cfg, dev = self.cfg, self.task.dev
        grid = [ListFilter(t, m, w) for t in cfg.thresholds for m in cfg.max_terms for w in cfg.words]
        if not dev:
            return {"filter": asdict(grid[0]), "chosen_on": None, "dev": None, "tried": []}
        _, found = self.candidates([ex.input for ex in dev])
        gold = [ex.target for ex in dev]
        answers = [[", ".join(f.keep(c)) for c in found] for f in grid]
        tried = [{**asdict(f), **{name: fn(gold, a) for name, fn in METRICS["list"].items()}}
                 for f, a in zip(grid, answers)]
        best = max(range(len(grid)), key=lambda i: tried[i]["list_f1"])  # max keeps the first of equals
        return {"filter": asdict(grid[best]), "chosen_on": f"dev ({len(dev)} topics), list F1",
                "dev": summarize(gold, [answers[best]], "list"), "tried": tried}

    def rows(self, topics: list[str], keep: ListFilter) -> list[dict]:
        """Store rows: each topic's kept list, its greedy line and scored candidates in meta."""
        greedy, found = self.candidates(topics)
        return [{"input": topic, "output": ", ".join(keep.keep(cands)),
                 "meta": {"raw": line, "candidates": [[c.term, float(f"{c.probability:.4g}"), c.votes, c.known]
                                                      for c in cands[:CANDIDATES_KEPT]]}}
                for topic, line, cands in zip(topics, greedy, found)]


def recipe(writer: ListWriter, choice: dict) -> dict:
    """What a stored setting records of how its lists were made."""
    cfg = writer.cfg
    trained = provenance.route(provenance.read(writer.loaded.path)) in ("lora", "full")
    return {"writer": "lora" if trained else "few-shot",
            "shots": writer.shots, "pick": cfg.pick if writer.shots else None, "samples": cfg.samples,
            "temperature": cfg.temperature, "seed": cfg.seed, "verify": "probability of `term,` first after the topic",
            "filter": choice["filter"], "chosen_on": choice["chosen_on"]}


def score_queries(match, queries: list[dict], topics: list[str]) -> dict:
    """Topic precision and recall of `match` (text -> the /v1/match answer: {"topics", "matches"}) over
    live `queries`, counted over (query, topic) pairs; a query's expected topics outside `topics` (no
    list was written for them) are left out. Each query's result is kept, with the terms that matched."""
    known = set(topics)
    hits = found = expected = 0
    rows = []
    for q in queries:
        answer = match(q["query"])
        got, want = set(answer["topics"]), set(q["topics"]) & known
        hits, found, expected = hits + len(got & want), found + len(got), expected + len(want)
        rows.append({"id": q["id"], "query": q["query"], "expected": sorted(want), "found": answer["topics"],
                     "terms": [[m["topic"], m["synonym"]] for m in answer["matches"]]})
    return {"queries": len(queries), "precision": hits / found if found else 1.0,
            "recall": hits / expected if expected else 1.0, "rows": rows}


def local_match(lists: dict[str, list[str]]):
    """/v1/match's answer, computed here over `lists` (topic -> terms) by the server's own matcher."""
    return SynonymMatcher(lists).find


def score_lists(task: Task, lists: dict[str, str]) -> dict | None:
    """List precision, recall and F1 of the stored lists of the task's test topics (None if none is stored)."""
    test = [ex for ex in task.test if ex.input in lists]
    if not test:
        return None
    return {**summarize([ex.target for ex in test], [[lists[ex.input] for ex in test]], "list"), "topics": len(test)}


def run_synonyms(loaded: LoadedModel, task: Task, cfg: SynonymsConfig, topics: list[str], store, *,
                 progress=None) -> dict:
    """The synonym-list job: choose the filter on dev, then write every topic's list into `store`
    (through the one writer loop: a re-run or a resumed kill computes only what the store lacks).
    Returns the writer loop's counts with the setting, its name, the choice and the recipe."""
    from tuneforge.batch.job import keep_setting, run_batch
    from tuneforge.predict.setting import build_setting

    writer = ListWriter(loaded, task, cfg)
    choice = writer.choose()
    keep = ListFilter(**choice["filter"])
    setting = {**build_setting(loaded, task, replace(cfg, shots=writer.shots)), "format": writer.fmt.style,
               "instruction": writer.fmt.instruction, "postprocess": "synonym_lists", "recipe": recipe(writer, choice)}
    sid = keep_setting(store, setting, task, cfg.name, "synonyms")
    counts = run_batch(lambda todo: writer.rows(todo, keep), store, sid, topics, commit_every=cfg.commit_every,
                       progress=progress)
    return {**counts, "setting": sid, "name": store.names()[sid]["name"], "choice": choice,
            "recipe": setting["recipe"], "model": {"path": str(loaded.path), "fingerprint": loaded.fingerprint}}


def stored_lists(store, sid: str) -> dict[str, str]:
    """topic -> its stored list ("a, b"), for every stored row of setting `sid` that did not fail."""
    return {row["input"]: row["output"] or "" for row in store.rows(sid) if row["error"] is None}


def evaluate_lists(store, sid: str, task: Task, queries: list[dict] | None) -> dict:
    """How good setting `sid`'s stored lists are: list scores of `task`'s test topics among them
    (`test`), and, with `queries`, topic precision and recall over those live queries (`live`),
    matched as /v1/match matches them."""
    lists = stored_lists(store, sid)
    live = None
    if queries:
        live = score_queries(local_match({t: split_list(v, t) for t, v in lists.items()}), queries, list(lists))
    return {"test": score_lists(task, lists), "live": live}
