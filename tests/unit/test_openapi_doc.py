"""The OpenAPI document says what the API answers: 413 on every POST (bodies are read under a limit first),
400/415/422 where a body is decoded, the approval decision's required comment, and the event stream's items as
the objects they are (issue 15)."""

from __future__ import annotations

import json
from typing import Any

from diag.api import openapi


def _doc() -> dict[str, Any]:
    return dict(json.loads(openapi.document()))


def test_every_post_documents_413_and_bodies_document_400_415_422() -> None:
    doc = _doc()
    posts = [(path, ops["post"]) for path, ops in doc["paths"].items() if "post" in ops]
    assert len(posts) >= 9
    for path, op in posts:
        assert "413" in op["responses"], path
        assert "401" in op["responses"], path
        if "requestBody" in op:
            assert {"400", "415", "422"} <= set(op["responses"]), path


def test_approval_decisions_need_a_comment_and_show_rendered_commands() -> None:
    doc = _doc()
    schemas = doc["components"]["schemas"]
    body = doc["paths"]["/api/v1/approvals/{approval_id}/approve"]["post"]["requestBody"]
    assert body["required"] is True
    decision = schemas["ApprovalDecision"]
    assert decision["required"] == ["comment"] and decision["properties"]["comment"]["minLength"] == 1
    approval = schemas["ApprovalOut"]["properties"]
    assert approval["commands"]["items"]["$ref"].endswith("/RenderedCommand")
    assert set(schemas["ApprovalOut"]["properties"]["state"]["enum"]) == {
        "pending", "approved", "rejected", "cancelled", "expired"
    }  # fmt: skip


def test_the_event_stream_declares_its_items_as_objects() -> None:
    doc = _doc()
    media = doc["paths"]["/api/v1/checks/{job_id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    events = media["x-events"]
    assert set(events) == {"start", "host", "done"}
    for ref in events.values():
        name = ref["$ref"].rsplit("/", 1)[1]
        assert doc["components"]["schemas"][name]["type"] == "object"
