"""OpenAI-shaped endpoints over the prediction store: /v1/completions, /v1/chat/completions, /v1/models.

A prompt (or the last user message) is the lookup input and the stored output is the completion.
Sampling fields (max_tokens, temperature, ...) are accepted and ignored: the store holds one answer
per input. Errors have OpenAI's shape, {"error": {"message", "type", "param", "code"}} — every
endpoint of the server uses it — so the official client raises its usual exceptions (NotFoundError
for a miss under the `reject` policy)."""

import json
import logging
import time
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, Field, StrictBool
from starlette.exceptions import HTTPException

from tuneforge.store.keys import normalize_input

log = logging.getLogger(__name__)

INPUT_CHARS = 4096
"""Longest input (lookup key, prompt, user message, text to match) a client may send."""


def _encodable(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") is valid JSON but cannot be keyed or stored
        raise ValueError("text must be valid Unicode (it has a lone surrogate)") from None
    return text


Text = Annotated[str, Field(max_length=INPUT_CHARS), AfterValidator(_encodable)]


def error_response(status: int, message: str, kind: str, *, param: str | None = None, code: str | None = None,
                   headers: dict | None = None, **extra) -> JSONResponse:
    """An error in OpenAI's shape, with any `extra` fields (such as the missed input) beside the four."""
    body = {"message": message, "type": kind, "param": param, "code": code, **extra}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


ERROR_TYPES = {401: "authentication_error", 404: "not_found", 413: "request_too_large"}


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON in the shape above: invalid requests (422), HTTP errors, crashes (500, logged)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        errors = exc.errors()
        where = [".".join(str(part) for part in error["loc"]) for error in errors]
        message = "; ".join(f"{loc}: {error['msg']}" for loc, error in zip(where, errors))
        return error_response(422, message, "invalid_request_error", param=where[0] if where else None)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        kind = ERROR_TYPES.get(exc.status_code, "invalid_request_error")
        return error_response(exc.status_code, str(exc.detail), kind, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error", "server_error")


class TextPart(BaseModel):
    type: str
    text: Text | None = None


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[TextPart] | None = None


class StreamOptions(BaseModel):
    include_usage: StrictBool | None = None


TOP_LOGPROBS = 20
"""Most alternatives a client may ask for (OpenAI's limit for chat; the legacy completions allow 5)."""


class Sampling(BaseModel):
    """The fields every completion request shares: the model, streaming and log-probabilities."""

    model: str = Field(max_length=256)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=TOP_LOGPROBS)] | None = None


def last_user_text(messages: list[Message]) -> str | None:
    """The content of the last user message (text parts joined by newlines), or None."""
    for message in reversed(messages):
        if message.role == "user" and message.content is not None:
            if isinstance(message.content, str):
                return message.content
            return "\n".join(part.text for part in message.content if part.type == "text" and part.text is not None)
    return None


def miss_or_failure(rows: list[dict], param: str) -> JSONResponse | None:
    """The response for rows that hold no answer (a miss, a queued miss, a failed prediction), or None."""
    for row in rows:
        if row["source"] == "miss":
            return error_response(404, f"no stored prediction for input {row['input'][:200]!r}", "not_found",
                                  param=param, code="prediction_not_found", input=row["input"])
    queued = [row["input"] for row in rows if row["source"] == "queued"]
    if queued:
        return JSONResponse({"queued": True, "inputs": queued}, status_code=202)
    for row in rows:
        if row["error"] is not None:  # e.g. the prompt was too long for the model when the job ran
            return error_response(400, f"the prediction failed: {row['error']}", "invalid_request_error",
                                  param=param, code="prediction_failed", input=row["input"])
    return None


def usage(rows: list[dict]) -> dict | None:
    """Prompt and completion tokens (the model's tokenizer, counted when each row was predicted;
    the prompt as the model saw it, instruction and demonstrations included), or None where a row
    does not know them."""
    metas = [row.get("meta") or {} for row in rows]
    if not all("prompt_tokens" in m and "completion_tokens" in m for m in metas):
        return None
    prompt, completion = sum(m["prompt_tokens"] for m in metas), sum(m["completion_tokens"] for m in metas)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def label_logprobs(row: dict, top: int) -> tuple[float, list[list]]:
    """The answer's log-probability over the label set and the `top` most likely labels, from the row."""
    ranked = (row.get("meta") or {}).get("logprobs") or [[row["output"], 0.0]]
    chosen = next((lp for label, lp in ranked if label == row["output"]), ranked[0][1])
    return chosen, ranked[:top]


def completion_logprobs(row: dict, top: int) -> dict:
    """The legacy completions' `logprobs` object: the label is one token."""
    chosen, ranked = label_logprobs(row, top)
    return {"tokens": [row["output"]], "token_logprobs": [chosen], "top_logprobs": [dict(ranked)] if top else None,
            "text_offset": [0]}


def chat_logprobs(row: dict, top: int) -> dict:
    """The chat completions' `logprobs` object: the label is one token."""
    chosen, ranked = label_logprobs(row, top)
    entry = lambda token, lp: {"token": token, "logprob": lp, "bytes": list(token.encode())}  # noqa: E731
    content = {**entry(row["output"], chosen), "top_logprobs": [entry(t, lp) for t, lp in ranked]}
    return {"content": [content], "refusal": None}


def sse(payload) -> bytes:
    """One server-sent event."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def openai_router(lookups, max_batch: int) -> APIRouter:
    """The OpenAI-compatible routes, answering through `lookups` (the server's view of the store)."""

    class CompletionRequest(Sampling):
        prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=max_batch)]
        logprobs: Annotated[int, Field(ge=0, le=TOP_LOGPROBS)] | None = None

    router = APIRouter(prefix="/v1")

    @router.post("/completions")
    async def completions(body: CompletionRequest):
        if (no := _refused(lookups, body, body.logprobs is not None)) is not None:
            return no
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if body.stream:
            return await _stream(lookups, body, prompts, "text_completion", "cmpl", _text_piece, "prompt")
        rows = await lookups.resolve(prompts)
        if (failed := miss_or_failure(rows, "prompt")) is not None:
            return failed
        choices = [{"index": i, "text": row["output"], "finish_reason": "stop",
                    "logprobs": completion_logprobs(row, body.logprobs) if body.logprobs is not None else None}
                   for i, row in enumerate(rows)]
        return completion("text_completion", "cmpl", lookups.model_id, choices, usage(rows))

    @router.post("/chat/completions")
    async def chat_completions(body: ChatRequest):
        if body.top_logprobs is not None and not body.logprobs:
            return error_response(400, "top_logprobs needs logprobs: true", "invalid_request_error",
                                  param="top_logprobs")
        if (no := _refused(lookups, body, bool(body.logprobs))) is not None:
            return no
        text = last_user_text(body.messages)
        if text is None or len(text) > INPUT_CHARS:
            return error_response(422, f"messages needs a user message with text of at most {INPUT_CHARS} characters",
                                  "invalid_request_error", param="messages")
        if body.stream:
            return await _stream(lookups, body, [text], "chat.completion.chunk", "chatcmpl", _chat_piece, "messages")
        rows = await lookups.resolve([text])
        if (failed := miss_or_failure(rows, "messages")) is not None:
            return failed
        message = {"role": "assistant", "content": rows[0]["output"], "refusal": None}
        logprobs = chat_logprobs(rows[0], body.top_logprobs or 0) if body.logprobs else None
        choices = [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}]
        return completion("chat.completion", "chatcmpl", lookups.model_id, choices, usage(rows))

    @router.get("/models")
    async def models():
        return {"object": "list", "data": [lookups.model_card()]}

    return router


def _refused(lookups, body: Sampling, wants_logprobs: bool) -> JSONResponse | None:
    """A request this server cannot answer as asked: another model, or log-probabilities of a
    generated answer."""
    if body.model not in lookups.model_ids:
        return error_response(404, f"the model {body.model[:100]!r} does not exist here; this server serves "
                              f"{lookups.model_id!r}", "invalid_request_error", param="model",
                              code="model_not_found")
    if wants_logprobs and not lookups.ranks_labels:
        return error_response(400, f"logprobs are not supported by {lookups.model_id!r}: it generates text, "
                              "and the store keeps no token log-probabilities", "invalid_request_error",
                              param="logprobs", code="logprobs_not_supported")
    return None


async def _stream(lookups, body, prompts: list[str], kind: str, prefix: str, piece, param: str):
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`: a stored answer in
    one chunk, a live one piece by piece as the model writes it. A miss, queued input or failed
    row is answered as without streaming, before any event."""
    if lookups.miss_policy == "live" and len(prompts) == 1:
        rows = lookups.stored(prompts)
        live = [normalize_input(prompts[0])] if rows[0] is None else []
    else:  # misses answered (or queued, or refused) as one batch, as without streaming
        rows, live = await lookups.resolve(prompts), []
    if (failed := miss_or_failure([r for r in rows if r is not None], param)) is not None:
        return failed
    head = {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
            "model": lookups.model_id}
    chat = kind == "chat.completion.chunk"
    wants_logprobs = body.logprobs is True if chat else body.logprobs is not None
    top = (body.top_logprobs or 0) if chat else body.logprobs
    wants_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events():
        if chat:
            yield sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "logprobs": None, "finish_reason": None}]})
        done = list(rows)
        if live:
            async for part in lookups.stream_live(live[0]):
                if isinstance(part, str):
                    yield sse({**head, "choices": [piece(0, part, None, None)]})
                else:
                    done = [part]
            if done[0]["error"] is not None:  # the prompt was too long: an error event, as OpenAI sends
                yield sse({"error": {"message": f"the prediction failed: {done[0]['error']}",
                                     "type": "invalid_request_error", "param": param,
                                     "code": "prediction_failed"}})
                yield sse("[DONE]")
                return
        for i, row in enumerate(done):
            logprobs = _logprobs(kind, row, top) if wants_logprobs else None
            if not live or logprobs:  # a live answer has streamed already; its logprobs follow it
                yield sse({**head, "choices": [piece(i, "" if live else row["output"], logprobs, None)]})
            yield sse({**head, "choices": [piece(i, "", None, "stop")]})
        if wants_usage:
            yield sse({**head, "choices": [], "usage": usage(done)})
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _text_piece(index: int, text: str, logprobs, finish_reason) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def _chat_piece(index: int, text: str, logprobs, finish_reason) -> dict:
    return {"index": index, "delta": {"content": text} if text or finish_reason is None else {},
            "logprobs": logprobs, "finish_reason": finish_reason}


def _logprobs(kind: str, row: dict, top: int) -> dict:
    return completion_logprobs(row, top) if kind == "text_completion" else chat_logprobs(row, top)


def completion(kind: str, prefix: str, model: str, choices: list[dict], counted: dict | None) -> dict:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model,
            "choices": choices, "usage": counted}
