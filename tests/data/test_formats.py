"""The data formats users bring (JSON arrays, CSV, TSV, Parquet, a saved `datasets` folder, rows from
Python) and the row conventions read without naming fields (text/label, Alpaca, chat with a system
message, prompt/completion), field mapping, and the messages for a wrong mapping."""

import json
import subprocess
import sys

import pytest

from tuneforge.data.splits import load_task
from tuneforge.data.tasks import Example, Fields, read_examples, read_task_file
from tuneforge.errors import TuneforgeError

SUPPORT = [("my card was charged twice", "billing"), ("the app crashes on start", "bug"),
           ("refund please", "billing"), ("login button does nothing", "bug")]


def error_of(source, fields=Fields()) -> str:
    with pytest.raises(TuneforgeError) as e:
        read_examples(source, fields)
    msg = str(e.value)
    assert "\n" not in msg, "an error is one line"
    return msg


# ---------------------------------------------------------------- file formats


def test_json_array_of_alpaca_rows_is_read_whole(tmp_path):
    rows = [{"instruction": "Classify the support message.", "input": text, "output": label} for text, label in SUPPORT]
    f = tmp_path / "support.json"
    f.write_text(json.dumps(rows, indent=2), encoding="utf-8")  # spread over many lines, as editors save it
    data = read_task_file(f)
    assert [(ex.input, ex.target) for ex in data.examples] == SUPPORT
    assert data.instruction == "Classify the support message."  # shared by every row: the task's instruction
    assert data.examples[1].id == "support-2" and data.examples[1].where == f"{f}: row 2"


def test_alpaca_rows_with_their_own_instructions_keep_them(tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Name the fruit type.", "input": "lemon", "output": "hesperidium"},
        {"instruction": "Translate to French.", "input": "apple", "output": "pomme"},
        {"instruction": "Say hello.", "input": "", "output": "hello"},  # no input: the instruction is the prompt
    ]), encoding="utf-8")
    data = read_task_file(f)
    assert data.instruction is None
    assert [ex.input for ex in data.examples] == ["Name the fruit type.\n\nlemon", "Translate to French.\n\napple",
                                                  "Say hello."]


def test_chat_system_message_becomes_the_instruction(tmp_path):
    f = tmp_path / "chat.jsonl"
    f.write_text("\n".join(json.dumps({"messages": [
        {"role": "system", "content": "Label the message billing or bug."},
        {"role": "user", "content": text}, {"role": "assistant", "content": label}]}) for text, label in SUPPORT),
        encoding="utf-8")
    data = read_task_file(f)
    assert data.instruction == "Label the message billing or bug."
    assert data.examples[0] == Example("my card was charged twice", "billing", "chat-1")
    task = load_task(str(f))
    assert task.info.instruction == "Label the message billing or bug."
    assert load_task(str(f), instruction="Mine.").info.instruction == "Mine."  # the user's own wins


@pytest.mark.parametrize("name, sep", [("support.csv", ","), ("support.tsv", "\t")])
def test_csv_and_tsv_with_text_label_columns(tmp_path, name, sep):
    f = tmp_path / name
    f.write_text(f"text{sep}label\n" + "".join(f"{t}{sep}{lab}\n" for t, lab in SUPPORT), encoding="utf-8")
    examples = read_examples(f)
    assert [(ex.input, ex.target) for ex in examples] == SUPPORT
    assert examples[0].where == f"{f}:2"


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    f = tmp_path / "support.parquet"
    pq.write_table(pa.table({"text": [t for t, _ in SUPPORT], "label": [lab for _, lab in SUPPORT],
                             "group": ["a", None, "b", "a"]}), f)
    examples = read_examples(f)
    assert [(ex.input, ex.target, ex.group) for ex in examples] == [(t, lab, g) for (t, lab), g in
                                                                     zip(SUPPORT, ["a", None, "b", "a"])]
    assert examples[2].where == f"{f}: row 3"


def test_unreadable_parquet_is_one_line(tmp_path):
    f = tmp_path / "broken.parquet"
    f.write_bytes(b"PAR1 not really")
    assert "not a readable Parquet file" in error_of(f)


def test_saved_datasets_folder_with_class_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["billing", "bug"])})
    data = datasets.Dataset.from_dict({"sentence": [t for t, _ in SUPPORT],
                                       "label": [["billing", "bug"].index(lab) for _, lab in SUPPORT]}, features)
    data.save_to_disk(str(tmp_path / "ds"))
    # A class-label column is read as its names, not its integer ids.
    assert [(ex.input, ex.target) for ex in read_examples(tmp_path / "ds")] == SUPPORT
    datasets.DatasetDict({"train": data, "test": data}).save_to_disk(str(tmp_path / "dd"))
    msg = error_of(tmp_path / "dd")
    assert "DatasetDict with splits train, test" in msg and f"--train {tmp_path / 'dd'}/train" in msg
    task = load_task(train=tmp_path / "dd" / "train", test=tmp_path / "dd" / "test")
    assert len(task.train) + len(task.dev) == len(task.test) == 4


def test_rows_and_dataframes_from_python():
    rows = [{"text": t, "label": lab} for t, lab in SUPPORT]
    assert [(ex.input, ex.target) for ex in read_examples(rows)] == SUPPORT
    assert read_examples(rows)[0].id == "row-1"
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"message": [t for t, _ in SUPPORT], "category": [lab for _, lab in SUPPORT]})
    assert [(ex.input, ex.target) for ex in read_examples(frame, Fields("message", "category"))] == SUPPORT
    task = load_task(rows * 5 + [{"text": f"extra {i}", "label": "bug"} for i in range(4)], seed=1)
    assert task.info.name == "rows" and task.info.kind == "labels" and task.test


def test_integer_labels_are_read_as_text(tmp_path):
    f = tmp_path / "ints.jsonl"
    f.write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n', encoding="utf-8")
    assert [ex.target for ex in read_examples(f)] == ["1", "0"]


def test_one_number_written_three_ways_is_one_label(tmp_path):
    f = tmp_path / "nums.jsonl"
    rows = [("a", 1), ("b", "1"), ("c", 1.0), ("d", 2), ("e", 2.0), ("f", 0.5), ("g", 2), ("h", 1)]
    f.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")
    assert [ex.target for ex in read_examples(f)] == ["1", "1", "1", "2", "2", "0.5", "2", "1"]
    assert load_task(train=f, test=f, dev_fraction=0).labels == ["0.5", "1", "2"]


def test_one_number_spelled_two_ways_in_text_is_refused_with_both_rows(tmp_path):
    f = tmp_path / "nums.csv"
    f.write_text("text,label\na,1\nb,2\nc,1.0\nd,2\ne,1\nf,2\n", encoding="utf-8")
    with pytest.raises(TuneforgeError) as e:
        load_task(train=f, test=f, dev_fraction=0)
    assert str(e.value) == f"{f}:4: label '1.0' is the number of label '1' ({f}:2): write each label one way"


# ---------------------------------------------------------------- what other tools write


@pytest.mark.parametrize("name, text", [
    ("excel.csv", "\ufefftext,label\nrefund please,billing\n"),
    ("notepad.jsonl", "\ufeff" + json.dumps({"text": "refund please", "label": "billing"}) + "\n"),
    ("array.json", "\ufeff" + json.dumps([{"text": "refund please", "label": "billing"}])),
])
def test_a_byte_order_mark_is_read_as_nothing(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    assert [(ex.input, ex.target) for ex in read_examples(f)] == [("refund please", "billing")]


def test_quoted_csv_cells_keep_their_line_breaks_and_rows_keep_their_lines(tmp_path):
    f = tmp_path / "notes.csv"
    f.write_text('text,label\n"peach\nfuzzy",drupe\n"pea\x0cch",drupe\r\nplum,\n"a ""b""",pome\n', encoding="utf-8")
    with pytest.raises(TuneforgeError) as e:  # plum has no label: the message names its line, after the break
        read_examples(f)
    assert str(e.value).startswith(f"{f}:5: field 'label' is missing")
    f.write_text('text,label\n"peach\nfuzzy",drupe\n"pea\x0cch",drupe\r\n"a ""b""",pome\n', encoding="utf-8")
    examples = read_examples(f)
    assert [(ex.input, ex.target, ex.where) for ex in examples] == [
        ("peach\nfuzzy", "drupe", f"{f}:2"), ("pea\x0cch", "drupe", f"{f}:4"), ('a "b"', "pome", f"{f}:5")]


def test_a_jsonl_line_may_hold_unicode_line_separators(tmp_path):
    f = tmp_path / "sep.jsonl"
    rows = [{"text": "one\u2028two", "label": "a"}, {"text": "three\x0cfour\x85", "label": "b"}]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert [(ex.input, ex.where) for ex in read_examples(f)] == [("one\u2028two", f"{f}:1"), ("three\x0cfour", f"{f}:2")]


def test_a_column_named_twice_is_refused(tmp_path):
    f = tmp_path / "dup.csv"
    f.write_text("text,label,text\nrefund please,billing,again\n", encoding="utf-8")
    assert error_of(f) == f"{f}:1: the header names the column 'text' twice; rename one"


def test_openai_content_parts_are_read_as_their_text(tmp_path):
    f = tmp_path / "chat.jsonl"
    parts = [{"type": "text", "text": "my card"}, {"type": "text", "text": "was charged twice"}]
    f.write_text(json.dumps({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Label it."}]},
        {"role": "user", "content": parts}, {"role": "assistant", "content": [{"type": "text", "text": "billing"}]}]})
        + "\n", encoding="utf-8")
    data = read_task_file(f)
    assert (data.examples[0].input, data.examples[0].target, data.instruction) == (
        "my card\nwas charged twice", "billing", "Label it.")


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                   {"role": "assistant", "content": "bug"}]}, "field 'content' is a list, and item 0 is not a text part"),
    ({"text": ["a", "b"], "label": "bug"}, "field 'text' is a list, and item 0 is not a text part"),
    ({"text": [], "label": "bug"}, "field 'text' is an empty list"),
    ({"text": {"a": 1}, "label": "bug"}, "field 'text' must be a string, got dict"),
    ({"text": "hi", "label": [1, 2]}, "field 'label' is a list, and item 0 is not a text part"),
])
def test_lists_that_are_not_text_say_what_they_hold(row, message):
    assert message in error_of([row])


def test_a_list_of_strings_is_a_list_targets_terms(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    f = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"input": ["vaccine"], "target": [["jab", "shot"]]}), f)
    assert read_examples(f)[0].target == "jab, shot"


@pytest.mark.parametrize("name, text", [
    ("deep.jsonl", '{"text": ' + "[" * 50_000 + "]" * 50_000 + ', "label": "x"}\n'),
    ("deep.json", '[{"text": ' + "[" * 50_000 + "]" * 50_000 + ', "label": "x"}]'),
])
def test_json_nested_thousands_deep_is_one_line(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    assert "nested too deeply to read" in error_of(f)


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes(b"text,label\nrefund,billing\ncaf\xe9,billing\n")
    assert error_of(f).startswith(f"{f}:3: not UTF-8 text (byte 29: 0xe9)")


# ---------------------------------------------------------------- field mapping and its errors


def test_field_mapping_reads_any_column_names(tmp_path):
    f = tmp_path / "support.csv"
    f.write_text("ticket,message,category\n" + "".join(f"{i},{t},{lab}\n" for i, (t, lab) in enumerate(SUPPORT)),
                 encoding="utf-8")
    msg = error_of(f)
    assert f"{f}:2" in msg and "'ticket', 'message', 'category'" in msg
    assert "--input-field FIELD --target-field FIELD" in msg
    examples = read_examples(f, Fields(input="message", target="category"))
    assert [(ex.input, ex.target) for ex in examples] == SUPPORT


def test_known_convention_with_the_other_field_named(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "refund please", "category": "billing"}\n', encoding="utf-8")
    msg = error_of(f)
    assert "field 'label' is missing (the row has 'text', 'category')" in msg
    assert "--target-field" in msg
    assert read_examples(f, Fields(target="category"))[0].target == "billing"


def test_wrong_mapping_names_the_flag_and_the_fields_found(tmp_path):
    f = tmp_path / "support.csv"
    f.write_text("message,category\nrefund please,billing\n", encoding="utf-8")
    msg = error_of(f, Fields(input="mesage", target="category"))
    assert msg == (f"{f}:2: field 'mesage' is missing (the row has 'message', 'category'): "
                   "check --input-field/--target-field")


def test_jsonl_that_is_one_object_says_so(tmp_path):
    f = tmp_path / "d.json"
    f.write_text('{"data": [\n{"input": "x", "target": "y"}\n]}\n', encoding="utf-8")
    msg = error_of(f)
    assert f"{f}:1: invalid JSON" in msg and "one JSON object with keys 'data'" in msg


def test_non_object_in_a_json_array(tmp_path):
    f = tmp_path / "d.json"
    f.write_text('[{"input": "x", "target": "y"}, "z"]', encoding="utf-8")
    assert error_of(f) == f"{f}: row 2: expected a JSON object, got str"


def test_cli_mapping_flags_reach_the_task(tmp_path):
    f = tmp_path / "support.csv"
    f.write_text("message,category\n" + "".join(f"{t},{lab}\n" for t, lab in SUPPORT * 3), encoding="utf-8")
    cmd = [sys.executable, "-m", "tuneforge.cli", "prompt", "--task", str(f), "--shots", "0",
           "--model", str(tmp_path / "no-model")]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'message', 'category'" in bad.stderr and len(bad.stderr.splitlines()) == 1
    # With the mapping the data is read, and the run gets as far as the (missing) model.
    mapped = subprocess.run(cmd + ["--input-field", "message", "--target-field", "category"], capture_output=True,
                            text=True, timeout=120)
    assert mapped.returncode == 2 and "no-model" in mapped.stderr, mapped.stderr
