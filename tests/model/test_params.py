from tuneforge.model.params import count_parameters, size_on_disk


def test_tied_embeddings_are_counted_once(tiny, tiny_model_dir):
    model = tiny.model
    counts = count_parameters(model, tiny_model_dir)
    emb = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is emb  # tied
    by_hand = sum(p.numel() for name, p in model.named_parameters())  # named_parameters dedups too
    assert counts["total"] == by_hand
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
