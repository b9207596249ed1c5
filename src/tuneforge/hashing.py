"""The one content hash: sha256 of canonical JSON of everything that changes a result. Prediction
keys, stage and run ids, the teacher-output cache and the demonstration pool's id all use it, so one
value has one hash wherever it is computed."""

import hashlib
import json


def canonical_json(value) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value) -> str:
    """sha256 (hex) of `value`'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
