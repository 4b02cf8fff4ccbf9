"""The workflow routes of the web API: workflows with their counts, runs, steps, logs, actions.

Each route resolves the workflow by its registered name (404 otherwise), checks its input,
makes one client call and answers with its result (see ``_http`` for bodies and errors).
Events are sent to a run (``POST …/events``, the client's ``send``) and its pending events
read with what it waits for (``GET …/events``, ``pending_events``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from durable_effect._codec import Codec
from durable_effect._jobs import DurableJobs
from durable_effect.errors import JobNotFoundError, ValidationError
from durable_effect.web._http import (
    ApiError,
    call,
    json_response,
    optional_labels,
    optional_text,
    query_after,
    query_limit,
    read_body,
    with_path_prefix,
)
from durable_effect.web._queries import RUN_STATUSES, run_counts, run_page
from durable_effect.workflow._definition import WorkflowDefinition
from durable_effect.workflow._records import LOG_CODEC, LOG_PREFIX, run_ref

__all__ = ["WorkflowRoutes"]

Endpoint = Callable[[Request], Awaitable[Response]]

_TRIGGER_FIELDS = ("input", "idempotency_key", "concurrency_key", "labels")
_SEND_FIELDS = ("event", "event_id")
_MAX_FILTERS = 64


class WorkflowRoutes:
    """The ``/api/workflows`` routes of one ``DurableJobs``."""

    def __init__(self, jobs: DurableJobs) -> None:
        self.jobs = jobs
        self.workflows: dict[str, WorkflowDefinition[Any, Any]] = {
            name: definition
            for name, definition in jobs.registry
            if isinstance(definition, WorkflowDefinition)
        }

    def routes(self, wrap: Callable[[Endpoint], Endpoint]) -> list[Route]:
        """The routes, each endpoint passed through ``wrap`` (error handling)."""
        run = "/api/workflows/{wf}/runs/{run_id}"
        return [
            Route("/api/workflows", wrap(self.list_workflows), methods=["GET"]),
            Route("/api/workflows/{wf}/runs", wrap(self.list_runs), methods=["GET"]),
            Route("/api/workflows/{wf}/runs", wrap(self.trigger), methods=["POST"]),
            Route(run, wrap(self.get_run), methods=["GET"]),
            Route(run, wrap(self.delete_run), methods=["DELETE"]),
            Route(f"{run}/steps", wrap(self.steps), methods=["GET"]),
            Route(f"{run}/logs", wrap(self.logs), methods=["GET"]),
            Route(f"{run}/cancel", wrap(self.cancel), methods=["POST"]),
            Route(f"{run}/retrigger", wrap(self.retrigger), methods=["POST"]),
            Route(f"{run}/resume", wrap(self.resume), methods=["POST"]),
            Route(f"{run}/fork", wrap(self.fork), methods=["POST"]),
            Route(f"{run}/events", wrap(self.pending_events), methods=["GET"]),
            Route(f"{run}/events", wrap(self.send), methods=["POST"]),
        ]

    def _handle(self, request: Request) -> Any:
        name = request.path_params["wf"]
        if name not in self.workflows:
            raise JobNotFoundError(job_type="workflow", job_name=name)
        return self.jobs.client.workflow(self.workflows[name])

    # -- reads ---------------------------------------------------------------------------

    async def list_workflows(self, request: Request) -> Response:
        """``{"workflows": [{"name", "counts": {status: n}}]}``."""
        out = []
        for name, definition in self.workflows.items():
            counts = await run_counts(self.jobs.client.workflow(definition))
            out.append({"name": name, "counts": counts})
        return json_response({"workflows": out})

    async def list_runs(self, request: Request) -> Response:
        """``{"runs": [...], "next_cursor"}``, newest first, ``status``/``label`` filters."""
        handle = self._handle(request)
        statuses = request.query_params.getlist("status")
        unknown = [s for s in statuses if s not in RUN_STATUSES]
        if unknown:
            raise ApiError.invalid(
                "status", f"unknown run status {unknown[0]!r}; one of {list(RUN_STATUSES)}"
            )
        labels: dict[str, str] = {}
        pairs = request.query_params.getlist("label")
        if len(pairs) > _MAX_FILTERS or len(statuses) > _MAX_FILTERS:
            raise ApiError.invalid("label", f"at most {_MAX_FILTERS} filters of each kind")
        for pair in pairs:
            key, sep, value = pair.partition(":")
            if not sep or not key:
                raise ApiError.invalid("label", f"label filters are key:value, got {pair!r}")
            labels[key] = value
        runs, cursor = await run_page(
            handle,
            statuses=statuses,
            labels=labels,
            limit=query_limit(request),
            after=query_after(request),
        )
        return json_response({"runs": runs, "next_cursor": cursor})

    async def get_run(self, request: Request) -> Response:
        """The run: its fields at the top level."""
        run = await call(self._handle(request).get_run(request.path_params["run_id"]))
        return json_response(run)

    async def steps(self, request: Request) -> Response:
        """``{"steps": [...]}``: completed and failed steps with outputs, errors, timings."""
        steps = await call(self._handle(request).steps(request.path_params["run_id"]))
        return json_response({"steps": steps})

    async def logs(self, request: Request) -> Response:
        """``{"logs": [{"at", "level", "message", "step", "data"}]}``, oldest first."""
        name = request.path_params["wf"]
        handle = self._handle(request)
        run_id = request.path_params["run_id"]
        await call(handle.get_run(run_id))  # 404 for an unknown (or expired) run
        ref = run_ref(name, run_id)
        records = (await self.jobs.engine.read([ref]))[ref.instance_id].records
        logs = [LOG_CODEC.decode(records[k]) for k in sorted(records) if k.startswith(LOG_PREFIX)]
        return json_response({"logs": logs})

    async def pending_events(self, request: Request) -> Response:
        """``{"run_id", "waiting", "events": [{"seq", "event", "event_id", "sent_at"}]}``: the
        events sent and not yet taken by a wait (oldest first), and what the run waits for
        (``waiting``: ``{"step", "event", "since", "until"}``, or ``null``)."""
        pending = await call(self._handle(request).pending_events(request.path_params["run_id"]))
        return json_response(pending)

    # -- actions -------------------------------------------------------------------------

    async def trigger(self, request: Request) -> Response:
        """201 ``{"run_id", "disposition"}`` when created, 200 when idempotent or coalesced."""
        handle = self._handle(request)
        definition = self.workflows[request.path_params["wf"]]
        body = await read_body(request, _TRIGGER_FIELDS)
        value = required(body, "input", definition.input_codec, " (null for a workflow without)")
        result = await call(
            handle.trigger(
                value,
                idempotency_key=optional_text(body, "idempotency_key"),
                concurrency_key=optional_text(body, "concurrency_key"),
                labels=optional_labels(body),
            )
        )
        return json_response(result, 201 if result.disposition == "created" else 200)

    async def cancel(self, request: Request) -> Response:
        """Cancel an active run: ``{"run_id", "cancelled": true}``."""
        run_id = request.path_params["run_id"]
        await call(self._handle(request).cancel(run_id))
        return json_response({"run_id": run_id, "cancelled": True})

    async def retrigger(self, request: Request) -> Response:
        """A new run with a finished run's input: ``{"run_id", "disposition"}``."""
        result = await call(self._handle(request).retrigger(request.path_params["run_id"]))
        return json_response(result)

    async def resume(self, request: Request) -> Response:
        """Continue a failed or cancelled run: the run, ``pending`` again."""
        run = await call(self._handle(request).resume(request.path_params["run_id"]))
        return json_response(run)

    async def fork(self, request: Request) -> Response:
        """A new run of a finished run, steps before ``from_step`` copied: 201
        ``{"run_id", "disposition"}``."""
        handle = self._handle(request)
        body = await read_body(request, ("from_step",))
        from_step = optional_text(body, "from_step")
        try:
            result = await call(handle.fork(request.path_params["run_id"], from_step=from_step))
        except ValidationError as exc:
            raise with_path_prefix(exc, "$") from None
        return json_response(result, 201 if result.disposition == "created" else 200)

    async def send(self, request: Request) -> Response:
        """Send ``{"event", "event_id"?}`` to the run: 202 ``{"run_id", "accepted": true,
        "duplicate": false}`` when queued, 200 with ``duplicate: true`` for an ``event_id``
        already sent to it (nothing queued)."""
        handle = self._handle(request)
        definition = self.workflows[request.path_params["wf"]]
        body = await read_body(request, _SEND_FIELDS)
        event = required(body, "event", definition.event_codec)
        event_id = optional_text(body, "event_id")
        try:
            result = await call(
                handle.send(request.path_params["run_id"], event, event_id=event_id)
            )
        except ValidationError as exc:  # the event_id, or the event's encoded size
            raise with_path_prefix(exc, "$") from None
        return json_response(result, 202 if result.accepted else 200)

    async def delete_run(self, request: Request) -> Response:
        """Delete a finished run: 204."""
        await call(self._handle(request).delete_run(request.path_params["run_id"]))
        return Response(status_code=204)


def required(body: Mapping[str, object], field: str, codec: Codec[Any], hint: str = "") -> Any:
    """``body[field]`` validated by ``codec`` (422 naming ``$.field…`` when absent or invalid)."""
    if field not in body:
        raise ApiError.invalid(f"$.{field}", f"{field} is required{hint}")
    try:
        return codec.validate(body[field])
    except ValidationError as exc:
        raise with_path_prefix(exc, f"$.{field}") from None
