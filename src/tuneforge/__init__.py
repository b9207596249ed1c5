"""tuneforge: turn a foundation LLM into a task model by prompting, fine-tuning or distillation,
compare the routes side by side, and serve the winner from precomputed predictions.

    import tuneforge
    results = tuneforge.prompt("fruit", config=tuneforge.PromptingConfig(shots=(0, 1, 5)))
    support = tuneforge.TaskSource("support.csv", input_field="message", target_field="category")
    tuneforge.finetune(support, out="runs/support")
    tuneforge.predict("runs/support", ["my card was charged twice"])

The names below load on first use (so `tuneforge --help` does not wait for torch); `dir(tuneforge)`
and `help(tuneforge)` list them all.
"""

import importlib

__version__ = "0.1.0"

# Imported on first use, so `tuneforge --help` does not wait for torch.
_API = {
    "prompt": "tuneforge.api",
    "model_info": "tuneforge.api",
    "tasks": "tuneforge.api",
    "finetune": "tuneforge.api",
    "batch": "tuneforge.api",
    "distill": "tuneforge.api",
    "predict": "tuneforge.api",
    "audit": "tuneforge.api",
    "run": "tuneforge.api",
    "report": "tuneforge.api",
    "ExperimentConfig": "tuneforge.experiment.sections",
    "AuditConfig": "tuneforge.audit.run",
    "DistillConfig": "tuneforge.adapt.distill",
    "BatchConfig": "tuneforge.batch.job",
    "FinetuneConfig": "tuneforge.adapt.finetune",
    "PromptingConfig": "tuneforge.evaluate.prompting",
    "load_task": "tuneforge.data.splits",
    "TaskSource": "tuneforge.data.source",
    "read_examples": "tuneforge.data.tasks",
    "Fields": "tuneforge.data.tasks",
    "load_model": "tuneforge.model.load",
    "count_parameters": "tuneforge.model.params",
    "export_gguf": "tuneforge.model.gguf_export",
}
__all__ = list(_API)


def __dir__():
    return sorted({*globals(), *_API})


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'tuneforge' has no attribute {name!r}")
