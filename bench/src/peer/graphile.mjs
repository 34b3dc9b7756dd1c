// The peer `fluid bench --only peer` compares with: graphile-worker on the same PostgreSQL,
// the same workload as fluid's throughput part (no-op jobs queued in chunks of 500 while
// the worker runs, concurrency 8), timed from the first job queued to the last done.
// Usage: node graphile.mjs URL JOBS CONCURRENCY batched|default; prints "jobs/s N".
import { run, makeWorkerUtils } from 'graphile-worker';

const [url, jobsArg, concArg, mode] = process.argv.slice(2);
const jobs = Number(jobsArg);
const concurrency = Number(concArg);
// Batched: a local queue fetching jobs in batches, and completions written in batches.
const worker = mode === 'batched'
  ? { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 }
  : {};
const preset = { worker: { connectionString: url, concurrentJobs: concurrency, pollInterval: 1000, ...worker } };

const utils = await makeWorkerUtils({ preset });
await utils.migrate();
let done = 0;
let finish;
const allDone = new Promise((resolve) => { finish = resolve; });
const runner = await run({
  preset,
  noHandleSignals: true,
  logger: undefined,
  taskList: { noop: async () => { done += 1; if (done === jobs) finish(); } },
});
const t0 = performance.now();
for (let i = 0; i < jobs; i += 500) {
  const n = Math.min(500, jobs - i);
  await utils.addJobs(Array.from({ length: n }, () => ({ identifier: 'noop', payload: {} })));
}
await allDone;
const secs = (performance.now() - t0) / 1000;
console.log(`jobs/s ${(jobs / secs).toFixed(0)}`);
await runner.stop();
await utils.release();
