"""Sections that account for what was done: parameter counts checked against each route's claim,
the prediction store the winner filled, and the stages with their time."""

from tuneforge import units
from tuneforge.store.sqlite import serve_command

from .document import Paragraph, Section, Table, not_run
from .facts import parameter_facts
from .results import nested


def parameter_counts(results: dict) -> Section:
    """Each route's parameter count against what its kind promises (see facts.py)."""
    facts = parameter_facts(results)
    if not facts:
        return Section("Parameter counts", [not_run("no route was evaluated")])
    rows = [[f["route"], f["claim"], f["expected"], units.exact(f["actual"]), units.mark(f["holds"])]
            for f in facts]
    failing = [f["route"] for f in facts if f["holds"] is False]
    verdict = f"Claims that fail: {', '.join(failing)}." if failing else "Every claim holds."
    table = Table(["Route", "Claim", "Expected", "Actual", "Holds"], rows)
    return Section("Parameter counts", [table, Paragraph(verdict)])


def store(results: dict) -> Section:
    """Where the recommended route's predictions went, and how many inputs they cover; then every
    job that wrote into the same store (e.g. synonym lists)."""
    found = results.get("store")
    if not found:
        return Section("Prediction store", [not_run("no prediction store was written")])
    rows = [
        ["Route", found.get("route") or units.MISSING],
        ["Model id (served as)", found.get("name") or units.MISSING],
        ["Path", found.get("path") or units.MISSING],
        ["Setting", found.get("setting") or units.MISSING],
        ["Inputs", units.exact(found.get("inputs"))],
        ["Rows written", units.exact(found.get("rows"))],
        ["Failed", units.exact(found.get("failed"))],
        ["Coverage", units.percent(found.get("coverage"))],
        ["Size", units.size(found.get("size_bytes"))],
    ]
    if found.get("path"):
        rows.append(["Serve it (OpenAI-compatible, 127.0.0.1:8000)",
                     serve_command(found["path"], found.get("name") or found.get("setting"))])
    blocks = [Table(["", "Value"], rows)]
    jobs = found.get("jobs") or []
    if len(jobs) > 1:
        job_rows = [[j.get("route") or units.MISSING, (j.get("setting") or units.MISSING)[:12],
                     units.exact(j.get("inputs")), units.exact(j.get("rows")), units.exact(j.get("failed")),
                     units.percent(j.get("coverage"))] for j in jobs]
        blocks.append(Table(["Job", "Setting", "Inputs", "Rows", "Failed", "Coverage"], job_rows,
                            "Every job in this store"))
    return Section("Prediction store", blocks)


def synonym_lists(results: dict) -> Section:
    """The synonym lists written offline: which model and recipe wrote them, the filter chosen on dev,
    how good they are on the test topics, and what live queries find through them."""
    found = results.get("synonyms")
    if not found:
        return Section("Synonym lists", [not_run("no synonym lists were written")])
    recipe, choice = found.get("recipe") or {}, found.get("choice") or {}
    kept = recipe.get("filter") or {}
    shots = (f"{recipe.get('shots')}-shot ({recipe.get('pick')})" if recipe.get("shots")
             else "0-shot, its trained prompt")
    dev = (choice.get("dev") or {}).get("list_f1")
    rows = [
        ["Written by", f"{nested(found, 'model', 'path') or units.MISSING} ("
                       + ("a LoRA list writer trained on the task's train topics)" if recipe.get("writer") == "lora"
                          else "the model as it is)")],
        ["Prompt", shots],
        ["Over-generation", f"the greedy list + {recipe.get('samples')} sampled at temperature "
                            f"{recipe.get('temperature')} (seed {recipe.get('seed')})"],
        ["Verification", recipe.get("verify") or units.MISSING],
        ["Kept", f"probability >= {kept.get('threshold')}, at most {kept.get('max_terms')} terms, "
                 f"{kept.get('words')} words"],
        ["Chosen on", f"{recipe.get('chosen_on')}: {units.score_ci(dev)}" if recipe.get("chosen_on")
         else "not chosen (no dev topics): the first setting of each"],
    ]
    blocks = [Table(["", "Value"], rows, "How the lists were made")]
    test = found.get("test")
    if test:
        blocks.append(Table(["Test topics", "List precision", "List recall", "List F1"],
                            [[units.exact(test.get("topics")), units.score_ci(test.get("list_precision")),
                              units.score_ci(test.get("list_recall")), units.score_ci(test.get("list_f1"))]],
                            "Against the reference lists of topics that never demonstrated and never chose"))
    live = found.get("live")
    if live:
        first = live["rows"][0]
        via = ", ".join(f"{topic} through \"{term}\"" for topic, term in first["terms"]) or "no topic"
        blocks.append(Paragraph(
            f"Live queries ({live['queries']}, matched as /v1/match matches them): topic precision "
            f"{units.score(live['precision'])}, recall {units.score(live['recall'])}. "
            f"\"{first['query']}\" finds {via} (expected: {', '.join(first['expected']) or 'none'})."))
    return Section("Synonym lists", blocks)


def stages(results: dict) -> Section:
    """Which stages ran and which came from the cache, and the experiment's wall time."""
    timing, provenance = Paragraph(_timing(results)), Paragraph(_provenance(results))
    found = results.get("stages") or []
    if not found:
        return Section("Stages", [timing, not_run("no stage was recorded"), provenance])
    rows = [[s.get("name") or units.MISSING, "cached" if s.get("cached") else "run",
             units.seconds(s.get("seconds")), units.size(s.get("peak_memory_bytes")),
             (s.get("hash") or units.MISSING)[:12]] for s in found]
    note = Paragraph("A cached stage was not re-run: its result came from an earlier run with the same "
                     "inputs.")
    table = Table(["Stage", "Cached or run", "Time", "Peak memory", "Key"], rows)
    return Section("Stages", [timing, table, note, provenance])


def _timing(results: dict) -> str:
    experiment = results.get("experiment") or {}
    started = experiment.get("started") or units.MISSING
    finished = experiment.get("finished") or units.MISSING
    return (f"Experiment {experiment.get('name') or 'unnamed'}: started {started}, finished {finished}, "
            f"wall time {units.seconds(experiment.get('wall_seconds'))}.")


def _provenance(results: dict) -> str:
    fingerprint = nested(results, "model", "fingerprint") or units.MISSING
    return (f"Base model fingerprint (sha256): {fingerprint}. "
            "The resolved configuration is in results.json beside this report.")
