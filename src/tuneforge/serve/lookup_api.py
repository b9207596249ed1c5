"""tuneforge's own endpoints: /v1/lookup (one input or a batch), /v1/match, /healthz and /metrics.

The OpenAI-shaped endpoints live beside them in openai_api.py; both answer through one `Lookups`."""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from tuneforge.serve.lookups import Lookups
from tuneforge.serve.metrics import CONTENT_TYPE
from tuneforge.serve.openai_api import Text, error_response


def lookup_router(lookups: Lookups, max_batch: int) -> APIRouter:
    """tuneforge's own endpoints: lookups, synonym matches, health and metrics."""
    router = APIRouter()

    class LookupBatch(BaseModel):
        inputs: list[Text] = Field(max_length=max_batch)

    class MatchRequest(BaseModel):
        text: Text

    async def resolve(inputs: list[str]) -> list[dict]:
        rows = await lookups.resolve(inputs, meta=False)
        return [{k: v for k, v in row.items() if k != "meta"} if "meta" in row else row for row in rows]

    @router.get("/v1/lookup")
    async def lookup(input: Annotated[Text, Query()]):
        row = (await resolve([input]))[0]
        if row["source"] == "miss":
            return error_response(404, "no stored prediction for this input", "not_found", input=input)
        if row["source"] == "queued":
            return JSONResponse({"queued": True, "input": input}, status_code=202)
        return {"results": [row]}

    @router.post("/v1/lookup")
    async def lookup_batch(body: LookupBatch):
        return {"results": await resolve(body.inputs)}

    @router.post("/v1/match")
    async def match(body: MatchRequest):
        matcher = lookups.current_matcher()
        if matcher is None:
            return error_response(404, "the store has no synonyms setting (a `generate` job) to match against",
                                  "not_found")
        return matcher.find(body.text)

    @router.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": lookups.model_id, "setting": lookups.setting,
                "rows": lookups.reader.count(lookups.setting)}

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(lookups.metrics.render(), media_type=CONTENT_TYPE)

    return router
