"""Take the dashboard screenshots shown in ``docs/dashboard.md`` (1280 and 390 pixels wide).

Usage: ``python -m tests.web.screenshots [OUT_DIR]`` (default ``docs/images``). Serves the
sample jobs on a temporary SQLite file, makes some history with an in-process worker (runs
completed, one in flight, one cancelled, one waiting for an event; job instances), and saves
the runs list, a run page, a waiting run's page and the jobs page at both widths with
Debian's headless Chromium.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from durable_effect import Effect
from durable_effect.workflow import TriggerRequest
from tests.web._browser import chromium, served
from tests.web.sample_app import ImportRequest, Reminder

PAGES = (("runs", "#/?wf=imports"), ("run", "done"), ("run-waiting", "waiting"), ("jobs", "#/jobs"))


async def make_history(site: object) -> dict[str, str]:
    """Runs and instances to look at; the page of a completed run and of a waiting one."""
    jobs = site.jobs  # type: ignore[attr-defined]
    imports = jobs.client.workflow("imports")
    requests = [
        TriggerRequest(
            input=ImportRequest(filename=f"{name}.csv", rows=rows),
            labels={"tenant": tenant},
        )
        for name, rows, tenant in (
            ("customers", 1200, "acme"),
            ("orders", 800, "acme"),
            ("invoices", 400, "globex"),
        )
    ]
    results = (await Effect.run_async(imports.batch_trigger(requests))).unwrap()
    worker = jobs.worker(concurrency=8, poll_interval=0.1)
    task = asyncio.ensure_future(worker.run())
    waits = jobs.client.workflow("waits")
    nap = (await Effect.run_async(waits.trigger("nightly cleanup"))).unwrap().run_id
    for result in results:
        await Effect.run_async(imports.wait(result.run_id, timeout="30 seconds"))
    live = await Effect.run_async(
        imports.trigger(
            ImportRequest(filename="products.csv", rows=2000), labels={"tenant": "initech"}
        )
    )
    await asyncio.sleep(1.4)  # the new one is part-way through
    await Effect.run_async(waits.cancel(nap))
    await Effect.run_async(waits.trigger("weekly digest"))
    approvals = jobs.client.workflow("approvals")
    waiting = (await Effect.run_async(approvals.trigger(1250))).unwrap().run_id
    await Effect.run_async(jobs.client.continuous("heartbeat").start(id="main", input={}))
    for who in ("ada", "grace"):
        await Effect.run_async(
            jobs.client.task("reminders").send(id=who, event=Reminder(text=f"call {who}"))
        )
    await Effect.run_async(jobs.client.debounce("clicks").add(id="home", event=3))
    await asyncio.sleep(0.3)
    await worker.stop()
    await task
    assert live.unwrap().run_id
    return {"done": f"#/run/imports/{results[0].run_id}", "waiting": f"#/run/approvals/{waiting}"}


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        async with served(Path(tmp) / "shots.db") as site, chromium() as browser:
            runs = await make_history(site)
            for width, height in ((1280, 860), (390, 844)):
                page = await browser.new_page(viewport={"width": width, "height": height})
                for name, fragment in PAGES:
                    target = runs.get(fragment, fragment)
                    await page.goto(site.url + target)
                    await page.wait_for_selector("#live.on")
                    await page.wait_for_timeout(400)
                    path = out / f"dashboard-{name}-{width}.png"
                    await page.screenshot(path=str(path), full_page=width < 800)
                    print(path)
                await page.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/images")))
