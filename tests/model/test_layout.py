"""A model directory read without loading it: its layers and module names, for checks before any stage."""

import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.model.layout import check_lora_targets, check_student_layers, layer_count, weight_shapes


def test_layers_and_modules_come_from_the_files_alone(tiny_model_dir, tiny):
    assert layer_count(tiny_model_dir) == len(tiny.model.get_decoder().layers)
    loaded = {name: list(p.shape) for name, p in tiny.model.state_dict().items()}
    shapes = weight_shapes(tiny_model_dir)
    assert shapes and all(loaded[name] == shape for name, shape in shapes.items())
    check_lora_targets(tiny_model_dir, ("q_proj", "down_proj"))  # names every llama block has


def test_a_lora_target_the_model_lacks_is_named_with_the_ones_it_has(tiny_model_dir):
    with pytest.raises(TuneforgeError) as err:
        check_lora_targets(tiny_model_dir, ("q_proj", "qkv"), "lora.lora_targets")
    message = str(err.value)
    assert message.startswith("lora.lora_targets: the model has no module named 'qkv' (its linear layers: ")
    assert "q_proj" in message and "embed_tokens" not in message


def test_a_folder_without_safetensors_is_left_to_the_loader(tmp_path):
    assert weight_shapes(tmp_path) is None and layer_count(tmp_path) is None
    check_lora_targets(tmp_path, ("anything",))


@pytest.mark.parametrize("layers, keep, message", [
    (4, None, "--layers 4: keep between 1 and 3 of the teacher's 4 layers"),
    (0, None, "--layers 0: keep between 1 and 3"),
    (None, (0, 999), "--keep: layer 999 is out of range: the teacher's layers are 0 to 3"),
    (None, (1, 1), "--keep: give 1 to 3 distinct layers of the teacher's 4"),
    (None, (0, 1, 2, 3), "--keep: give 1 to 3 distinct layers"),
])
def test_student_layers_the_teacher_cannot_give_are_refused(layers, keep, message):
    with pytest.raises(TuneforgeError) as err:
        check_student_layers(4, layers, keep)
    assert str(err.value).startswith(message)
    check_student_layers(4, 3, (0, 3))
