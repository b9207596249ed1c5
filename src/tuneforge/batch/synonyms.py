"""Synonym lists as a batch job writes them: each generated line cleaned into a list before storing
(the cleaning and the matcher that reads the lists live in `store/synonyms.py`)."""

from tuneforge.store.synonyms import normalize_synonyms


def synonym_predictor(predict):
    """Wrap a batch predictor so each generated line is stored as a normalised synonym list
    ("a, b, c"), the raw line kept in the row's meta."""

    def run(inputs: list[str]) -> list[dict]:
        rows = predict(inputs)
        for row in rows:
            if row.get("output") is not None:
                row["meta"] = {**(row.get("meta") or {}), "raw": row["output"]}
                row["output"] = ", ".join(normalize_synonyms(row["output"], row["input"]))
        return rows

    return run
