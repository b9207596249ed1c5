"""The package's face: `dir(tuneforge)` and `help(tuneforge)` show the public API, every name in it
resolves, and neither `import tuneforge` nor any `--help` imports torch (so they answer at once)."""

import json
import subprocess
import sys

import tuneforge

PROBE = """
import json, sys, pydoc
import tuneforge
names = [n for n in dir(tuneforge) if not n.startswith("_")]
before = "torch" in sys.modules
text = pydoc.render_doc(tuneforge, renderer=pydoc.plaintext)
print(json.dumps({"names": names, "torch_before_help": before, "help": text}))
"""


def test_dir_and_help_show_the_api_without_importing_torch_first():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    probe = json.loads(done.stdout)
    assert probe["torch_before_help"] is False
    assert {"prompt", "finetune", "distill", "predict", "batch", "audit", "run", "report", "load_task",
            "Fields", "export_gguf"} <= set(probe["names"])
    for name in ("predict(", "finetune(", "load_task(", "class Fields"):
        assert name in probe["help"]


def test_every_public_name_resolves():
    for name in tuneforge.__all__:
        assert getattr(tuneforge, name) is not None


def test_help_of_every_subcommand_imports_no_torch():
    from tuneforge.cli import build_parser

    commands = list(build_parser()._subparsers._group_actions[0].choices)
    script = ("import sys, contextlib, io\nfrom tuneforge.cli import main\n"
              f"for c in {commands!r}:\n"
              "    with contextlib.redirect_stdout(io.StringIO()):\n"
              "        try: main([c, '--help'])\n"
              "        except SystemExit: pass\n"
              "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr
    assert {"predict", "export", "cache", "prompt", "finetune"} <= set(commands)
