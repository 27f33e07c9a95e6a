#!/usr/bin/env node
// Figures for the browser client, in Debian's Chromium (not a test; prints a Markdown table):
//
//  (a) hashing a dropped file (1 GiB by default) in a page: time from setInputFiles to the
//      magnet link, MB/s, and the tab's memory while seeding it (JS heap via CDP
//      Performance.getMetrics, performance.measureUserAgentSpecificMemory() where the page is
//      cross-origin isolated, and the renderer process's RSS: before, peak, 5 s after);
//  (b) a page-to-page transfer (100 MiB by default): our page → our page, and the webtorrent
//      browser bundle page → bundle page, in the same run; each with the CPU time of every
//      Chromium thread, and ours with MB moved every 250 ms on both pages;
//  (c) the ceiling: the same bytes over a bare data channel between two pages, no BitTorrent
//      (BENCH_CEILING=msgKiB:bufferedKiB,... picks message sizes and queue depths).
//
// Our page's /pkg/ is www/pkg/ (or $WWW_PKG_DIR: tests/browser/shim for the development shim).
// Run inside the loopback-only namespace:
//
//   tests/netns.sh node tests/browser/bench.mjs [--hash-mib 1024] [--transfer-mib 100]
//       [--no-bundle] [--no-hash] [--no-transfer] [--out tests/browser/artifacts/bench.md]
//       [--profile]   (CPU profiles of both pages during our transfer: artifacts/*.cpuprofile,
//                      the busiest functions printed; profiling slows the pages down)
//
// Source files are random bytes in /tmp (kept for the next run: webtorrent-browser-bench-<N>MiB.bin);
// --keep-files=false removes them at the end.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import {
  requireLoopbackOnly, startTracker, startServer, launchChromium, checkPkg, writeRandomFile,
  sha256File, ourPageUrl, seedOnOurPage, waitDoneOnOurPage, checkSameFiles, wtSeed, wtDownload,
  rendererRss, withTimeout, ARTIFACTS, ROOT, SHIM_DIR
} from './lib.mjs'

requireLoopbackOnly()

const { values: opt } = parseArgs({
  options: {
    'hash-mib': { type: 'string', default: '1024' },
    'transfer-mib': { type: 'string', default: '100' },
    'no-bundle': { type: 'boolean', default: false },
    'no-hash': { type: 'boolean', default: false },
    'no-transfer': { type: 'boolean', default: false },
    'keep-files': { type: 'string', default: 'true' },
    profile: { type: 'boolean', default: false },
    out: { type: 'string', default: path.join(ARTIFACTS, 'bench.md') },
    help: { type: 'boolean', short: 'h' }
  }
})
if (opt.help) {
  process.stdout.write(fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(1, 23).map(l => l.replace(/^\/\/ ?/, '')).join('\n') + '\n')
  process.exit(0)
}

const MIB = 1 << 20
const HASH_MIB = Number(opt['hash-mib'])
const TRANSFER_MIB = Number(opt['transfer-mib'])
const HASH_TIMEOUT = 30 * 60_000
const TRANSFER_TIMEOUT = 20 * 60_000
const log = m => process.stderr.write(`[bench] ${m}\n`)

const mb = n => (n / 1e6).toFixed(1)
const mib = n => `${(n / MIB).toFixed(0)} MiB`
const secs = ms => `${(ms / 1000).toFixed(2)} s`
const rate = (bytes, ms) => `${(bytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s`

function benchFile (sizeMiB) {
  const file = path.join(os.tmpdir(), `webtorrent-browser-bench-${sizeMiB}MiB.bin`)
  try {
    if (fs.statSync(file).size === sizeMiB * MIB) return file
  } catch {}
  log(`writing ${sizeMiB} MiB of random bytes to ${file}`)
  writeRandomFile(file, sizeMiB * MIB)
  return file
}

async function sampleMemory (page, cdp) {
  // The page's renderer: the largest one (a spare renderer may exist beside it).
  const top = rendererRss(process.pid).reduce((m, r) => (!m || r.rss > m.rss ? r : m), null)
  let heap = null
  try {
    const { metrics } = await withTimeout(cdp.send('Performance.getMetrics'), 5000, 'Performance.getMetrics')
    heap = metrics.find(m => m.name === 'JSHeapUsedSize')?.value ?? null
  } catch {}
  return { rss: top?.rss ?? null, anon: top?.anon ?? null, shmem: top?.shmem ?? null, heap }
}

/** The wasm client's linear memory in bytes (our page with the real package only), or null. */
function wasmMemory (page) {
  return withTimeout(page.evaluate(async () => {
    try {
      // The module app.js imported: init() returns its exports (memory included) once initialised.
      const exports = await (await import('/pkg/webtorrent_wasm.js')).default()
      return exports && exports.memory ? exports.memory.buffer.byteLength : null
    } catch {
      return null
    }
  }), 10_000, 'wasm memory').catch(() => null)
}

async function uaMemory (page) {
  try {
    return await withTimeout(page.evaluate(async () => {
      if (!self.crossOriginIsolated || !performance.measureUserAgentSpecificMemory) {
        return { error: `not available (crossOriginIsolated=${self.crossOriginIsolated})` }
      }
      const r = await performance.measureUserAgentSpecificMemory()
      return { bytes: r.bytes }
    }), 60_000, 'measureUserAgentSpecificMemory')
  } catch (e) {
    return { error: e.message }
  }
}

/** (a) one page hashes and seeds `file`; memory sampled throughout. */
async function hashBench ({ label, server, tracker, file, kind }) {
  const browser = await launchChromium({ extraArgs: ['--enable-blink-features=ForceEagerMeasureMemory'] })
  try {
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] })
    const page = await context.newPage()
    page.on('pageerror', e => log(`${label}: pageerror ${e.message}`))
    const url = kind === 'ours' ? ourPageUrl(server, [tracker.ready.ws]) : `${server.url}wt.html`
    await page.goto(url)
    await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', null, { timeout: 30_000 })
    const cdp = await context.newCDPSession(page)
    await cdp.send('Performance.enable')
    await new Promise(resolve => setTimeout(resolve, 2000))
    const before = await sampleMemory(page, cdp)
    const uaBefore = await uaMemory(page)
    const wasmBefore = kind === 'ours' ? await wasmMemory(page) : null
    const peak = { ...before }
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const s = await sampleMemory(page, cdp)
        for (const k of ['rss', 'anon', 'shmem']) if (s[k] != null) peak[k] = Math.max(peak[k] ?? 0, s[k])
        if (s.heap != null) peak.heap = Math.max(peak.heap ?? 0, s.heap)
        await new Promise(resolve => setTimeout(resolve, 250))
      }
    })()
    log(`${label}: hashing ${mib(fs.statSync(file).size)}`)
    const t0 = Date.now()
    let ms
    if (kind === 'ours') {
      const r = await seedOnOurPage(page, [file], HASH_TIMEOUT)
      ms = Date.now() - t0
      log(`${label}: magnet after ${secs(ms)}: ${r.magnet.slice(0, 70)}…`)
    } else {
      const r = await withTimeout(wtSeed(page, [file], { announce: [tracker.ready.ws] }), HASH_TIMEOUT, 'bundle seeding')
      ms = Date.now() - t0
      log(`${label}: magnet after ${secs(ms)}: ${r.magnetURI.slice(0, 70)}…`)
    }
    await new Promise(resolve => setTimeout(resolve, 5000))
    sampling = false
    await sampler
    const after = await sampleMemory(page, cdp)
    const uaAfter = await uaMemory(page)
    const wasmAfter = kind === 'ours' ? await wasmMemory(page) : null
    return { ms, size: fs.statSync(file).size, before, peak, after, uaBefore, uaAfter, wasmBefore, wasmAfter }
  } finally {
    await browser.close().catch(() => {})
  }
}

/** Starts the V8 sampling profiler in `page`; the returned function stops it and returns the profile. */
async function startProfile (page) {
  const cdp = await page.context().newCDPSession(page)
  await cdp.send('Profiler.enable')
  await cdp.send('Profiler.setSamplingInterval', { interval: 200 })
  await cdp.send('Profiler.start')
  return async () => (await cdp.send('Profiler.stop')).profile
}

/** The functions with the most self time in a V8 CPU profile, as text lines. */
function profileSummary (profile, top = 25) {
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const self = new Map()
  let total = 0
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] || 0
    total += dt
    const f = byId.get(id)?.callFrame
    const name = f ? `${f.functionName || '(anonymous)'} ${f.url ? path.basename(f.url.split('?')[0]) : ''}`.trim() : '?'
    self.set(name, (self.get(name) || 0) + dt)
  })
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([n, us]) => `${(us / 1000).toFixed(0).padStart(7)} ms ${(us / total * 100).toFixed(1).padStart(5)} %  ${n}`)
}

/**
 * CPU time (s) of every Chromium thread now, keyed `process kind/thread name` (threads of one
 * name in processes of one kind are summed): renderers, GPU, network and storage services.
 * Two pages of one browser share the machine's cores, so this shows where a transfer's CPU goes.
 */
function chromiumCpu () {
  const tick = 100 // USER_HZ on Linux
  const out = new Map()
  for (const pid of fs.readdirSync('/proc').filter(d => /^\d+$/.test(d))) {
    let argv
    // Zygote children rewrite their command line as one string: split on spaces too.
    try { argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]/) } catch { continue }
    if (!/chrom/i.test(path.basename(argv[0] || ''))) continue
    const type = argv.find(a => a.startsWith('--type='))?.slice(7) ?? 'browser'
    const sub = argv.find(a => a.startsWith('--utility-sub-type='))?.slice(19).split('.')[0]
    // Renderers are told apart by pid (the seeding page's usually starts first).
    const kind = sub ? `${type}:${sub}` : type === 'renderer' ? `renderer ${pid}` : type
    let tids = []
    try { tids = fs.readdirSync(`/proc/${pid}/task`) } catch { continue }
    for (const tid of tids) {
      let stat
      try { stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8') } catch { continue }
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, '#')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const cpu = (Number(f[11]) + Number(f[12])) / tick
      const key = `${kind}/${name}`
      out.set(key, (out.get(key) || 0) + cpu)
    }
  }
  const snmp = fs.readFileSync('/proc/net/snmp', 'utf8').split('\n').filter(l => l.startsWith('Udp:'))
  if (snmp.length === 2) {
    const [names, values] = snmp.map(l => l.split(/\s+/).slice(1))
    names.forEach((n, i) => out.set(`udp:${n}`, Number(values[i])))
  }
  return out
}

/** The busiest Chromium threads between two `chromiumCpu()` readings, as text lines. */
function cpuSummary (before, after, wallMs, top = 14) {
  const udp = k => (after.get(`udp:${k}`) || 0) - (before.get(`udp:${k}`) || 0)
  const d = [...after].filter(([k]) => !k.startsWith('udp:')).map(([k, v]) => [k, v - (before.get(k) || 0)]).filter(([, v]) => v > 0.005)
  d.sort((x, y) => y[1] - x[1])
  const total = d.reduce((a, [, v]) => a + v, 0)
  return [`  all Chromium threads: ${total.toFixed(2)} s CPU in ${secs(wallMs)} (${(total / (wallMs / 1000)).toFixed(2)} cores); ` +
    `UDP datagrams received ${udp('InDatagrams')}, dropped for a full receive buffer ${udp('RcvbufErrors')}, send buffer errors ${udp('SndbufErrors')}`,
    ...d.slice(0, top).map(([k, v]) => `  ${v.toFixed(2).padStart(6)} s  ${k}`)]
}

/**
 * (c) The ceiling: the same two pages of one browser moving `bytes` over a bare data channel
 * (`msg`-byte messages, the same buffer thresholds as our driver), with no BitTorrent at all.
 */
async function channelCeiling ({ server, bytes, msg, high = 1024 * 1024 }) {
  const browser = await launchChromium()
  try {
    const pages = []
    for (let i = 0; i < 2; i++) {
      // With camera and microphone granted, host candidates are plain addresses, not mDNS names.
      const ctx = await browser.newContext({ permissions: ['camera', 'microphone'] })
      const p = await ctx.newPage()
      await p.goto(`${server.url}`)
      pages.push(p)
    }
    const [a, b] = pages
    const gathered = `pc => new Promise(resolve => {
      if (pc.iceGatheringState === 'complete') return resolve()
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve() })
    })`
    const offer = await a.evaluate(async (gathered) => {
      const pc = new RTCPeerConnection()
      window.pc = pc
      window.dc = pc.createDataChannel('bench')
      await pc.setLocalDescription(await pc.createOffer())
      await eval(gathered)(pc)
      return pc.localDescription.toJSON()
    }, gathered)
    const answer = await b.evaluate(async ({ offer, gathered }) => {
      const pc = new RTCPeerConnection()
      window.pc = pc
      window.received = new Promise(resolve => {
        pc.ondatachannel = ({ channel }) => {
          channel.binaryType = 'arraybuffer'
          let got = 0
          let t0 = 0
          window.trace = []
          channel.onmessage = e => {
            if (!t0) {
              t0 = performance.now()
              const timer = setInterval(() => { window.trace.push(Math.round(got / 1e6)); if (got >= window.want) clearInterval(timer) }, 250)
            }
            got += e.data.byteLength
            if (got >= window.want) resolve(performance.now() - t0)
          }
        }
      })
      await pc.setRemoteDescription(offer)
      await pc.setLocalDescription(await pc.createAnswer())
      await eval(gathered)(pc)
      return pc.localDescription.toJSON()
    }, { offer, gathered })
    await b.evaluate(want => { window.want = want }, bytes)
    const sending = a.evaluate(async ({ answer, bytes, msg, high }) => {
      await pc.setRemoteDescription(answer)
      if (dc.readyState !== 'open') await new Promise(resolve => { dc.onopen = resolve })
      dc.bufferedAmountLowThreshold = high / 4
      const chunk = new Uint8Array(msg)
      let sent = 0
      await new Promise(resolve => {
        const pump = () => {
          while (sent < bytes && dc.bufferedAmount < high) {
            dc.send(chunk)
            sent += msg
          }
          if (sent >= bytes) resolve()
        }
        dc.onbufferedamountlow = pump
        pump()
      })
    }, { answer, bytes, msg, high })
    const cpu0 = chromiumCpu()
    const t0 = Date.now()
    await withTimeout(sending, 120_000, 'bare data channel: sending')
    const ms = await withTimeout(b.evaluate(() => window.received), 120_000, 'bare data channel: receiving')
    const lines = cpuSummary(cpu0, chromiumCpu(), Date.now() - t0)
    const trace = await b.evaluate(() => window.trace)
    // Packets the sending side's transport dropped before they reached the socket.
    const discarded = await a.evaluate(async () => {
      let n = 0
      ;(await pc.getStats()).forEach(r => { if (r.type === 'candidate-pair') n += r.packetsDiscardedOnSend || 0 })
      return n
    })
    lines.push(`  MB received every 250 ms: ${trace.join(' ')}`, `  packets discarded on send (sender): ${discarded}`)
    log(`bare data channel, ${msg / 1024} KiB messages, ${high / 1024} KiB buffered at most: ${secs(ms)} (${rate(bytes, ms)}); CPU:\n${lines.join('\n')}`)
    return { ms, size: bytes }
  } finally {
    await browser.close().catch(() => {})
  }
}

/** (b) page A seeds `file`, page B downloads it; time from add to done in B. */
async function transferBench ({ label, server, tracker, file, sha256, kind }) {
  const browser = await launchChromium()
  try {
    const ctxA = await browser.newContext({ permissions: ['camera', 'microphone'] })
    const ctxB = await browser.newContext({ permissions: ['camera', 'microphone'] })
    const a = await ctxA.newPage()
    const b = await ctxB.newPage()
    const consoleLines = []
    const tStart = Date.now()
    for (const [p, n] of [[a, 'A'], [b, 'B']]) {
      p.on('pageerror', e => log(`${label} ${n}: pageerror ${e.message}`))
      p.on('console', m => { if (m.type() !== 'log' && m.type() !== 'debug') consoleLines.push(`${n} +${Date.now() - tStart} ms ${m.type()}: ${m.text()}`) })
    }
    const size = fs.statSync(file).size
    const ws = tracker.ready.ws
    const url = kind === 'ours' ? ourPageUrl(server, [ws]) : `${server.url}wt.html`
    for (const p of [a, b]) {
      await p.goto(url)
      await p.waitForFunction(() => document.documentElement.dataset.ready === 'true', null, { timeout: 30_000 })
    }
    log(`${label}: A seeds ${mib(size)}`)
    const tSeed = Date.now()
    const magnet = kind === 'ours'
      ? (await seedOnOurPage(a, [file], HASH_TIMEOUT)).magnet
      : (await withTimeout(wtSeed(a, [file], { announce: [ws] }), HASH_TIMEOUT, 'bundle seeding')).magnetURI
    const seedMs = Date.now() - tSeed
    log(`${label}: B downloads`)
    let ms
    let marks = null
    const cpu0 = chromiumCpu()
    let cpuLines = []
    if (kind === 'ours') {
      const stops = opt.profile ? [await startProfile(a), await startProfile(b)] : []
      // The seeding page's uploaded MB every 250 ms, beside the downloader's trace.
      await a.evaluate(() => {
        window.uploadTrace = []
        window.uploadTimer = setInterval(() => window.uploadTrace.push(Math.round((window.webtorrentClient?.torrents?.[0]?.uploaded || 0) / 1e6)), 250)
      })
      const t0 = Date.now()
      // Milestones seen from inside the page (ms after the link is opened): the torrent is
      // added, the first peer, the metadata, the first piece, half, every piece, the page's
      // done state (files ready to save).
      marks = await b.evaluate(({ m, timeout }) => new Promise((resolve, reject) => {
        const start = performance.now()
        const marks = {}
        const mark = k => { if (marks[k] == null) marks[k] = Math.round(performance.now() - start) }
        // MB downloaded every 250 ms: shows stalls that the milestones average away.
        const trace = []
        let nextTrace = 250
        location.hash = m
        const timer = setInterval(() => {
          const t = window.webtorrentClient?.torrents?.[0]
          if (performance.now() - start >= nextTrace) { nextTrace += 250; trace.push(Math.round((t?.downloaded || 0) / 1e6)) }
          marks.trace = trace
          if (t) mark('added')
          if (t?.numPeers > 0) mark('peer')
          if (t?.length > 0) mark('metadata')
          if (t?.downloaded > 0) mark('firstBytes')
          if (t?.progress >= 0.5) mark('half')
          if (t?.done) mark('allPieces')
          const c = document.querySelector('article.torrent')
          if (c?.dataset.state === 'error') { clearInterval(timer); reject(new Error(c.querySelector('[data-testid=state]').textContent)) }
          const d = c?.querySelector('[data-testid=done]')
          if (d && !d.hidden) { mark('pageDone'); clearInterval(timer); resolve(marks) }
          if (performance.now() - start > timeout) { clearInterval(timer); reject(new Error(`not done after ${timeout} ms: ${JSON.stringify(marks)}`)) }
        }, 10)
      }), { m: magnet, timeout: TRANSFER_TIMEOUT })
      ms = Date.now() - t0
      cpuLines = cpuSummary(cpu0, chromiumCpu(), ms)
      const trace = marks.trace
      delete marks.trace
      const upTrace = await a.evaluate(() => { clearInterval(window.uploadTimer); return window.uploadTrace })
      log(`${label}: milestones (ms) ${JSON.stringify(marks)}\n  MB downloaded every 250 ms: ${trace.join(' ')}\n  MB uploaded by the seeding page: ${upTrace.join(' ')}`)
      // A slow first peer: show what the pages said (warnings and errors).
      if (marks.peer > 5000 || process.env.BENCH_CONSOLE) log(`${label}: the first peer took ${secs(marks.peer)}; the pages said:\n${consoleLines.join('\n') || '(nothing)'}`)
      for (const [i, stop] of stops.entries()) {
        const profile = await stop()
        const name = ['seeder', 'downloader'][i]
        fs.mkdirSync(ARTIFACTS, { recursive: true })
        fs.writeFileSync(path.join(ARTIFACTS, `bench-${name}.cpuprofile`), JSON.stringify(profile))
        log(`${label}: ${name} page, busiest functions (self time):\n${profileSummary(profile).join('\n')}`)
      }
      const saved = await waitDoneOnOurPage(b, 10_000)
      checkSameFiles(saved, [{ name: path.basename(file), size, sha256 }])
    } else {
      const got = await withTimeout(wtDownload(b, magnet, { announce: [ws] }), TRANSFER_TIMEOUT, 'bundle download')
      ms = got.ms
      cpuLines = cpuSummary(cpu0, chromiumCpu(), ms)
      checkSameFiles(got.files.map(f => ({ download: f.name, size: f.length, sha256: f.sha256 })),
        [{ name: path.basename(file), size, sha256 }])
    }
    log(`${label}: ${secs(ms)} (${rate(size, ms)}); CPU during it:\n${cpuLines.join('\n')}`)
    return { ms, size, seedMs, marks }
  } finally {
    await browser.close().catch(() => {})
  }
}

function memCell (r, key, unit = 'MB') {
  const f = v => (v == null ? '?' : mb(v))
  const b = r.before[key]
  const p = r.peak[key]
  const a = r.after[key]
  if (b == null && p == null) return 'n/a'
  return `${f(b)} → ${f(p)} → ${f(a)} ${unit} (+${f(a - b)} settled, +${f(p - b)} peak)`
}

function uaCell (r) {
  if (r.uaAfter.error) return r.uaAfter.error
  return `${mb(r.uaBefore.bytes)} → ${mb(r.uaAfter.bytes)} MB`
}

const tracker = await startTracker(['--no-udp', '--quiet'])
const ours = await startServer({ crossOriginIsolated: true })
const pkgLabel = ours.pkgDir === SHIM_DIR ? 'shim (webtorrent bundle)' : path.relative(ROOT, ours.pkgDir)
const results = { hash: {}, transfer: {}, ceiling: {} }
const impls = [{ kind: 'ours', label: `our page (/pkg/: ${pkgLabel})` }]
if (!opt['no-bundle']) impls.push({ kind: 'bundle', label: 'webtorrent bundle page' })
let failed = false

try {
  await checkPkg(ours)
  if (!opt['no-hash']) {
    const file = benchFile(HASH_MIB)
    for (const impl of impls) {
      try {
        results.hash[impl.kind] = await hashBench({ ...impl, server: ours, tracker, file })
      } catch (e) {
        failed = true
        log(`${impl.label}: hashing failed: ${e.message}`)
        results.hash[impl.kind] = { error: e.message.split('\n')[0] }
      }
    }
  }
  if (!opt['no-transfer']) {
    const file = benchFile(TRANSFER_MIB)
    const sha256 = await sha256File(file)
    // The transfers need no cross-origin isolation; a plain server like the tests'.
    const plain = await startServer({ pkgDir: ours.pkgDir })
    try {
      const ceilings = (process.env.BENCH_CEILING || '16:1024,64:256').split(',').map(c => c.split(':').map(n => Number(n) * 1024))
      for (const [msg, high] of ceilings) {
        try {
          results.ceiling[`${msg / 1024} KiB messages, ${high / 1024} KiB buffered`] = await channelCeiling({ server: plain, bytes: TRANSFER_MIB * MIB, msg, high })
        } catch (e) {
          failed = true
          log(`bare data channel: failed: ${e.message}`)
          results.ceiling[`${msg / 1024} KiB messages, ${high / 1024} KiB buffered`] = { error: e.message.split('\n')[0] }
        }
      }
      for (const impl of impls) {
        try {
          results.transfer[impl.kind] = await transferBench({ ...impl, server: plain, tracker, file, sha256 })
        } catch (e) {
          failed = true
          log(`${impl.label}: transfer failed: ${e.message}`)
          results.transfer[impl.kind] = { error: e.message.split('\n')[0] }
        }
      }
    } finally {
      await plain.close()
    }
  }
} finally {
  await ours.close()
  await tracker.stop()
  if (opt['keep-files'] === 'false') {
    for (const n of [HASH_MIB, TRANSFER_MIB]) fs.rmSync(path.join(os.tmpdir(), `webtorrent-browser-bench-${n}MiB.bin`), { force: true })
  }
}

const cell = (r, fn) => (!r ? '–' : r.error ? `failed: ${r.error}` : fn(r))
const rows = []
rows.push(`| figure | ${impls.map(i => i.label).join(' | ')} |`)
rows.push(`| --- | ${impls.map(() => '---').join(' | ')} |`)
if (!opt['no-hash']) {
  const h = impls.map(i => results.hash[i.kind])
  rows.push(`| hash ${HASH_MIB} MiB dropped file: setInputFiles → magnet | ${h.map(r => cell(r, r => `${secs(r.ms)} (${rate(r.size, r.ms)})`)).join(' | ')} |`)
  rows.push(`| renderer RSS: before → peak → 5 s after | ${h.map(r => cell(r, r => memCell(r, 'rss'))).join(' | ')} |`)
  rows.push(`| … of which anonymous (RssAnon) | ${h.map(r => cell(r, r => memCell(r, 'anon'))).join(' | ')} |`)
  rows.push(`| … of which shared memory (RssShmem) | ${h.map(r => cell(r, r => memCell(r, 'shmem'))).join(' | ')} |`)
  rows.push(`| JS heap used (CDP): before → peak → 5 s after | ${h.map(r => cell(r, r => memCell(r, 'heap'))).join(' | ')} |`)
  rows.push(`| measureUserAgentSpecificMemory: before → after | ${h.map(r => cell(r, uaCell)).join(' | ')} |`)
  rows.push(`| wasm linear memory: before → after | ${h.map(r => cell(r, r => (r.wasmAfter == null ? 'n/a' : `${mb(r.wasmBefore)} → ${mb(r.wasmAfter)} MB`))).join(' | ')} |`)
}
if (!opt['no-transfer']) {
  const t = impls.map(i => results.transfer[i.kind])
  rows.push(`| ${TRANSFER_MIB} MiB page → page: add → done | ${t.map(r => cell(r, r => `${secs(r.ms)} (${rate(r.size, r.ms)})`)).join(' | ')} |`)
  rows.push(`| ${TRANSFER_MIB} MiB: seeding page's hashing | ${t.map(r => cell(r, r => `${secs(r.seedMs)} (${rate(r.size, r.seedMs)})`)).join(' | ')} |`)
  const m = r => r.marks
    ? ['added', 'peer', 'metadata', 'firstBytes', 'half', 'allPieces', 'pageDone'].map(k => `${k} ${r.marks[k] == null ? '?' : secs(r.marks[k])}`).join(', ')
    : 'n/a'
  rows.push(`| ${TRANSFER_MIB} MiB: milestones after opening the link | ${t.map(r => cell(r, m)).join(' | ')} |`)
  for (const [what, r] of Object.entries(results.ceiling)) {
    rows.push(`| ceiling: ${TRANSFER_MIB} MiB over a bare data channel, ${what} | ${impls.map((_, i) => i ? 'same browser, no client' : cell(r, r => `${secs(r.ms)} (${rate(r.size, r.ms)})`)).join(' | ')} |`)
  }
}
const cpu = os.cpus()
const md = [
  `Browser bench, ${new Date().toISOString()}: Chromium (${process.env.CHROMIUM || '/usr/bin/chromium'}), ` +
    `${cpu.length} × ${cpu[0]?.model?.trim() || 'cpu'}, loopback, local bittorrent-tracker (WebSocket).`,
  '',
  ...rows,
  ''
].join('\n')
process.stdout.write(md)
fs.mkdirSync(path.dirname(opt.out), { recursive: true })
fs.writeFileSync(opt.out, md)
log(`written to ${path.relative(process.cwd(), opt.out)}`)
process.exit(failed ? 1 : 0)
