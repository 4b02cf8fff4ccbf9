"""``GET /api/stream``: the storage feed as server-sent events.

Live from the first frame, resumable with ``Last-Event-ID``, fed by workers in any process
(a worker in a subprocess on the same SQLite file), and a client that stops reading holds
nothing up: not the worker, not the other clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from durable_effect import Effect
from durable_effect.testing import TestRuntime
from durable_effect.web import create_app
from durable_effect.web._stream import BATCH
from tests.conftest_pg import pg_server, pg_store  # noqa: F401
from tests.jobs.conftest import POSTGRES, postgres_job_stores, storage_for  # noqa: F401
from tests.web._support import AsgiStream
from tests.web.sample_app import DEFINITIONS, jobs_on

ROOT = Path(__file__).resolve().parents[2]


def types_of(frames: list[dict[str, str]], run_id: str | None = None) -> list[str]:
    out = []
    for frame in frames:
        data = json.loads(frame["data"])
        assert data["type"] == frame["event"]
        if run_id is None or data.get("runId") == run_id:
            out.append(frame["event"])
    return out


@pytest.mark.parametrize("kind", ["memory", "sqlite", POSTGRES])
async def test_the_stream_starts_live_and_resumes_after_last_event_id(
    kind: str, tmp_path: Path
) -> None:
    async with TestRuntime(DEFINITIONS, storage=storage_for(kind, tmp_path, "s.db")) as rt:
        app = create_app(rt.jobs)
        handle = rt.client.workflow("waits")
        old = (await Effect.run_async(handle.trigger("before"))).unwrap().run_id
        async with AsgiStream(app, "/api/stream") as stream:
            assert stream.status == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-cache"
            new = (await Effect.run_async(handle.trigger("after"))).unwrap().run_id
            await rt.run_until_idle()
            await stream.wait_for(lambda: len(types_of(stream.frames(), new)) >= 3)
            frames = stream.frames()
        # live: nothing committed before the connection (the old run's trigger), what its
        # execution committed since, yes
        assert types_of(frames, old)[:1] == ["run:leased"]
        assert types_of(frames, new)[:3] == ["run:trigger", "run:leased", "step:start"]
        ids = [int(f["id"]) for f in frames]
        assert ids == sorted(set(ids))
        # resume after the first frame: everything after it, in the same order, same ids
        first = frames[0]["id"]
        async with AsgiStream(app, "/api/stream", headers={"Last-Event-ID": first}) as resumed:
            await resumed.wait_for(lambda: len(resumed.frames()) >= len(frames) - 1)
            again = resumed.frames()
        assert [f["id"] for f in again[: len(frames) - 1]] == [f["id"] for f in frames[1:]]
        assert [f["data"] for f in again[: len(frames) - 1]] == [f["data"] for f in frames[1:]]
        # from the start of the retained feed: the earlier run is there too
        async with AsgiStream(app, "/api/stream", headers={"Last-Event-ID": "0"}) as everything:
            await everything.wait_for(lambda: old in everything.text)
            assert types_of(everything.frames(), old)[0] == "run:trigger"
        assert rt.jobs.storage.feed_retain >= 1000


async def test_a_junk_last_event_id_starts_live(tmp_path: Path) -> None:
    async with TestRuntime(DEFINITIONS, storage=f"sqlite:///{tmp_path}/j.db") as rt:
        await Effect.run_async(rt.client.workflow("waits").trigger("before"))
        app = create_app(rt.jobs)
        async with AsgiStream(app, "/api/stream", headers={"Last-Event-ID": "x1"}) as stream:
            await asyncio.sleep(0.3)
            assert stream.frames() == []


async def test_a_stuck_client_blocks_neither_the_worker_nor_other_clients(tmp_path: Path) -> None:
    async with TestRuntime(DEFINITIONS, storage=f"sqlite:///{tmp_path}/stuck.db") as rt:
        app = create_app(rt.jobs)
        handle = rt.client.workflow("waits")
        runs = 3 * BATCH // 4  # about 3 batches of events (4 events per run)
        async with (
            AsgiStream(app, "/api/stream", stuck=True) as stuck,
            AsgiStream(app, "/api/stream") as reader,
        ):
            for n in range(runs):
                await Effect.run_async(handle.trigger(f"n{n}"))
            await asyncio.wait_for(rt.run_until_idle(), 60)  # the worker never waits
            await reader.wait_for(lambda: types_of(reader.frames()).count("run:trigger") == runs)
            counted = types_of(reader.frames())
            assert counted.count("run:leased") == runs
            # the stuck one got the first chunk and is parked on its second send: no queue
            assert stuck.sends <= 1
            hub = app.state.hub
            assert hub.listeners == 2
        await asyncio.sleep(0)
        assert app.state.hub.listeners == 0  # both left: the poller stopped


@pytest.mark.live
async def test_events_of_a_worker_in_another_process_are_streamed(tmp_path: Path) -> None:
    """A run triggered and executed by another process shows up, step by step."""
    db = tmp_path / "shared.db"
    jobs = jobs_on(f"sqlite:///{db}")
    async with jobs:
        app = create_app(jobs)
        async with AsgiStream(app, "/api/stream") as stream:
            script = (
                "import asyncio\n"
                "from durable_effect import Effect\n"
                "from tests.web.sample_app import ImportRequest, jobs_on\n"
                "async def main():\n"
                f"    async with jobs_on('sqlite:///{db}') as jobs:\n"
                "        h = jobs.client.workflow('imports')\n"
                "        req = ImportRequest(filename='x', rows=4)\n"
                "        r = await Effect.run_async(h.trigger(req))\n"
                "        print(r.unwrap().run_id, flush=True)\n"
                "        worker = jobs.worker(poll_interval=0.1)\n"
                "        task = asyncio.ensure_future(worker.run())\n"
                "        await Effect.run_async(h.wait(r.unwrap().run_id, timeout='30 seconds'))\n"
                "        await worker.stop()\n"
                "        await task\n"
                "asyncio.run(main())\n"
            )
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, env=env, cwd=ROOT, stdout=subprocess.PIPE
            )
            try:
                assert proc.stdout is not None
                run_id = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
                frames = await stream.frames_until("run:complete", timeout=40)
            finally:
                if proc.returncode is None:
                    await asyncio.wait_for(proc.wait(), 30)
            assert proc.returncode == 0
        kinds = types_of(frames, run_id)
        assert kinds[0] == "run:trigger"
        assert kinds.count("run:progress") == 4
        assert kinds[-1] == "run:complete"
        progress = [
            json.loads(f["data"])["progress"]["current"]
            for f in frames
            if f["event"] == "run:progress"
        ]
        assert progress == [1, 2, 3, 4]
