"""The input-length limit every route shares: a row longer than this is refused before any work.

One 9,000-token row once took prompting 6 minutes and 9 GB without a word; a limit checked up front
turns that into a one-line error naming the row. Batch jobs read the same default (their over-long
prompts become failed rows instead, since a job must go on)."""

from tuneforge.data.splits import Task
from tuneforge.errors import TuneforgeError

MAX_INPUT_TOKENS = 512
"""Longest input, in the model's tokens, that any route accepts by default."""


def check_input_lengths(task: Task, tokenizer, limit: int = MAX_INPUT_TOKENS) -> None:
    """Refuse the task if an input of any split is over `limit` tokens (the input text alone, without
    template or demonstrations), naming the first such row; cheap, so call it before predicting."""
    rows = [(name, ex) for name in ("train", "dev", "test") for ex in task.split(name)]
    if not rows:
        return
    ids = tokenizer([ex.input for _, ex in rows], add_special_tokens=False)["input_ids"]
    over = [(name, ex, len(tokens)) for (name, ex), tokens in zip(rows, ids) if len(tokens) > limit]
    if not over:
        return
    name, ex, n = over[0]
    where = ex.where or f"{name} example {ex.id!r}"
    more = f" ({len(over) - 1:,} more rows are over it too)" if len(over) > 1 else ""
    raise TuneforgeError(f"{where}: input is {n:,} tokens; the limit is {limit:,} (max_input_tokens){more}: "
                         "shorten or drop the row, or raise max_input_tokens")
