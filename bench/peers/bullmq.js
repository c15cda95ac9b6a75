// BullMQ side of bench/peers/run.py.
//   node bullmq.js enqueue PORT QUEUE N BATCH   adds N no-op jobs with Queue.addBulk, BATCH at a time,
//                                               and prints {"seconds": ...} (connect excluded)
//   node bullmq.js work PORT QUEUE CONCURRENCY  one worker process: a Worker with that concurrency
// Jobs use BullMQ's defaults: no removeOnComplete/removeOnFail, so every completed job stays in
// bull:QUEUE:completed with its hash, as a deployment that keeps results would.
"use strict";
const { Queue, Worker } = require("bullmq");

const [mode, port, queueName, arg, batchArg] = process.argv.slice(2);
const connection = { host: "127.0.0.1", port: Number(port) };

async function enqueue(n, batch) {
  const queue = new Queue(queueName, { connection });
  await queue.waitUntilReady();
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i += batch) {
    const jobs = [];
    for (let j = i; j < Math.min(n, i + batch); j++) jobs.push({ name: "noop", data: { i: j } });
    await queue.addBulk(jobs);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await queue.close();
  process.stdout.write(JSON.stringify({ seconds }) + "\n");
}

function work(concurrency) {
  const worker = new Worker(queueName, async () => {}, { connection, concurrency });
  worker.on("error", (err) => console.error("bullmq worker:", err));
  const stop = () => worker.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (mode === "enqueue") {
  enqueue(Number(arg), Number(batchArg)).catch((err) => { console.error(err); process.exit(1); });
} else if (mode === "work") {
  work(Number(arg));
} else {
  console.error("usage: node bullmq.js enqueue PORT QUEUE N BATCH | work PORT QUEUE CONCURRENCY");
  process.exit(2);
}
