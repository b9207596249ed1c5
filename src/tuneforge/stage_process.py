"""The process of one experiment stage, `python -m tuneforge.stage_process DIR`, started by
`tuneforge run` for each stage. An entry point like the `tuneforge` command: it quiets the libraries
and draws the progress bars, then runs the stage (`experiment/stages.py`)."""

import sys
from pathlib import Path

from tuneforge.console import job_progress, training_progress
from tuneforge.experiment.stages import Progress, run_stage_dir
from tuneforge.logs import quiet_libraries


def main(stage_dir: str) -> int:
    quiet_libraries()
    with training_progress() as on_step, job_progress() as on_rows:
        return run_stage_dir(Path(stage_dir), Progress(step=on_step, rows=on_rows))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
