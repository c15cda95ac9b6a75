'use strict';
// The worker the tests drive: `payload.op` says what the handler does.
// Usage: node echo-worker.js [CONCURRENCY]   (absent: no options.concurrency)

const rota = require('../rota-worker');

const kGuardMs = 20000; // a handler that waits this long has failed its test
const barriers = new Map(); // parties -> { arrived, open, opened }

function barrier(parties) {
  if (!barriers.has(parties)) {
    let open;
    const opened = new Promise((resolve) => (open = resolve));
    barriers.set(parties, { arrived: 0, open, opened });
  }
  const b = barriers.get(parties);
  if (++b.arrived === parties) b.open();
  return b.opened;
}

function guarded(promise, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: gave up`)), kGuardMs);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

const ops = {
  echo: async (payload) => payload.value,
  echo_sync: (payload) => payload.value,
  raise: async (payload) => {
    throw new TypeError(payload.message);
  },
  raise_sync: (payload) => {
    throw new Error(payload.message);
  },
  permanent: async (payload) => {
    throw new rota.Permanent(payload.message);
  },
  unserializable: async () => ({ n: 10n }),
  // Says "started", then waits for SIGUSR2 from the test.
  block: async (payload, ctx) => {
    const released = new Promise((resolve) => process.once('SIGUSR2', resolve));
    ctx.progress(0, 'started');
    await guarded(released, 'block');
    return { released: true };
  },
  wait_cancel: async (payload, ctx) => {
    const cancelled = new Promise((resolve) =>
      ctx.signal.addEventListener('abort', resolve, { once: true }),
    );
    ctx.progress(0, 'started');
    await guarded(cancelled, 'wait_cancel');
    if (payload.then === 'return') return 'finished anyway';
    throw new Error('saw the cancel');
  },
  barrier: async (payload) => {
    await guarded(barrier(payload.parties), 'barrier');
    return 'met';
  },
  print: async () => {
    console.log('printed by console.log');
    process.stdout.write('written to process.stdout\n');
    return 'printed';
  },
  context: async (payload, ctx) => {
    ctx.progress(0.5, 'halfway');
    return { task: ctx.task, attempt: ctx.attempt, deadlineMs: ctx.deadlineMs };
  },
};

const concurrency = process.argv[2] === undefined ? undefined : Number(process.argv[2]);
rota.run((payload, ctx) => ops[payload.op](payload, ctx), { concurrency });
