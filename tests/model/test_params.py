from tuneforge.model.params import count_parameters, size_on_disk


def llama_parameters(c) -> int:
    """A llama model's parameter count worked out from its config alone (tied head counted once)."""
    head_dim = c.hidden_size // c.num_attention_heads
    attention = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * c.num_key_value_heads * head_dim
    mlp = 3 * c.hidden_size * c.intermediate_size
    layer = attention + mlp + 2 * c.hidden_size  # two RMSNorm weights
    head = 0 if c.tie_word_embeddings else c.vocab_size * c.hidden_size
    return c.vocab_size * c.hidden_size + c.num_hidden_layers * layer + c.hidden_size + head


def test_tied_embeddings_are_counted_once(tiny, tiny_model_dir):
    model = tiny.model
    counts = count_parameters(model, tiny_model_dir)
    emb = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is emb  # tied
    assert counts["total"] == llama_parameters(model.config)
    assert counts["embedding"] == emb.numel()
    assert counts["non_embedding"] == counts["total"] - emb.numel()
    assert counts["trainable"] == counts["total"]
    assert counts["size_on_disk_bytes"] == size_on_disk(tiny_model_dir) > counts["total"] * 4 * 0.9


def test_trainable_follows_requires_grad(tiny_model_dir):
    from tuneforge.model.load import load_model

    model = load_model(tiny_model_dir, dtype="fp32", device="cpu").model
    for p in model.parameters():
        p.requires_grad_(False)
    head = model.model.layers[0].self_attn.q_proj.weight
    head.requires_grad_(True)
    assert count_parameters(model)["trainable"] == head.numel()
