// Graphile Worker side of bench/peers/run.py.
//   node graphile.js migrate URL                 installs the graphile_worker schema
//   node graphile.js enqueue URL N BATCH         adds N no-op jobs with WorkerUtils.addJobs (the
//                                                graphile_worker.add_jobs SQL function), BATCH at a
//                                                time, and prints {"seconds": ...} (connect excluded)
//   node graphile.js work URL CONCURRENCY        one worker process: run() with that concurrency and
//                                                the default pollInterval (2 s) and LISTEN/NOTIFY
// Graphile Worker deletes a job when it succeeds: it keeps no completed-job records.
"use strict";
const { run, runMigrations, makeWorkerUtils } = require("graphile-worker");

const [mode, connectionString, arg, batchArg] = process.argv.slice(2);

async function enqueue(n, batch) {
  const utils = await makeWorkerUtils({ connectionString });
  await utils.withPgClient((client) => client.query("select 1"));
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i += batch) {
    const specs = [];
    for (let j = i; j < Math.min(n, i + batch); j++) specs.push({ identifier: "noop", payload: { i: j } });
    await utils.addJobs(specs);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await utils.release();
  process.stdout.write(JSON.stringify({ seconds }) + "\n");
}

async function work(concurrency) {
  const runner = await run({
    connectionString,
    concurrency,
    taskList: { noop: async () => {} },
  });
  await runner.promise;
}

const main = {
  migrate: () => runMigrations({ connectionString }),
  enqueue: () => enqueue(Number(arg), Number(batchArg)),
  work: () => work(Number(arg)),
}[mode];
if (!main) {
  console.error("usage: node graphile.js migrate URL | enqueue URL N BATCH | work URL CONCURRENCY");
  process.exit(2);
}
main().catch((err) => { console.error(err); process.exit(1); });
