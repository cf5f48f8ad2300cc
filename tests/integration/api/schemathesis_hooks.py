"""Schemathesis hooks for test_schemathesis.py, loaded by `st` through SCHEMATHESIS_HOOKS.

DELETE /v1/tokens/{token_id} is fuzzed too, but never on the token the run authenticates
with (its id in FUZZ_OWN_TOKEN_ID): revoking it would leave the rest of the run testing
nothing but 401s. Schemathesis reuses values it sees in responses (GET /v1/tokens lists
the run's own token), and a filter_path_parameters hook did not stop every such request in
practice, so the request itself is checked just before it is sent, in every phase, and
pointed at a token id that does not exist (404, a documented answer).
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.hooks import HookContext

OWN_TOKEN_ID = int(os.environ.get("FUZZ_OWN_TOKEN_ID", "0"))
NO_SUCH_TOKEN = 2**62


def _is_own(value: Any) -> bool:
    text = str(value)  # the API reads the id as ASCII digits: "02" is token 2 too
    return text.isascii() and text.isdigit() and int(text) == OWN_TOKEN_ID


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:  # type: ignore[type-arg]
    if (
        case.method.upper() == "DELETE"
        and case.operation.path == "/v1/tokens/{token_id}"
        and case.path_parameters
        and _is_own(case.path_parameters.get("token_id"))
    ):
        case.path_parameters["token_id"] = NO_SUCH_TOKEN
