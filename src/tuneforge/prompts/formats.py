"""Prompt formats: plain `input: target` lines, or the model's own chat template.

A prompt ends where the answer starts; the answer (the *continuation*) is the target plus the
format's end marker: a newline in plain lines, the end-of-turn token in chat. Scoring, generation
and (later) training all build their text here, so every route sees the same prompt.
"""

from dataclasses import dataclass

from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError

STYLES = ("plain", "chat")
_SENTINEL = "\x00TUNEFORGE_TARGET\x00"


@dataclass(frozen=True)
class PromptFormat:
    """How examples become text."""

    style: str = "plain"
    """`plain` (`input: target` lines) or `chat` (the tokenizer's chat template)."""
    instruction: str | None = None
    """An optional instruction line: first line in plain, the system message in chat."""

    def __post_init__(self):
        if self.style not in STYLES:
            raise TuneforgeError(f"unknown prompt format {self.style!r}: choose {' or '.join(STYLES)}")

    @property
    def id(self) -> str:
        """A short identifier recorded in results and provenance."""
        return f"{self.style}+instruction" if self.instruction else self.style


# The plain format as a chat template, so a tokenizer saved with a model trained on plain lines
# renders that model's prompt: `apply_chat_template([system?, user], add_generation_prompt=True)`
# gives exactly `render_prompt`'s text (the BOS token is the tokenizer's to add, as in `encode_prompt`).
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] + '\\n' }}"
    "{% elif m['role'] == 'user' %}{{ m['content'] + ':' }}"
    "{% else %}{{ ' ' + m['content'] + '\\n' }}{% endif %}"
    "{% endfor %}"
)


def prompt_record(fmt: PromptFormat, labels: list[str] | None) -> dict:
    """The prompt a model was trained and scored with, in words and as a template: enough to rebuild
    it with nothing but transformers (tuneforge.json keeps it beside the model)."""
    record = {"format": fmt.style, "instruction": fmt.instruction, "labels": labels}
    if fmt.style == "plain":
        head = "{instruction}\n" if fmt.instruction else ""
        return {**record, "template": head + "{input}:", "answer": " {target}\n", "separator": ": ",
                "special_tokens": "the tokenizer's own (add_special_tokens=True)",
                "chat_template": "renders this prompt (system = instruction, user = input)"}
    return {**record, "template": "the tokenizer's chat template: system = instruction, user = input, "
                                  "add_generation_prompt=True", "answer": "{target} + the end-of-turn marker",
            "special_tokens": "in the template (add_special_tokens=False)"}


def render_prompt(fmt: PromptFormat, tokenizer, demos: list[Example], query: str) -> str:
    """The text before the answer: instruction, demonstrations with their targets, then the query."""
    if fmt.style == "plain":
        lines = [fmt.instruction] if fmt.instruction else []
        lines += [f"{d.input}: {d.target}" for d in demos]
        return "\n".join(lines + [f"{query}:"])
    return tokenizer.apply_chat_template(
        _messages(fmt, demos, query), tokenize=False, add_generation_prompt=True
    )


def render_continuation(fmt: PromptFormat, tokenizer, target: str) -> str:
    """The answer text that follows the prompt: the target and the format's end marker."""
    if fmt.style == "plain":
        return f" {target}\n"
    return target + chat_end_marker(tokenizer)


def chat_end_marker(tokenizer) -> str:
    """What the chat template writes right after an assistant message (e.g. `<|im_end|>`)."""
    if not tokenizer.chat_template:
        raise TuneforgeError("prompt format 'chat': this tokenizer has no chat template; use --format plain")
    turn = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}]
    text = tokenizer.apply_chat_template(turn, tokenize=False)
    return text.split(_SENTINEL, 1)[1].rstrip()


def encode_prompt(fmt: PromptFormat, tokenizer, text: str) -> list[int]:
    """Token ids of a prompt. Chat text already carries its special tokens; plain text gets the
    tokenizer's usual ones (e.g. a BOS token where the model expects it)."""
    return tokenizer(text, add_special_tokens=fmt.style == "plain").input_ids


def encode_continuation(tokenizer, text: str) -> list[int]:
    """Token ids of a continuation, never with special tokens added."""
    return tokenizer(text, add_special_tokens=False).input_ids


def _messages(fmt: PromptFormat, demos: list[Example], query: str) -> list[dict]:
    messages = [{"role": "system", "content": fmt.instruction}] if fmt.instruction else []
    for d in demos:
        messages += [{"role": "user", "content": d.input}, {"role": "assistant", "content": d.target}]
    return messages + [{"role": "user", "content": query}]
