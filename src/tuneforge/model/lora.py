"""Where peft adds LoRA adapters and where the base model under them is reached (a saved adapter is
merged on load: `model/load.py`)."""

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from tuneforge.errors import TuneforgeError


def add_lora(model: torch.nn.Module, r: int, alpha: float, dropout: float, targets: tuple[str, ...]) -> PeftModel:
    """Freeze `model` and add LoRA adapters of rank `r` to the modules named `targets`."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise TuneforgeError(f"--lora-targets: the model has no module named {', '.join(missing)} "
                             f"(linear layers it has: {', '.join(sorted(linear_names(model)))})")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def linear_names(model: torch.nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (the model itself when there is none)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model

