"""Parameter accounting: the one function every stage uses to count and size a model."""

from pathlib import Path

import torch

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def count_parameters(model: torch.nn.Module, path: str | Path | None = None) -> dict:
    """Total, trainable, embedding and non-embedding parameters (tied weights counted once), and the
    size on disk of the weight files in `path` when given.

    Embedding parameters are the input embedding plus the output head when it is not tied to it."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embeddings = {id(m.weight): m.weight.numel() for m in _embedding_modules(model)}
    embedding = sum(embeddings.values())
    counts = {
        "total": total,
        "trainable": trainable,
        "embedding": embedding,
        "non_embedding": total - embedding,
    }
    if path is not None:
        counts["size_on_disk_bytes"] = size_on_disk(path)
    return counts


def size_on_disk(path: str | Path) -> int:
    """Bytes of the weight files in a model directory (or of one weight file)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)


def _embedding_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    modules = [model.get_input_embeddings()]
    head = model.get_output_embeddings()
    if head is not None:
        modules.append(head)
    return [m for m in modules if m is not None]
