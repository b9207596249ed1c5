"""Prediction keys: sha256 of canonical JSON of everything that changes an output.

A *setting* is the part shared by a whole job (model fingerprint, prompt format and demonstrations,
decoding, dtype); a key is the setting plus one input. The store never looks inside either.

An input is keyed, stored and predicted in its normal form (`normalize_input`): " apple " and
"apple" are one input. Case is kept: a task may tell "Apple" from "apple"."""

from tuneforge.hashing import canonical_json, content_hash

__all__ = ["canonical_json", "setting_id", "normalize_input", "prediction_key"]


def setting_id(setting: dict) -> str:
    """The id of a job's setting."""
    return content_hash(setting)


def normalize_input(text: str) -> str:
    """`text` without surrounding whitespace and with each inner run of whitespace (spaces, tabs,
    newlines) as one space. Case is kept."""
    return " ".join(text.split())


def prediction_key(setting_hash: str, text: str) -> str:
    """The key of one input (in its normal form) under one setting."""
    return content_hash({"setting": setting_hash, "input": normalize_input(text)})
