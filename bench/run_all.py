"""Run every benchmark in bench/, one after another, each in its own process."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
failed = 0
for script in sorted(here.glob("*.py")):
    if script.name == Path(__file__).name or script.name.startswith("_"):  # _machine.py is a helper
        continue
    print(f"== {script.name}", flush=True)
    failed += subprocess.run([sys.executable, str(script)]).returncode != 0
sys.exit(1 if failed else 0)
