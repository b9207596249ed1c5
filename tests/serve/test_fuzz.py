"""Property-based fuzzing of the running server from its own OpenAPI schema: no request gets a 5xx.

schemathesis' own `from_fixture(...).parametrize()` breaks under pytest 9 (it sets `node._nodeid`),
so each operation's strategy is drawn with Hypothesis directly, in valid and invalid (negative) modes."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from tuneforge.serve.app import create_app

from conftest import fill_store, running

WITH_INPUT = [("GET", "/v1/lookup"), ("POST", "/v1/lookup"), ("POST", "/v1/match"), ("POST", "/v1/completions"),
              ("POST", "/v1/chat/completions")]
WITHOUT_INPUT = [("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/v1/models")]
CASES = [(*op, GenerationMode.POSITIVE) for op in WITH_INPUT + WITHOUT_INPUT] + [
    (*op, GenerationMode.NEGATIVE) for op in WITH_INPUT]  # no invalid request exists without an input


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    """The schema of a server whose misses are queued, so fuzzed lookups exercise the write path too."""
    path = fill_store(tmp_path_factory.mktemp("fuzz") / "store.db")
    with running(create_app(path, miss_policy="queue")) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


def test_every_operation_is_fuzzed(api_schema):
    operations = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert operations == set(WITH_INPUT + WITHOUT_INPUT)


@pytest.mark.parametrize("method,path,mode", CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_no_request_gets_a_server_error(api_schema, method, path, mode):
    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case):
        case.call_and_validate(checks=[not_a_server_error])

    fuzz()
