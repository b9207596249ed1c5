"""Readers of task data: JSONL, CSV, chat `messages` and `prompt`/`completion` rows, and the error
messages a user sees for a bad file (each names the file, the line and the field)."""

import json
from pathlib import Path

import pytest

from tuneforge.data.tasks import Example, builtin_path, builtin_tasks, read_examples
from tuneforge.errors import TuneforgeError


def write_jsonl(path: Path, rows) -> Path:
    """Rows may be dicts (dumped as JSON) or raw strings (written as they are)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- reading good files


def test_jsonl_input_target(tmp_path):
    f = write_jsonl(tmp_path / "fruit.jsonl", [
        {"id": "a", "input": "lemon", "target": "hesperidium"},
        {"id": "b", "input": "  peach ", "target": " drupe\n"},
    ])
    assert read_examples(f) == [
        Example(input="lemon", target="hesperidium", id="a"),
        Example(input="peach", target="drupe", id="b"),  # surrounding whitespace stripped
    ]


def test_jsonl_accepts_str_path(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{"input": "x", "target": "y"}])
    assert read_examples(str(f)) == [Example("x", "y", "d-1")]


def test_json_suffix_is_read_as_jsonl(tmp_path):
    f = write_jsonl(tmp_path / "d.json", [{"input": "x", "target": "y"}, {"input": "z", "target": "w"}])
    assert [ex.input for ex in read_examples(f)] == ["x", "z"]


def test_default_ids_are_stem_and_line_skipping_blank_lines(tmp_path):
    f = write_jsonl(tmp_path / "mydata.jsonl", [
        {"input": "x", "target": "y"},
        "",
        "   ",
        {"input": "z", "target": "w"},
    ])
    assert [ex.id for ex in read_examples(f)] == ["mydata-1", "mydata-4"]


@pytest.mark.parametrize("name, content, line", [
    ("d.jsonl", '{"id": "a", "input": "x", "target": "y"}\n\n{"id": "b", "input": "z", "target": "w"}\n', 3),
    ("d.csv", "id,input,target\na,x,y\nb,z,w\n", 3),
])
def test_each_example_knows_its_file_and_line(tmp_path, name, content, line):
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    second = read_examples(f)[1]
    assert second.where == f"{f}:{line}"
    assert second == Example("z", "w", "b")  # where a row was read is not part of what it is


def test_integer_id_becomes_string(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{"id": 7, "input": "x", "target": "y"}])
    assert read_examples(f)[0].id == "7"


def test_group_is_kept_and_defaults_to_none(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [
        {"input": "x", "target": "y", "group": "citrus"},
        {"input": "z", "target": "w"},
    ])
    a, b = read_examples(f)
    assert a.group == "citrus"
    assert b.group is None


def test_chat_messages_rows(tmp_path):
    f = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [
            {"role": "system", "content": "Give the fruit type."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "lemon"},
            {"role": "assistant", "content": "hesperidium"},
        ]},
        {"id": "m2", "messages": [{"role": "user", "content": "plum"}, {"role": "assistant", "content": "drupe"}]},
    ])
    a, b = read_examples(f)
    # The last user turn is the input, the last assistant turn is the target; a system message that
    # not every row shares stays with its row, before the input.
    assert (a.input, a.target, a.id) == ("Give the fruit type.\n\nlemon", "hesperidium", "chat-1")
    assert (b.input, b.target, b.id) == ("plum", "drupe", "m2")


def test_prompt_completion_rows(tmp_path):
    f = write_jsonl(tmp_path / "pc.jsonl", [
        {"prompt": "apple", "completion": " pome"},
        {"prompt": [{"role": "user", "content": "pear"}], "completion": [{"role": "assistant", "content": "pome"}]},
    ])
    a, b = read_examples(f)
    assert (a.input, a.target) == ("apple", "pome")
    assert (b.input, b.target) == ("pear", "pome")


def test_csv_rows(tmp_path):
    f = tmp_path / "table.csv"
    f.write_text("id,input,target,group\nr1,lemon,hesperidium,citrus\n,plum,drupe,\n", encoding="utf-8")
    a, b = read_examples(f)
    assert a == Example("lemon", "hesperidium", "r1", "citrus")
    # Empty cells count as absent: default id (header is line 1, so this row is line 3), no group.
    assert b == Example("plum", "drupe", "table-3", None)


def test_csv_prompt_completion_columns(tmp_path):
    f = tmp_path / "pc.CSV"
    f.write_text("prompt,completion\napple,pome\n", encoding="utf-8")
    assert read_examples(f) == [Example("apple", "pome", "pc-2")]


def test_builtin_tasks_read():
    assert {"fruit", "synonyms"} <= set(builtin_tasks())
    for name in builtin_tasks():
        examples = read_examples(builtin_path(name))
        assert examples
        assert len({ex.id for ex in examples}) == len(examples)


def test_unknown_builtin_lists_the_builtins():
    with pytest.raises(TuneforgeError) as e:
        builtin_path("nosuchtask")
    assert "nosuchtask" in str(e.value)
    for name in builtin_tasks():
        assert name in str(e.value)


# ---------------------------------------------------------------- errors


def error_of(path) -> str:
    with pytest.raises(TuneforgeError) as e:
        read_examples(path)
    msg = str(e.value)
    assert "\n" not in msg, "an error is one line"
    return msg


def test_missing_file(tmp_path):
    msg = error_of(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in msg
    assert "no such file" in msg


def test_directory_is_not_a_file(tmp_path):
    assert "a directory, not a data file" in error_of(tmp_path)


@pytest.mark.parametrize("bad_line", [
    '{"input": "x", "target": ',  # truncated
    "{'input': 'x', 'target': 'y'}",  # single quotes
    "input,target",  # not JSON at all
    '{"input": "x" "target": "y"}',  # missing comma
])
def test_invalid_json_line_names_file_and_line(tmp_path, bad_line):
    f = write_jsonl(tmp_path / "broken.jsonl", [{"input": "a", "target": "b"}, "", bad_line])
    msg = error_of(f)
    assert f"{f}:3" in msg
    assert "invalid JSON" in msg


@pytest.mark.parametrize("line", ['["x", "y"]', '"just a string"', "42", "null"])
def test_non_object_line(tmp_path, line):
    f = write_jsonl(tmp_path / "d.jsonl", [{"input": "a", "target": "b"}, line])
    msg = error_of(f)
    assert f"{f}:2" in msg
    assert "JSON object" in msg


@pytest.mark.parametrize("row, field", [
    ({"target": "y"}, "input"),
    ({"input": "x"}, "target"),
    ({"inputs": "x", "target": "y"}, "input"),
    ({"prompt": "x"}, "completion"),
    ({"completion": "y"}, "prompt"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}, "content"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]}, "content"),
])
def test_missing_field_names_file_line_and_field(tmp_path, row, field):
    f = write_jsonl(tmp_path / "rows.jsonl", [{"input": "a", "target": "b"}, row])
    msg = error_of(f)
    assert f"{f}:2" in msg
    assert repr(field) in msg
    assert "missing" in msg


@pytest.mark.parametrize("row, field", [
    ({"input": "", "target": "y"}, "input"),
    ({"input": "x", "target": "   "}, "target"),
    ({"input": "\n\t", "target": "y"}, "input"),
    ({"prompt": "x", "completion": ""}, "completion"),
    ({"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "y"}]}, "content"),
])
def test_empty_field(tmp_path, row, field):
    f = write_jsonl(tmp_path / "rows.jsonl", [row])
    msg = error_of(f)
    assert f"{f}:1" in msg
    assert repr(field) in msg
    assert "empty" in msg


@pytest.mark.parametrize("row, field, type_name", [
    ({"input": 3, "target": "y"}, "input", "int"),
    ({"input": "x", "target": None}, "target", "NoneType"),
    ({"input": "x", "target": {"a": 1}}, "target", "dict"),
    ({"input": True, "target": "y"}, "input", "bool"),
    ({"prompt": 1.5, "completion": "y"}, "prompt", "float"),
])
def test_wrong_type_of_text_field(tmp_path, row, field, type_name):
    f = write_jsonl(tmp_path / "rows.jsonl", [row])
    msg = error_of(f)
    assert f"{f}:1" in msg
    assert repr(field) in msg
    assert "must be a string" in msg
    assert type_name in msg


@pytest.mark.parametrize("row, field", [
    ({"id": 1.5, "input": "x", "target": "y"}, "id"),
    ({"id": True, "input": "x", "target": "y"}, "id"),
    ({"id": ["a"], "input": "x", "target": "y"}, "id"),
    ({"input": "x", "target": "y", "group": 3}, "group"),
    ({"messages": "hello"}, "messages"),
    ({"messages": ["hello"]}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}]}, "messages"),  # no assistant turn
    ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "y"}]}, "messages"),
])
def test_wrong_type_or_shape_of_other_fields(tmp_path, row, field):
    f = write_jsonl(tmp_path / "rows.jsonl", [{"input": "a", "target": "b"}, row])
    msg = error_of(f)
    assert f"{f}:2" in msg
    assert repr(field) in msg


@pytest.mark.parametrize("name, content", [
    ("empty.jsonl", ""),
    ("blank.jsonl", "\n\n   \n"),
    ("empty.csv", ""),
    ("header_only.csv", "input,target\n"),
])
def test_empty_file(tmp_path, name, content):
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    msg = error_of(f)
    assert name in msg
    assert "no examples" in msg


@pytest.mark.parametrize("name", ["latin1.jsonl", "latin1.csv"])
def test_not_utf8(tmp_path, name):
    f = tmp_path / name
    header = b"input,target\n" if name.endswith(".csv") else b""
    row = b"caf\xe9,drupe\n" if name.endswith(".csv") else b'{"input": "caf\xe9", "target": "drupe"}\n'
    f.write_bytes(header + row)
    msg = error_of(f)
    assert name in msg
    assert "UTF-8" in msg


def test_csv_extra_cells(tmp_path):
    f = tmp_path / "wide.csv"
    f.write_text("input,target\nlemon,hesperidium\nplum,drupe,oops\n", encoding="utf-8")
    msg = error_of(f)
    assert f"{f}:3" in msg
    assert "more cells" in msg


def test_csv_missing_column(tmp_path):
    f = tmp_path / "narrow.csv"
    f.write_text("input,label\nlemon,hesperidium\n", encoding="utf-8")
    msg = error_of(f)
    assert f"{f}:2" in msg
    assert "'target'" in msg


def test_csv_empty_cell(tmp_path):
    # An empty cell is an absent field in CSV.
    f = tmp_path / "holes.csv"
    f.write_text("input,target\nlemon,hesperidium\nplum,\n", encoding="utf-8")
    msg = error_of(f)
    assert f"{f}:3" in msg
    assert "'target'" in msg


@pytest.mark.parametrize("rows", [
    [{"id": "a", "input": "x", "target": "y"}, {"id": "a", "input": "z", "target": "w"}],
    [{"id": 1, "input": "x", "target": "y"}, {"id": "1", "input": "z", "target": "w"}],
    # an explicit id that equals another row's default id
    [{"input": "x", "target": "y"}, {"id": "dup-1", "input": "z", "target": "w"}],
])
def test_duplicate_ids(tmp_path, rows):
    f = write_jsonl(tmp_path / "dup.jsonl", rows)
    msg = error_of(f)
    assert "dup.jsonl" in msg
    assert "'id'" in msg
    assert "repeats" in msg
