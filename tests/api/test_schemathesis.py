"""Schemathesis generates requests from the OpenAPI document with an operate key, against the
app on a real folder (a git work tree, so job and task changes are written back) and state
store: no request may end in a server error. Bounded: a few
examples per operation, no shrinking (the whole test takes seconds)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.api.conftest import Api

EXAMPLES = 15


def test_no_generated_request_is_a_server_error(git_api: Api):
    api = git_api
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    headers = {"Authorization": f"Bearer {api.keys['operate']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 31
    failures: list[str] = []
    statuses: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case) -> None:
            if case.path.endswith("/log/stream"):
                return  # a stream of a run that is going on never ends; its errors are tested elsewhere
            response = case.call(headers=headers)
            statuses.add(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} {case.body!r}: {response.text[:300]}"
                )

        check()
    assert failures == []
    assert {200, 404, 422} <= statuses  # requests reached the handlers, not only validation
