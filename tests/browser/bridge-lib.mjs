// Helpers of the bridge tests (bridge.test.mjs) and the bridge bench (bridge-bench.mjs):
// our `webtorrent` binary as a child process (the bridge, `seed`, `serve`), the interop
// harness's Node scripts (TCP-only webtorrent seeder/downloader), free ports, page progress.
//
// The binary: $WEBTORRENT_BIN, else $CARGO_TARGET_DIR/debug/webtorrent, else
// target/debug/webtorrent under the repository.

import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { createInterface } from 'node:readline'
import { ROOT, withTimeout, Scenario, makeFileSet } from './lib.mjs'
import { run as runInterop, startSeeder } from '../interop/harness.mjs'

export { runInterop, startSeeder }

export const MIB = 1 << 20

/** Path of our CLI, and where it came from (for messages). */
export function webtorrentBin () {
  if (process.env.WEBTORRENT_BIN) return { bin: path.resolve(process.env.WEBTORRENT_BIN), from: '$WEBTORRENT_BIN' }
  if (process.env.CARGO_TARGET_DIR) {
    return { bin: path.resolve(process.env.CARGO_TARGET_DIR, 'debug', 'webtorrent'), from: '$CARGO_TARGET_DIR/debug' }
  }
  return { bin: path.join(ROOT, 'target', 'debug', 'webtorrent'), from: 'target/debug' }
}

/** Throw a clear error unless the binary exists and runs. Returns its path. */
export function requireWebtorrentBin () {
  const { bin, from } = webtorrentBin()
  if (!fs.existsSync(bin)) {
    throw new Error(`our CLI is missing: ${bin} (from ${from}). Build it with ` +
      '`cargo build -p webtorrent --bin webtorrent` (same CARGO_TARGET_DIR), or set WEBTORRENT_BIN=/path/to/webtorrent')
  }
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 })
  if (r.status !== 0) throw new Error(`${bin} --version failed (status ${r.status}): ${r.stderr || r.error}`)
  return bin
}

/**
 * Whether the binary has `webtorrent serve` (the embedded tracker and page server):
 * null when it has, else the reason it is missing.
 */
export function serveMissingReason () {
  const { bin } = webtorrentBin()
  if (!fs.existsSync(bin)) return `${bin} does not exist`
  const r = spawnSync(bin, ['serve', '--help'], { encoding: 'utf8', timeout: 10_000 })
  if (r.status === 0 && /tracker/i.test(r.stdout)) return null
  return `\`${path.basename(bin)} serve\` is not available in ${bin} (exit ${r.status}: ${(r.stderr || '').trim().split('\n')[0]})`
}

/** A free TCP port on 127.0.0.1 (for pinning the bridge's listening port). */
export function freePort () {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

const ts = () => new Date().toISOString().slice(11, 23)

// Our binary has no --exit-with-stdin: whatever is still running when this process exits
// (a crash, a cancelled test) is killed here, so nothing outlives the test in the namespace.
const live = new Set()
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL') } catch {}
  }
})

/**
 * A child process with its stdout and stderr kept line by line (the last `keep` lines of
 * each, with times), `waitLine(pred, ms)` for a stdout or stderr line, `stop()` (SIGTERM,
 * then SIGKILL) and `tail()` for failure reports.
 */
export function spawnLogged (label, cmd, args, { env = {}, cwd = ROOT, keep = 400 } = {}) {
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  live.add(child)
  child.on('close', () => live.delete(child))
  const proc = { label, child, cmd, args, stdout: [], stderr: [], all: [], exited: null, waiters: [], started: Date.now() }
  const push = (list, stream, line) => {
    const entry = { t: Date.now(), stream, line }
    list.push(entry)
    proc.all.push(entry)
    if (list.length > keep) list.shift()
    if (proc.all.length > keep) proc.all.shift()
    for (const w of proc.waiters.slice()) w.check(entry)
  }
  createInterface({ input: child.stdout }).on('line', l => push(proc.stdout, 'out', l))
  createInterface({ input: child.stderr }).on('line', l => push(proc.stderr, 'err', l))
  proc.exit = new Promise(resolve => {
    child.on('error', err => {
      proc.exited = { code: null, signal: null, error: err.message }
      for (const w of proc.waiters.slice()) w.check(null)
      resolve(proc.exited)
    })
    child.on('close', (code, signal) => {
      proc.exited = proc.exited || { code, signal }
      for (const w of proc.waiters.slice()) w.check(null)
      resolve(proc.exited)
    })
  })
  /** Resolve with the first line (either stream, `{ stream, line }`) matching `pred`. */
  proc.waitLine = (pred, ms = 30_000, what = 'the awaited line') => new Promise((resolve, reject) => {
    const w = {
      check (entry) {
        if (entry && pred(entry.line, entry.stream)) return done(null, entry)
        if (!entry && proc.exited) done(new Error(`${label} exited (${JSON.stringify(proc.exited)}) before ${what}\n${proc.tail(40)}`))
      }
    }
    const timer = setTimeout(() => done(new Error(`${label}: no ${what} within ${(ms / 1000).toFixed(0)} s\n${proc.tail(40)}`)), ms)
    function done (err, entry) {
      clearTimeout(timer)
      proc.waiters = proc.waiters.filter(x => x !== w)
      err ? reject(err) : resolve(entry)
    }
    proc.waiters.push(w)
    for (const e of proc.all) if (pred(e.line, e.stream)) return done(null, e)
    if (proc.exited) w.check(null)
  })
  proc.stop = async (graceMs = 10_000) => {
    if (proc.exited) return proc.exited
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    const status = await proc.exit
    clearTimeout(timer)
    return status
  }
  proc.tail = (n = 60) => {
    const lines = proc.all.slice(-n).map(e => `  ${new Date(e.t).toISOString().slice(11, 23)} ${e.stream} ${e.line.slice(0, 400)}`)
    return `--- ${label} (${[cmd, ...args].map(a => (a.length > 100 ? a.slice(0, 100) + '…' : a)).join(' ')})` +
      `${proc.exited ? ` exited ${JSON.stringify(proc.exited)}` : ' running'}, last ${lines.length} lines:\n${lines.join('\n')}`
  }
  return proc
}

/**
 * Our CLI as a process. `args` after the binary. RUST_LOG comes from $BRIDGE_RUST_LOG
 * (default webtorrent=info) unless `env` sets it. The DHT is off (`--no-dht`: its default
 * routers are public hosts) unless `args` give `--dht-bootstrap`, and so is port mapping
 * (`--no-port-mapping`: it talks to the LAN's router); it gets a fresh `--state` unless `args`
 * give one.
 */
export function startWebtorrent (label, args, { env = {} } = {}) {
  const bin = requireWebtorrentBin()
  const all = [...(args.includes('--dht-bootstrap') ? args : [...args, '--no-dht']), '--no-port-mapping']
  // A state folder of its own (fast-resume records, which seed and serve start again), unless
  // the test gives one: scenarios never see each other's torrents.
  if (!args.includes('--state')) all.push('--state', fs.mkdtempSync(path.join(os.tmpdir(), 'wt-state-')))
  return spawnLogged(label, bin, all, { env: { RUST_LOG: process.env.BRIDGE_RUST_LOG || 'webtorrent=info', ...env } })
}

/**
 * The bridge: `webtorrent download SOURCE -o OUT --seed [--announce URL]... [--port N] [...extra]`.
 * `done` resolves with the time the download finished (the CLI prints the info hash on stdout
 * then). `progress()` is the last progress percentage the CLI printed (plain lines on stderr).
 */
export function startBridge ({ label = 'bridge', source, out, announce = [], port, seed = true, extra = [], env }) {
  const args = ['download', source, '-o', out]
  for (const a of announce) args.push('--announce', a)
  if (port) args.push('--port', String(port))
  if (seed) args.push('--seed')
  args.push(...extra)
  const proc = startWebtorrent(label, args, { env })
  proc.done = proc.waitLine((l, s) => s === 'out' && /^[0-9a-f]{40}$/.test(l.trim()), 24 * 3600_000, 'the info hash (download done)')
    .then(e => e.t)
  proc.done.catch(() => {})
  proc.progress = () => {
    for (let i = proc.stderr.length - 1; i >= 0; i--) {
      const m = /^\s*([\d.]+) % /.exec(proc.stderr[i].line)
      if (m) return Number(m[1])
    }
    return 0
  }
  return proc
}

/**
 * `webtorrent serve --port 0 --www ROOT/www --no-udp`: the tracker and page server, and the
 * bridge unless `bridge` is false (`--no-bridge`), keeping its torrents in `data` (a fresh
 * temporary folder by default, removed when the process is stopped). Resolves with the process
 * plus { url, port, ws, http, announceUrl, data } once it printed the page URL.
 */
export async function startServe ({ label = 'serve', extra = [], env, bridge = true, data, port = 0 } = {}) {
  const args = ['serve', '--port', String(port), '--www', path.join(ROOT, 'www'), '--no-udp']
  let ownData = false
  if (!bridge) {
    args.push('--no-bridge')
  } else {
    if (!data) {
      data = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-serve-data-'))
      ownData = true
    }
    args.push('--data', data)
  }
  const proc = startWebtorrent(label, [...args, ...extra], { env })
  proc.data = data
  if (ownData) {
    const stop = proc.stop.bind(proc)
    proc.stop = async (...a) => {
      try { return await stop(...a) } finally { fs.rmSync(data, { recursive: true, force: true }) }
    }
  }
  const { line } = await proc.waitLine((l, s) => s === 'out' && /^http:\/\/\S+\/$/.test(l.trim()), 30_000, 'the page URL on stdout')
  const url = line.trim()
  const u = new URL(url)
  proc.url = url
  proc.port = Number(u.port)
  proc.ws = `ws://${u.host}`
  proc.http = `http://${u.host}/announce`
  proc.announceUrl = proc.http
  return proc
}

/** A magnet link for `infoHash` with name and trackers. */
export function magnetFor (infoHash, trackers = [], name) {
  let m = `magnet:?xt=urn:btih:${infoHash}`
  if (name) m += `&dn=${encodeURIComponent(name)}`
  for (const t of trackers) m += `&tr=${encodeURIComponent(t)}`
  return m
}

/** The magnet link with more trackers appended. */
export function withTrackers (magnet, trackers) {
  return magnet + trackers.map(t => `&tr=${encodeURIComponent(t)}`).join('')
}

/** The first card's progress in our page (0–100), or null without a card. */
export function pageProgress (page) {
  return page.evaluate(() => {
    const c = document.querySelector('article.torrent')
    const v = c?.querySelector('[data-testid=progress]')?.getAttribute('aria-valuenow')
    return v == null ? null : Number(v)
  })
}

/** Wait until our page's first card shows at least `pct` % (rejects on an error state). */
export async function waitPageProgress (page, pct, ms) {
  const h = await page.waitForFunction(p => {
    const c = document.querySelector('article.torrent')
    if (c?.dataset.state === 'error') return { error: c.querySelector('[data-testid=state]')?.textContent }
    const v = Number(c?.querySelector('[data-testid=progress]')?.getAttribute('aria-valuenow'))
    return v >= p ? { progress: v } : null
  }, pct, { timeout: ms, polling: 50 })
  const r = await h.jsonValue()
  if (r.error) throw new Error(`the page's download failed: ${r.error}`)
  return r.progress
}

/** Progress of a download.mjs process from its latest `progress`/`done` line (0–1). */
export function nodeProgress (proc) {
  for (let i = proc.events.length - 1; i >= 0; i--) {
    const e = proc.events[i]
    if (e.event === 'done') return 1
    if (e.event === 'progress') return e.progress
  }
  return 0
}

/** The last lines of a harness (interop) process, for failure reports. */
export function interopTail (label, proc, n = 30) {
  const ev = proc.events.slice(-n).map(e => `  ${JSON.stringify(e).slice(0, 300)}`)
  const err = proc.stderr.split('\n').slice(-15).map(l => `  stderr ${l}`)
  return `--- ${label}${proc.exited ? ` exited ${JSON.stringify(proc.exited)}` : ' running'}, last events:\n${ev.join('\n')}\n${err.join('\n')}`
}

/** Sleep. */
export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

export { withTimeout, ts }

// ---------------------------------------------------------------- scenarios

/**
 * Runs `fn(s)` as a Scenario (lib.mjs: pages, named steps, page reports) that also owns
 * processes (`s.own(proc)`), temporary folders (`s.tmp(name)`) and source files
 * (`s.files(spec)`): their last log lines join the failure report, and they are stopped and
 * removed at the end whatever happens. `s.closePage(label)` closes a page's context.
 */
export async function runScenario (browser, name, fn, prefix = 'wt-bridge') {
  const s = new Scenario(browser, name)
  const procs = []
  const dirs = []
  s.own = (p, label = p.label) => {
    procs.push({
      label,
      stop: () => p.stop(),
      tail: () => (p.tail ? p.tail(50) : interopTail(label, p, 25))
    })
    return p
  }
  s.tmp = (p) => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-${p}-`))
    dirs.push(d)
    return d
  }
  s.files = (spec) => {
    const set = makeFileSet(spec, `${prefix}-src-`)
    dirs.push(set.dir)
    return set
  }
  s.closePage = async (label) => {
    const entry = s.pages.find(p => p.label === label)
    await entry.context.close()
  }
  try {
    await s.run(() => fn(s))
  } catch (err) {
    const tails = procs.map(p => { try { return p.tail() } catch (e) { return `--- ${p.label}: ${e.message}` } })
    err.message += '\n' + tails.join('\n')
    throw err
  } finally {
    for (const p of procs.reverse()) await p.stop().catch(() => {})
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
  }
}
