"""What a finished run's folder gives back: its report, written again from results.json alone, and
the predictor of the setting its store serves (`tuneforge predict RUN_DIR`)."""

import json
from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.experiment.decide import CHEAPER, decide
from tuneforge.experiment.report import write_report


def read_results(run_dir: Path) -> dict:
    """The run's results.json; one line where there is none or it is not JSON."""
    try:
        return json.loads((run_dir / "results.json").read_text())
    except FileNotFoundError:
        raise TuneforgeError(f"{run_dir}: no results.json (not a finished `tuneforge run` directory)") from None
    except json.JSONDecodeError as e:
        raise TuneforgeError(f"{run_dir / 'results.json'}: not valid JSON ({e})") from None


def rewrite_report(run_dir: Path, margin: float | None = None) -> dict[str, str]:
    """report.html and report.md rewritten from results.json; with `margin`, the recommendation made
    again with it (results.json keeps the run's own). Returns the paths written."""
    results = read_results(run_dir)
    chosen = results.get("experiment", {}).get("config", {}).get("report", {})
    decision = decide(results, chosen.get("margin", 0.05) if margin is None else margin, chosen.get("cheaper", CHEAPER))
    if margin is None:  # the run's own decision stands; a run from before it was all kept gets the rest
        decision = {k: v for k, v in decision.items() if k not in results}
    return {k: str(v) for k, v in write_report({**results, **decision}, run_dir).items()}


def served_predictor(run_dir: Path, batch_size: int, device: str | None):
    """The predictor of the setting the run's store serves (its recommended route)."""
    from tuneforge.model.load import load_model
    from tuneforge.predict.setting import SettingPredictor, setting_pool
    from tuneforge.store.sqlite import PredictionStore

    served = read_results(run_dir).get("store")
    if not served:
        raise TuneforgeError(f"{run_dir}: this experiment has no prediction store (no batch section); predict "
                             f"with a route's model directory (e.g. {run_dir}/stages/lora/run) instead")
    db = PredictionStore(run_dir / Path(served["path"]).name, readonly=True)
    try:
        setting = db.settings()[served["setting"]]
        pool = setting_pool(db, setting)
    finally:
        db.close()
    loaded = load_model(setting["model"]["path"], dtype=setting["model"]["dtype"], device=device)
    return SettingPredictor(loaded, setting, pool, batch_size)
