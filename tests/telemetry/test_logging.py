"""Stdlib logging integration: ``Effect.log_*`` records, annotations and per-job thresholds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Never

import pytest

from durable_effect import Effect, _log
from durable_effect._log import annotate, level_for

ANNOTATIONS: dict[str, object] = {
    "job_type": "continuous",
    "job_name": "x",
    "instance_id": "continuous:x:1",
}


class ListHandler(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def records() -> Iterator[ListHandler]:
    """A handler on the ``durable_effect`` logger, which is opened to DEBUG for the test."""
    logger = logging.getLogger("durable_effect")
    handler = ListHandler()
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def run(effect: Effect[None, Never]) -> None:
    result = Effect.run_sync(effect)
    assert result.unwrap() is None


def every_level() -> Effect[None, Never]:
    return (
        Effect.log_debug("debug")
        .flat_map(lambda _: Effect.log_info("info"))
        .flat_map(lambda _: Effect.log_warning("warning"))
        .flat_map(lambda _: Effect.log_error("error"))
    )


def fields_of(record: logging.LogRecord) -> object:
    return record.__dict__["fields"]


def test_log_info_inside_annotate_carries_the_annotations(records: ListHandler) -> None:
    with annotate(ANNOTATIONS, level_for(True)):
        run(Effect.log_info("refreshed token", attempt=2, user="u1"))
    [record] = records.records
    assert record.name == "durable_effect"
    assert record.levelno == logging.INFO
    assert record.getMessage() == "refreshed token"
    assert record.__dict__["job_type"] == "continuous"
    assert record.__dict__["job_name"] == "x"
    assert record.__dict__["instance_id"] == "continuous:x:1"
    assert fields_of(record) == {"attempt": 2, "user": "u1"}


def test_fields_are_empty_without_keyword_arguments(records: ListHandler) -> None:
    with annotate(ANNOTATIONS, level_for(True)):
        run(Effect.log_warning("plain"))
    [record] = records.records
    assert fields_of(record) == {}


def test_logging_false_keeps_only_errors(records: ListHandler) -> None:
    assert level_for(False) == logging.ERROR
    with annotate(ANNOTATIONS, level_for(False)):
        run(every_level())
    assert records.messages() == ["error"]


def test_logging_true_keeps_everything(records: ListHandler) -> None:
    assert level_for(True) == logging.DEBUG
    with annotate(ANNOTATIONS, level_for(True)):
        run(every_level())
    assert records.messages() == ["debug", "info", "warning", "error"]
    assert [r.levelno for r in records.records] == [
        logging.DEBUG,
        logging.INFO,
        logging.WARNING,
        logging.ERROR,
    ]


def test_a_level_is_a_threshold(records: ListHandler) -> None:
    assert level_for(logging.WARNING) == logging.WARNING
    with annotate(ANNOTATIONS, level_for(logging.WARNING)):
        run(every_level())
    assert records.messages() == ["warning", "error"]


def test_none_silences_everything(records: ListHandler) -> None:
    with annotate(ANNOTATIONS, _log.NONE):
        run(every_level())
        run(Effect.log_error("still nothing"))
    assert records.records == []


def test_level_for_rejects_other_values() -> None:
    with pytest.raises(TypeError, match="logging must be a bool or a logging level"):
        level_for("debug")  # type: ignore[arg-type]


def test_the_logger_level_still_applies(records: ListHandler) -> None:
    logging.getLogger("durable_effect").setLevel(logging.ERROR)
    with annotate(ANNOTATIONS, level_for(True)):
        run(every_level())
    assert records.messages() == ["error"]


def test_nested_annotations_merge_and_are_restored(records: ListHandler) -> None:
    with annotate(ANNOTATIONS, level_for(False)):
        with annotate({"run_id": "r1", "step": "charge"}, level_for(True)):
            run(Effect.log_info("inner"))
        run(Effect.log_info("outer, below the job threshold"))
        run(Effect.log_error("outer"))
    run(Effect.log_debug("outside"))

    inner, outer, outside = records.records
    assert inner.__dict__["run_id"] == "r1"
    assert inner.__dict__["step"] == "charge"
    assert inner.__dict__["instance_id"] == "continuous:x:1"
    assert outer.getMessage() == "outer"
    assert "run_id" not in outer.__dict__
    assert outer.__dict__["instance_id"] == "continuous:x:1"
    assert outside.getMessage() == "outside"  # no threshold outside a handler
    assert "instance_id" not in outside.__dict__


def test_threshold_none_keeps_the_enclosing_threshold(records: ListHandler) -> None:
    with annotate(ANNOTATIONS, level_for(False)), annotate({"step": "s"}):
        run(every_level())
    [record] = records.records
    assert record.getMessage() == "error"
    assert record.__dict__["step"] == "s"


def test_effects_log_when_run_not_when_built(records: ListHandler) -> None:
    effect = Effect.log_info("once per run")
    assert records.records == []
    with annotate(ANNOTATIONS, level_for(True)):
        run(effect)
        run(effect)
    assert records.messages() == ["once per run", "once per run"]


async def test_concurrent_handlers_keep_their_own_annotations(records: ListHandler) -> None:
    async def handler(instance: str) -> None:
        with annotate({**ANNOTATIONS, "instance_id": instance}, level_for(True)):
            await asyncio.sleep(0)
            await Effect.run_async(Effect.log_info("tick", instance=instance))
            await asyncio.sleep(0)
            await Effect.run_async(Effect.log_info("tock", instance=instance))

    await asyncio.gather(handler("continuous:x:1"), handler("continuous:x:2"))
    assert len(records.records) == 4
    for record in records.records:
        assert fields_of(record) == {"instance": record.__dict__["instance_id"]}
    assert sorted(r.__dict__["instance_id"] for r in records.records) == [
        "continuous:x:1",
        "continuous:x:1",
        "continuous:x:2",
        "continuous:x:2",
    ]
