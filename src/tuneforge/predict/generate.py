"""Generation for open tasks, batched, stopping at the end of the line: greedy, or sampled with a
seed per row."""

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from tuneforge.predict.padding import left_pad, length_batches


class StopAtNewline(StoppingCriteria):
    """Stops a row once its last token contains a newline. (transformers' `stop_strings` does the
    same but first scans the whole vocabulary, ~17 s for 49k tokens on this CPU.)"""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.has_newline: dict[int, bool] = {}

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        for tok in set(last) - self.has_newline.keys():
            self.has_newline[tok] = "\n" in self.tokenizer.decode([tok])
        return torch.tensor([self.has_newline[t] for t in last], device=input_ids.device)


class GumbelSample(LogitsProcessor):
    """Turns greedy decoding into sampling at `temperature`, each row from its own seeded generator:
    the argmax of logits / temperature plus Gumbel noise is a draw from their softmax (the Gumbel-max
    trick). A row's draws depend on its seed alone, not on the rows batched beside it."""

    def __init__(self, seeds: list[int], temperature: float, device: torch.device):
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        noise = torch.stack([torch.rand(scores.shape[-1], generator=g, device=scores.device, dtype=torch.float32)
                             for g in self.generators])  # (B, V) uniform
        gumbel = -torch.log(-torch.log(noise.clamp_min(1e-20)))
        return scores.float() / self.temperature + gumbel


class LineStreamer(BaseStreamer):
    """Hands `on_text` each new piece of the answer as generation goes (one prompt at a time: what
    transformers' streamers support), so that the pieces join to exactly the answer `generate_lines`
    returns: the first line, stripped. A trailing space or an unfinished character waits for more."""

    def __init__(self, tokenizer, on_text):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.prompt_seen, self.tokens, self.sent = False, [], ""

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt itself
            self.prompt_seen = True
            return
        self.tokens += value.reshape(-1).tolist()
        self._send(final=False)

    def end(self) -> None:
        self._send(final=True)

    def _send(self, final: bool) -> None:
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        line = text.split("\n", 1)[0].strip()
        if not final and ("\n" not in text and line.endswith("\ufffd")):
            return
        if line.startswith(self.sent) and len(line) > len(self.sent):
            piece, self.sent = line[len(self.sent):], line
            self.on_text(piece)


@torch.inference_mode()
def generate_lines(
    model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int = 48, batch_size: int = 16, on_text=None,
    seeds: list[int] | None = None, temperature: float = 1.0,
) -> list[str]:
    """The first line the model writes after each prompt: greedy, or with `seeds` (one per prompt)
    sampled at `temperature` from the whole distribution (`GumbelSample`); deterministic either way.

    Prompts are bucketed by length and left-padded; generation stops at a newline or end of turn.
    With `on_text` (one prompt only), each new piece of the answer is handed to it as it is written."""
    if on_text is not None and len(prompts) != 1:
        raise ValueError("streaming generates one prompt at a time")
    streamer = LineStreamer(tokenizer, on_text) if on_text is not None else None
    outputs = [""] * len(prompts)
    for rows in length_batches(prompts, batch_size):
        ids, mask = left_pad([prompts[i] for i in rows], tokenizer.pad_token_id)  # (B, P)
        sample = [GumbelSample([seeds[i] for i in rows], temperature, model.device)] if seeds is not None else []
        new = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            stopping_criteria=StoppingCriteriaList([StopAtNewline(tokenizer)]),
            logits_processor=LogitsProcessorList(sample),
            pad_token_id=tokenizer.pad_token_id,
            streamer=streamer,
        )[:, ids.shape[1] :]
        for row, tokens in zip(rows, new):
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            outputs[row] = text.split("\n", 1)[0].strip()
    return outputs
