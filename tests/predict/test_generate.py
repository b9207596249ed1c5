from tuneforge.predict.generate import generate_lines


def test_batched_generation_equals_one_at_a_time(tiny):
    tok = tiny.tokenizer
    prompts = [tok(p).input_ids for p in ["vaccine:", "Give the botanical fruit type.\nlemon:", "a:"]]
    batched = generate_lines(tiny.model, tok, prompts, max_new_tokens=12, batch_size=3)
    single = [generate_lines(tiny.model, tok, [p], max_new_tokens=12)[0] for p in prompts]
    assert batched == single
    assert all("\n" not in line for line in batched)
    assert any(batched), "a random model still writes something"
