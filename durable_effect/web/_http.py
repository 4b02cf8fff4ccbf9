"""The HTTP edge of the web API: JSON responses, typed errors as status codes, input checks.

Bodies are JSON with the snake_case field names of the Python objects (``run_id``,
``created_at``; instants in ISO 8601), encoded by the one codec boundary (msgspec). A typed
failure becomes ``{"error": tag, "message": ...}`` (``"path"`` too for a ``ValidationError``)
with its status: 404 unknown job, workflow, run or instance; 409 a conflict, an invalid state
or a duplicate event; 422 bad input; 503 storage unavailable. Request bodies are bounded and
checked field by field before any client call runs: nothing is written for bad input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from returns.pipeline import is_successful
from starlette.requests import Request
from starlette.responses import Response

from durable_effect._codec import decode_json, encode_json
from durable_effect._effect import Effect
from durable_effect.errors import (
    ConflictError,
    DuplicateEventError,
    ExecutionError,
    InstanceNotFoundError,
    InvalidStateError,
    JobNotFoundError,
    StorageError,
    TaggedError,
    ValidationError,
)

__all__ = [
    "MAX_BODY",
    "ApiError",
    "call",
    "error_response",
    "json_response",
    "read_body",
    "query_limit",
]

#: The largest request body accepted (bytes): an input, labels and keys fit well within it.
MAX_BODY: Final = 1024 * 1024
#: Page sizes of list routes.
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500

_STATUS: Final[tuple[tuple[type[TaggedError], int], ...]] = (
    (ValidationError, 422),
    (JobNotFoundError, 404),
    (InstanceNotFoundError, 404),
    (ConflictError, 409),
    (InvalidStateError, 409),
    (DuplicateEventError, 409),
    (StorageError, 503),
    (ExecutionError, 500),
)


class ApiError(Exception):
    """A failure of the HTTP layer itself (bad query, body too large, unsupported action)."""

    def __init__(self, status: int, error: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.path = path

    @staticmethod
    def invalid(path: str, message: str) -> ApiError:
        """A 422 ``ValidationError`` naming ``path`` (a query parameter or a body field)."""
        return ApiError(422, "ValidationError", message, path)


def json_response(value: object, status: int = 200) -> Response:
    """``value`` (attrs classes, Structs, datetimes… included) as a JSON response."""
    return Response(encode_json(value), status_code=status, media_type="application/json")


def error_response(error: BaseException) -> Response:
    """The response of a typed failure or an `ApiError` (see the module docstring)."""
    if isinstance(error, ApiError):
        body: dict[str, object] = {"error": error.error, "message": error.message}
        if error.path is not None:
            body["path"] = error.path
        return json_response(body, error.status)
    if isinstance(error, ValidationError):
        return json_response(
            {"error": error.tag, "message": error.message, "path": error.path}, 422
        )
    if isinstance(error, TaggedError):
        status = next((code for cls, code in _STATUS if isinstance(error, cls)), 500)
        return json_response({"error": error.tag, "message": error.describe()}, status)
    return json_response({"error": "InternalError", "message": "internal error"}, 500)


async def call(effect: Effect[Any, Any]) -> Any:
    """Run a client call: its value, or raise its typed failure (a defect propagates)."""
    result = await Effect.run_async(effect)
    if is_successful(result):
        return result.unwrap()
    failure: BaseException = result.failure()
    raise failure


async def read_body(request: Request, fields: Sequence[str]) -> dict[str, object]:
    """The request's JSON object body (at most `MAX_BODY` bytes; empty means ``{}``).

    ``ApiError`` 413 when larger, 422 when not a JSON object or when a field is not one of
    ``fields`` (a misspelt option is refused rather than ignored).
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise ApiError(413, "PayloadTooLarge", f"the body is limited to {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "PayloadTooLarge", f"the body is limited to {MAX_BODY} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data.strip():
        return {}
    try:
        body = decode_json(data)
    except ValidationError as exc:
        raise ApiError.invalid(exc.path, f"the body is not valid JSON: {exc.message}") from None
    if not isinstance(body, dict):
        raise ApiError.invalid("$", "the body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError.invalid(
            f"$.{unknown[0]}", f"unknown field {unknown[0]!r}; expected one of {list(fields)}"
        )
    return body


def optional_text(body: Mapping[str, object], field: str) -> str | None:
    """``body[field]`` when it is a string, ``None`` when absent or null (else 422)."""
    value = body.get(field)
    if value is None or isinstance(value, str):
        return value
    raise ApiError.invalid(f"$.{field}", f"{field} must be a string or null")


def optional_labels(body: Mapping[str, object], field: str = "labels") -> dict[str, str] | None:
    """``body[field]`` as a mapping of strings (``None`` when absent or null; else 422)."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError.invalid(f"$.{field}", f"{field} must be an object of string values")
    return {str(k): str(v) for k, v in value.items()}


def query_limit(request: Request) -> int:
    """The ``limit`` query parameter: 1 to `MAX_LIMIT`, `DEFAULT_LIMIT` when absent."""
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError.invalid("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def query_after(request: Request) -> str | None:
    """The opaque ``after`` cursor (``None`` when absent or empty)."""
    raw = request.query_params.get("after")
    if raw is None or raw == "":
        return None
    if len(raw) > 4096:
        raise ApiError.invalid("after", "after is not a cursor this API gave")
    return raw


def with_path_prefix(error: ValidationError, prefix: str) -> ValidationError:
    """``error`` with its JSON path under ``prefix`` (``$.items`` → ``$.input.items``)."""
    path = error.path
    rest = path[1:] if path.startswith("$") else f".{path}"
    return ValidationError(schema=error.schema, message=error.message, path=f"{prefix}{rest}")
