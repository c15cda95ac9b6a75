'use strict';
// rota-worker.js, black-box: each test starts testdata/echo-worker.js and plays the daemon over
// its stdin and stdout, which spawn() makes socketpairs, as the daemon does. Waits are on lines
// and exits, with a timeout only as a guard against a hang. Run: node --test clients/node/test/

const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const kEchoWorker = path.join(__dirname, '..', 'testdata', 'echo-worker.js');
const kGuardMs = 20000; // a test that waits this long for a line or an exit has failed
const kAYearMs = 365 * 86400000; // the grace of the shutdown a pool that shrinks sends

const started = [];
afterEach(() => {
  for (const worker of started.splice(0)) worker.kill();
});

/** A running echo-worker.js and the daemon's end of its pipes. */
class Worker {
  static async start(options = {}) {
    const worker = new Worker(options);
    await worker.expect('hello');
    return worker;
  }

  constructor({ concurrency, env = {} } = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rota-worker-test-'));
    this.stderrPath = path.join(this.dir, 'stderr.log');
    const stderr = fs.openSync(this.stderrPath, 'w');
    const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('ROTA_'));
    const args = concurrency === undefined ? [kEchoWorker] : [kEchoWorker, String(concurrency)];
    this.child = spawn(process.execPath, args, {
      stdio: ['pipe', 'pipe', stderr],
      env: { ...Object.fromEntries(inherited), ROTA_HEARTBEAT_MS: '100', ...env },
    });
    fs.closeSync(stderr);
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    this.rawLines = []; // every line the worker wrote on stdout
    this.queue = [];
    this.closed = false;
    this.wake = () => {};
    const lines = readline.createInterface({ input: this.child.stdout });
    lines.on('line', (line) => {
      this.rawLines.push(line);
      this.queue.push(line);
      this.wake();
    });
    lines.on('close', () => {
      this.closed = true;
      this.wake();
    });
    started.push(this);
  }

  send(...messages) {
    this.child.stdin.write(messages.map((m) => JSON.stringify(m) + '\n').join(''));
  }

  sendRaw(text) {
    this.child.stdin.write(text);
  }

  task(task, payload, fields = {}) {
    this.send({ type: 'task', task, attempt: 1, deadline_ms: 0, payload, ...fields });
  }

  /** Resolves to the next message; rejects once stdout is closed, or at `deadline`. */
  async next(deadline) {
    while (this.queue.length === 0) {
      if (this.closed) throw new Error('the worker closed its stdout');
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error('no line from the worker in time');
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return JSON.parse(this.queue.shift());
  }

  /** Resolves to the next message not of a type in `skip`, after checking its type and fields. */
  async expect(type, fields = {}, skip = ['heartbeat']) {
    const deadline = Date.now() + kGuardMs;
    let message;
    do {
      message = await this.next(deadline);
    } while (skip.includes(message.type));
    assert.equal(message.type, type, JSON.stringify(message));
    for (const [name, value] of Object.entries(fields)) {
      assert.deepEqual(message[name], value, JSON.stringify(message));
    }
    return message;
  }

  /** Every message until the worker closes stdout, heartbeats left out. */
  async rest() {
    const deadline = Date.now() + kGuardMs;
    const messages = [];
    for (;;) {
      let message;
      try {
        message = await this.next(deadline);
      } catch (error) {
        if (this.closed) return messages;
        throw error;
      }
      if (message.type !== 'heartbeat') messages.push(message);
    }
  }

  expectStarted(task) {
    return this.expect('heartbeat', { task, message: 'started' }, []);
  }

  release() {
    this.child.kill('SIGUSR2');
  }

  async exitCode() {
    let timer;
    const guard = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('the worker did not exit')), kGuardMs);
    });
    try {
      return await Promise.race([this.exited, guard]);
    } finally {
      clearTimeout(timer);
    }
  }

  stderr() {
    return fs.readFileSync(this.stderrPath, 'utf8');
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// hello

for (const [env, concurrency, expected] of [
  [{}, undefined, 1],
  [{ ROTA_CONCURRENCY: '3' }, undefined, 3],
  [{}, 4, 4],
  [{ ROTA_CONCURRENCY: '5' }, 2, 2],
  [{ ROTA_CONCURRENCY: '1' }, 4, 1],
]) {
  const name = `env ${JSON.stringify(env)}, option ${concurrency}`;
  test(`hello says protocol 1 and concurrency ${expected} (${name})`, async () => {
    const worker = new Worker({ env, concurrency });
    await worker.expect('hello', { protocol: 1, concurrency: expected });
  });
}

// Results

test('a returned value is the result of done, from async and sync handlers', async () => {
  const worker = await Worker.start({ concurrency: 2 });
  worker.task(7, { op: 'echo', value: { words: 3 } });
  await worker.expect('done', { task: 7, result: { words: 3 } });
  worker.task(8, { op: 'echo_sync', value: 'sync' });
  await worker.expect('done', { task: 8, result: 'sync' });
});

test('undefined and null are done without a result', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'echo' });
  assert.ok(!('result' in (await worker.expect('done', { task: 1 }))));
  worker.task(2, { op: 'echo', value: null });
  assert.ok(!('result' in (await worker.expect('done', { task: 2 }))));
});

test('a rejection or a throw is a retryable fail with its message', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'raise', message: 'boom' });
  await worker.expect('fail', { task: 1, error: 'TypeError: boom', retryable: true });
  worker.task(2, { op: 'raise_sync', message: 'sync boom' });
  await worker.expect('fail', { task: 2, error: 'Error: sync boom', retryable: true });
  worker.child.stdin.end();
  await worker.exitCode();
  assert.match(worker.stderr(), /TypeError: boom\n\s+at /); // the stack, in the worker's log
});

test('Permanent is a fail without retry', async () => {
  const worker = await Worker.start();
  worker.task(9, { op: 'permanent', message: 'bad input' });
  await worker.expect('fail', { task: 9, error: 'bad input', retryable: false });
});

test('a result that is not JSON is a permanent fail', async () => {
  const worker = await Worker.start();
  worker.task(10, { op: 'unserializable' });
  const message = await worker.expect('fail', { task: 10, retryable: false });
  assert.match(message.error, /not JSON/);
});

test('the context has the attempt and reports progress', async () => {
  const worker = await Worker.start();
  worker.task(11, { op: 'context' }, { attempt: 3, deadline_ms: 1234 });
  await worker.expect('heartbeat', { task: 11, progress: 0.5, message: 'halfway' }, []);
  await worker.expect('done', { task: 11, result: { task: 11, attempt: 3, deadlineMs: 1234 } });
});

for (const k of [1, 4]) {
  test(`every task of a large burst is answered (K=${k})`, async () => {
    const worker = await Worker.start({ concurrency: k });
    const n = 3000;
    const tasks = Array.from({ length: n }, (_, i) => ({
      type: 'task', task: i, attempt: 1, deadline_ms: 0, payload: { op: 'echo', value: i },
    }));
    worker.send(...tasks);
    const answered = [];
    for (let i = 0; i < n; i++) answered.push(await worker.expect('done'));
    assert.deepEqual(answered.map((m) => m.task).sort((a, b) => a - b), [...Array(n).keys()]);
    assert.ok(answered.every((m) => m.result === m.task));
  });
}

// Concurrency and heartbeats

test('K handlers run at once', async () => {
  // Each handler waits at a barrier of three: they can only pass it together.
  const worker = await Worker.start({ concurrency: 3 });
  for (const task of [1, 2, 3]) worker.task(task, { op: 'barrier', parties: 3 });
  const done = [];
  for (let i = 0; i < 3; i++) done.push((await worker.expect('done', { result: 'met' })).task);
  assert.deepEqual(done.sort(), [1, 2, 3]);
});

test('no more than K handlers run at once', async () => {
  const worker = await Worker.start({ concurrency: 1 });
  worker.task(1, { op: 'block' });
  await worker.expectStarted(1);
  worker.task(2, { op: 'echo', value: 2 }); // waits for a free place
  worker.release();
  await worker.expect('done', { task: 1 });
  await worker.expect('done', { task: 2 });
});

test('heartbeats go on while a handler runs', async () => {
  const worker = await Worker.start({ env: { ROTA_HEARTBEAT_MS: '50' } });
  worker.task(1, { op: 'block' });
  await worker.expectStarted(1);
  await worker.expect('heartbeat', {}, []);
  await worker.expect('heartbeat', {}, []);
  worker.release();
  await worker.expect('done', { task: 1, result: { released: true } });
});

// Cancel

test('cancel aborts the signal of its task', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'wait_cancel' });
  await worker.expectStarted(1);
  worker.send({ type: 'cancel', task: 1 });
  await worker.expect('fail', { task: 1, error: 'Error: saw the cancel', retryable: true });
});

test('a handler that returns after a cancel fails as cancelled', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'wait_cancel', then: 'return' });
  await worker.expectStarted(1);
  worker.send({ type: 'cancel', task: 1 });
  await worker.expect('fail', { task: 1, error: 'cancelled', retryable: true });
});

test('a cancel for another task is ignored', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'block' });
  await worker.expectStarted(1);
  worker.send({ type: 'cancel', task: 99 });
  worker.release();
  await worker.expect('done', { task: 1 });
});

// Shutdown, end of file, SIGTERM

test('shutdown waits for the tasks in flight, then exits 0', async () => {
  const worker = await Worker.start({ concurrency: 2 });
  worker.task(1, { op: 'block' });
  await worker.expectStarted(1);
  worker.send({ type: 'shutdown', grace_ms: kAYearMs });
  worker.task(2, { op: 'echo', value: 2 });
  await worker.expect('fail', { task: 2, retryable: true }); // no new task after shutdown
  worker.release();
  await worker.expect('done', { task: 1 });
  assert.equal(await worker.exitCode(), 0);
});

test('shutdown exits 0 when the grace ends', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'block' });
  await worker.expectStarted(1);
  worker.send({ type: 'shutdown', grace_ms: 50 });
  assert.equal(await worker.exitCode(), 0);
  assert.ok((await worker.rest()).every((m) => m.type !== 'done'));
});

test('the end of stdin after a shutdown keeps its grace', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'block' });
  await worker.expectStarted(1);
  worker.send({ type: 'shutdown', grace_ms: 60000 });
  worker.child.stdin.end();
  worker.release();
  await worker.expect('done', { task: 1 });
  assert.equal(await worker.exitCode(), 0);
});

test('shutdown when idle exits 0 at once', async () => {
  const worker = await Worker.start();
  worker.send({ type: 'shutdown', grace_ms: 60000 });
  assert.equal(await worker.exitCode(), 0);
});

test('end of stdin exits 0, even with a handler running', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'block' });
  await worker.expectStarted(1);
  worker.child.stdin.end();
  assert.equal(await worker.exitCode(), 0);
});

test('SIGTERM is a shutdown', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'block' });
  await worker.expectStarted(1);
  worker.child.kill('SIGTERM');
  worker.task(2, { op: 'echo', value: 2 }); // waits for a free place, or finds the shutdown
  await worker.expect('fail', { task: 2, retryable: true }); // proof that SIGTERM was handled
  worker.release();
  await worker.expect('done', { task: 1 });
  assert.equal(await worker.exitCode(), 0);
});

test('SIGTERM when idle exits 0', async () => {
  const worker = await Worker.start();
  worker.child.kill('SIGTERM');
  assert.equal(await worker.exitCode(), 0);
});

test('it works over plain pipes too', () => {
  const payload = { op: 'echo', value: 1 };
  const task = { type: 'task', task: 1, attempt: 1, deadline_ms: 0, payload };
  const env = {
    ...process.env, ROTA_HEARTBEAT_MS: '60000', NODE: process.execPath, WORKER: kEchoWorker,
    TASK: JSON.stringify(task), SHUTDOWN: JSON.stringify({ type: 'shutdown', grace_ms: 60000 }),
  };
  const script = 'printf "%s\\n" "$TASK" "$SHUTDOWN" | "$NODE" "$WORKER" | cat';
  const out = execFileSync('/bin/sh', ['-c', script], { env, timeout: kGuardMs, encoding: 'utf8' });
  const messages = out.trim().split('\n').map((line) => JSON.parse(line));
  assert.deepEqual(messages[0], { type: 'hello', protocol: 1, concurrency: 1 });
  assert.deepEqual(messages[1], { type: 'done', task: 1, result: 1 });
});

// What the daemon may send, and what stdout may carry

test('an error from the daemon goes to stderr and the worker goes on', async () => {
  const worker = await Worker.start();
  worker.send({ type: 'error', error: 'malformed JSON', line: '{oops' });
  worker.task(1, { op: 'echo', value: 1 });
  await worker.expect('done', { task: 1 });
  worker.child.stdin.end();
  await worker.exitCode();
  assert.match(worker.stderr(), /malformed JSON/);
});

test('unknown types, fields and lines are ignored', async () => {
  const worker = await Worker.start();
  worker.sendRaw('not json\n[1,2]\n\n');
  worker.send({ type: 'from_the_future', x: 1 });
  worker.task(1, { op: 'echo', value: 1 }, { token: 't', log: '/tmp/x', extra: { a: 1 } });
  await worker.expect('done', { task: 1, result: 1 });
});

test('console.log and process.stdout.write in a handler go to stderr, not stdout', async () => {
  const worker = await Worker.start();
  worker.task(1, { op: 'print' });
  await worker.expect('done', { task: 1, result: 'printed' });
  worker.child.stdin.end();
  assert.equal(await worker.exitCode(), 0);
  assert.ok(worker.rawLines.every((line) => line.startsWith('{')), worker.rawLines.join('\n'));
  assert.match(worker.stderr(), /printed by console.log/);
  assert.match(worker.stderr(), /written to process.stdout/);
});
