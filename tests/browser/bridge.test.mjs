// The bridge in Chromium: our `webtorrent` binary joins the WebRTC swarm (our page, via a
// WebSocket tracker) and the TCP swarm (npm webtorrent in Node, via an HTTP tracker) and moves
// pieces between them. Only inside a loopback-only network namespace:
//
//   tests/netns.sh node --test tests/browser/bridge.test.mjs
//
// 1. browser → desktop: our page seeds a dropped file (WebRTC only), the bridge downloads it
//    over WebRTC, a TCP-only webtorrent (Node) downloads it from the bridge;
// 2. desktop → browser: a TCP-only webtorrent (Node) seeds, the bridge fetches it over TCP,
//    our page downloads it over WebRTC from a share link;
// 3. 1 and 2 once with bittorrent-tracker (and tests/browser/server.mjs for the page) and once
//    with `webtorrent serve` as tracker and page server (skipped when the binary lacks it);
// 4. faults: the downloading tab is closed halfway and a second tab finishes from the bridge;
//    the tracker is restarted mid-transfer and the swarm recovers (the bridge re-registers on
//    WebSocket and HTTP: a new tab and a new TCP client both download from it).
//
// Every file is checked by SHA-256 at every end. Environment:
//   WEBTORRENT_BIN     our CLI (default $CARGO_TARGET_DIR/debug/webtorrent, else target/debug/webtorrent)
//   BRIDGE_TEST_MIB    size of the transfers in 1–3 (default 8)
//   BRIDGE_FAULT_MIB   size of the throttled transfers in 4 (default 24)
//   BRIDGE_LIMIT       the bridge's --download-limit in 4, bytes/s (default: the file in ~16 s)
//   BRIDGE_RECOVERY_S  how long the swarm may take to recover after the tracker restart
//                      (default 360: WebSocket clients reconnect after 10 s + random(0–300 s),
//                      as bittorrent-tracker's client does)
//   BRIDGE_RUST_LOG    RUST_LOG of our binary (default webtorrent=info; its last lines are in
//                      every failure report)

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import {
  requireLoopbackOnly, startTracker, startServer, launchChromium, checkPkg,
  ourPageUrl, seedOnOurPage, waitDoneOnOurPage, checkSameFiles, sha256File, ROOT
} from './lib.mjs'
import {
  MIB, runScenario, requireWebtorrentBin, serveMissingReason, freePort, startBridge, startServe, magnetFor,
  withTrackers, pageProgress, waitPageProgress, runInterop, startSeeder, interopTail, withTimeout
} from './bridge-lib.mjs'

requireLoopbackOnly()

const TEST_MIB = Number(process.env.BRIDGE_TEST_MIB || 8)
const FAULT_MIB = Number(process.env.BRIDGE_FAULT_MIB || 24)
const FAULT_LIMIT = Number(process.env.BRIDGE_LIMIT || Math.round(FAULT_MIB * MIB / 16))
const RECOVERY_S = Number(process.env.BRIDGE_RECOVERY_S || 360)
const log = m => process.stderr.write(`[bridge] ${new Date().toISOString().slice(11, 23)} ${m}\n`)

let browser, server, bin
const SERVE_MISSING = serveMissingReason()

before(async () => {
  bin = requireWebtorrentBin()
  server = await startServer()
  await checkPkg(server)
  browser = await launchChromium()
  log(`binary ${path.relative(ROOT, bin) || bin}, page server ${server.url}` +
    (SERVE_MISSING ? `; serve variants skipped: ${SERVE_MISSING}` : ''))
}, { timeout: 90_000 })

after(async () => {
  if (browser) await browser.close().catch(() => {})
  if (server) await server.close()
})

// ---------------------------------------------------------------- scenario plumbing

/** A scenario with this test's processes and folders ([runScenario] in bridge-lib.mjs). */
const scenario = (name, fn) => runScenario(browser, name, fn)

/** The tracker (and page server) of a variant: { kind, ws, http, pageUrl(trackers, fragment) }. */
async function trackerFor (s, kind, trackerArgs = []) {
  if (kind === 'bittorrent-tracker') {
    const t = s.own(await startTracker(['--no-udp', ...trackerArgs]), 'bittorrent-tracker')
    return {
      kind,
      proc: t,
      ws: t.ready.ws,
      http: t.announceUrl,
      port: t.port,
      pageUrl: (trackers, fragment) => ourPageUrl(server, trackers, fragment)
    }
  }
  const srv = s.own(await startServe({ bridge: false }))
  return {
    kind,
    proc: srv,
    ws: srv.ws,
    http: srv.http,
    port: srv.port,
    // The page served by `webtorrent serve` defaults to its own WebSocket tracker: no ?announce=.
    pageUrl: (trackers, fragment) => srv.url + (fragment ? '#' + fragment : '')
  }
}

/** Run download.mjs (TCP-only npm webtorrent) to completion and check its files. */
async function nodeDownload (s, label, magnet, out, files, { timeoutS = 120 } = {}) {
  const d = s.own(runInterop('download.mjs', ['--magnet', magnet, '--out', out, '--timeout', String(timeoutS), '--exit-with-stdin']), label)
  const done = await d.waitFor('done', (timeoutS + 10) * 1000)
  const saved = done.files.map(f => ({ download: path.basename(f.path), size: f.length, sha256: f.sha256 }))
  checkSameFiles(saved, files)
  return { proc: d, done, wires: d.events.filter(e => e.event === 'wire') }
}

async function checkBridgeFile (bridgeOut, file) {
  const p = path.join(bridgeOut, file.name)
  if (!fs.existsSync(p)) throw new Error(`the bridge wrote no ${p} (folder has: ${fs.readdirSync(bridgeOut).join(', ') || 'nothing'})`)
  const size = fs.statSync(p).size
  const sha = await sha256File(p)
  if (size !== file.size || sha !== file.sha256) {
    throw new Error(`the bridge's copy differs: ${size} bytes, SHA-256 ${sha}; expected ${file.size} bytes, ${file.sha256}`)
  }
}

// ---------------------------------------------------------------- 1 and 2, for each tracker

for (const kind of ['bittorrent-tracker', 'webtorrent serve']) {
  const skip = kind === 'webtorrent serve' && SERVE_MISSING ? `webtorrent serve is missing: ${SERVE_MISSING}` : false

  test(`[${kind}] browser → bridge → desktop: our page seeds over WebRTC, a TCP-only webtorrent (Node) gets it from the bridge`,
    { timeout: 240_000, skip }, async () => {
      await scenario(`browser to desktop via ${kind}`, async s => {
        const tr = await trackerFor(s, kind)
        const set = s.files([{ name: 'from-browser.bin', size: TEST_MIB * MIB + 12345 }])
        const file = set.files[0]
        const a = await s.openPage('A-seeds', tr.pageUrl([tr.ws]))
        const seeded = await s.step('A seeds the dropped file (file input)', () => seedOnOurPage(a, [file.path]), 60_000)
        await s.step('A\'s magnet link lists only the WebSocket tracker', () => {
          const trs = new URLSearchParams(seeded.magnet.slice(seeded.magnet.indexOf('?') + 1)).getAll('tr')
          assert.deepEqual(trs, [tr.ws], `magnet ${seeded.magnet}`)
        })
        const bridgeOut = s.tmp('bridge')
        const bridgePort = await freePort()
        const bridgeMagnet = withTrackers(seeded.magnet, [tr.http])
        const bridge = s.own(startBridge({ source: bridgeMagnet, out: bridgeOut, port: bridgePort }))
        await s.step('the bridge (magnet with ws:// and http:// trackers) downloads from A over WebRTC', () => bridge.done, 120_000)
        await s.step('the bridge\'s file has the source\'s SHA-256', () => checkBridgeFile(bridgeOut, file), 30_000)
        const got = await s.step('a TCP-only webtorrent (Node, HTTP tracker only) downloads from the bridge', () =>
          nodeDownload(s, 'node-download', magnetFor(seeded.infoHash, [tr.http]), s.tmp('node'), [file]), 140_000)
        await s.step('the Node client\'s peer was the bridge\'s TCP port', () => {
          const addrs = got.wires.map(w => `${w.addr} (${w.type})`)
          assert.ok(got.wires.some(w => w.addr === `127.0.0.1:${bridgePort}`),
            `no wire to the bridge at 127.0.0.1:${bridgePort}; wires: ${addrs.join(', ') || 'none'}`)
        })
        log(`${kind}: browser → bridge → Node ok (Node ${got.done.mbPerSec} MB/s)`)
      })
    })

  test(`[${kind}] desktop → bridge → browser: a TCP-only webtorrent (Node) seeds, our page gets it from the bridge over WebRTC`,
    { timeout: 240_000, skip }, async () => {
      await scenario(`desktop to browser via ${kind}`, async s => {
        const tr = await trackerFor(s, kind)
        const set = s.files([{ name: 'from-desktop.bin', size: TEST_MIB * MIB + 777 }])
        const file = set.files[0]
        const seeder = s.own(await s.step('a TCP-only webtorrent (Node) seeds (HTTP tracker only)', () =>
          startSeeder(['--file', file.path, '--announce', tr.http]), 60_000), 'node-seed')
        const ih = seeder.seeding.infoHash
        const bridgeOut = s.tmp('bridge')
        const bridge = s.own(startBridge({ source: magnetFor(ih, [tr.http, tr.ws], file.name), out: bridgeOut, port: await freePort() }))
        await s.step('the bridge (magnet with http:// and ws:// trackers) fetches it over TCP', () => bridge.done, 120_000)
        await s.step('the bridge\'s file has the source\'s SHA-256', () => checkBridgeFile(bridgeOut, file), 30_000)
        // From here the bridge is the only seeder: the page can only get the bytes from it.
        await s.step('the Node seeder stops', () => seeder.stop(), 15_000)
        const share = tr.pageUrl([tr.ws], magnetFor(ih, [tr.ws], file.name))
        const b = await s.openPage('B-downloads', share)
        const saved = await s.step('B (share link) downloads from the bridge over WebRTC', () => waitDoneOnOurPage(b, 120_000), 125_000)
        await s.step('B\'s file has the source\'s SHA-256', () => checkSameFiles(saved, [file]))
        log(`${kind}: Node → bridge → page ok`)
      })
    })
}

// ---------------------------------------------------------------- 4. faults

test('fault: the downloading tab is closed halfway, a second tab finishes from the bridge', { timeout: 300_000 }, async () => {
  await scenario('tab closed halfway', async s => {
    const tr = await trackerFor(s, 'bittorrent-tracker')
    const set = s.files([{ name: 'tab-closed.bin', size: FAULT_MIB * MIB + 4321 }])
    const file = set.files[0]
    const seeder = s.own(await s.step('a TCP-only webtorrent (Node) seeds', () =>
      startSeeder(['--file', file.path, '--announce', tr.http]), 60_000), 'node-seed')
    const ih = seeder.seeding.infoHash
    // The bridge takes its bytes at FAULT_LIMIT B/s: the pages get them as it gets them.
    const bridge = s.own(startBridge({
      source: magnetFor(ih, [tr.http, tr.ws], file.name),
      out: s.tmp('bridge'),
      port: await freePort(),
      extra: ['--download-limit', String(FAULT_LIMIT)]
    }))
    const share = tr.pageUrl([tr.ws], magnetFor(ih, [tr.ws], file.name))
    const b = await s.openPage('B-closed', share)
    const atClose = await s.step('B downloads from the bridge to 30 %', () => waitPageProgress(b, 30, 120_000), 125_000)
    const bridgeAtClose = bridge.progress()
    await s.step('B\'s tab is closed', () => s.closePage('B-closed'), 15_000)
    log(`tab closed at ${atClose} % (bridge at ${bridgeAtClose} %)`)
    assert.ok(atClose < 100, `B was already done (${atClose} %) when closed: lower BRIDGE_LIMIT`)
    const c = await s.openPage('C-finishes', share)
    const saved = await s.step('C (same share link) finishes the download from the bridge', () => waitDoneOnOurPage(c, 180_000), 185_000)
    await s.step('C\'s file has the source\'s SHA-256', () => checkSameFiles(saved, [file]))
    await s.step('the bridge is still running and complete', async () => {
      assert.equal(bridge.exited, null, `the bridge exited: ${JSON.stringify(bridge.exited)}`)
      await withTimeout(bridge.done, 60_000, 'the bridge\'s download')
    }, 65_000)
  })
})

test('fault: the tracker restarts mid-transfer and the swarm recovers', { timeout: (RECOVERY_S + 300) * 1000 }, async () => {
  await scenario('tracker restart', async s => {
    // A short announce interval for the Node clients (ours clamp it to 60 s).
    const trackerArgs = ['--interval', '5000']
    const tr = await trackerFor(s, 'bittorrent-tracker', trackerArgs)
    const set = s.files([{ name: 'tracker-restart.bin', size: FAULT_MIB * MIB + 99 }])
    const file = set.files[0]
    const seeder = s.own(await s.step('a TCP-only webtorrent (Node) seeds', () =>
      startSeeder(['--file', file.path, '--announce', tr.http]), 60_000), 'node-seed')
    const ih = seeder.seeding.infoHash
    const bridgePort = await freePort()
    const bridge = s.own(startBridge({
      source: magnetFor(ih, [tr.http, tr.ws], file.name),
      out: s.tmp('bridge'),
      port: bridgePort,
      extra: ['--download-limit', String(FAULT_LIMIT)]
    }))
    const share = tr.pageUrl([tr.ws], magnetFor(ih, [tr.ws], file.name))
    const b = await s.openPage('B-during-restart', share)
    await s.step('B downloads from the bridge to 15 %', () => waitPageProgress(b, 15, 120_000), 125_000)
    const restartAt = Date.now()
    const t2 = await s.step('the tracker stops and starts again on the same port', async () => {
      await tr.proc.stop()
      return s.own(await startTracker(['--no-udp', '--port', String(tr.port), ...trackerArgs]), 'bittorrent-tracker-restarted')
    }, 30_000)
    log(`tracker restarted (B at ${await pageProgress(b)} %, bridge at ${bridge.progress()} %)`)
    await s.step('the bridge finishes (its TCP peer needs no tracker)', () => bridge.done, 120_000)
    const savedB = await s.step('B finishes over its open WebRTC connection', () => waitDoneOnOurPage(b, 120_000), 125_000)
    await s.step('B\'s file has the source\'s SHA-256', () => checkSameFiles(savedB, [file]))
    // From here the bridge is the only seeder, on both sides.
    await s.step('the Node seeder stops and tab B closes', async () => {
      await seeder.stop()
      await s.closePage('B-during-restart')
    }, 20_000)
    const c = await s.openPage('C-after-restart', share)
    const recovery = RECOVERY_S * 1000
    const [savedC, gotD] = await s.step(`C (new tab) and a new TCP-only Node client both download from the bridge (≤ ${RECOVERY_S} s)`, () => Promise.all([
      waitDoneOnOurPage(c, recovery).then(r => { log(`C done ${((Date.now() - restartAt) / 1000).toFixed(1)} s after the restart`); return r }),
      nodeDownload(s, 'node-download-after-restart', magnetFor(ih, [tr.http]), s.tmp('node'), [file], { timeoutS: RECOVERY_S })
        .then(r => { log(`Node client done ${((Date.now() - restartAt) / 1000).toFixed(1)} s after the restart`); return r })
    ]), recovery + 20_000)
    await s.step('C\'s file has the source\'s SHA-256 and the Node client got it from the bridge', () => {
      checkSameFiles(savedC, [file])
      assert.ok(gotD.wires.some(w => w.addr === `127.0.0.1:${bridgePort}`),
        `no wire to the bridge at 127.0.0.1:${bridgePort}: ${gotD.wires.map(w => w.addr).join(', ')}`)
    })
    const bridgeAnnounces = t2.events.filter(e => e.event === 'announce' && e.infoHash === ih)
      .map(e => `${e.protocol} ${e.type} ${e.addr}`)
    log(`announces for the torrent at the restarted tracker: ${bridgeAnnounces.join('; ')}`)
  })
})
