import pytest
import torch

from tuneforge.predict.padding import left_pad, length_batches


@pytest.mark.parametrize("pad, ids, mask", [
    (left_pad, [[9, 9, 1, 2, 3], [9, 9, 9, 9, 4], [5, 6, 7, 8, 9]], [[0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [1] * 5]),
])
def test_padding_puts_the_pad_id_on_its_side_and_masks_it(pad, ids, mask):
    got_ids, got_mask = pad([[1, 2, 3], [4], [5, 6, 7, 8, 9]], pad_id=9)
    assert torch.equal(got_ids, torch.tensor(ids)) and torch.equal(got_mask, torch.tensor(mask))


@pytest.mark.parametrize("lengths, batch_size, batches", [
    ([3, 1, 2], 2, [[1, 2], [0]]),
    ([2, 2, 1, 2], 3, [[2, 0, 1], [3]]),  # equal lengths keep their order
    ([5], 4, [[0]]),
    ([], 4, []),
])
def test_length_batches_go_shortest_first_and_cover_every_row_once(lengths, batch_size, batches):
    assert list(length_batches([[0] * n for n in lengths], batch_size)) == batches
