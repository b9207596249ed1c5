"""The layers of DESIGN.md hold: `lint-imports` checks the contracts in pyproject.toml, and a
deliberately wrong import in a copy of the package makes it fail."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package under root/src, with root/pyproject.toml's contracts."""
    env = {"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([LINT, str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "7 kept" in proc.stdout, proc.stdout


def test_a_crossing_import_breaks_them(tmp_path):
    shutil.copytree(ROOT / "src" / "tuneforge", tmp_path / "src" / "tuneforge",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    store = tmp_path / "src" / "tuneforge" / "store" / "keys.py"
    store.write_text(store.read_text() + "\nfrom tuneforge.serve import app  # a store that knows the server\n")
    app = tmp_path / "src" / "tuneforge" / "serve" / "app.py"  # a live miss is predicted by predict/setting.py
    app.write_text(app.read_text() + "\nfrom tuneforge.batch import job  # the old way to a live predictor\n")
    lists = tmp_path / "src" / "tuneforge" / "batch" / "synonyms.py"  # the list writer trains before the job
    lists.write_text(lists.read_text() + "\nfrom tuneforge.adapt import list_writer  # a batch job that trains\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0 and "tuneforge.store is not allowed to import tuneforge.serve" in proc.stdout, \
        proc.stdout[-4000:]
    assert "tuneforge.serve is not allowed to import tuneforge.batch" in proc.stdout, proc.stdout[-4000:]
    assert "tuneforge.batch is not allowed to import tuneforge.adapt" in proc.stdout, proc.stdout[-4000:]


def test_only_the_provenance_module_names_a_models_record_file():
    """`model/provenance.py` is the one reader and writer of tuneforge.json: no other module spells
    the file's name in code (docstrings and help texts may mention it)."""
    import ast

    package = ROOT / "src" / "tuneforge"
    spelled = []
    for path in package.rglob("*.py"):
        if path == package / "model" / "provenance.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith("tuneforge.json"):
                spelled.append(f"{path.relative_to(package)}:{node.lineno}")
    assert spelled == []

