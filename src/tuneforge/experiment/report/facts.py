"""Parameter-count facts: what each route should do to the model's size, checked against the counts.

Prompting must leave every weight alone, a merged LoRA and a full fine-tune keep the base's shape,
and a distilled student must be smaller. A ✗ here means a stage did not do what it says."""

from tuneforge import units
from .results import nested, routes

CLAIMS = {
    "prompting": "prompting changes no weight",
    "full": "full fine-tune = base",
    "lora": "merged LoRA = base",
    "distill": "distilled < base",
}


def parameter_facts(results: dict) -> list[dict]:
    """One row per route: the claim for its kind, the expected count, the actual one, and whether it holds.

    A route of an unknown kind gets a row with claim "no claim" and holds None, so it still shows."""
    model_total = nested(results, "model", "parameters", "total")
    return [_fact(route, model_total) for route in routes(results)]


def _fact(route: dict, model_total: int | None) -> dict:
    params = route.get("parameters") or {}
    base = model_total if params.get("base_total") is None else params["base_total"]
    total = params.get("total")
    kind = route.get("kind")
    return {
        "route": route["name"],
        "kind": kind,
        "claim": CLAIMS.get(kind, "no claim"),
        "expected": _expected(kind, base),
        "actual": total,
        "holds": _holds(kind, total, base, params.get("unchanged")),
    }


def _expected(kind: str | None, base: int | None) -> str:
    if kind == "prompting":
        return f"{units.exact(base)} (base), weights unchanged"
    if kind in ("full", "lora"):
        return f"{units.exact(base)} (base)"
    if kind == "distill":
        return f"< {units.exact(base)} (base)"
    return units.MISSING


def _holds(kind: str | None, total: int | None, base: int | None, unchanged: bool | None) -> bool | None:
    if kind not in CLAIMS:
        return None
    if total is None or base is None:
        return False  # a claim that cannot be checked has not been shown to hold
    if kind == "prompting":
        return unchanged is True and total == base
    if kind == "distill":
        return total < base
    return total == base
