// A small driver library for the harness scripts, used by harness.test.mjs
// and usable from other Node test files. It shows the protocol a driver in
// any language follows: spawn the script with stdin piped and
// --exit-with-stdin, read JSON lines from stdout, wait for the line you need,
// SIGTERM when done.

import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

export const HERE = path.dirname(fileURLToPath(import.meta.url))

/** Spawn `node HERE/script args...` and parse its stdout as JSON lines. */
export function run (script, args = [], { env } = {}) {
  const child = spawn(process.execPath, [path.join(HERE, script), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env }
  })
  const proc = {
    child,
    events: [],
    stderr: '',
    exited: null,
    waiters: []
  }
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', d => { proc.stderr += d })
  createInterface({ input: child.stdout }).on('line', line => {
    let ev
    try {
      ev = JSON.parse(line)
    } catch {
      ev = { event: 'non-json', line }
    }
    proc.events.push(ev)
    for (const w of proc.waiters.slice()) w.check()
  })
  proc.exit = new Promise(resolve => {
    child.on('close', (code, signal) => {
      proc.exited = { code, signal }
      for (const w of proc.waiters.slice()) w.check()
      resolve(proc.exited)
    })
  })
  /** Resolve with the first event matching `pred` (a name or a function). */
  proc.waitFor = (pred, timeoutMs = 30000) => {
    const match = typeof pred === 'string' ? ev => ev.event === pred : pred
    return new Promise((resolve, reject) => {
      const w = {
        check () {
          const ev = proc.events.find(match)
          if (ev) return done(null, ev)
          if (proc.exited) {
            done(new Error(`${script} exited (${JSON.stringify(proc.exited)}) before the awaited event; ` +
              `events: ${JSON.stringify(proc.events.slice(-5))}; stderr: ${proc.stderr.slice(-2000)}`))
          }
        }
      }
      const timer = setTimeout(() => done(new Error(`${script}: no awaited event within ${timeoutMs} ms; ` +
        `events: ${JSON.stringify(proc.events.slice(-5))}; stderr: ${proc.stderr.slice(-2000)}`)), timeoutMs)
      function done (err, ev) {
        clearTimeout(timer)
        proc.waiters = proc.waiters.filter(x => x !== w)
        err ? reject(err) : resolve(ev)
      }
      proc.waiters.push(w)
      w.check()
    })
  }
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status. */
  proc.stop = async (graceMs = 8000) => {
    if (proc.exited) return proc.exited
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    const status = await proc.exit
    clearTimeout(timer)
    return status
  }
  return proc
}

/** Start tracker.mjs and wait until it listens. */
export async function startTracker (args = []) {
  const proc = run('tracker.mjs', ['--exit-with-stdin', ...args])
  proc.ready = await proc.waitFor('ready', 20000)
  proc.port = proc.ready.port
  proc.announceUrl = `http://127.0.0.1:${proc.port}/announce`
  return proc
}

/** Start seed.mjs and wait until it seeds. */
export async function startSeeder (args, timeoutMs = 60000) {
  const proc = run('seed.mjs', ['--exit-with-stdin', ...args])
  proc.seeding = await proc.waitFor('seeding', timeoutMs)
  return proc
}

/** Run download.mjs to completion; resolves with { proc, status, done }. */
export async function download (args) {
  const proc = run('download.mjs', args)
  const status = await proc.exit
  const done = proc.events.find(e => e.event === 'done')
  return { proc, status, done }
}
