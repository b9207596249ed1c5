import json

import pytest

from tuneforge.audit.swaps import SwapList, builtin_swap_lists, compile_swaps, load_swaps, match_case
from tuneforge.errors import TuneforgeError


@pytest.fixture(scope="module")
def gender():
    return compile_swaps(load_swaps("gender"))


@pytest.mark.parametrize("text, expected", [
    ("He said she would call.", "She said he would call."),                  # both directions in one pass
    ("HE and SHE", "SHE and HE"),                                             # capitals kept
    ("he's late; she's early.", "she's late; he's early."),                   # apostrophes separate words
    ("Heather and Sheffield stay.", "Heather and Sheffield stay."),           # terms inside words untouched
    ("The theme, the shelf, the hearth.", "The theme, the shelf, the hearth."),
    ("Johnson met Johnny.", "Johnson met Johnny."),                           # names inside names untouched
    ("Mary-Ann met John.", "Mary-Ann met Patricia."),                         # hyphenated names stay whole
    ("Mark the date, Mark!", "Margaret the date, Margaret!"),  # a capitalised verb reads as a name (a known limit)
    ("mark the date with mary", "mark the date with mary"),                   # names match only capitalised
    ("JAMES's father, Mr. Smith", "MARY's mother, Mrs. Smith"),               # possessive, capitals, titles
    ("(his)", "(her)"),
    ("the chairman's son", "the chairwoman's daughter"),
    ("she-wolf", "she-wolf"),                                                 # hyphen joins: not a whole word
    ("", ""),
])
def test_swaps_respect_word_boundaries_and_capitalisation(gender, text, expected):
    assert gender.swap(text) == expected


@pytest.mark.parametrize("text, sides", [
    ("He works.", {0}), ("Mary works.", {1}), ("He met Mary.", {0, 1}), ("Heather works.", set()),
])
def test_sides_tell_which_groups_terms_occur(gender, text, sides):
    assert gender.sides(text) == sides


def test_a_term_with_two_partners_takes_the_first_listed(gender):
    assert gender.swap("her book") == "his book"      # (his, her) is listed before (him, her)
    assert gender.swap("him") == "her"


@pytest.mark.parametrize("original, replacement, expected", [
    ("he", "she", "she"), ("He", "she", "She"), ("HE", "she", "SHE"), ("I", "me", "Me"), ("Mary", "James", "James"),
])
def test_match_case(original, replacement, expected):
    assert match_case(original, replacement) == expected


def test_a_phrase_wins_over_its_first_word():
    swapper = compile_swaps(SwapList("age", ("young", "old"), words=(("young", "old"), ("young man", "old woman"))))
    assert swapper.swap("A young man and a young dog.") == "A old woman and a old dog."


def test_user_swap_list_from_csv_works_for_any_attribute(tmp_path):
    path = tmp_path / "age.csv"
    path.write_text("young,old\nyouth,elder\nteenager,pensioner\n\n")
    swaps = load_swaps(str(path))
    assert swaps.groups == ("young", "old") and swaps.words == (("youth", "elder"), ("teenager", "pensioner"))
    assert compile_swaps(swaps).swap("The Teenager helped an elder.") == "The Pensioner helped an youth."


def test_user_swap_list_from_json(tmp_path):
    path = tmp_path / "region.json"
    path.write_text(json.dumps({"groups": ["north", "south"], "words": [["Oslo", "Lagos"]]}))
    assert compile_swaps(load_swaps(str(path))).swap("born in oslo") == "born in lagos"


@pytest.mark.parametrize("name, content, message", [
    ("bad.csv", "young\nyouth,elder\n", "bad.csv:1: the header must name the two groups"),
    ("bad.csv", "young,old\nyouth,elder\nteen\n", "bad.csv:3: expected two non-empty terms"),
    ("bad.tsv", "young\told\n", "bad.tsv: no pairs of terms below the header"),
    ("bad.json", "{", "bad.json: not valid JSON"),
    ("bad.json", '{"groups": ["a"], "words": [["x", "y"]]}', "field 'groups' must name two groups"),
    ("bad.json", '{"groups": ["a", "b"], "words": [["x", "y"], ["z"]]}', "field 'words' item 1"),
    ("bad.json", '{"groups": ["a", "b"]}', "no pairs in 'words' or 'names'"),
])
def test_bad_swap_lists_name_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TuneforgeError, match=message.replace("(", r"\(")):
        load_swaps(str(path))


def test_unknown_swap_list_names_the_builtins():
    assert "gender" in builtin_swap_lists()
    with pytest.raises(TuneforgeError, match="not a built-in list .built-in: gender"):
        load_swaps("religion")


def test_builtin_names_cover_the_bias_demo_task(gender):
    """Every bias-demo sentence has a term the gender list swaps, and its group is the side it has."""
    from tuneforge.data.tasks import builtin_path, read_examples

    examples = read_examples(builtin_path("bias-demo"))
    assert len(examples) >= 100 and all(ex.group in ("male", "female") for ex in examples)
    for ex in examples:
        assert gender.sides(ex.input) == {("male", "female").index(ex.group)}, ex.input
