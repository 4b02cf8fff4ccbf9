"""SPEC 10.1: a run's labels are bounded — at most 64; keys 1 to 128 characters, values at
most 1,024, neither with NUL. A bad label is a ``ValidationError`` naming it, and nothing is
written (no run, no event), through ``trigger``, ``batch_trigger`` and ``list_runs``."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_effect import Effect, Step, TriggerRequest, ValidationError, Workflow
from tests.workflow._support import STORAGES, runtime

pytestmark = pytest.mark.parametrize("kind", STORAGES)


def echo(step: Step, value: int) -> Effect[int]:
    return Effect.succeed(value)


wf = Workflow.make(int, echo, output_schema=int)

BAD: list[tuple[object, str, str]] = [
    ({"": "x"}, "labels", "a key must be 1 to 128 characters, got ''"),
    ({"k" * 129: "x"}, "labels", "a key must be 1 to 128 characters"),
    ({"a\x00b": "x"}, "labels", "a key must not contain NUL"),
    ({"k": "v" * 1025}, "labels['k']", "must be at most 1024 characters, got 1025"),
    ({"k": "a\x00"}, "labels['k']", "must not contain NUL"),
    ({"k": 1}, "labels['k']", "must be a str, got int"),
    ({f"k{i}": "v" for i in range(65)}, "labels", "at most 64 labels per run, got 65"),
    ([("k", "v")], "labels", "must be a mapping of str to str, got list"),
    (5, "labels", "must be a mapping of str to str, got int"),
]


@pytest.mark.parametrize(("labels", "path", "message"), BAD)
async def test_a_bad_label_is_refused_and_nothing_is_written(
    kind: str, tmp_path: Path, labels: object, path: str, message: str
) -> None:
    async with runtime(kind, tmp_path, wf=wf) as rt:
        handle = rt.client.workflow(wf)
        with pytest.raises(ValidationError) as refused:
            await handle.trigger(1, labels=labels)  # type: ignore[arg-type]
        assert (refused.value.schema, refused.value.path) == ("labels", path)
        assert refused.value.message.startswith(message)
        assert str(refused.value).startswith(f"ValidationError: {path}: {message}")
        good = TriggerRequest(input=2)
        bad = TriggerRequest(input=3, labels=labels)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await handle.batch_trigger([good, bad])
        with pytest.raises(ValidationError):
            await handle.list_runs(labels=labels)  # type: ignore[arg-type]
        assert await handle.list_runs() == []
        assert [event.type for event in rt.events] == []


async def test_labels_at_the_bounds_are_kept_whole(kind: str, tmp_path: Path) -> None:
    labels = {f"{i:03d}" + "k" * 125: "v" * 1024 for i in range(64)}
    async with runtime(kind, tmp_path, wf=wf) as rt:
        handle = rt.client.workflow(wf)
        run_id = (await handle.trigger(1, labels=labels)).run_id
        assert (await handle.get_run(run_id)).labels == labels
        assert [r.id for r in await handle.list_runs(labels={"000" + "k" * 125: "v" * 1024})] == [
            run_id
        ]
