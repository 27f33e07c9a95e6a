// Watching while it downloads: our page opens the share link of a video whose only seeder is
// our CLI with a throttled upload; the page's <video> (through sw.js and file.stream) starts
// playing before the download completes, seeks to 70 % and plays from there. The video is
// made in the test setup with Debian's ffmpeg. Only inside a loopback-only namespace:
//
//   tests/netns.sh node --test tests/browser/player.test.mjs
//
// Needs www/pkg (bash wasm/build.sh), target/debug/webtorrent (or $WEBTORRENT_BIN) and
// ffmpeg. Screenshots go to tests/browser/artifacts/.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import {
  requireLoopbackOnly, startTracker, startServer, launchChromium, checkPkg, Scenario,
  ourPageUrl, ARTIFACTS
} from './lib.mjs'
import { startWebtorrent } from './bridge-lib.mjs'

requireLoopbackOnly()

// 40 s of 640x360 VP8 (the test pattern compresses to some 2.4 MB), sent at 150 kB/s: about
// 16 s in all, so the page plays and seeks long before it has the file.
const SECONDS = 40
const RATE = 150_000

let tracker, server, browser, dir, video
const cleanups = []

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-player-'))
  video = path.join(dir, 'clip.webm')
  const ff = spawnSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc=size=640x360:rate=25:duration=${SECONDS}`,
    '-c:v', 'libvpx', '-b:v', '1600k', '-g', '25', '-deadline', 'realtime', '-cpu-used', '8', video
  ], { encoding: 'utf8', timeout: 120_000 })
  if (ff.status !== 0) throw new Error(`ffmpeg failed (install Debian's ffmpeg): ${ff.stderr || ff.error}`)
  tracker = await startTracker(['--no-udp'])
  server = await startServer()
  await checkPkg(server)
  browser = await launchChromium()
  fs.mkdirSync(ARTIFACTS, { recursive: true })
}, { timeout: 150_000 })

after(async () => {
  for (const c of cleanups) { try { await c() } catch {} }
  if (browser) await browser.close().catch(() => {})
  if (server) await server.close()
  if (tracker) await tracker.stop()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

test('a video plays on the page while it downloads from a throttled seeder, and seeks to 70 %', { timeout: 180_000 }, async () => {
  const ws = tracker.ready.ws
  const seeder = startWebtorrent('seeder', ['seed', video, '--announce', ws, '--upload-limit', String(RATE), '--quiet'], { env: { RUST_LOG: 'warn' } })
  cleanups.push(() => seeder.stop())
  const { line } = await seeder.waitLine((l, st) => st === 'out' && l.startsWith('magnet:'), 60_000, 'the magnet link')
  const s = new Scenario(browser, 'video player')
  await s.run(async () => {
    const page = await s.openPage('viewer', ourPageUrl(server, [ws], line.trim()))
    const progress = () => page.evaluate(() =>
      Number(document.querySelector('article.torrent [data-testid=progress]')?.getAttribute('aria-valuenow') || 0))
    await s.step('the page shows a <video> for the file', () => page.waitForFunction(() =>
      document.querySelector('article.torrent video[data-testid=player]'), null, { timeout: 60_000, polling: 100 }), 65_000)
    const firstFrameMs = await s.step('the first frame is decoded (figure: ms from the player appearing)', async () => {
      const h = await page.waitForFunction(() => {
        const v = document.querySelector('article.torrent video[data-testid=player]')
        if (!v._created) v._created = performance.now()
        if (v.readyState >= 2 && v._frame === undefined) v._frame = performance.now()
        // An object, so that a frame already there at the first poll (0 ms) still counts.
        return v._frame === undefined ? null : { ms: v._frame - v._created }
      }, null, { timeout: 60_000, polling: 10 })
      return (await h.jsonValue()).ms
    }, 65_000)
    const started = await s.step('it plays before the download completes', async () => {
      await page.evaluate(() => {
        const v = document.querySelector('article.torrent video[data-testid=player]')
        v.muted = true
        return v.play()
      })
      await page.waitForFunction(() => document.querySelector('article.torrent video[data-testid=player]').currentTime > 1,
        null, { timeout: 60_000, polling: 100 })
      const p = await progress()
      assert.ok(p < 100, `the download was complete (${p} %) before playback started: the test proves nothing`)
      return p
    }, 65_000)
    await page.screenshot({ path: path.join(ARTIFACTS, 'video-playing.png'), timeout: 10_000 }).catch(() => {})
    const target = await s.step('it seeks to 70 % and plays from there', async () => {
      const to = await page.evaluate(() => {
        const v = document.querySelector('article.torrent video[data-testid=player]')
        v._seekStart = performance.now()
        v.addEventListener('seeked', () => { v._seeked = performance.now() }, { once: true })
        v.currentTime = v.duration * 0.7
        return v.currentTime
      })
      await page.waitForFunction(to => {
        const v = document.querySelector('article.torrent video[data-testid=player]')
        return !v.paused && v.currentTime > to + 1
      }, to, { timeout: 60_000, polling: 100 })
      return to
    }, 65_000)
    const after = await progress()
    const seekMs = await page.evaluate(() => {
      const v = document.querySelector('article.torrent video[data-testid=player]')
      return v._seeked - v._seekStart
    })
    process.stderr.write(`[player] first frame ${Math.round(firstFrameMs)} ms after the player appeared; playing at ${started} % ` +
      `downloaded; seek to ${target.toFixed(1)} s done in ${Math.round(seekMs)} ms; ${after} % downloaded then\n`)
    await page.screenshot({ path: path.join(ARTIFACTS, 'video-seeked.png'), timeout: 10_000 }).catch(() => {})
  })
})
