"""Results as terminal tables (rich)."""

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tuneforge.store.sqlite import serve_command


def render_prompting(results: dict, console: Console | None = None) -> None:
    """The prompting comparison: a row per condition with its dev and test scores (CIs), the dev-chosen
    condition marked, the parameter check, the chosen condition's confusion table."""
    console = console or Console(width=max(Console().width, 160))  # eleven columns, none wrapped
    metric, task, on = results["metric"], results["task"], results["chosen_on"]
    sizes = task["sizes"]
    table = Table(title=f"prompting · task {task['name']} · chosen on {on} ({sizes[on]} examples), "
                        f"test {sizes['test']} examples",
                  caption=f"{metric}: mean ± sd over demonstration draws, 95% bootstrap CI over examples; "
                          f"* = the condition chosen on {on}, the only one scored on test unless --score-all")
    for col in ("", "format", "shots", "pick", "calibration", "scoring", "draws", f"dev {metric}",
                f"train-CV {metric}", f"test {metric}", "test 95% CI", "ms/example"):
        table.add_column(col, justify="left" if col in ("format", "pick", "calibration", "scoring") else "right")
    for c in results["conditions"]:
        dev, cv, test = (c[s][metric] if c.get(s) else None for s in ("dev", "cv", "test"))
        table.add_row("*" if c["chosen"] else "", c["style"], str(c["shots"]), c["pick"] or "-", c["calibration"],
                      c["scoring"], str(c["draws"]), _mean_sd(dev, c["draws"]), _mean_sd(cv, c["draws"]),
                      _mean_sd(test, c["draws"]), f"[{test['ci95'][0]:.3f}, {test['ci95'][1]:.3f}]" if test else "-",
                      f"{c['ms_per_example']:.1f}")
    console.print(table)
    if results.get("choice"):
        console.print(choice_line(results))
    console.print(f"dev split: {task['dev_origin']}")
    if task.get("instruction"):
        console.print(f"instruction: {task['instruction']!r}")
    p = results["parameters"]
    verdict = "unchanged" if p["unchanged"] else "CHANGED"
    console.print(f"parameters: {p['before']['total']:,} before, {p['after']['total']:,} after; weights fingerprint "
                  f"{p['weights_fingerprint_before'][:12]} -> {p['weights_fingerprint_after'][:12]} ({verdict})")
    chosen = next(c for c in results["conditions"] if c["chosen"])
    if task["kind"] == "labels":
        title = (f"confusion on test · chosen: {chosen['style']} {chosen['shots']}-shot {chosen['pick'] or ''} "
                 f"{chosen['calibration']} {chosen['scoring']}, first draw")
        console.print(_confusion_table(chosen["test"]["confusion"], title))


def choice_line(results: dict) -> str:
    """What the prompting choice rested on, and whether a simpler condition was kept for a tie."""
    choice, conditions = results["choice"], results["conditions"]
    chosen = conditions[choice["chosen"]]
    cv = f"{choice['cv_items']} train items by cross-validation"
    split = f"{choice['split_items']} {results['chosen_on']} items"
    on = chosen["selection"].get("on", "cv+dev")
    where = {"cv": f"{cv} (dev chose nothing)", "cv+dev": f"{split} + {cv}", "dev": split}[on]
    line = (f"chosen on {where}: {chosen['selection']['predictions']} predictions, mean "
            f"{chosen['selection']['mean']:.3f}")
    if len(choice["tied"]) > 1:
        line += (f"; {len(choice['tied'])} conditions tie with the best within one standard error, the simplest "
                 f"kept ({chosen['shots']}-shot {chosen['pick'] or ''} {chosen['calibration']} {chosen['scoring']})")
    return line


def _mean_sd(m: dict | None, draws: int) -> str:
    if m is None:
        return "-"
    return f"{m['mean']:.3f} ± {m['sd']:.3f}" if draws > 1 else f"{m['mean']:.3f}"


def _confusion_table(conf: dict, title: str) -> Table:
    predicted = sorted({p for row in conf.values() for p in row} | set(conf))
    table = Table(title=title)
    table.add_column("gold \\ predicted")
    for p in predicted:
        table.add_column(p[:6], justify="right")
    for gold, row in conf.items():
        table.add_row(gold, *[str(row.get(p, "")) for p in predicted])
    return table


@contextmanager
def _lazy_bar(label: str):
    """A rich progress bar on stderr that appears with the first update, so a run refused at the
    start prints only its error. Yields update(completed, total, info)."""
    columns = [TextColumn(label + " {task.completed}/{task.total}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    bar = Progress(*columns, console=Console(stderr=True))
    state = {"task": None}

    def update(completed, total, info):
        if state["task"] is None:
            bar.start()
            state["task"] = bar.add_task(label, total=total, info="")
        bar.update(state["task"], completed=completed, total=total, info=info)

    try:
        yield update
    finally:
        if state["task"] is not None:
            bar.stop()


@contextmanager
def training_progress(main_process: bool = True):
    """The training loop's progress callback: loss, dev score, throughput and ETA. Under a launcher
    every process trains; only the main one draws (the others get None)."""
    if not main_process:
        yield None
        return
    tokens = [0]
    with _lazy_bar("step") as update:

        def on_step(step, total, record, elapsed):
            tokens[0] += record["tokens"]
            dev = f" dev {record['dev_score']:.3f}" if "dev_score" in record else ""
            update(step, total, f"loss {record['loss']:.3f}{dev} · {tokens[0] / max(elapsed, 1e-9):,.0f} tok/s")

        yield on_step


@contextmanager
def job_progress():
    """A batch job's progress callback: rows done, rate and ETA."""
    with _lazy_bar("rows") as update:
        yield lambda done, total, elapsed: update(done, total, f"{done / max(elapsed, 1e-9):,.1f} rows/s")


def render_finetune(results: dict, console: Console | None = None) -> None:
    """What a fine-tuning run produced: test metric with CI, parameter accounting, best dev step."""
    console = console or Console(width=max(Console().width, 120))
    metric, p = results["metric"], results["parameters"]
    m = results["test"][metric]
    table = Table(title=f"fine-tuning · {results['method']} · task {results['task']['name']} · test split "
                        f"({results['task']['sizes']['test']} examples)")
    for col in ("method", metric, "95% CI", "parameters", "trainable", "% of base", "after merge/save",
                "best dev", "steps"):
        table.add_column(col, justify="left" if col == "method" else "right")
    after = p.get("after_merge", p.get("after"))
    table.add_row(results["method"], f"{m['mean']:.3f}", f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]",
                  f"{p['base']:,}", f"{p['trainable']:,}", f"{p['trainable_pct_of_base']:.2f}%",
                  f"{after:,}" if after is not None else "-",
                  f"{results['best_dev_score']:.3f} @ {results['best_step']}" if results["best_step"] else "-",
                  str(results["steps"]))
    console.print(table)
    trials = results.get("trials") or []
    if len(trials) > 1:
        console.print("learning rates tried on dev: " + ", ".join(
            f"{t['lr']:g} -> " + ("skipped (budget)" if not t["steps"] else f"{_num(t['dev_score'])} in {t['steps']} "
                                  f"steps{' (stopped early)' if t['stopped_early'] else ''}")
            + (" *chosen*" if t["chosen"] else "") for t in trials))


def render_distill(results: dict, console: Console | None = None) -> None:
    """Teacher and student side by side: parameters, size, test metric with CI, latency."""
    console = console or Console(width=max(Console().width, 120))
    metric, p = results["metric"], results["parameters"]
    table = Table(title=f"distillation · kd {results['kd']} · task {results['task']['name']} · test split "
                        f"({results['task']['sizes']['test']} examples)")
    for col in ("model", "parameters", "non-embedding", "size on disk", metric, "95% CI", "ms/example"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in ("teacher", "student"):
        m, c = results[f"{name}_test"][metric], p[name]
        table.add_row(name, f"{c['total']:,}", f"{c['non_embedding']:,}", f"{c.get('size_on_disk_bytes', 0) / 1e6:,.1f} MB",
                      f"{m['mean']:.3f}", f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]",
                      f"{results[f'{name}_ms_per_example']:.1f}")
    console.print(table)
    console.print(f"student/teacher: {p['student']['total'] / p['teacher']['total']:.1%} of the parameters, "
                  f"{results['accuracy_retained']:.1%} of the {metric}, {results['speedup']:.2f}x faster "
                  f"(measured side by side in this run)")
    pool = results.get("pool")
    if pool:
        sources = ", ".join(f"{n:,} {source}" for source, n in pool["sources"].items())
        console.print(f"pool: {pool['size']:,} inputs ({sources}); teacher labelled {pool['teacher_labelled_now']:,} "
                      f"now, {pool['teacher_cached']:,} read from its cache")
    for trial in results.get("trials", []):
        mark = "  <- chosen on dev" if trial["chosen"] else ""
        dev = "–" if trial["dev_score"] is None else f"{trial['dev_score']:.3f}"
        console.print(f"student {trial['choice']}: layers {trial['layers']}, dev {metric} {dev}{mark}")


def render_synonyms(summary: dict) -> None:
    """What a synonym-list job wrote, how its filter was chosen, and how good the lists are (plain
    lines, never wrapped)."""
    print(f"done {summary['done']} · skipped {summary['skipped']} (already stored) · failed {summary['failed']} · "
          f"{summary['seconds']:.1f} s · model {summary['name']} (setting {summary['setting'][:12]}) · store "
          f"{summary['store']}")
    for line in synonym_lines(summary):
        print(line)


def synonym_lines(summary: dict) -> list[str]:
    """The recipe, the choice on dev, the test topics' list scores and the live queries' topic scores."""
    r, choice = summary["recipe"], summary["choice"]
    f = r["filter"]
    shots = f"{r['shots']}-shot ({r['pick']})" if r["shots"] else "0-shot (its trained prompt)"
    lines = [f"writer: {summary['model']['path']} · {shots} · greedy + {r['samples']} sampled lists at temperature "
             f"{r['temperature']:g} · kept: probability >= {f['threshold']:g}, at most {f['max_terms']} terms, "
             f"{f['words']} words" + (f" (chosen on {r['chosen_on']} {choice['dev']['list_f1']['mean']:.3f})"
                                      if choice["dev"] else " (no dev topics: the first setting of each)")]
    for name, scores in (("dev", choice["dev"]), ("test", summary.get("test"))):
        if scores:
            lines.append(f"{name} topics: " + " · ".join(
                f"{metric.removeprefix('list_')} {scores[metric]['mean']:.3f} [{scores[metric]['ci95'][0]:.3f}, "
                f"{scores[metric]['ci95'][1]:.3f}]" for metric in ("list_precision", "list_recall", "list_f1")))
    live = summary.get("live")
    if live:
        lines.append(f"live queries ({live['queries']}): topic precision {live['precision']:.3f} · recall "
                     f"{live['recall']:.3f}")
        first = live["rows"][0]
        via = ", ".join(f"{topic} via \"{term}\"" for topic, term in first["terms"]) or "no topic matched"
        lines.append(f"\"{first['query']}\" -> {via} (expected: {', '.join(first['expected']) or 'none'})")
    return lines


def render_audit(results: dict, console: Console | None = None) -> None:
    """The audit side by side: a row per route with per-group scores, the gap and the flip rate;
    then the flips per direction of swap."""
    console = console or Console(width=max(Console().width, 120))
    for line in results.get("skipped", []):
        console.print(f"audit: {line}")
    if not results["routes"]:
        return
    groups = sorted({g for r in results["routes"] for g in r["groups"]})
    table = Table(title=f"bias audit · task {results['task']['name']} · {results['split']} split · "
                        f"swaps: {results['attribute']}",
                  caption="per-group 95% bootstrap CI; p = permutation test of the largest gap; "
                          "flip rate = predictions changed by the swap")
    for col in ("route", results["metric"], *groups, "gap", "p", "swapped", "flip rate"):
        table.add_column(col, justify="left" if col == "route" else "right")
    for r in results["routes"]:
        cells = [f"{r['groups'][g]['mean']:.3f} [{r['groups'][g]['ci95'][0]:.2f}, {r['groups'][g]['ci95'][1]:.2f}]"
                 f" n={r['groups'][g]['n']}" if g in r["groups"] else "-" for g in groups]
        table.add_row(r["name"], _num(r["score"]), *cells, _num(r["gap"]), _num(r["p_value"]),
                      str(r["swapped_inputs"]), _num(r["flip_rate"]))
    console.print(table)
    flips = Table(title="flips per direction of swap")
    for col in ("route", "direction", "inputs", "flips", "flip rate", "label shift (TV)", "before -> after"):
        flips.add_column(col, justify="left" if col in ("route", "direction", "before -> after") else "right")
    for r in results["routes"]:
        for d in r["directions"]:
            flips.add_row(r["name"], d["direction"], str(d["n"]), str(d["flips"]), f"{d['flip_rate']:.3f}",
                          _num(d["label_shift"]), f"{_counts(d['before'])} -> {_counts(d['after'])}")
    console.print(flips)


def _counts(counts: dict) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_experiment(results: dict, console: Console | None = None) -> None:
    """The experiment's summary table, the recommendation and what each stage cost."""
    from tuneforge import units

    console = console or Console(width=max(Console().width, 185))  # thirteen columns, route names unwrapped
    task, metric = results["task"], results["metric"]
    table = Table(title=f"experiment {results['experiment']['name']} · task {task['name']} · dev "
                        f"{task['sizes']['dev']} / test {task['sizes']['test']} examples",
                  caption=f"{metric} with 95% bootstrap CI; * = a route's chosen setting (chosen on dev); "
                          f"prompting conditions not chosen have no test score")
    for col in ("", "route", f"dev {metric}", f"test {metric}", "test 95% CI", "params total", "trained", "size",
                "compute/example", "ms/example", "ex/s", "training", "peak memory"):
        table.add_column(col, justify="left" if col == "route" else "right")
    for r in results["routes"]:
        s, p = r["score"], r["parameters"]
        table.add_row("*" if r.get("chosen") is not False else "", r["name"], _mean_sd(r.get("dev_score"), r["draws"]),
                      _mean_sd(s, r["draws"]), f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]" if s else "-",
                      units.count(p["total"]), units.count(p["trained"]), units.size(r["size_on_disk_bytes"]),
                      units.flops(r.get("flops_per_example")), units.milliseconds(r["ms_per_example"]), units.rate(r["examples_per_second"]),
                      units.seconds(r["training_seconds"]), units.size(r["peak_memory_bytes"]))
    console.print(table)
    rec = results["recommendation"]
    console.print(f"dev split: {task.get('dev_origin', '-')}")
    console.print(f"recommended: {rec['route']} — {rec['reason']}")
    if rec.get("small_dev"):
        small = rec["small_dev"]
        console.print(f"warning: dev has only {small['items']} items; a difference under about {small['resolves']:.2f} "
                      f"between two routes' dev scores can be noise")
    if results.get("store"):
        st = results["store"]
        console.print(f"store: {st['path']} · {st['route']} as model {st.get('name') or st['setting'][:12]} · "
                      f"{st['rows']}/{st['inputs']} inputs ({st['coverage']:.0%}) · {units.size(st['size_bytes'])}")
        console.print(f"serve it: {serve_command(st['path'], st.get('name') or st['setting'])}", highlight=False)
    if results.get("synonyms"):
        for line in synonym_lines(results["synonyms"]):
            console.print(f"synonym lists: {line}", markup=False, highlight=False)
    stages = ", ".join(f"{s['name']} " + ("cached" if s["cached"] else f"{s['seconds']:.0f} s")
                       for s in results["stages"])
    console.print(f"stages: {stages} · wall {results['experiment']['wall_seconds']:.0f} s")
    for line in (results.get("audit") or {}).get("skipped", []):
        console.print(f"audit: {line}")
