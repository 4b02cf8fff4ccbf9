"""The job routes of the web API: Continuous, Debounce and Task jobs and their instances.

``GET /api/jobs`` names them with their type (and a Continuous job's schedule); instance
routes read an instance's status and state or run one of its type's actions, answering
with the client call's result (200 even when it says ``not_found``). A GET of an unknown
instance is 404. Actions a job type does not have are 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from durable_effect._codec import encode_builtins
from durable_effect._jobs import DurableJobs
from durable_effect.errors import InstanceNotFoundError, JobNotFoundError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._continuous import ContinuousDefinition
from durable_effect.jobs._continuous_schedule import Cron
from durable_effect.web._http import ApiError, call, json_response, query_after, query_limit
from durable_effect.web._queries import instance_page

__all__ = ["JobRoutes"]

Endpoint = Callable[[Request], Awaitable[Response]]

#: The actions of each job type (an action is the client method of the same name).
ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    "continuous": ("trigger", "pause", "resume", "terminate"),
    "task": ("trigger", "terminate"),
    "debounce": ("flush", "clear"),
}
#: How many upcoming ticks of a schedule ``GET /api/jobs`` lists.
NEXT_TICKS: Final = 3


class JobRoutes:
    """The ``/api/jobs`` routes of one ``DurableJobs``."""

    def __init__(self, jobs: DurableJobs) -> None:
        self.jobs = jobs
        self.definitions: dict[str, JobDefinition] = {
            name: definition for name, definition in jobs.registry if definition.job_type in ACTIONS
        }

    def routes(self, wrap: Callable[[Endpoint], Endpoint]) -> list[Route]:
        """The routes, each endpoint passed through ``wrap`` (error handling)."""
        one = "/api/jobs/{job}/instances/{id}"
        return [
            Route("/api/jobs", wrap(self.list_jobs), methods=["GET"]),
            Route("/api/jobs/{job}/instances", wrap(self.list_instances), methods=["GET"]),
            Route(one, wrap(self.get_instance), methods=["GET"]),
            Route(one + "/{action}", wrap(self.act), methods=["POST"]),
        ]

    def _job(self, request: Request) -> tuple[str, JobDefinition]:
        name = request.path_params["job"]
        definition = self.definitions.get(name)
        if definition is None:
            raise JobNotFoundError(job_type="job", job_name=name)
        return name, definition

    def _handle(self, name: str, definition: JobDefinition) -> Any:
        client: Any = self.jobs.client
        return getattr(client, definition.job_type)(definition)

    async def list_jobs(self, request: Request) -> Response:
        """``{"jobs": [{"name", "type", "actions", "schedule"?, "next_ticks"?}]}``."""
        now = self.jobs.clock.now()
        out: list[dict[str, object]] = []
        for name, definition in self.definitions.items():
            item: dict[str, object] = {
                "name": name,
                "type": definition.job_type,
                "actions": list(ACTIONS[definition.job_type]),
            }
            if isinstance(definition, ContinuousDefinition):
                item.update(_schedule_of(definition, now))
            out.append(item)
        return json_response({"jobs": out})

    async def list_instances(self, request: Request) -> Response:
        """``{"instances": [...], "next_cursor"}`` (``status`` filters)."""
        name, _definition = self._job(request)
        status = request.query_params.get("status") or None
        if status is not None and len(status) > 64:
            raise ApiError.invalid("status", "not a status")
        instances, cursor = await instance_page(
            self.jobs,
            name,
            status=status,
            limit=query_limit(request),
            after=query_after(request),
        )
        return json_response({"instances": instances, "next_cursor": cursor})

    async def get_instance(self, request: Request) -> Response:
        """The instance's status result plus ``state`` (404 when there is none)."""
        name, definition = self._job(request)
        handle = self._handle(name, definition)
        instance_id = request.path_params["id"]
        status = await call(handle.status(instance_id))
        if status.status == "not_found":
            raise InstanceNotFoundError(instance_id=f"{definition.job_type}:{name}:{instance_id}")
        state = await call(handle.get_state(instance_id))
        plain = encode_builtins(status)
        assert isinstance(plain, dict)
        body = {"id": instance_id, "job_name": name, "job_type": definition.job_type, **plain}
        body["state"] = state.state
        for field in ("scheduled_at", "created_at"):  # a Task's state result has them too
            if field not in body and hasattr(state, field):
                body[field] = getattr(state, field)
        return json_response(body)

    async def act(self, request: Request) -> Response:
        """Run an action of the job's type on the instance: the client call's result."""
        name, definition = self._job(request)
        action = request.path_params["action"]
        allowed = ACTIONS[definition.job_type]
        if action not in allowed:
            raise ApiError(
                405,
                "MethodNotAllowed",
                f"{action!r} is not an action of {definition.job_type} jobs;"
                f" one of {list(allowed)}",
            )
        handle = self._handle(name, definition)
        result = await call(getattr(handle, action)(request.path_params["id"]))
        return json_response(result)


def _schedule_of(definition: ContinuousDefinition[Any], now: datetime) -> dict[str, object]:
    """A Continuous job's schedule, described, and its next ticks after ``now``."""
    schedule = definition.schedule
    ticks: list[datetime] = []
    if isinstance(schedule, Cron):
        text = f"cron {schedule.expr} ({schedule.cron.tz})"
        tick = schedule.first_after(now, now)
        for _ in range(NEXT_TICKS):
            ticks.append(tick)
            tick = schedule.next_after(tick)
    else:
        text = f"every {schedule.interval.total_seconds():g} seconds"
    out: dict[str, object] = {"schedule": text}
    if ticks:
        out["next_ticks"] = ticks
    return out
