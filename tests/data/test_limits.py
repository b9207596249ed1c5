"""The shared input-length limit: a row over it is refused with its file and line (or split and id),
before any work; rows at the limit pass."""

import json

import pytest

from tuneforge.data.limits import MAX_INPUT_TOKENS, check_input_lengths
from tuneforge.data.splits import Task, load_task
from tuneforge.data.tasks import Example, TaskInfo
from tuneforge.errors import TuneforgeError


def words_tokenizer(texts, add_special_tokens=False):
    """A stand-in tokenizer: one token per word, so a test states lengths exactly."""
    assert add_special_tokens is False  # the limit is on the input text, not on a template's tokens
    return {"input_ids": [text.split() for text in texts]}


def task_of(**splits) -> Task:
    info = TaskInfo(name="t", kind="labels", instruction=None, source="test")
    rows = {name: [Example(" ".join(["w"] * n), "a", f"{name}-{i}") for i, n in enumerate(lengths)]
            for name, lengths in splits.items()}
    return Task(info=info, **{"train": [], "dev": [], "test": [], **rows})


@pytest.mark.parametrize("splits, limit, message", [
    ({"train": [3, 5], "test": [5]}, 5, None),                                   # at the limit: fine
    ({"train": [3], "test": [2, 9_013]}, 512, "test example 'test-1': input is 9,013 tokens; the limit is 512"),
    ({"train": [7], "test": [1]}, 6, "train example 'train-0': input is 7 tokens; the limit is 6"),
    ({"train": [1], "dev": [4], "test": [1]}, 3, "dev example 'dev-0': input is 4 tokens"),
    ({"train": [9, 9], "test": [9]}, 8, "train example 'train-0'.*\\(2 more rows are over it too\\)"),
])
def test_limit_names_the_first_row_over_it(splits, limit, message):
    task = task_of(**splits)
    if message is None:
        check_input_lengths(task, words_tokenizer, limit)
    else:
        with pytest.raises(TuneforgeError, match=message):
            check_input_lengths(task, words_tokenizer, limit)


def test_a_row_read_from_a_file_is_named_by_file_and_line(tmp_path):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(json.dumps({"input": "a b", "target": "x"}) + "\n", encoding="utf-8")
    rows = [{"input": "short", "target": "x"}, {"input": " ".join(["w"] * 600), "target": "x"}]
    test.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(TuneforgeError) as err:
        check_input_lengths(load_task(train=train, test=test), words_tokenizer)
    assert str(err.value) == (f"{test}:2: input is 600 tokens; the limit is 512 (max_input_tokens): "
                              "shorten or drop the row, or raise max_input_tokens")


def test_the_default_limit_is_the_batch_jobs_one():
    from tuneforge.batch.job import BatchConfig

    assert MAX_INPUT_TOKENS == BatchConfig().max_input_tokens == 512
