// The 3-step workflow of benchmarks/bench_workflows.py on Durably (@coji/durably), for the
// same measurement: `callers` concurrent callers doing triggerAndWait in a loop, a worker in
// the same process, better-sqlite3 in WAL mode with the given `synchronous`.
//
// Usage: node bench.mjs DB RUNS CALLERS full|normal   -> prints {"rate": runs/s} on stdout.
// Needs `npm install` in this directory (see docs/benchmarks.md, "Workflows").
import Database from 'better-sqlite3'
import { SqliteDialect } from 'kysely'
import { z } from 'zod'
import { createDurably, defineJob } from '@coji/durably'

const [db, runsArg, callersArg, sync] = process.argv.slice(2)
const runs = Number(runsArg)
const callers = Number(callersArg)
if (!db || !runs || !callers || !['full', 'normal'].includes(sync)) {
  console.error('usage: node bench.mjs DB RUNS CALLERS full|normal')
  process.exit(2)
}

const database = new Database(db)
database.pragma('journal_mode = WAL')
database.pragma(`synchronous = ${sync.toUpperCase()}`)

const threeSteps = defineJob({
  name: 'three-steps',
  input: z.object({ x: z.number() }),
  output: z.object({ y: z.number() }),
  run: async (step, input) => {
    const a = await step.run('add', async () => input.x + 1)
    const b = await step.run('double', async () => a * 2)
    const y = await step.run('dec', async () => b - 1)
    return { y }
  },
})

const durably = createDurably({
  dialect: new SqliteDialect({ database }),
  // The most favourable settings for Durably here: poll again after 1 ms when idle, and
  // as many concurrent runs as callers.
  pollingIntervalMs: 1,
  maxConcurrentRuns: callers,
  jobs: { threeSteps },
})
await durably.init()
const job = durably.jobs.threeSteps

const check = async (x) => {
  const result = await job.triggerAndWait({ x }, { timeout: 60000 })
  if (result.output.y !== (x + 1) * 2 - 1) throw new Error(`wrong output for ${x}`)
}
await check(0) // warm up

const per = Math.floor(runs / callers)
const started = performance.now()
await Promise.all(
  Array.from({ length: callers }, async (_, c) => {
    for (let i = 0; i < per; i++) await check(c * per + i)
  }),
)
const seconds = (performance.now() - started) / 1000
await durably.stop()
database.close()
console.log(JSON.stringify({ rate: (per * callers) / seconds }))
