#!/usr/bin/env node
// Browser interop of the embedded tracker and page server (driven by native/tests/server.rs,
// test `browser_peers_use_our_websocket_tracker`), in headless Chromium:
//
//   1. the real webtorrent browser bundle seeds in one tab and downloads in another, both
//      given only our WebSocket tracker (WebRTC between the tabs);
//   2. our page, served by our server at `/` with no tracker configured (so it uses its own
//      origin's WebSocket tracker, i.e. ours), downloads what the bundle seeds;
//   3. our page seeds the same way and the bundle downloads it.
//
//   node native/tests/server_browser.mjs --page http://127.0.0.1:PORT/ [--exit-with-stdin]
//
// Prints JSON lines: {"event":"ok","scenario":...} per scenario, then {"event":"done"};
// on failure {"event":"error","message":...} and exit 1. Run inside tests/netns.sh.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import {
  requireLoopbackOnly, launchChromium, startServer, writeRandomFile, Scenario,
  wtSeed, wtDownload, seedOnOurPage, waitDoneOnOurPage, checkSameFiles
} from '../../tests/browser/lib.mjs'

const emit = o => process.stdout.write(JSON.stringify(o) + '\n')

const { values } = parseArgs({
  options: {
    page: { type: 'string' },
    'exit-with-stdin': { type: 'boolean', default: false }
  }
})
if (!values.page) {
  process.stderr.write('usage: node server_browser.mjs --page http://127.0.0.1:PORT/\n')
  process.exit(2)
}
if (values['exit-with-stdin']) {
  process.stdin.on('end', () => process.exit(1))
  process.stdin.resume()
}
requireLoopbackOnly()

const page = values.page.endsWith('/') ? values.page : values.page + '/'
const ws = `ws://${new URL(page).host}`
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-server-browser-'))

async function file (name, size) {
  const p = path.join(tmp, name)
  const sha256 = await writeRandomFile(p, size)
  return { path: p, name, size, sha256 }
}

const asSaved = got => got.files.map(f => ({ download: f.name, size: f.length, sha256: f.sha256 }))

let browser
let bundleServer
try {
  browser = await launchChromium()
  // The bundle's test page comes from the harness's static server (another origin).
  bundleServer = await startServer({ port: 0 })
  const wt = `${bundleServer.url}wt.html`

  {
    const f = await file('bundle-to-bundle.bin', 1024 * 1024 + 7)
    const s = new Scenario(browser, 'bundle to bundle via our tracker')
    await s.run(async () => {
      const a = await s.openPage('seeder', wt)
      const seeded = await s.step('the bundle seeds', () => wtSeed(a, [f.path], { announce: [ws] }), 60_000)
      const b = await s.openPage('leecher', wt)
      const got = await s.step('another bundle downloads', () => wtDownload(b, seeded.magnetURI, { announce: [ws] }), 90_000)
      checkSameFiles(asSaved(got), [f])
    })
    emit({ event: 'ok', scenario: s.name })
  }

  {
    const f = await file('bundle-to-page.bin', 1536 * 1024 + 3)
    const s = new Scenario(browser, 'bundle to our page (default tracker)')
    await s.run(async () => {
      const a = await s.openPage('seeder', wt)
      const seeded = await s.step('the bundle seeds', () => wtSeed(a, [f.path], { announce: [ws] }), 60_000)
      // Only the info hash: the page adds its default tracker (its own origin) and fetches the
      // metadata from the peer.
      const b = await s.openPage('ours', `${page}#magnet:?xt=urn:btih:${seeded.infoHash}`)
      const saved = await s.step('our page downloads', () => waitDoneOnOurPage(b, 90_000), 95_000)
      checkSameFiles(saved, [f])
    })
    emit({ event: 'ok', scenario: s.name })
  }

  {
    const f = await file('page-to-bundle.bin', 1024 * 1024 + 11)
    const s = new Scenario(browser, 'our page (default tracker) to bundle')
    await s.run(async () => {
      const a = await s.openPage('ours', page)
      const seeded = await s.step('our page seeds', () => seedOnOurPage(a, [f.path]), 60_000)
      if (!seeded.magnet.includes(encodeURIComponent(ws))) {
        throw new Error(`the page's magnet does not name this server's tracker ${ws}: ${seeded.magnet}`)
      }
      const b = await s.openPage('leecher', wt)
      const got = await s.step('the bundle downloads', () => wtDownload(b, seeded.magnet, { announce: [ws] }), 90_000)
      checkSameFiles(asSaved(got), [f])
    })
    emit({ event: 'ok', scenario: s.name })
  }
  emit({ event: 'done' })
} catch (e) {
  emit({ event: 'error', message: e.message })
  process.exitCode = 1
} finally {
  if (browser) await browser.close().catch(() => {})
  if (bundleServer) await bundleServer.close().catch(() => {})
  fs.rmSync(tmp, { recursive: true, force: true })
  process.exit(process.exitCode || 0)
}
