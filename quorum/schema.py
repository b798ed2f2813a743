"""OpenAPI schema post-processing (drf-spectacular ``POSTPROCESSING_HOOKS``): every operation documents
the error answers it can give, with their body.

Every error body of the API is a JSON object (``quorum.web.exception_handler``): ``detail`` (what went
wrong, in words) and ``code`` for most; ``errors`` ({field: message}) for invalid input; DRF's own
validation errors name the fields at the top level ({field: [messages]}). The ``Error`` component says
so. Which statuses an operation can answer:

- 401 without valid credentials, 403 without the role it needs, 404 for an unknown id (or a project
  you are not a member of), 429 when token authentications from the address failed too often: all;
- 400 invalid input (body, query or path parameters): all;
- 409 a conflict with the current state (something already active, decided, expired): writes;
- 415 a body of a type the endpoint does not read: operations with a request body.

Request bodies are documented as JSON where JSON is read (the form encodings DRF also parses are a
convenience, not the contract).
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "description": "An error: ``detail`` says what went wrong; ``errors`` names each invalid field; "
    "DRF validation errors give {field: [messages]} instead.",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": True,
}

DESCRIPTIONS = {
    "400": "Invalid input: the body, a query or a path parameter (the field and the reason are named).",
    "401": "No valid credentials (a token or a session).",
    "403": "Your role in the project does not allow this.",
    "404": "No such object, or a project you are not a member of.",
    "409": "Conflicts with the current state (e.g. a job of this kind is already active).",
    "415": "The body's content type is not one this endpoint reads.",
    "429": "Too many requests: wait the seconds of the Retry-After header.",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}}


def _error_response(status: str, existing: dict | None) -> dict:
    response = dict(existing or {})
    response.setdefault("description", DESCRIPTIONS[status])
    content = response.setdefault("content", {})
    content.setdefault("application/json", {"schema": {"$ref": "#/components/schemas/Error"}})
    if status == "429":
        response.setdefault("headers", RETRY_AFTER)
    return response


def document_errors(result, generator, request, public):
    """Adds the ``Error`` component and each operation's error responses."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            if method not in WRITE_METHODS | {"get", "head", "options"}:
                continue
            statuses = ["400", "401", "403", "404", "429"]
            if method in WRITE_METHODS:
                statuses.append("409")
            if "requestBody" in operation:
                statuses.append("415")
            body = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                # JSON is the API's contract; forms are read too (DRF's parsers) but not promised.
                for form in ("application/x-www-form-urlencoded", "multipart/form-data"):
                    body.pop(form, None)
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses[status] = _error_response(status, responses.get(status))
    return result
