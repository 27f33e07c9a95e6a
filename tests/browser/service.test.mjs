// The bridge as a service: `webtorrent serve` is the only server process (tracker, page and
// bridge on one port) and nobody runs a per-torrent command. Only inside a loopback-only
// network namespace:
//
//   tests/netns.sh node --test tests/browser/service.test.mjs
//
// 1. our page seeds a dropped file; a TCP-only npm webtorrent (Node) given exactly the magnet
//    the page shows downloads it, and the page then says desktop apps can reach it;
// 2. a TCP-only npm webtorrent seeds through the HTTP tracker; our page opens a share link of
//    that magnet and downloads it;
// 3. the webtorrent browser bundle in a tab and a TCP-only client share a torrent both ways;
// 4. a page asks the server to keep its file, the tab closes, a desktop client still gets it;
// 5. `webtorrent bridge --tracker` on the npm bittorrent-tracker (a server it does not run)
//    moves a page's file to a TCP-only client;
// 6. DHT: our CLI seeds with no tracker at all, announcing to the DHT only (bootstrapped from
//    serve's DHT node); our page opens the tracker-less magnet and gets the file through
//    serve's bridge, which found the seeder in the DHT.
//
// Every file is checked by SHA-256. Environment: WEBTORRENT_BIN (our CLI), SERVICE_TEST_MIB
// (size of the transfers, default 6), BRIDGE_RUST_LOG (RUST_LOG of our binary).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import {
  requireLoopbackOnly, startTracker, startServer, launchChromium, checkPkg,
  ourPageUrl, seedOnOurPage, waitDoneOnOurPage, checkSameFiles, wtSeed, wtDownload, ROOT,
  waitDesktopReachable, keepOnServer
} from './lib.mjs'
import {
  MIB, runScenario, requireWebtorrentBin, startServe, startWebtorrent, magnetFor, runInterop, startSeeder
} from './bridge-lib.mjs'

requireLoopbackOnly()

const TEST_MIB = Number(process.env.SERVICE_TEST_MIB || 6)
const log = m => process.stderr.write(`[service] ${new Date().toISOString().slice(11, 23)} ${m}\n`)

let browser, pages, bin

before(async () => {
  bin = requireWebtorrentBin()
  // Serves the webtorrent bundle page (wt.html) and our page for the standalone-bridge case.
  pages = await startServer()
  await checkPkg(pages)
  browser = await launchChromium()
  log(`binary ${path.relative(ROOT, bin) || bin}`)
}, { timeout: 90_000 })

after(async () => {
  if (browser) await browser.close().catch(() => {})
  if (pages) await pages.close()
})

/** A scenario with its processes and folders ([runScenario] in bridge-lib.mjs). */
const scenario = (name, fn) => runScenario(browser, name, fn, 'wt-service')

/** The trackers (`tr=`) of a magnet link. */
const trackersOf = magnet => new URLSearchParams(magnet.slice(magnet.indexOf('?') + 1)).getAll('tr')

/** download.mjs (TCP-only npm webtorrent) to completion; checks its files. */
async function nodeDownload (s, label, magnet, files, { timeoutS = 120 } = {}) {
  const d = s.own(runInterop('download.mjs', ['--magnet', magnet, '--out', s.tmp('node'), '--timeout', String(timeoutS),
    '--progress-interval', '100', '--exit-with-stdin', '--no-webrtc']), label)
  const first = d.waitFor(e => e.event === 'progress' && e.progress > 0, (timeoutS + 10) * 1000)
    .then(() => Date.now(), () => null)
  const done = await d.waitFor('done', (timeoutS + 10) * 1000)
  const doneAt = Date.now()
  checkSameFiles(done.files.map(f => ({ download: path.basename(f.path), size: f.length, sha256: f.sha256 })), files)
  const firstPieceAt = await Promise.race([first, Promise.resolve(doneAt)])
  return { proc: d, done, firstPieceAt }
}

/** The bridge's view of a torrent from /bridge/torrents/<hex>. */
async function bridgeStatus (srv, infoHash) {
  const r = await fetch(`${srv.url}bridge/torrents/${infoHash}`)
  return r.json()
}

async function bridgeStats (srv) {
  return (await (await fetch(`${srv.url}stats.json`)).json()).bridge
}

// The bridge's counters follow its torrents' status, refreshed periodically: the last
// blocks a page received can show up a moment after the page says it is done.
async function bridgeSentToBrowsers (srv, size) {
  let stats
  for (let i = 0; i < 50; i++) {
    stats = await bridgeStats(srv)
    if (stats.bytesDesktopToBrowser >= size) return stats
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  assert.fail(`the bridge counted fewer bytes sent to browsers than the file's ${size}: ${JSON.stringify(stats)}`)
}

test('our page seeds; a TCP-only client given exactly the page\'s magnet gets it through serve', { timeout: 240_000 }, async () => {
  await scenario('page to desktop through serve', async s => {
    const srv = s.own(await startServe())
    const info = await (await fetch(`${srv.url}bridge.json`)).json()
    assert.equal(info.bridge, true, JSON.stringify(info))
    const set = s.files([{ name: 'dropped.bin', size: TEST_MIB * MIB + 4321 }])
    const file = set.files[0]
    const a = await s.openPage('A-seeds', srv.url)
    const seeded = await s.step('A seeds the dropped file', () => seedOnOurPage(a, [file.path]), 60_000)
    let magnet = seeded.magnet
    await s.step('the magnet the page shows lists the server\'s HTTP tracker beside its ws:// one', async () => {
      const deadline = Date.now() + 10_000
      while (!trackersOf(magnet).includes(srv.http) && Date.now() < deadline) {
        await new Promise(resolve => setTimeout(resolve, 100))
        magnet = await a.locator('[data-testid=magnet]').first().inputValue()
      }
      assert.deepEqual(trackersOf(magnet).sort(), [srv.http, srv.ws].sort(), `magnet ${magnet}`)
    })
    const shownAt = Date.now()
    // When the bridge starts on the torrent and when it has all of it (for the pipelining figure).
    let bridgeJoinedAt = null
    let bridgeDoneAt = null
    let watching = true
    const watcher = (async () => {
      while (watching && !bridgeDoneAt) {
        const st = await bridgeStatus(srv, seeded.infoHash).catch(() => ({}))
        if (!bridgeJoinedAt && st.state && st.state !== 'absent') bridgeJoinedAt = Date.now()
        if (st.state === 'seeding') bridgeDoneAt = Date.now()
        await new Promise(resolve => setTimeout(resolve, 50))
      }
    })()
    const got = await s.step('a TCP-only webtorrent (Node) given exactly that magnet downloads it', () =>
      nodeDownload(s, 'node-download', magnet, [file]), 140_000)
    const nodeDoneAt = Date.now()
    await Promise.race([watcher, new Promise(resolve => setTimeout(resolve, 5000))])
    watching = false
    const bridgeTook = bridgeDoneAt ? bridgeDoneAt - shownAt : NaN
    const nodeTook = nodeDoneAt - shownAt
    log(`page → desktop, ${file.size} bytes: first verified piece ${got.firstPieceAt - shownAt} ms after the magnet was shown; ` +
      `from then the bridge had the whole file after ${bridgeTook} ms (joined after ${bridgeJoinedAt - shownAt} ms), ` +
      `the desktop client after ${nodeTook} ms (${((nodeTook / bridgeTook - 1) * 100).toFixed(0)} % later)`)
    await s.step('the server bridged it and says desktop apps can reach it', async () => {
      const st = await bridgeStatus(srv, seeded.infoHash)
      assert.equal(st.desktopReachable, true, JSON.stringify(st))
      // The figures follow the transfer within a fraction of a second.
      let stats
      for (let i = 0; i < 50; i++) {
        stats = await bridgeStats(srv)
        if (stats.bytesBrowserToDesktop >= file.size) break
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      assert.ok(stats.bytesBrowserToDesktop >= file.size, JSON.stringify(stats))
    }, 15_000)
    await s.step('the page shows the torrent as available to desktop apps', () => waitDesktopReachable(a, 20_000), 25_000)
  })
})

test('a TCP-only client seeds through the HTTP tracker; our page downloads it from a share link', { timeout: 240_000 }, async () => {
  await scenario('desktop to page through serve', async s => {
    const srv = s.own(await startServe())
    const set = s.files([{ name: 'from-desktop.bin', size: TEST_MIB * MIB + 99 }])
    const file = set.files[0]
    const seeder = s.own(await s.step('a TCP-only webtorrent (Node) seeds on the HTTP tracker only', () =>
      startSeeder(['--file', file.path, '--announce', srv.http]), 60_000), 'node-seed')
    const magnet = magnetFor(seeder.seeding.infoHash, [srv.http], file.name)
    const b = await s.openPage('B-downloads', `${srv.url}#${magnet}`)
    const saved = await s.step('the page downloads it (through the bridge, over WebRTC)', () => waitDoneOnOurPage(b, 120_000), 125_000)
    await s.step('same bytes as the desktop seed', () => checkSameFiles(saved, [file]))
    await bridgeSentToBrowsers(srv, file.size)
  })
})

test('the webtorrent browser bundle and a TCP-only client share torrents both ways through serve', { timeout: 300_000 }, async () => {
  await scenario('bundle and desktop through serve', async s => {
    const srv = s.own(await startServe())
    const set = s.files([{ name: 'bundle-seeds.bin', size: TEST_MIB * MIB + 5 }])
    const w = await s.openPage('webtorrent-bundle', `${pages.url}wt.html`)
    const seeded = await s.step('the bundle seeds on the WebSocket tracker', () =>
      wtSeed(w, [set.files[0].path], { announce: [srv.ws] }), 60_000)
    await s.step('a TCP-only client on the HTTP tracker gets it', () =>
      nodeDownload(s, 'node-download', magnetFor(seeded.infoHash, [srv.http]), set.files), 140_000)

    const set2 = s.files([{ name: 'desktop-seeds.bin', size: TEST_MIB * MIB + 7 }])
    const seeder = s.own(await s.step('a TCP-only client seeds on the HTTP tracker', () =>
      startSeeder(['--file', set2.files[0].path, '--announce', srv.http]), 60_000), 'node-seed')
    const got = await s.step('the bundle downloads it on the WebSocket tracker', () =>
      wtDownload(w, magnetFor(seeder.seeding.infoHash, [srv.ws]), { announce: [srv.ws] }), 140_000)
    checkSameFiles(got.files.map(f => ({ download: f.name, size: f.length, sha256: f.sha256 })), set2.files)
  })
})

test('keep on server: the tab that seeded closes, a desktop client still gets the file', { timeout: 240_000 }, async () => {
  await scenario('keep on server', async s => {
    const srv = s.own(await startServe())
    const set = s.files([{ name: 'kept.bin', size: 3 * MIB + 11 }])
    const a = await s.openPage('A-seeds', srv.url)
    const seeded = await s.step('A seeds', () => seedOnOurPage(a, [set.files[0].path]), 60_000)
    await s.step('A clicks "Keep on server"', () => keepOnServer(a), 20_000)
    await s.step('the server holds every piece', async () => {
      const deadline = Date.now() + 60_000
      let st
      while (Date.now() < deadline) {
        st = await bridgeStatus(srv, seeded.infoHash)
        if (st.state === 'seeding') break
        await new Promise(resolve => setTimeout(resolve, 200))
      }
      assert.equal(st.state, 'seeding', JSON.stringify(st))
      assert.equal(st.kept, true, JSON.stringify(st))
    }, 65_000)
    await s.step('A closes', () => a.context().close())
    await s.step('a TCP-only client gets it from the server alone', () =>
      nodeDownload(s, 'node-download', magnetFor(seeded.infoHash, [srv.http]), set.files), 140_000)
  })
})

test('a TCP seeder only the DHT knows: our page downloads its tracker-less magnet through serve', { timeout: 240_000 }, async () => {
  await scenario('DHT to page through serve', async s => {
    // Fixed ports (a fresh namespace): each DHT node bootstraps from the other.
    const servePeerPort = 7311
    const seedPort = 7312
    const srv = s.own(await startServe({
      extra: ['--seed-port', String(servePeerPort), '--dht-bootstrap', `127.0.0.1:${seedPort}`, '--state', s.tmp('serve-state')]
    }))
    const set = s.files([{ name: 'only-in-dht.bin', size: TEST_MIB * MIB + 31 }])
    const file = set.files[0]
    const seeder = s.own(startWebtorrent('dht-seed', ['seed', file.path, '--port', String(seedPort),
      '--dht-bootstrap', `127.0.0.1:${servePeerPort}`, '--state', s.tmp('seed-state'), '--quiet']))
    const { line: magnet } = await s.step('our CLI seeds with no tracker (DHT only)',
      () => seeder.waitLine(l => l.startsWith('magnet:'), 60_000, 'the magnet'), 65_000)
    assert.deepEqual(trackersOf(magnet), [], `the seeder's magnet names a tracker: ${magnet}`)
    // Let its first announce reach serve's node.
    await new Promise(resolve => setTimeout(resolve, 2000))
    const b = await s.openPage('B-downloads', `${srv.url}#${magnet}`)
    const saved = await s.step('the page downloads it (the bridge found the seeder in the DHT)', () => waitDoneOnOurPage(b, 120_000), 125_000)
    await s.step('same bytes as the DHT seeder\'s', () => checkSameFiles(saved, [file]))
    const stats = await bridgeSentToBrowsers(srv, file.size)
    assert.ok(stats.dhtJoined >= 1, `the bridge did not join through the DHT: ${JSON.stringify(stats)}`)
  })
})

test('webtorrent bridge --tracker on the npm bittorrent-tracker moves a page\'s file to a TCP-only client', { timeout: 240_000 }, async () => {
  await scenario('standalone bridge', async s => {
    const tracker = s.own(await startTracker(['--no-udp']), 'bittorrent-tracker')
    const ws = tracker.ready.ws
    const http = tracker.announceUrl
    const data = s.tmp('bridge-data')
    const bridge = s.own(startWebtorrent('bridge', ['bridge', '--tracker', http, '--tracker', ws, '--host', '127.0.0.1',
      '--port', '0', '--scan-interval', '1', '--data', data]))
    const set = s.files([{ name: 'via-standalone.bin', size: TEST_MIB * MIB + 1 }])
    const a = await s.openPage('A-seeds', ourPageUrl(pages, [ws]))
    const seeded = await s.step('A seeds on the WebSocket tracker only', () => seedOnOurPage(a, [set.files[0].path]), 60_000)
    await s.step('a TCP-only client on the HTTP tracker gets it through the bridge', () =>
      nodeDownload(s, 'node-download', magnetFor(seeded.infoHash, [http]), set.files), 140_000)
    await s.step('the bridge kept its copy in its data folder', () => {
      const p = path.join(data, seeded.infoHash.toLowerCase(), set.files[0].name)
      assert.ok(fs.existsSync(p), `no ${p}; bridge log:\n${bridge.tail(20)}`)
    })
  })
})
