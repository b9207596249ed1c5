from tuneforge.predict.generate import generate_lines


def test_batched_generation_equals_one_at_a_time(tiny):
    tok = tiny.tokenizer
    prompts = [tok(p).input_ids for p in ["vaccine:", "Give the botanical fruit type.\nlemon:", "a:"]]
    batched = generate_lines(tiny.model, tok, prompts, max_new_tokens=12, batch_size=3)
    single = [generate_lines(tiny.model, tok, [p], max_new_tokens=12)[0] for p in prompts]
    assert batched == single
    assert all("\n" not in line for line in batched)
    assert any(batched), "a random model still writes something"


def test_seeded_sampling_depends_on_each_rows_seed_alone(tiny):
    """A sampled line is the same whether its prompt is generated alone or batched beside others,
    for the same seed; other seeds draw other lines, and greedy stays greedy."""
    import torch

    tok = tiny.tokenizer
    prompts = [tok(p).input_ids for p in ["vaccine:", "Give the botanical fruit type.\nlemon:", "a:"]] * 3
    seeds = list(range(100, 109))
    batched = generate_lines(tiny.model, tok, prompts, max_new_tokens=12, batch_size=9, seeds=seeds, temperature=1.5)
    torch.manual_seed(0)  # the caller's random state plays no part
    single = [generate_lines(tiny.model, tok, [p], max_new_tokens=12, seeds=[s], temperature=1.5)[0]
              for p, s in zip(prompts, seeds)]
    assert batched == single
    assert len(set(batched[0::3])) > 1, "the same prompt drew different lines under different seeds"
    greedy = generate_lines(tiny.model, tok, prompts[:3], max_new_tokens=12)
    assert greedy == generate_lines(tiny.model, tok, prompts[:3], max_new_tokens=12, batch_size=1)
