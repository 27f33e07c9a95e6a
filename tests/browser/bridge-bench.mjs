#!/usr/bin/env node
// Figures for the bridge over WebRTC (not a test; prints a Markdown table), all in one run,
// through one local bittorrent-tracker (WebSocket only):
//
//  (a) browser → bridge: our page (Chromium) seeds the file, `webtorrent download MAGNET`
//      (our binary; the magnet lists only the ws:// tracker) fetches it: spawn → done;
//  (b) bridge → browser: `webtorrent seed FILE --announce ws://…` seeds it, our page downloads
//      the magnet link: add → done (as bench.mjs measures page → page);
//  (c) beside them, the same transfer between two webtorrent 2.8.5 (Node) peers over WebRTC
//      (@roamhq/wrtc): seed.mjs → download.mjs with only the ws:// tracker: add → done.
//
// Targets: (a) ≥ 25 MB/s, (b) ≥ 15 MB/s for 100 MiB. SHA-256 checked at every end.
// Use a release build of the binary (a debug build of webrtc-rs is several times slower):
//
//   cargo build --release -p webtorrent --bin webtorrent
//   tests/netns.sh node tests/browser/bridge-bench.mjs [--mib 100] [--runs 1] [--bin PATH]
//       [--more] [--only a,d] [--out tests/browser/artifacts/bridge-bench.md]
//
// --more adds rows that tell where time goes: (d) Node (WebRTC) → our binary, (e) the
// webtorrent browser bundle page → our binary, (f) our binary → Node (WebRTC). Rows with our
// binary also give its CPU seconds (download: whole run; seed: during the transfer).
// --only keeps the rows named (letters, comma-separated; --more's rows included).
// PROFILE_OUT=FILE.cpuprofile: the seeding page's CPU profile during (a) (Chrome DevTools format).
//   The sampling profiler itself slows (a) by about a fifth: take figures from runs without it.
// DC_STATS=FILE.json: during (a), how full the seeding page's data channels were (bufferedAmount
//   every 5 ms: median, share of samples under 64 KiB and at 0) and how many send() calls.
// BRIDGE_RUST_LOG: RUST_LOG for the binary (default warn,webtorrent::task=debug for downloads).
//
// The binary: --bin, else $WEBTORRENT_BIN, else release/webtorrent then debug/webtorrent under
// $CARGO_TARGET_DIR or target/. The source file is /tmp/webtorrent-browser-bench-<N>MiB.bin
// (shared with bench.mjs, kept between runs).

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { spawnSync } from 'node:child_process'
import {
  requireLoopbackOnly, startTracker, startServer, launchChromium, checkPkg, writeRandomFile,
  sha256File, ourPageUrl, seedOnOurPage, waitDoneOnOurPage, checkSameFiles, withTimeout, wtSeed, ARTIFACTS, ROOT
} from './lib.mjs'
import { MIB, startWebtorrent, runInterop, startSeeder, sleep } from './bridge-lib.mjs'

requireLoopbackOnly()

const { values: opt } = parseArgs({
  options: {
    mib: { type: 'string', default: '100' },
    runs: { type: 'string', default: '1' },
    bin: { type: 'string' },
    more: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string', default: path.join(ARTIFACTS, 'bridge-bench.md') },
    help: { type: 'boolean', short: 'h' }
  }
})
if (opt.help) {
  process.stdout.write(fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(1, 31).map(l => l.replace(/^\/\/ ?/, '')).join('\n') + '\n')
  process.exit(0)
}

const SIZE_MIB = Number(opt.mib)
const RUNS = Math.max(1, Number(opt.runs))
const TIMEOUT = 15 * 60_000
const TARGET_TO_BRIDGE = 25
const TARGET_TO_BROWSER = 15
const log = m => process.stderr.write(`[bridge-bench] ${new Date().toISOString().slice(11, 23)} ${m}\n`)
const mbps = (bytes, ms) => bytes / 1e6 / (ms / 1000)

function pickBin () {
  if (opt.bin) return path.resolve(opt.bin)
  if (process.env.WEBTORRENT_BIN) return path.resolve(process.env.WEBTORRENT_BIN)
  const base = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target')
  for (const profile of ['release', 'debug']) {
    const p = path.join(base, profile, 'webtorrent')
    if (fs.existsSync(p)) return p
  }
  throw new Error(`no webtorrent binary under ${base}/{release,debug}: cargo build --release -p webtorrent --bin webtorrent, or --bin PATH`)
}
const BIN = pickBin()
process.env.WEBTORRENT_BIN = BIN // startWebtorrent() uses it
const version = spawnSync(BIN, ['--version'], { encoding: 'utf8' }).stdout.trim()
const profile = BIN.includes(`${path.sep}release${path.sep}`) ? 'release' : BIN.includes(`${path.sep}debug${path.sep}`) ? 'debug' : 'unknown profile'
if (profile === 'debug') log(`warning: ${BIN} is a debug build: the figures will be far below a release build's`)

function benchFile (sizeMiB) {
  const file = path.join(os.tmpdir(), `webtorrent-browser-bench-${sizeMiB}MiB.bin`)
  try {
    if (fs.statSync(file).size === sizeMiB * MIB) return file
  } catch {}
  log(`writing ${sizeMiB} MiB of random bytes to ${file}`)
  writeRandomFile(file, sizeMiB * MIB)
  return file
}

/**
 * Page script for DC_STATS: wraps RTCDataChannel.send and samples every open channel's
 * bufferedAmount every 5 ms; `window.__dcStats()` summarises.
 */
function dcStatsScript () {
  const chans = new Set()
  const samples = []
  let sends = 0
  let bytes = 0
  const send = RTCDataChannel.prototype.send
  RTCDataChannel.prototype.send = function (x) {
    chans.add(this)
    sends++
    bytes += x.byteLength ?? x.size ?? x.length ?? 0
    return send.call(this, x)
  }
  setInterval(() => {
    for (const c of chans) if (c.readyState === 'open') samples.push(c.bufferedAmount)
  }, 5)
  window.__dcStats = () => {
    const v = samples.slice().sort((a, b) => a - b)
    return {
      sends,
      bytes,
      samples: v.length,
      medianBuffered: v.length ? v[v.length >> 1] : null,
      shareUnder64KiB: v.length ? v.filter(b => b < 65536).length / v.length : null,
      shareEmpty: v.length ? v.filter(b => b === 0).length / v.length : null
    }
  }
}

async function newPage (browser, url, label, { dcStats = false } = {}) {
  const ctx = await browser.newContext({ permissions: ['camera', 'microphone'] })
  if (dcStats) await ctx.addInitScript(dcStatsScript)
  const page = await ctx.newPage()
  page.on('pageerror', e => log(`${label}: pageerror ${e.message}`))
  await page.goto(url)
  await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', null, { timeout: 30_000 })
  return { page, ctx }
}

/** User+system CPU seconds of a running process (from /proc), or null. */
function cpuSeconds (pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100 // utime, stime in clock ticks (CLK_TCK 100)
  } catch {
    return null
  }
}

/**
 * `webtorrent download MAGNET -o DIR --seed --quiet` until the download is done (the info hash on
 * stdout): { ms (spawn → done), cpu (the process's CPU seconds) }; the file's SHA-256 checked.
 */
async function bridgeDownload (magnet, file, sha256) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-bridge-bench-'))
  const t0 = Date.now()
  // webtorrent::task at debug says when the first peer connected: the transfer alone is timed too.
  const proc = startWebtorrent('bridge-download', ['download', magnet, '-o', out, '--seed', '--quiet'], { env: { RUST_LOG: process.env.BRIDGE_RUST_LOG || 'warn,webtorrent::task=debug' } })
  try {
    const done = await proc.waitLine((l, st) => st === 'out' && /^[0-9a-f]{40}$/.test(l.trim()), TIMEOUT, 'the info hash (done)')
    const ms = done.t - t0
    const connected = proc.stderr.find(e => /WebRTC peer connected/.test(e.line))
    const transferMs = connected ? done.t - connected.t : null
    const cpu = cpuSeconds(proc.child.pid)
    const gotSha = await sha256File(path.join(out, path.basename(file)))
    if (gotSha !== sha256) throw new Error(`the bridge's file has SHA-256 ${gotSha}, expected ${sha256}`)
    return { ms, cpu, transferMs }
  } catch (e) {
    e.message += `\n${tailOf(proc)}`
    throw e
  } finally {
    await proc.stop()
    fs.rmSync(out, { recursive: true, force: true })
  }
}

/**
 * `webtorrent seed FILE --announce WS --quiet`; `fn(magnet)` runs the download and resolves with
 * { ms }; adds the seeder's CPU seconds during the download.
 */
async function bridgeSeed (ws, file, fn) {
  const proc = startWebtorrent('bridge-seed', ['seed', file, '--announce', ws, '--quiet'], { env: { RUST_LOG: 'warn' } })
  try {
    const { line } = await proc.waitLine((l, st) => st === 'out' && l.startsWith('magnet:'), TIMEOUT, 'the magnet link')
    const cpu0 = cpuSeconds(proc.child.pid)
    const r = await fn(line.trim())
    const cpu1 = cpuSeconds(proc.child.pid)
    return { ...r, cpu: cpu0 == null || cpu1 == null ? null : cpu1 - cpu0 }
  } catch (e) {
    e.message += `\n${tailOf(proc)}`
    throw e
  } finally {
    await proc.stop()
  }
}

function tailOf (proc) {
  return proc.tail ? proc.tail(30) : proc.stderr.slice(-2000)
}

/** (a) our page seeds, our binary downloads over WebRTC (ws:// tracker only). */
async function pageToBridge ({ browser, server, ws, file, sha256 }) {
  const size = fs.statSync(file).size
  const { page, ctx } = await newPage(browser, ourPageUrl(server, [ws]), 'page A', { dcStats: !!process.env.DC_STATS })
  try {
    const seeded = await seedOnOurPage(page, [file], TIMEOUT)
    log(`(a) page seeds (hashing ${(seeded.ms / 1000).toFixed(2)} s); the bridge downloads`)
    let cdp = null
    if (process.env.PROFILE_OUT) {
      cdp = await ctx.newCDPSession(page)
      await cdp.send('Profiler.enable')
      await cdp.send('Profiler.setSamplingInterval', { interval: 200 })
      await cdp.send('Profiler.start')
    }
    const r = await bridgeDownload(seeded.magnet, file, sha256)
    if (process.env.DC_STATS) {
      const stats = await page.evaluate(() => window.__dcStats())
      fs.writeFileSync(process.env.DC_STATS, JSON.stringify(stats, null, 2) + '\n')
      log(`(a) data channels: ${JSON.stringify(stats)}`)
    }
    if (cdp) {
      const { profile } = await cdp.send('Profiler.stop')
      fs.writeFileSync(process.env.PROFILE_OUT, JSON.stringify(profile))
    }
    return { size, ...r }
  } finally {
    await ctx.close().catch(() => {})
  }
}

/** Our page downloads `magnet`: add → done, SHA-256 checked. */
async function pageDownload ({ browser, server, ws, file, sha256 }, magnet) {
  const size = fs.statSync(file).size
  const { page, ctx } = await newPage(browser, ourPageUrl(server, [ws]), 'page B')
  try {
    const t0 = Date.now()
    await page.evaluate(m => { location.hash = m }, magnet)
    await page.waitForFunction(() => {
      const c = document.querySelector('article.torrent')
      if (c?.dataset.state === 'error') throw new Error(c.querySelector('[data-testid=state]').textContent)
      const d = c?.querySelector('[data-testid=done]')
      return d && !d.hidden
    }, null, { timeout: TIMEOUT, polling: 50 })
    const ms = Date.now() - t0
    const saved = await waitDoneOnOurPage(page, 30_000)
    checkSameFiles(saved, [{ name: path.basename(file), size, sha256 }])
    return { ms, size }
  } finally {
    await ctx.close().catch(() => {})
  }
}

/** (b) our binary seeds (ws:// tracker only), our page downloads the magnet link. */
function bridgeToPage (ctx) {
  log('(b) the bridge seeds; the page downloads')
  return bridgeSeed(ctx.ws, ctx.file, magnet => pageDownload(ctx, magnet))
}

/** (d) webtorrent (Node, WebRTC) seeds, our binary downloads. */
async function nodeToBridge ({ ws, file, sha256 }) {
  const size = fs.statSync(file).size
  const seeder = await startSeeder(['--file', file, '--announce', ws], TIMEOUT)
  try {
    // seed.mjs says `seeding` ~0.2 s before its own announce (with offers) goes out: a bridge
    // announcing in that window meets it in an offer/answer crossing that neither side
    // resolves until the next announce (120 s). Let it settle: this row is about throughput.
    await sleep(2000)
    log('(d) Node seeds over WebRTC; the bridge downloads')
    return { size, ...await bridgeDownload(seeder.seeding.magnetURI, file, sha256) }
  } finally {
    await seeder.stop()
  }
}

/** (e) the webtorrent browser bundle page seeds, our binary downloads. */
async function bundleToBridge ({ browser, server, ws, file, sha256 }) {
  const size = fs.statSync(file).size
  const { page, ctx } = await newPage(browser, `${server.url}wt.html`, 'bundle page')
  try {
    const seeded = await withTimeout(wtSeed(page, [file], { announce: [ws] }), TIMEOUT, 'bundle seeding')
    await sleep(2000) // as in (d): the bundle's announce goes out after `ready`
    log('(e) the webtorrent bundle page seeds; the bridge downloads')
    return { size, ...await bridgeDownload(seeded.magnetURI, file, sha256) }
  } finally {
    await ctx.close().catch(() => {})
  }
}

/** (f) our binary seeds, webtorrent (Node, WebRTC) downloads. */
function bridgeToNode (ctx) {
  log('(f) the bridge seeds; Node downloads over WebRTC')
  return bridgeSeed(ctx.ws, ctx.file, magnet => nodeDownload(ctx, magnet))
}

/** download.mjs over WebRTC only: { ms (add → done), size }, SHA-256 and wire types checked. */
async function nodeDownload ({ file, sha256 }, magnet) {
  const size = fs.statSync(file).size
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-bridge-bench-node-'))
  const d = runInterop('download.mjs', ['--magnet', magnet, '--out', out, '--timeout', String(TIMEOUT / 1000), '--exit-with-stdin'])
  try {
    const done = await d.waitFor('done', TIMEOUT + 10_000)
    const f = done.files[0]
    if (f.sha256 !== sha256 || f.length !== size) throw new Error(`Node's file: ${f.length} bytes, SHA-256 ${f.sha256}; expected ${size}, ${sha256}`)
    const wires = d.events.filter(e => e.event === 'wire')
    if (!wires.length || wires.some(w => w.type !== 'webrtc')) throw new Error(`expected WebRTC wires only, got ${JSON.stringify(wires)}`)
    return { ms: done.elapsedMs, size }
  } finally {
    await d.stop()
    fs.rmSync(out, { recursive: true, force: true })
  }
}

/** (c) webtorrent (Node) → webtorrent (Node) over WebRTC (@roamhq/wrtc), ws:// tracker only. */
async function nodeToNode (ctx) {
  const seeder = await startSeeder(['--file', ctx.file, '--announce', ctx.ws], TIMEOUT)
  try {
    await sleep(2000) // as in (d)
    log('(c) Node seeds over WebRTC; Node downloads')
    return await nodeDownload(ctx, seeder.seeding.magnetURI)
  } finally {
    await seeder.stop()
  }
}

const tracker = await startTracker(['--no-udp', '--no-http', '--quiet'])
const ws = tracker.ready.ws
const server = await startServer()
const browser = await launchChromium()
const ROWS = [
  { key: 'a', fn: pageToBridge, label: '(a) browser → bridge: our page seeds, `webtorrent download` (spawn → done)', target: TARGET_TO_BRIDGE },
  { key: 'b', fn: bridgeToPage, label: '(b) bridge → browser: `webtorrent seed`, our page downloads (add → done)', target: TARGET_TO_BROWSER },
  { key: 'c', fn: nodeToNode, label: '(c) webtorrent (Node) → webtorrent (Node), WebRTC via @roamhq/wrtc (add → done)' }
]
if (opt.more || opt.only) {
  ROWS.push(
    { key: 'd', fn: nodeToBridge, label: '(d) webtorrent (Node, WebRTC) seeds → `webtorrent download` (spawn → done)' },
    { key: 'e', fn: bundleToBridge, label: '(e) webtorrent browser bundle page seeds → `webtorrent download` (spawn → done)' },
    { key: 'f', fn: bridgeToNode, label: '(f) `webtorrent seed` → webtorrent (Node, WebRTC) downloads (add → done)' }
  )
}
if (opt.only) {
  const keep = new Set(opt.only.split(',').map(k => k.trim()))
  for (let i = ROWS.length - 1; i >= 0; i--) if (!keep.has(ROWS[i].key)) ROWS.splice(i, 1)
}
const results = Object.fromEntries(ROWS.map(r => [r.key, []]))
let failed = false
try {
  await checkPkg(server)
  const file = benchFile(SIZE_MIB)
  const sha256 = await sha256File(file)
  const ctx = { browser, server, ws, file, sha256 }
  for (let run = 1; run <= RUNS; run++) {
    for (const { key, fn } of ROWS) {
      try {
        const r = await fn(ctx)
        log(`(${key}) run ${run}: ${(r.ms / 1000).toFixed(2)} s, ${mbps(r.size, r.ms).toFixed(1)} MB/s`)
        results[key].push(r)
      } catch (e) {
        failed = true
        log(`(${key}) run ${run} failed: ${e.message}`)
        results[key].push({ error: e.message.split('\n')[0] })
      }
      await sleep(1000)
    }
  }
} finally {
  await browser.close().catch(() => {})
  await server.close()
  await tracker.stop()
}

const cell = rs => rs.map(r => (r.error
  ? `failed: ${r.error}`
  : `${(r.ms / 1000).toFixed(2)} s (${mbps(r.size, r.ms).toFixed(1)} MB/s` +
    (r.transferMs ? `; ${mbps(r.size, r.transferMs).toFixed(1)} MB/s from the first connection` : '') +
    (r.cpu != null ? `; bridge CPU ${r.cpu.toFixed(1)} s` : '') + ')')).join('<br>')
const median = rs => {
  const v = rs.filter(r => !r.error).map(r => mbps(r.size, r.ms)).sort((x, y) => x - y)
  return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : null
}
const verdict = (rs, target) => {
  const m = median(rs)
  return m == null ? '–' : `≥ ${target} MB/s: ${m >= target ? 'met' : '**not met**'} (median ${m.toFixed(1)} MB/s)`
}
const cpu = os.cpus()
const md = [
  `Bridge bench, ${new Date().toISOString()}: ${SIZE_MIB} MiB over WebRTC on loopback, local bittorrent-tracker (WebSocket), ` +
    `Chromium (${process.env.CHROMIUM || '/usr/bin/chromium'}), ${cpu.length} × ${cpu[0]?.model?.trim() || 'cpu'}; ` +
    `${path.relative(ROOT, BIN) || BIN} (${version}, ${profile}). MB = 10⁶ bytes.`,
  '',
  '| transfer | time (MB/s) | target |',
  '| --- | --- | --- |',
  ...ROWS.map(r => `| ${r.label} | ${cell(results[r.key])} | ${r.target ? verdict(results[r.key], r.target) : 'reference'} |`),
  ''
].join('\n')
process.stdout.write(md)
fs.mkdirSync(path.dirname(opt.out), { recursive: true })
fs.writeFileSync(opt.out, md)
log(`written to ${path.relative(process.cwd(), opt.out)}`)
process.exit(failed ? 1 : 0)
