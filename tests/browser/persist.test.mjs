// Torrents that outlive the tab (issue 17): the page (www/) in Debian's Chromium with a
// persistent profile directory, a second Chromium (its own profile) as the other person, and
// a local bittorrent-tracker. Only inside a loopback-only network namespace:
//
//   tests/netns.sh node --test tests/browser/persist.test.mjs
//
// The kept browser runs with --deny-permission-prompts: a headless browser cannot click the
// "Allow" of a permission prompt, so the prompt path is checked for its refusal; handles the
// browser grants without a prompt (the Origin Private File System's) check the restore itself.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  requireLoopbackOnly, startTracker, startServer, launchChromium, loadPlaywright, checkPkg,
  makeFileSet, ourPageUrl, seedOnOurPage, waitDoneOnOurPage, checkSameFiles, stateLine,
  CHROMIUM, CHROMIUM_ARGS, ARTIFACTS
} from './lib.mjs'

requireLoopbackOnly()

const MIB = 1 << 20
const TEST_TIMEOUT = 180_000

let tracker, server, kept, other, otherBrowser, profile, ws
const cleanups = []

before(async () => {
  tracker = await startTracker(['--no-udp'])
  ws = tracker.ready.ws
  server = await startServer()
  await checkPkg(server)
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-profile-'))
  kept = await launchKept()
  otherBrowser = await launchChromium()
  other = await otherBrowser.newContext({ permissions: ['camera', 'microphone'] })
  fs.mkdirSync(ARTIFACTS, { recursive: true })
}, { timeout: 90_000 })

after(async () => {
  for (const c of cleanups) { try { await c() } catch {} }
  if (kept) await kept.close().catch(() => {})
  if (otherBrowser) await otherBrowser.close().catch(() => {})
  if (server) await server.close()
  if (tracker) await tracker.stop()
  if (profile) fs.rmSync(profile, { recursive: true, force: true })
})

/** The browser whose storage persists (a profile directory on disk). */
function launchKept () {
  const { chromium } = loadPlaywright()
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, '--deny-permission-prompts'],
    // WebRTC finds loopback candidates only with these (tests/browser/README.md).
    permissions: ['camera', 'microphone'],
    timeout: 60_000
  })
}

function fileSet (spec) {
  const set = makeFileSet(spec)
  cleanups.push(set.cleanup)
  return set
}

/** A new page of `ctx` whose console errors and warnings go to stderr. */
async function newPage (ctx) {
  const page = await ctx.newPage()
  page.on('console', m => { if (m.type() === 'error' || m.type() === 'warning') process.stderr.write(`[page] ${m.text()}\n`) })
  return page
}

async function openPage (ctx, fragment = '') {
  const page = await newPage(ctx)
  await page.goto(ourPageUrl(server, [ws], fragment))
  await page.waitForSelector('html[data-ready=true]', { timeout: 30_000 })
  return page
}

async function reopen (page) {
  await page.goto(ourPageUrl(server, [ws]))
  await page.waitForSelector('html[data-ready=true]', { timeout: 30_000 })
}

async function screenshot (page, name) {
  try { await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true, timeout: 10_000 }) } catch {}
}

/** The entries of an OPFS folder: [{ name, size }], or null when there is no such folder. */
function opfsFolder (page, name) {
  return page.evaluate(async n => {
    const root = await navigator.storage.getDirectory()
    let dir
    try { dir = await root.getDirectoryHandle(n) } catch { return null }
    const out = []
    for await (const h of dir.values()) if (h.kind === 'file') out.push({ name: h.name, size: (await h.getFile()).size })
    return out
  }, name)
}

/** Wait until the OPFS folder `name` is gone. */
function waitFolderGone (page, name) {
  return page.waitForFunction(async n => {
    const root = await navigator.storage.getDirectory()
    try { await root.getDirectoryHandle(n); return false } catch { return true }
  }, name, { timeout: 10_000 })
}

const savedItem = (page, ih) => page.locator(`#saved [data-testid=saved-item][data-infohash="${ih}"]`)
const cardOf = (page, ih) => page.locator(`article.torrent[data-infohash="${ih}"]`)

async function waitKept (page, ih) {
  await cardOf(page, ih).locator('[data-testid=kept][data-kept=true]').waitFor({ state: 'attached', timeout: 60_000 })
}

/** The other person opens the share link in their own browser and gets the files. */
/** Runs `fn(page)`; a failure leaves a screenshot named `shot`; the page is closed after. */
async function onPage (pagePromise, shot, fn) {
  const page = await pagePromise
  try {
    return await fn(page)
  } catch (e) {
    await screenshot(page, shot)
    throw e
  } finally {
    await page.close()
  }
}

function downloadElsewhere (share, files) {
  return onPage(other.newPage(), 'persist-other.png', async page => {
    await page.goto(share)
    const saved = await waitDoneOnOurPage(page, 120_000)
    checkSameFiles(saved, files)
  })
}

test('a chosen file kept as a copy is shared again after a reload and the "Resume all" click', { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([{ name: 'kept-copy.bin', size: 6 * MIB }])
  await onPage(openPage(kept), 'persist-copy.png', async page => {
    await page.check('#keep-seeding')
    const seeded = await seedOnOurPage(page, set.files.map(f => f.path))
    await waitKept(page, seeded.infoHash)
    const copy = await opfsFolder(page, `webtorrent-copy-${seeded.infoHash}`)
    assert.deepEqual(copy, [{ name: '0', size: 6 * MIB }], 'the copy in the Origin Private File System')

    await reopen(page)
    assert.equal(await page.locator('article.torrent').count(), 0, 'nothing runs before the click')
    await savedItem(page, seeded.infoHash).waitFor({ timeout: 15_000 })
    assert.match(await savedItem(page, seeded.infoHash).textContent(), /kept-copy\.bin[\s\S]*from a copy in this browser/)
    await page.click('[data-testid=resume-all]')
    await cardOf(page, seeded.infoHash).waitFor({ timeout: 30_000 })
    await page.waitForFunction(ih => {
      const c = document.querySelector(`article.torrent[data-infohash="${ih}"]`)
      return c && c.dataset.role === 'seed' && c.querySelector('[data-testid=magnet]').value.startsWith('magnet:')
    }, seeded.infoHash, { timeout: 30_000 })
    assert.equal(await savedItem(page, seeded.infoHash).count(), 0, 'the resumed torrent leaves the list')
    assert.ok(Number(await page.getAttribute('[data-testid=storage]', 'data-usage')) >= 6 * MIB, 'the storage line counts the copy')

    await downloadElsewhere(seeded.share, set.files)

    // Removing the card forgets the torrent and deletes the copy.
    await cardOf(page, seeded.infoHash).locator('.t-remove').click()
    await waitFolderGone(page, `webtorrent-copy-${seeded.infoHash}`)
    await reopen(page)
    await page.waitForTimeout(500)
    assert.equal(await savedItem(page, seeded.infoHash).count(), 0, 'a removed torrent is not offered again')
  })
})

test('a dropped file is kept by its handle, not copied; after a reload a refused permission is explained and dropping it again shares it', { timeout: TEST_TIMEOUT }, async () => {
  const set = fileSet([{ name: 'kept-handle.bin', size: 2 * MIB }])
  await onPage(openPage(kept), 'persist-handle.png', async page => {
    await page.uncheck('#keep-seeding')
    const cdp = await kept.newCDPSession(page)
    const drop = async () => {
      for (const type of ['dragEnter', 'dragOver', 'drop']) {
        await cdp.send('Input.dispatchDragEvent', { type, x: 40, y: 40, data: { items: [], files: set.files.map(f => f.path), dragOperationsMask: 1 } })
      }
    }
    await drop()
    const c = page.locator('article.torrent').first()
    await page.waitForFunction(() => document.querySelector('article.torrent')?.dataset.infohash, null, { timeout: 30_000 })
    const ih = await c.getAttribute('data-infohash')
    await waitKept(page, ih)
    assert.equal(await opfsFolder(page, `webtorrent-copy-${ih}`), null, 'no copy is made for a handle')
    const rec = await page.evaluate(async h => (await window.webtorrentClient.saved()).find(s => s.infoHash === h), ih)
    assert.equal(rec.data, 'handles')
    assert.equal(rec.kind, 'seed')

    await reopen(page)
    const item = savedItem(page, ih)
    await item.waitFor({ timeout: 15_000 })
    assert.equal(await item.getAttribute('data-permission'), 'prompt', 'after a reload the browser asks again')
    await item.locator('[data-testid=saved-resume]').click()
    const err = item.locator('[data-testid=saved-error]')
    await err.waitFor({ state: 'visible', timeout: 15_000 })
    assert.match(await err.textContent(), /no permission to read “kept-handle\.bin”.*drop the file again/)
    assert.equal(await page.locator('article.torrent').count(), 0)

    // Dropping the file again shares the same torrent, and the offer goes away.
    await drop()
    await cardOf(page, ih).waitFor({ timeout: 30_000 })
    await page.waitForFunction(h => !document.querySelector(`#saved [data-infohash="${h}"]`), ih, { timeout: 15_000 })
    const share = await cardOf(page, ih).locator('[data-testid=share]').inputValue()
    await downloadElsewhere(share, set.files)
    await cardOf(page, ih).locator('.t-remove').click()
  })
})

test('library: seed(handle, { keep: true }) comes back with restore() after a reload, reading the file through its handle', { timeout: TEST_TIMEOUT }, async () => {
  await onPage(openPage(kept), 'persist-library.png', async page => {
    const { infoHash, sha256, size } = await page.evaluate(async tracker => {
      const data = new Uint8Array(3 * 1024 * 1024 + 12345)
      for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, Math.min(i + 65536, data.length)))
      const root = await navigator.storage.getDirectory()
      const fh = await root.getFileHandle('library-handle.bin', { create: true })
      const w = await fh.createWritable()
      await w.write(data)
      await w.close()
      const t = await window.webtorrentClient.seed(fh, { keep: true, announce: [tracker] })
      await new Promise(resolve => { if (t.kept) resolve(); else t.on('kept', resolve) })
      const hex = buf => Array.from(new Uint8Array(buf), b => b.toString(16).padStart(2, '0')).join('')
      const sha256 = hex(await crypto.subtle.digest('SHA-256', data))
      return { infoHash: t.infoHash, sha256, size: data.length }
    }, ws)
    await reopen(page)
    const restored = await page.evaluate(async ih => {
      const saved = await window.webtorrentClient.saved()
      const rec = saved.find(s => s.infoHash === ih)
      const results = await window.webtorrentClient.restore([ih])
      const r = results[0]
      return { rec, n: results.length, error: r && r.error, done: r && r.torrent && r.torrent.done, magnet: r && r.torrent && r.torrent.magnetURI, name: r && r.name }
    }, infoHash)
    assert.equal(restored.rec.data, 'handles')
    assert.equal(restored.rec.permission, 'granted')
    assert.equal(restored.n, 1)
    assert.equal(restored.error, undefined)
    assert.equal(restored.done, true, 'a restored seed has every piece')
    assert.equal(restored.name, 'library-handle.bin')
    await downloadElsewhere(`${server.url}#${restored.magnet}`, [{ name: 'library-handle.bin', size, sha256 }])
    await page.evaluate(ih => window.webtorrentClient.forget(ih), infoHash)
    assert.equal(await page.evaluate(async ih => (await window.webtorrentClient.saved()).some(s => s.infoHash === ih), infoHash), false)
  })
})

test('a download interrupted by a reload continues from the pieces it had after the "Resume" click', { timeout: TEST_TIMEOUT }, async () => {
  const size = 40 * MIB
  const set = fileSet([{ name: 'interrupted.bin', size }])
  const seederPage = await newPage(other)
  const page = await newPage(kept)
  try {
    await seederPage.goto(ourPageUrl(server, [ws]))
    await seederPage.waitForSelector('html[data-ready=true]', { timeout: 30_000 })
    const seeded = await seedOnOurPage(seederPage, set.files.map(f => f.path))

    await page.goto(seeded.share)
    await page.waitForSelector('html[data-ready=true]', { timeout: 30_000 })
    await page.waitForFunction(() => {
      const bar = document.querySelector('article.torrent [data-testid=progress]')
      const p = Number(bar?.dataset.progress || 0)
      return p >= 0.2 && p < 0.9
    }, null, { timeout: 120_000, polling: 20 })
    // The tab goes away mid-download (no goodbye: a new page loads).
    await reopen(page)
    const stored = await opfsFolder(page, `webtorrent-${seeded.infoHash}`)
    const storedBytes = (stored || []).reduce((n, f) => n + f.size, 0)
    assert.ok(storedBytes > 0 && storedBytes < size, `pieces stored before the reload: ${storedBytes} of ${size} bytes`)
    const item = savedItem(page, seeded.infoHash)
    await item.waitFor({ timeout: 15_000 })
    assert.equal(await item.getAttribute('data-kind'), 'download')
    await item.locator('[data-testid=saved-resume]').click()
    await cardOf(page, seeded.infoHash).waitFor({ timeout: 30_000 })
    const saved = await waitDoneOnOurPage(page, 120_000)
    checkSameFiles(saved, set.files)
    const received = await page.evaluate(ih => window.webtorrentClient.get(ih).downloaded, seeded.infoHash)
    // Pieces stored before the reload are not fetched again (a few blocks of slack for
    // requests that were in flight or raced at the end).
    assert.ok(received <= size - storedBytes + 256 * 1024,
      `received ${received} bytes after the reload; ${storedBytes} of ${size} were already stored`)
    process.stderr.write(`[persist] reload at ${(storedBytes / size * 100).toFixed(0)} %: ${storedBytes} bytes kept, ${received} received after\n`)
    await cardOf(page, seeded.infoHash).locator('.t-remove').click()
    await waitFolderGone(page, `webtorrent-${seeded.infoHash}`)
  } catch (e) {
    await screenshot(page, 'persist-download.png')
    process.stderr.write(`[persist] state: ${await stateLine(page).catch(() => '?')}\n`)
    // Storage refused by the browser (a nearly full disk) looks like a stall from outside.
    const est = await page.evaluate(() => navigator.storage.estimate()).catch(() => null)
    const fsStat = fs.statfsSync(profile)
    process.stderr.write(`[persist] storage: ${JSON.stringify(est)}; free on the profile's disk: ${(fsStat.bavail * fsStat.bsize / MIB).toFixed(0)} MiB\n`)
    throw e
  } finally {
    await page.close()
    await seederPage.close()
  }
})
