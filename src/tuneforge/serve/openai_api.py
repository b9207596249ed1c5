"""OpenAI-shaped endpoints over the prediction store: /v1/completions, /v1/chat/completions, /v1/models.

A prompt (or the last user message) is the lookup input and the stored output is the completion.
Sampling fields (max_tokens, temperature, ...) are accepted and ignored: the store holds one answer
per input. Errors have OpenAI's shape, {"error": {"message", "type", "param", "code"}} — every
endpoint of the server uses it — so the official client raises its usual exceptions (NotFoundError
for a miss under the `reject` policy)."""

import logging
import time
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException

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


class ChatRequest(BaseModel):
    model: str
    messages: list[Message] = Field(min_length=1)


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


def completion(kind: str, prefix: str, model: str, choices: list[dict]) -> dict:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model,
            "choices": choices, "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def openai_router(lookups, max_batch: int) -> APIRouter:
    """The OpenAI-compatible routes, answering through `lookups` (the server's view of the store)."""

    class CompletionRequest(BaseModel):
        model: str
        prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=max_batch)]

    router = APIRouter(prefix="/v1")

    @router.post("/completions")
    async def completions(body: CompletionRequest):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        rows = await lookups.resolve(prompts)
        if (failed := miss_or_failure(rows, "prompt")) is not None:
            return failed
        choices = [{"index": i, "text": row["output"], "finish_reason": "stop", "logprobs": None}
                   for i, row in enumerate(rows)]
        return completion("text_completion", "cmpl", lookups.setting, choices)

    @router.post("/chat/completions")
    async def chat_completions(body: ChatRequest):
        text = last_user_text(body.messages)
        if text is None or len(text) > INPUT_CHARS:
            return error_response(422, f"messages needs a user message with text of at most {INPUT_CHARS} characters",
                                  "invalid_request_error", param="messages")
        rows = await lookups.resolve([text])
        if (failed := miss_or_failure(rows, "messages")) is not None:
            return failed
        message = {"role": "assistant", "content": rows[0]["output"]}
        choices = [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]
        return completion("chat.completion", "chatcmpl", lookups.setting, choices)

    @router.get("/models")
    async def models():
        model = {"id": lookups.setting, "object": "model", "created": 0, "owned_by": "tuneforge"}
        return {"object": "list", "data": [model]}

    return router
