"""Schemathesis against the running service's own OpenAPI schema (`/openapi.json`), bounded.

Every operation gets schema-driven valid and invalid requests (hypothesis underneath, 15 examples
per operation and mode, derandomized, no deadline per example): no 5xx, responses that conform
to the schema, invalid input rejected with a 4xx JSON error; afterwards nothing is in flight.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    status_code_conformance,
)

from surgebench.process import ServerProcess, surgebench_argv

from .conftest import assert_leak_free

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    mock = ServerProcess(
        surgebench_argv("mock", "--port", "0", "--ttft-ms", "1", "--output-tokens", "3")
    )
    argv = ["serve", "--port", "0", "--upstream-url", mock.url + "/v1", "--queue-size", "64"]
    service = ServerProcess(surgebench_argv(*argv))
    yield service.url
    service.stop()
    mock.stop()


# The service's schema declares neither its 4xx answers, nor its runtime limits (max_tokens <=
# --max-tokens-limit, question length), nor its media types (text/event-stream, Prometheus text:
# all are documented as application/json), so these three checks fail on answers that are right;
# the gap is reported to the service owner. The other checks (no 5xx, negative data rejected,
# response schema) run, and the test adds its own: 4xx answers are JSON without a traceback.
EXCLUDED = [status_code_conformance, positive_data_acceptance, content_type_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_service_conforms_to_its_own_schema(service_url: str, mode: GenerationMode) -> None:
    """(schemathesis' pytest plugin, `from_fixture`, fails on this pytest with "'Function' object
    has no attribute '_nodeid'", so the operations' strategies are driven with `@given`.)"""
    schema = from_url(service_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert {"POST /chat/stream", "POST /chat", "POST /chat/batch", "GET /metrics"} <= set(labels)
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to make invalid in a GET without parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(timeout=10, excluded_checks=EXCLUDED)
            assert response.status_code < 500, response.text[:300]
            if response.status_code >= 400:
                assert response.headers["content-type"][0] == "application/json"
                assert "Traceback" not in response.text

        check()
    assert_leak_free(service_url)
