"""The model that writes synonym lists: the base model as it is, or a LoRA list writer fine-tuned on
the synonyms task's train topics first (trained here, before the offline job in `batch/synonyms.py`
runs, so the batch layer never trains)."""

from pathlib import Path

from tuneforge.adapt.finetune import FinetuneConfig, finetune
from tuneforge.data.splits import Task
from tuneforge.model import provenance
from tuneforge.model.load import LoadedModel, default_model_dir, load_model, resolve_model_dir
from tuneforge.settings import SynonymsConfig

WRITER_TRAINING = {"method": "lora", "lrs": (1e-3,), "patience": 2, "merge": True}
"""How `writer: lora` fine-tunes its list writer, for up to `writer_epochs` (what bench/synonym_lists.py
measured)."""


def list_writer(model: str | Path | None, task: Task, cfg: SynonymsConfig, folder: Path, *, dtype: str = "auto",
                device: str | None = None, progress=None) -> LoadedModel:
    """The model that writes the lists: `model` itself for `writer: few-shot` or when tuneforge trained
    it (it records its prompt); else a LoRA list writer fine-tuned from it on `task`'s train topics
    into `folder` (a finished one there is reused, a killed one resumed), merged, loaded in `dtype`."""
    path = default_model_dir() if model is None else resolve_model_dir(model)
    if cfg.writer == "few-shot" or provenance.prompt(provenance.read(path)):
        return load_model(model, dtype=dtype, device=device)
    config = FinetuneConfig(**WRITER_TRAINING, epochs=cfg.writer_epochs, seed=cfg.seed)
    finetune(load_model(model, dtype="fp32", device=device), task, config, Path(folder), resume=True,
             progress=progress)
    return load_model(Path(folder) / "merged", dtype=dtype, device=device)
