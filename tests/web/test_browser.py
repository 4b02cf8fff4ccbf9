"""The dashboard in a real headless Chromium, served on loopback, worked on by other processes.

* the page loads (runs, filters, jobs, schedules) at 1280 and at 390 pixels wide;
* a run triggered from another process appears and its progress bar moves, as a worker in
  a third process executes it;
* a cancel from the page (with its confirmation) cancels the run;
* an event sent from the page (its dialog) resumes a run waiting for it in a worker process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage

from durable_effect import Effect
from tests.web._browser import APP, Served, chromium, cli, served, worker_process

pytestmark = pytest.mark.live


async def test_the_page_loads_at_both_widths(tmp_path: Path) -> None:
    async with served(tmp_path / "load.db") as site, chromium() as browser:
        await Effect.run_async(site.jobs.client.continuous("heartbeat").start(id="main", input={}))
        for width in (1280, 390):
            page = await browser.new_page(viewport={"width": width, "height": 900})
            errors: list[str] = []

            def pageerror(exc: object, errors: list[str] = errors) -> None:
                errors.append(str(exc))

            def console(message: ConsoleMessage, errors: list[str] = errors) -> None:
                if message.type == "error":
                    errors.append(message.text)

            page.on("pageerror", pageerror)
            page.on("console", console)
            await page.goto(site.url)
            await page.wait_for_selector('[data-workflow="imports"]')
            await page.wait_for_selector("#live.on")  # the event stream is connected
            for status in ("all", "pending", "failed"):
                assert await page.is_visible(f'[data-filter="{status}"]')
            scroll = await page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"the page is wider than the window at {width}px"
            await page.click('[data-nav="jobs"]')
            await page.wait_for_selector('[data-instance="main"]')
            assert "cron 0 3 * * *" in await page.inner_text('[data-schedule="heartbeat"]')
            assert errors == []
            await page.close()


async def test_a_run_from_another_process_appears_and_its_bar_moves(tmp_path: Path) -> None:
    async with served(tmp_path / "live.db") as site, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(site.url + "#/?wf=imports")
        await page.wait_for_selector("#live.on")
        out = await cli(
            "runs",
            "trigger",
            APP,
            "imports",
            "--storage",
            site.storage,
            "--json",
            "--input",
            json.dumps({"filename": "people.csv", "rows": 8}),
        )
        run_id = json.loads(out)["run_id"]
        row = f'tr[data-run-id="{run_id}"]'
        await page.wait_for_selector(row, timeout=10_000)  # pending, before any worker
        assert await page.inner_text(f"{row} [data-status]") == "pending"
        seen: list[int] = []
        async with worker_process(site.storage):
            for target in (1, 2, 4):
                # the value that met the target, read in the same check: a second read could
                # catch a list refresh that left before the event, one batch behind it
                reached = await page.wait_for_function(
                    "([sel, n]) => { const p = document.querySelector(sel + ' progress');"
                    " return p !== null && Number(p.value) >= n ? Number(p.value) : null; }",
                    arg=[row, target],
                    timeout=20_000,
                )
                seen.append(int(await reached.json_value()))
            await page.wait_for_selector(f'{row} [data-status="completed"]', timeout=20_000)
        assert seen == sorted(seen)
        assert seen[0] < seen[-1] == 4
        count = await page.inner_text('[data-count="completed"]')
        assert count == "1"


async def sleeping_run(site: Served, workflow: str, value: object) -> str:
    """A run of ``workflow`` triggered with ``value``, once a worker put it to sleep."""
    handle = site.jobs.client.workflow(workflow)
    run_id: str = (await Effect.run_async(handle.trigger(value))).unwrap().run_id
    run = None
    for _ in range(200):
        run = (await Effect.run_async(handle.get_run(run_id))).unwrap()
        if run.status == "sleeping":
            break
        await site.jobs.storage.wait_for_change(0.05)
    assert run is not None
    assert run.status == "sleeping"
    return run_id


async def test_a_cancel_from_the_page_cancels_the_run(tmp_path: Path) -> None:
    async with served(tmp_path / "cancel.db") as site, chromium() as browser:
        handle = site.jobs.client.workflow("waits")
        async with worker_process(site.storage):
            run_id = await sleeping_run(site, "waits", "nap")
            page = await browser.new_page(viewport={"width": 390, "height": 800})
            await page.goto(f"{site.url}#/run/waits/{run_id}")
            await page.wait_for_selector('dd[data-fact="Status"] [data-status="sleeping"]')
            await page.click('[data-action="cancel"]')
            assert await page.is_visible("#confirm")
            await page.click("#confirm-ok")
            await page.wait_for_selector(
                'dd[data-fact="Status"] [data-status="cancelled"]', timeout=10_000
            )
        final = (await Effect.run_async(handle.get_run(run_id))).unwrap()
        assert final.status == "cancelled"


async def test_an_event_sent_from_the_page_resumes_a_waiting_run(tmp_path: Path) -> None:
    async with served(tmp_path / "send.db") as site, chromium() as browser:
        handle = site.jobs.client.workflow("approvals")
        async with worker_process(site.storage):
            run_id = await sleeping_run(site, "approvals", 120)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{site.url}#/run/approvals/{run_id}")
            await page.wait_for_selector("#live.on")
            waiting = await page.wait_for_selector("#waiting-for")
            assert waiting is not None
            assert "Waiting at step decision" in await waiting.inner_text()
            await page.click('[data-action="send"]')
            assert await page.is_visible("#send")
            assert "waits at step decision" in await page.inner_text("#send-waiting")
            await page.fill("#send-event", '{"type": "Approval", "by": 7}')
            await page.click("#send-ok")  # refused, naming the field; the dialog stays open
            await page.wait_for_selector("#send-error:has-text('$.event.by')")
            assert await page.is_visible("#send")
            await page.fill("#send-event", json.dumps({"type": "Approval", "by": "ann"}))
            await page.fill("#send-id", "ticket-81")
            await page.click("#send-ok")
            await page.wait_for_selector(
                'dd[data-fact="Status"] [data-status="completed"]', timeout=20_000
            )
            assert "approved by ann" in await page.inner_text("#run-output")
        run = (await Effect.run_async(handle.get_run(run_id))).unwrap()
        assert (run.status, run.output) == ("completed", "approved by ann")
        assert await page.query_selector("#waiting-for") is None
