import torch
import torch.nn.functional as F

from tuneforge.adapt.losses import ce_loss
from tuneforge.adapt.rows import Row, build_rows, collate, epoch_batches
from tuneforge.data.tasks import Example
from tuneforge.prompts.formats import PromptFormat, encode_continuation


def test_ce_loss_is_a_share_of_the_global_mean():
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 11), torch.randint(0, 11, (6,))
    mean = F.cross_entropy(logits, targets)
    torch.testing.assert_close(ce_loss(logits, targets, n_global=6), mean)
    # Two processes holding 3 targets each: DDP averages their gradients, so each scales by world size.
    halves = [ce_loss(logits[i : i + 3], targets[i : i + 3], n_global=6, world_size=2) for i in (0, 3)]
    torch.testing.assert_close(sum(halves) / 2, mean)


def test_rows_mask_the_prompt_and_keep_the_answer(tiny):
    tok, fmt = tiny.tokenizer, PromptFormat("plain", "Give the botanical fruit type.")
    rows = build_rows([Example("lemon", "hesperidium", "1"), Example("fig", "multiple", "2")], fmt, tok)
    for row, target in zip(rows, ["hesperidium", "multiple"]):
        answer = encode_continuation(tok, f" {target}\n")
        assert list(row.ids[-row.n_target :]) == answer
        assert tok.decode(row.ids[: -row.n_target]).endswith(":")


def test_long_prompts_are_cut_from_the_left(tiny):
    rows = build_rows([Example("x " * 400, "drupe", "1")], PromptFormat("plain"), tiny.tokenizer, max_length=32)
    assert len(rows[0].ids) == 32 and tiny.tokenizer.decode(rows[0].ids).endswith(": drupe\n")


def test_collate_points_each_target_at_the_position_that_predicts_it():
    rows = [Row((5, 6, 7, 8), 2), Row((9, 10, 11), 1)]
    batch = collate(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 11, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["targets"].tolist() == [7, 8, 11]
    # The logit at (row, col) predicts the token at (row, col + 1).
    ids = batch["input_ids"]
    assert [ids[r, c + 1].item() for r, c in zip(batch["rows"], batch["cols"])] == batch["targets"].tolist()


def test_epoch_batches_cover_every_row_once_and_group_lengths():
    lengths = [(i * 37) % 23 + 5 for i in range(200)]
    batches = epoch_batches(200, lengths, batch_size=16, seed=3, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert epoch_batches(200, lengths, 16, 3, 1) == batches
    assert epoch_batches(200, lengths, 16, 3, 2) != batches

    def padding(bs):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)

    import random

    shuffled = random.Random(0).sample(range(200), 200)
    assert padding(batches) < padding([shuffled[i : i + 16] for i in range(0, 200, 16)]) / 3
