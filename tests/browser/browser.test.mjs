// The page (www/) and the browser client in Debian's Chromium, driven by playwright-core,
// against a local bittorrent-tracker and the real webtorrent browser bundle. Only inside a
// loopback-only network namespace:
//
//   tests/netns.sh node --test tests/browser/browser.test.mjs
//
// /pkg/ is www/pkg/ (the wasm-bindgen build) unless WWW_PKG_DIR says otherwise; for the
// development shim on top of the webtorrent bundle: WWW_PKG_DIR=tests/browser/shim.
// Screenshots go to tests/browser/artifacts/. BROWSER_TEST_MIB sets the single-file size.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import http from 'node:http'
import { spawnSync } from 'node:child_process'
import { PREFIX } from './server.mjs'
import {
  requireLoopbackOnly, startTracker, startServer, launchChromium, checkPkg, fetchWithTimeout,
  Scenario, makeFileSet, ourPageUrl, seedOnOurPage, waitDoneOnOurPage, checkSameFiles, card,
  stateLine, wtSeed, wtDownload, ARTIFACTS, ROOT
} from './lib.mjs'
import { webtorrentBin } from './bridge-lib.mjs'

requireLoopbackOnly()

const MIB = 1 << 20
const SINGLE_MIB = Number(process.env.BROWSER_TEST_MIB || 8)
const TEST_TIMEOUT = 180_000

let tracker, server, browser, wsTracker
const cleanups = []

before(async () => {
  tracker = await startTracker(['--no-udp'])
  wsTracker = tracker.ready.ws
  server = await startServer()
  process.stderr.write(`[browser] tracker ${wsTracker}, page ${server.url} (/pkg/ from ${path.relative(ROOT, server.pkgDir) || '.'})\n`)
  await checkPkg(server)
  browser = await launchChromium()
  fs.mkdirSync(ARTIFACTS, { recursive: true })
}, { timeout: 90_000 })

after(async () => {
  for (const c of cleanups) { try { await c() } catch {} }
  if (browser) await browser.close().catch(() => {})
  if (server) await server.close()
  if (tracker) await tracker.stop()
})

function fileSet (spec) {
  const set = makeFileSet(spec)
  cleanups.push(set.cleanup)
  return set
}

async function screenshot (page, name) {
  try {
    await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true, timeout: 10_000 })
  } catch (e) {
    process.stderr.write(`[browser] screenshot ${name} failed: ${e.message}\n`)
  }
}

test('the page: tracker defaults, ?announce= override, remembered field, phone width', { timeout: 60_000 }, async () => {
  const s = new Scenario(browser, 'page basics')
  await s.run(async () => {
    const page = await s.openPage('plain', server.url)
    await s.step('default tracker is the page origin\'s WebSocket tracker', async () => {
      assert.equal(await page.locator('#trackers').inputValue(), `ws://127.0.0.1:${server.port}`)
    })
    await s.step('served under a folder, the default tracker keeps the folder', async () => {
      await page.goto(`${server.url}${PREFIX.slice(1)}`)
      await page.waitForFunction(() => document.documentElement.dataset.ready)
      assert.equal(await page.locator('#trackers').inputValue(), `ws://127.0.0.1:${server.port}${PREFIX}`)
      await page.goto(server.url)
      await page.waitForFunction(() => document.documentElement.dataset.ready)
    })
    await s.step('the field is remembered across reloads', async () => {
      await page.locator('#settings summary').click({ timeout: 5000 })
      await page.locator('#trackers').fill('ws://127.0.0.1:1\nwss://tracker.example/')
      await page.locator('#trackers').dispatchEvent('change')
      await page.reload()
      await page.waitForFunction(() => document.documentElement.dataset.ready)
      assert.equal(await page.locator('#trackers').inputValue(), 'ws://127.0.0.1:1\nwss://tracker.example/')
    })
    await s.step('?announce= (repeated) overrides the remembered field', async () => {
      await page.goto(ourPageUrl(server, ['ws://127.0.0.1:2', 'http://127.0.0.1:3/announce']))
      await page.waitForFunction(() => document.documentElement.dataset.ready)
      assert.equal(await page.locator('#trackers').inputValue(), 'ws://127.0.0.1:2\nhttp://127.0.0.1:3/announce')
      assert.equal(await page.locator('#trackers').getAttribute('readonly'), '')
    })
    await s.step('phone width: no horizontal scrolling', async () => {
      await page.setViewportSize({ width: 360, height: 740 })
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
      assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 360px screen`)
    })
  })
})

test(`our page → our page: one file (${SINGLE_MIB} MiB) by share link`, { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([{ name: 'random.bin', size: SINGLE_MIB * MIB }])
  const s = new Scenario(browser, 'page to page, one file')
  await s.run(async () => {
    const a = await s.openPage('A', ourPageUrl(server, [wsTracker]))
    const seeded = await s.step('A seeds with the file input', () => seedOnOurPage(a, set.files.map(f => f.path)), 60_000)
    await s.step('A shows the share link, magnet, state and peers', async () => {
      assert.match(seeded.magnet, new RegExp(`^magnet:\\?xt=urn:btih:${seeded.infoHash}`, 'i'))
      assert.equal(seeded.share, `${ourPageUrl(server, [wsTracker])}#${seeded.magnet}`)
      assert.match(await stateLine(a), /\S/)
      assert.equal(await card(a).locator('[data-testid=peers]').textContent(), '0')
    })
    const b = await s.openPage('B', seeded.share)
    await s.step('B connects and downloads (screenshots mid-transfer)', async () => {
      await b.waitForFunction(() => Number(document.querySelector('article.torrent [data-testid=peers]')?.textContent) > 0 ||
        document.querySelector('article.torrent')?.dataset.state === 'done', null, { timeout: 60_000, polling: 50 })
      // Best effort: a screenshot once some bytes arrived (a fast transfer may be over by then).
      await b.waitForFunction(() => {
        const c = document.querySelector('article.torrent')
        return Number(c?.querySelector('[data-testid=progress]')?.getAttribute('aria-valuenow')) >= 5 || ['done', 'error'].includes(c?.dataset.state)
      }, null, { timeout: 30_000, polling: 50 }).catch(() => {})
      await screenshot(b, 'download-in-progress.png')
      // Seeds drop each other once both are complete, so a fast transfer may leave A with no
      // peer by now: either A shows its peer or B has finished.
      await Promise.race([
        a.waitForFunction(() => Number(document.querySelector('article.torrent [data-testid=peers]')?.textContent) > 0,
          null, { timeout: 30_000, polling: 100 }),
        b.waitForFunction(() => document.querySelector('article.torrent')?.dataset.state === 'done',
          null, { timeout: 30_000, polling: 100 })
      ])
      await screenshot(a, 'seeding-with-peer.png')
    }, 90_000)
    const saved = await s.step('B shows [data-testid=done] with a[download] links', () => waitDoneOnOurPage(b, 120_000), 125_000)
    await s.step('the saved file has the source\'s SHA-256', () => checkSameFiles(saved, set.files))
    await screenshot(b, 'download-done.png')
    await s.step('phone width screenshot of the finished download', async () => {
      await b.setViewportSize({ width: 390, height: 844 })
      await screenshot(b, 'download-done-phone.png')
      const overflow = await b.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
      assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 390px screen`)
    })
  })
})

test('our page → our page: three files in one torrent', { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([
    { name: 'alpha.bin', size: 3 * MIB + 12345 },
    { name: 'beta.dat', size: 200 * 1024 + 7 },
    { name: 'gamma.txt', size: 17 }
  ])
  const s = new Scenario(browser, 'page to page, three files')
  await s.run(async () => {
    const a = await s.openPage('A', ourPageUrl(server, [wsTracker]))
    const seeded = await s.step('A seeds three files with the file input', () => seedOnOurPage(a, set.files.map(f => f.path)), 60_000)
    const b = await s.openPage('B', seeded.share)
    const saved = await s.step('B downloads every file', () => waitDoneOnOurPage(b, 120_000), 125_000)
    await s.step('each saved file has its source\'s SHA-256', () => checkSameFiles(saved, set.files))
    await screenshot(b, 'download-done-multi.png')
  })
})

test('our page seeds → the webtorrent browser bundle downloads (magnet)', { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([{ name: 'to-webtorrent.bin', size: 3 * MIB + 1 }])
  const s = new Scenario(browser, 'page to webtorrent bundle')
  await s.run(async () => {
    const a = await s.openPage('ours', ourPageUrl(server, [wsTracker]))
    const seeded = await s.step('our page seeds', () => seedOnOurPage(a, set.files.map(f => f.path)), 60_000)
    const w = await s.openPage('webtorrent', `${server.url}wt.html`)
    const got = await s.step('the webtorrent bundle downloads the magnet link', () => wtDownload(w, seeded.magnet, { announce: [wsTracker] }), 120_000)
    await s.step('the webtorrent bundle got the same bytes', () => {
      assert.equal(got.infoHash, seeded.infoHash)
      checkSameFiles(got.files.map(f => ({ download: f.name, size: f.length, sha256: f.sha256 })), set.files)
    })
  })
})

test('the webtorrent browser bundle seeds → our page downloads (magnet share link, ut_metadata)', { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([
    { name: 'from-webtorrent.bin', size: 2 * MIB + 3 },
    { name: 'notes.txt', size: 999 }
  ])
  const s = new Scenario(browser, 'webtorrent bundle to page')
  await s.run(async () => {
    const w = await s.openPage('webtorrent', `${server.url}wt.html`)
    const seeded = await s.step('the webtorrent bundle seeds two files', () =>
      wtSeed(w, set.files.map(f => f.path), { announce: [wsTracker], name: 'from-webtorrent' }), 60_000)
    // Only the info hash and the tracker: the page must fetch the metadata from the peer.
    const magnet = `magnet:?xt=urn:btih:${seeded.infoHash}&tr=${encodeURIComponent(wsTracker)}`
    const b = await s.openPage('ours', ourPageUrl(server, [wsTracker], magnet))
    const saved = await s.step('our page downloads', () => waitDoneOnOurPage(b, 120_000), 125_000)
    await s.step('same bytes as the webtorrent seed', async () => {
      checkSameFiles(saved, set.files)
      assert.match(await card(b).locator('.t-name').textContent(), /from-webtorrent/)
    })
  })
})

test('HTTP announce: a seeding page is counted as a seeder on the tracker\'s /stats.json', { timeout: 90_000 }, async () => {
  // A second tracker that only speaks HTTP: whatever its stats count came from an HTTP announce.
  const httpTracker = await startTracker(['--no-udp', '--no-ws'])
  cleanups.push(() => httpTracker.stop())
  const set = fileSet([{ name: 'announced.bin', size: 256 * 1024 }])
  const s = new Scenario(browser, 'http announce')
  await s.run(async () => {
    const a = await s.openPage('A', ourPageUrl(server, [wsTracker, httpTracker.announceUrl]))
    const seeded = await s.step('our page seeds', () => seedOnOurPage(a, set.files.map(f => f.path)), 60_000)
    const ev = await s.step('the HTTP tracker receives a start announce with left=0', () => httpTracker.waitFor(e =>
      e.event === 'announce' && e.protocol === 'http' && e.infoHash === seeded.infoHash && e.type === 'start', 20_000), 21_000)
    assert.equal(Number(ev.left), 0, `announce ${JSON.stringify(ev)}`)
    const stats = await s.step('/stats.json counts a seeder', async () => {
      for (;;) {
        const st = await (await fetchWithTimeout(httpTracker.ready.stats)).json()
        if (st.torrents >= 1 && st.peersSeederOnly >= 1) return st
        await new Promise(resolve => setTimeout(resolve, 250))
      }
    }, 20_000)
    assert.equal(stats.peersLeecherOnly, 0, JSON.stringify(stats))
  })
})

test('page to page: a video gets a player that reads through the service worker; Range reads are exact', { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([{ name: 'clip.webm', size: 6 * MIB + 5 }])
  const bytes = fs.readFileSync(set.files[0].path)
  const s = new Scenario(browser, 'page player')
  await s.run(async () => {
    const a = await s.openPage('A', ourPageUrl(server, [wsTracker]))
    const seeded = await s.step('A seeds a .webm file', () => seedOnOurPage(a, set.files.map(f => f.path)), 60_000)
    const b = await s.openPage('B', seeded.share)
    await s.step('B shows a <video> player for it (the service worker controls the page)', async () => {
      await b.waitForFunction(() => {
        const v = document.querySelector('article.torrent [data-testid=player]')
        return v && v.tagName === 'VIDEO' && v.getAttribute('src').includes('webtorrent/')
      }, null, { timeout: 60_000, polling: 100 })
    }, 65_000)
    const read = (range) => b.evaluate(async ({ ih, range }) => {
      const res = await fetch(`webtorrent/${ih}/0`, { headers: range ? { Range: range } : {} })
      const buf = new Uint8Array(await res.arrayBuffer())
      return {
        status: res.status,
        type: res.headers.get('content-type'),
        contentRange: res.headers.get('content-range'),
        bytes: Array.from(buf)
      }
    }, { ih: seeded.infoHash.toLowerCase(), range })
    const len = bytes.length
    for (const [range, start, end] of [['bytes=1000-50999', 1000, 51000], [`bytes=${len - 4096}-`, len - 4096, len], ['bytes=-777', len - 777, len]]) {
      await s.step(`${range}: 206 and exactly those bytes`, async () => {
        const r = await read(range)
        assert.equal(r.status, 206)
        assert.equal(r.type, 'video/webm')
        assert.equal(r.contentRange, `bytes ${start}-${end - 1}/${len}`)
        assert.ok(Buffer.from(r.bytes).equals(bytes.subarray(start, end)), `bytes of ${range} differ`)
      }, 60_000)
    }
    await s.step('past the end: 416', async () => {
      const r = await read(`bytes=${len}-`)
      assert.equal(r.status, 416)
    })
    await screenshot(b, 'player.png')
  })
})

/**
 * A file server on 127.0.0.1 (another origin than the page): GET with or without one
 * `Range: bytes=A-B`, CORS headers, OPTIONS preflights. `corrupt` flips a byte of every body.
 */
function startFileServer (files, { corrupt = false } = {}) {
  const ranges = { count: 0 }
  // A string is the path of a file served from disk (large files stay out of memory).
  const sizeOf = f => typeof f === 'string' ? fs.statSync(f).size : f.length
  const slice = (f, a, b) => typeof f === 'string' ? fs.createReadStream(f, { start: a, end: b - 1 }) : f.subarray(a, b)
  const srv = http.createServer((req, res) => {
    const cors = {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Headers': 'Range',
      'Access-Control-Expose-Headers': 'Content-Range, Content-Length, Accept-Ranges'
    }
    if (req.method === 'OPTIONS') { res.writeHead(204, cors); res.end(); return }
    const data = files[decodeURIComponent(new URL(req.url, 'http://x').pathname)]
    if (!data) { res.writeHead(404, cors); res.end(); return }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range || '')
    const len = sizeOf(data)
    let [a, b] = [0, len]
    let status = 200
    const headers = { ...cors, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' }
    if (m) {
      [a, b] = [Number(m[1]), Math.min(Number(m[2]), len - 1) + 1]
      status = 206
      headers['Content-Range'] = `bytes ${a}-${b - 1}/${len}`
      ranges.count++
    }
    let body = slice(data, a, b)
    if (corrupt) { body = Buffer.from(body); body[0] ^= 0xff }
    headers['Content-Length'] = String(b - a)
    res.writeHead(status, headers)
    if (Buffer.isBuffer(body)) res.end(body)
    else body.pipe(res)
  })
  return new Promise(resolve => srv.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${srv.address().port}`, ranges, close: () => new Promise(r => srv.close(r))
  })))
}

test('a torrent whose only source is a web seed (BEP 19, fetch with CORS) completes in the page', { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([{ name: 'from-http.bin', size: 3 * MIB + 11 }])
  const bytes = fs.readFileSync(set.files[0].path)
  const web = await startFileServer({ '/files/from-http.bin': bytes })
  cleanups.push(() => web.close())
  const torrent = path.join(set.dir, 'from-http.torrent')
  const { bin } = webtorrentBin()
  const made = spawnSync(bin, ['create', set.files[0].path, '--web-seed', `${web.url}/files/from-http.bin`,
    '--piece-length', '65536', '-o', torrent, '--quiet'], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(made.status, 0, `webtorrent create: ${made.stderr}`)
  const s = new Scenario(browser, 'web seed only')
  await s.run(async () => {
    // No tracker and no peer: the web seed is the only source.
    const page = await s.openPage('ours', ourPageUrl(server, []))
    const got = await s.step('the page\'s client downloads it from the web seed alone', () => page.evaluate(async (file) => {
      const t = await window.webtorrentClient.add(new Uint8Array(file))
      await new Promise((resolve, reject) => {
        if (t.done) return resolve()
        t.on('done', resolve)
        t.on('error', e => reject(new Error(String(e))))
      })
      const blob = await t.files[0].blob()
      const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer())
      return { size: blob.size, sha256: Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, '0')).join('') }
    }, Array.from(fs.readFileSync(torrent))), 90_000)
    assert.equal(got.size, bytes.length)
    assert.equal(got.sha256, set.files[0].sha256)
    assert.ok(web.ranges.count > 0 && web.ranges.count < bytes.length / 16384, `${web.ranges.count} range requests`)
  })
})

// CRC-32 (IEEE), the same function in Node and in the page: a check of streamed bytes that
// needs no copy of the whole file on either side.
function crc32Update (crc, bytes) {
  let t = globalThis.__crcTable
  if (!t) {
    t = globalThis.__crcTable = new Int32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      t[n] = c
    }
  }
  crc = ~crc
  for (let i = 0; i < bytes.length; i++) crc = t[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8)
  return ~crc >>> 0
}

const BIG_MIB = Number(process.env.BROWSER_STREAM_MIB || 320)

test(`file.stream() reads a ${BIG_MIB} MiB file while it downloads into the OPFS, with bounded memory`, { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([{ name: 'big.bin', size: BIG_MIB * MIB + 3 }])
  const file = set.files[0].path
  let crc = 0
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * MIB })) crc = crc32Update(crc, chunk)
  const web = await startFileServer({ '/big.bin': file })
  cleanups.push(() => web.close())
  const torrent = path.join(set.dir, 'big.torrent')
  const { bin } = webtorrentBin()
  const made = spawnSync(bin, ['create', file, '--web-seed', `${web.url}/big.bin`, '-o', torrent, '--quiet'],
    { encoding: 'utf8', timeout: 120_000 })
  assert.equal(made.status, 0, `webtorrent create: ${made.stderr}`)
  const s = new Scenario(browser, 'stream a large file')
  await s.run(async () => {
    const page = await s.openPage('ours', ourPageUrl(server, []))
    const got = await s.step('a client that keeps 8 MiB in memory streams the whole file as it downloads', () => page.evaluate(async ({ file, crcSrc }) => {
      const crc32Update = new Function(`return (${crcSrc})`)()
      const m = await import('/pkg/webtorrent_wasm.js')
      const wasm = await m.default()
      const client = new m.WebTorrent({ memoryLimit: 8 << 20 })
      try {
        const t = await client.add(new Uint8Array(file))
        const reader = t.files[0].stream().getReader()
        let crc = 0
        let n = 0
        let progressAtFirst = null
        let maxWasm = 0
        let maxHeap = 0
        let sampled = 0
        const t0 = performance.now()
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          if (progressAtFirst === null) progressAtFirst = t.progress
          crc = crc32Update(crc, value)
          n += value.length
          if (n - sampled >= 8 << 20) {
            sampled = n
            maxWasm = Math.max(maxWasm, wasm.memory.buffer.byteLength)
            maxHeap = Math.max(maxHeap, performance.memory?.usedJSHeapSize || 0)
          }
        }
        maxWasm = Math.max(maxWasm, wasm.memory.buffer.byteLength)
        return { n, crc, progressAtFirst, maxWasm, maxHeap, secs: (performance.now() - t0) / 1000 }
      } finally {
        await client.destroy()
      }
    }, { file: Array.from(fs.readFileSync(torrent)), crcSrc: crc32Update.toString() }), 170_000)
    process.stderr.write(`[browser] streamed ${got.n} bytes in ${got.secs.toFixed(1)} s; ${(got.progressAtFirst * 100).toFixed(1)} % downloaded at the first chunk; ` +
      `wasm memory at most ${(got.maxWasm / MIB).toFixed(1)} MiB, JS heap at most ${(got.maxHeap / MIB).toFixed(1)} MiB\n`)
    assert.equal(got.n, BIG_MIB * MIB + 3)
    assert.equal(got.crc, crc, 'the streamed bytes differ from the file')
    assert.ok(got.progressAtFirst < 0.5, `the first chunk came only at ${got.progressAtFirst}: not a stream`)
    assert.ok(got.maxWasm < 96 * MIB, `wasm memory grew to ${got.maxWasm} bytes`)
  })
})
