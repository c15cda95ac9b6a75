'use strict';
// A pool worker built on the Node helper (clients/node/rota-worker.js), for test_helpers.py.
// The same ops as helper_worker.py (which describes them); keep the three workers in step.

const fs = require('fs');
const path = require('path');
const rota = require(path.join(__dirname, '..', '..', '..', 'clients', 'node', 'rota-worker.js'));

const kGuardMs = 30000; // a handler that waits this long has failed its test

function note(payload, ctx) {
  const log = process.env.RUN_LOG;
  if (log) fs.appendFileSync(log, `${ctx.task} ${ctx.attempt} ${process.pid} ${payload.op}\n`);
}

function echo(payload, ctx) {
  return { value: payload.value ?? null, task: ctx.task, attempt: ctx.attempt, pid: process.pid };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function handle(payload, ctx) {
  note(payload, ctx);
  switch (payload.op) {
    case 'echo':
      return echo(payload, ctx);
    case 'none':
      return undefined;
    case 'fail_until':
      if (ctx.attempt <= payload.n) throw new Error(`attempt ${ctx.attempt} fails`);
      return echo(payload, ctx);
    case 'permanent':
      throw new rota.Permanent(payload.message);
    case 'stop':
      if (ctx.attempt === 1) process.kill(process.pid, 'SIGSTOP');
      return echo(payload, ctx);
    case 'crash':
      process.exit(3);
      break;
    case 'gate': {
      const giveUp = Date.now() + kGuardMs;
      while (!fs.existsSync(payload.gate)) {
        if (Date.now() > giveUp) throw new Error('the gate never opened');
        await sleep(10);
      }
      return echo(payload, ctx);
    }
    default:
      throw new rota.Permanent(`unknown op ${payload.op}`);
  }
}

rota.run(handle);
