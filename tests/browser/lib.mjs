// Shared helpers of the Chromium tests (browser.test.mjs) and the bench (bench.mjs):
// the loopback-only check, the tracker and the static server, Chromium via playwright-core,
// pages with console capture, our page's and the webtorrent bundle page's actions, and
// failure reports that say which step failed and what each page showed.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { createRequire } from 'node:module'
import { startServer, defaultPkgDir, HERE, ROOT, SHIM_DIR } from './server.mjs'
import { startTracker } from '../interop/harness.mjs'

export { startServer, defaultPkgDir, startTracker, HERE, ROOT, SHIM_DIR }

const requireInterop = createRequire(path.join(ROOT, 'tests', 'interop', 'package.json'))

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'
export const ARTIFACTS = path.join(HERE, 'artifacts')

export const CHROMIUM_ARGS = [
  '--allow-loopback-in-peer-connection',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Several tabs transfer at once: keep background tabs at full speed.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows'
]

/**
 * Chromium reaches out to update hosts at start and the pages use WebRTC on loopback:
 * refuse to run unless the only network interface is loopback (tests/netns.sh).
 * Returns an error message, or null when it is fine.
 */
export function loopbackOnlyProblem () {
  if (process.env.INTEROP_ALLOW_NETWORK === '1') return null
  const others = Object.entries(os.networkInterfaces())
    .filter(([, addrs]) => addrs.some(a => !a.internal))
    .map(([name]) => name)
  if (others.length === 0) return null
  return `refusing to run with non-loopback network interfaces present (${others.join(', ')}): ` +
    'run inside a loopback-only network namespace: tests/netns.sh node --test tests/browser/browser.test.mjs ' +
    '(INTEROP_ALLOW_NETWORK=1 overrides)'
}

export function requireLoopbackOnly () {
  const problem = loopbackOnlyProblem()
  if (problem) {
    process.stderr.write(`[browser] ${problem}\n`)
    process.exit(2)
  }
}

export function loadPlaywright () {
  try {
    return requireInterop('playwright-core')
  } catch (e) {
    throw new Error(`cannot load playwright-core from tests/interop/node_modules (run tests/interop/install.sh): ${e.message}`)
  }
}

export async function launchChromium ({ extraArgs = [] } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install chromium), or set CHROMIUM=/path`)
  }
  const { chromium } = loadPlaywright()
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: 60_000
  })
}

/** `fetch` with a timeout, for checks of the servers. */
export async function fetchWithTimeout (url, opts = {}, ms = 5000) {
  const ctl = new AbortController()
  const timer = setTimeout(() => ctl.abort(), ms)
  try {
    return await fetch(url, { ...opts, signal: ctl.signal })
  } finally {
    clearTimeout(timer)
  }
}

/** Fail early and clearly when /pkg/ has no client library. */
export async function checkPkg (server) {
  const res = await fetchWithTimeout(`${server.url}pkg/webtorrent_wasm.js`, { method: 'HEAD' })
  if (res.ok) return
  const shim = server.pkgDir === SHIM_DIR
  throw new Error(`${server.pkgDir}/webtorrent_wasm.js is missing (HTTP ${res.status}). ` +
    (shim
      ? 'The shim should be there: check the checkout.'
      : 'Build the wasm package into www/pkg/ first (wasm-bindgen --target web --out-dir www/pkg ...), ' +
        'or develop against the shim: WWW_PKG_DIR=tests/browser/shim'))
}

// ---------------------------------------------------------------- files

/** Write `size` random bytes to `file` (in 1 MiB chunks); resolves with the SHA-256 hex. */
export function writeRandomFile (file, size) {
  const hash = crypto.createHash('sha256')
  const fd = fs.openSync(file, 'w')
  try {
    let left = size
    while (left > 0) {
      const n = Math.min(left, 1 << 20)
      const buf = crypto.randomBytes(n)
      hash.update(buf)
      fs.writeSync(fd, buf)
      left -= n
    }
  } finally {
    fs.closeSync(fd)
  }
  return hash.digest('hex')
}

export function sha256File (file) {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256')
    fs.createReadStream(file).on('data', d => h.update(d)).on('error', reject).on('end', () => resolve(h.digest('hex')))
  })
}

/** A temporary folder with random files: [{ name, size }] -> { dir, files: [{ name, path, size, sha256 }] }. */
export function makeFileSet (spec, prefix = 'wt-browser-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const files = spec.map(({ name, size }) => {
    const p = path.join(dir, name)
    return { name, path: p, size, sha256: writeRandomFile(p, size) }
  })
  return { dir, files, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

// ---------------------------------------------------------------- steps and reports

export function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${(ms / 1000).toFixed(0)} s`)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

/**
 * One test scenario: its pages (each in its own browser context, like separate people),
 * the current step, and on failure a report with each page's state lines, status and
 * console log, plus a screenshot per page in artifacts/.
 */
export class Scenario {
  constructor (browser, name) {
    this.browser = browser
    this.name = name
    this.pages = []
    this.currentStep = 'setup'
    this.steps = []
  }

  async openPage (label, url, { viewport = { width: 1100, height: 900 } } = {}) {
    const context = await this.browser.newContext({ permissions: ['camera', 'microphone'], viewport })
    const page = await context.newPage()
    const entry = { label, page, context, logs: [] }
    const push = line => {
      entry.logs.push(`${new Date().toISOString().slice(11, 23)} ${line}`)
      if (entry.logs.length > 300) entry.logs.shift()
    }
    page.on('console', m => push(`console.${m.type()}: ${m.text()}`))
    page.on('pageerror', e => push(`pageerror: ${e.message}`))
    page.on('requestfailed', r => push(`requestfailed: ${r.url().slice(0, 200)} ${r.failure()?.errorText || ''}`))
    page.on('crash', () => push('page crashed'))
    this.pages.push(entry)
    await this.step(`${label}: open ${url.length > 160 ? url.slice(0, 160) + '…' : url}`, async () => {
      await page.goto(url, { timeout: 20_000 })
      await page.waitForFunction(() => document.documentElement.dataset.ready, null, { timeout: 20_000 })
      const ready = await page.evaluate(() => document.documentElement.dataset.ready)
      if (ready !== 'true') throw new Error(`the page did not start (data-ready=${ready})`)
    })
    return page
  }

  /** Run `fn` as a named step with a time limit. */
  async step (name, fn, ms = 30_000) {
    this.currentStep = name
    const t0 = Date.now()
    const result = await withTimeout(Promise.resolve().then(fn), ms, `step "${name}"`)
    this.steps.push(`${name} (${Date.now() - t0} ms)`)
    return result
  }

  async report (err) {
    const lines = [`scenario "${this.name}" failed at step "${this.currentStep}": ${err && err.message}`]
    if (this.steps.length) lines.push(`steps done: ${this.steps.join(' → ')}`)
    for (const p of this.pages) {
      lines.push(`--- page ${p.label} (${p.page.isClosed() ? 'closed' : p.page.url().slice(0, 200)})`)
      if (!p.page.isClosed()) {
        try {
          const info = await withTimeout(p.page.evaluate(() => {
            const states = Array.from(document.querySelectorAll('[data-testid=state]')).map(e => e.textContent.trim())
            const notice = document.querySelector('#notice:not([hidden])')?.textContent
            const wt = window.wt && window.wt.status ? window.wt.status() : null
            const cards = Array.from(document.querySelectorAll('article.torrent')).map(a =>
              `${a.dataset.role} ${a.dataset.infohash || '-'} peers=${a.querySelector('[data-testid=peers]')?.textContent} ` +
              `progress=${a.querySelector('[data-testid=progress]')?.getAttribute('aria-valuenow')}`)
            return { states, notice, wt, cards }
          }), 3000, 'reading the page state')
          if (info.notice) lines.push(`notice: ${info.notice}`)
          for (const s of info.states) lines.push(`state line: ${s}`)
          for (const c of info.cards) lines.push(`card: ${c}`)
          for (const s of info.wt || []) lines.push(`webtorrent bundle: ${s}`)
        } catch (e) {
          lines.push(`(cannot read the page state: ${e.message})`)
        }
        try {
          fs.mkdirSync(ARTIFACTS, { recursive: true })
          const file = path.join(ARTIFACTS, `failure-${this.name.replace(/[^a-z0-9]+/gi, '-')}-${p.label}.png`)
          await p.page.screenshot({ path: file, timeout: 5000 })
          lines.push(`screenshot: ${path.relative(ROOT, file)}`)
        } catch {}
      }
      lines.push(`console (last ${Math.min(p.logs.length, 60)} lines):`)
      for (const l of p.logs.slice(-60)) lines.push(`  ${l.slice(0, 400)}`)
    }
    return lines.join('\n')
  }

  /** Run the scenario body; on failure, throw an error carrying the full report. */
  async run (fn) {
    try {
      return await fn(this)
    } catch (err) {
      const e = new Error(await this.report(err))
      e.cause = err
      throw e
    } finally {
      await Promise.all(this.pages.map(p => p.context.close().catch(() => {})))
    }
  }
}

// ---------------------------------------------------------------- our page

/** Our page's URL with the given tracker list (?announce=, repeated) and an optional fragment. */
export function ourPageUrl (server, trackers = [], fragment = '') {
  const q = trackers.map(t => `announce=${encodeURIComponent(t)}`).join('&')
  return `${server.url}${q ? '?' + q : ''}${fragment ? '#' + fragment : ''}`
}

/** The `n`th torrent card (newest first, as the page shows them). */
export const card = (page, n = 0) => page.locator('article.torrent').nth(n)

export async function stateLine (page, n = 0) {
  return (await card(page, n).locator('[data-testid=state]').textContent({ timeout: 2000 }).catch(() => '(none)')).trim()
}

/** Seed files with the file input; resolves with { magnet, share, infoHash, ms }. */
export async function seedOnOurPage (page, paths, timeoutMs = 60_000) {
  const t0 = Date.now()
  await page.setInputFiles('#file-input', paths, { timeout: 30_000 })
  const handle = await page.waitForFunction(() => {
    const c = document.querySelector('article.torrent')
    if (!c) return null
    if (c.dataset.state === 'error') return { error: c.querySelector('[data-testid=state]').textContent }
    const m = c.querySelector('[data-testid=magnet]')
    return m && m.value.startsWith('magnet:') ? { ok: true } : null
  }, null, { timeout: timeoutMs, polling: 50 })
  const r = await handle.jsonValue()
  const ms = Date.now() - t0
  if (r.error) throw new Error(`seeding failed: ${r.error}`)
  const c = card(page)
  return {
    magnet: await c.locator('[data-testid=magnet]').inputValue(),
    share: await c.locator('[data-testid=share]').inputValue(),
    infoHash: await c.getAttribute('data-infohash'),
    ms
  }
}

// ---------------------------------------------------------------- our page and the server's bridge

/**
 * Card `n`'s desktop line ([data-testid=desktop], shown when the server runs a bridge):
 * { state, reachable, text }, or null when there is none (no bridge, no status yet, no card).
 */
export async function desktopStatus (page, n = 0) {
  return page.evaluate(i => {
    const el = document.querySelectorAll('article.torrent')[i]?.querySelector('[data-testid=desktop]')
    if (!el || el.closest('[hidden]')) return null
    return { state: el.dataset.state || null, reachable: el.dataset.reachable === 'true', text: el.textContent.trim() }
  }, n).catch(() => null)
}

/**
 * Wait until card `n` says desktop apps can reach it (data-reachable=true); resolves with its
 * desktopStatus. Rejects when the bridge refused the torrent, or after `ms` with the last status.
 */
export async function waitDesktopReachable (page, ms = 60_000, n = 0) {
  let h
  try {
    h = await page.waitForFunction(i => {
      const el = document.querySelectorAll('article.torrent')[i]?.querySelector('[data-testid=desktop]')
      if (!el || el.closest('[hidden]')) return null
      const s = { state: el.dataset.state || null, reachable: el.dataset.reachable === 'true', text: el.textContent.trim() }
      return s.reachable || s.state === 'refused' ? s : null
    }, n, { timeout: ms, polling: 100 })
  } catch (e) {
    throw new Error(`card ${n} did not become reachable by desktop apps within ${(ms / 1000).toFixed(0)} s ` +
      `(last desktop status: ${JSON.stringify(await desktopStatus(page, n))}): ${e.message.split('\n')[0]}`)
  }
  const s = await h.jsonValue()
  if (!s.reachable) throw new Error(`the server's bridge refused card ${n}'s torrent: ${s.text}`)
  return s
}

/**
 * Click card `n`'s "Keep on server" button and wait until it reads "Kept on server"; rejects
 * with the server's reason when it refuses. Resolves with the card's desktopStatus.
 */
export async function keepOnServer (page, n = 0, ms = 15_000) {
  const button = card(page, n).locator('[data-testid=keep]')
  await button.click({ timeout: ms })
  const h = await page.waitForFunction(i => {
    const b = document.querySelectorAll('article.torrent')[i]?.querySelector('[data-testid=keep]')
    if (!b) return { error: 'the card or its button is gone' }
    if (b.textContent.trim() === 'Kept on server') return { ok: true }
    if (!b.disabled && b.dataset.error) return { error: b.dataset.error }
    return null
  }, n, { timeout: ms, polling: 50 })
  const r = await h.jsonValue()
  if (r.error) throw new Error(`keep on server failed: ${r.error}`)
  return desktopStatus(page, n)
}

/**
 * Wait until the first card shows [data-testid=done] (or an error state), then SHA-256 every
 * `a[download]` blob in the page: [{ download, path, size, sha256 }].
 */
export async function waitDoneOnOurPage (page, timeoutMs = 90_000) {
  const handle = await page.waitForFunction(() => {
    const c = document.querySelector('article.torrent')
    if (!c) return null
    if (c.dataset.state === 'error') return { error: c.querySelector('[data-testid=state]').textContent }
    const d = c.querySelector('[data-testid=done]')
    return d && !d.hidden && d.querySelector('a[download]') ? { ok: true } : null
  }, null, { timeout: timeoutMs, polling: 100 })
  const r = await handle.jsonValue()
  if (r.error) throw new Error(`download failed: ${r.error}`)
  return savedFilesOnOurPage(page)
}

export function savedFilesOnOurPage (page) {
  return page.evaluate(async () => {
    const hex = buf => Array.from(new Uint8Array(buf), b => b.toString(16).padStart(2, '0')).join('')
    const out = []
    for (const a of document.querySelectorAll('article.torrent [data-testid=done] a[download]')) {
      const buf = await (await fetch(a.href)).arrayBuffer()
      out.push({ download: a.download, path: a.dataset.path, size: buf.byteLength, sha256: hex(await crypto.subtle.digest('SHA-256', buf)) })
    }
    return out
  })
}

/** Compare saved files (by file name) with the source files; throws a readable diff. */
export function checkSameFiles (saved, files) {
  const problems = []
  const byName = new Map(saved.map(s => [s.download, s]))
  for (const f of files) {
    const s = byName.get(f.name)
    if (!s) problems.push(`${f.name}: no a[download] link (links: ${saved.map(x => x.download).join(', ') || 'none'})`)
    else if (s.size !== f.size) problems.push(`${f.name}: ${s.size} bytes, expected ${f.size}`)
    else if (s.sha256 !== f.sha256) problems.push(`${f.name}: SHA-256 ${s.sha256}, expected ${f.sha256}`)
  }
  if (saved.length !== files.length) problems.push(`${saved.length} files saved, expected ${files.length}`)
  if (problems.length) throw new Error(`downloaded files differ from the source: ${problems.join('; ')}`)
}

// ---------------------------------------------------------------- the webtorrent bundle page

export async function wtSeed (page, paths, opts) {
  await page.setInputFiles('#files', paths, { timeout: 30_000 })
  return page.evaluate(o => window.wt.seedInput(o), opts)
}

export function wtDownload (page, magnet, opts = {}) {
  return page.evaluate(([m, o]) => window.wt.download(m, o), [magnet, opts])
}

// ---------------------------------------------------------------- processes

/** RSS in bytes of every Chromium renderer process under `rootPid`: [{ pid, rss, anon, file, shmem }]. */
export function rendererRss (rootPid) {
  const children = new Map()
  const info = new Map()
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (!children.has(ppid)) children.set(ppid, [])
      children.get(ppid).push(Number(d))
      info.set(Number(d), stat)
    } catch {}
  }
  const out = []
  const walk = pid => {
    for (const c of children.get(pid) || []) {
      try {
        const cmd = fs.readFileSync(`/proc/${c}/cmdline`, 'utf8')
        if (cmd.includes('--type=renderer')) {
          const status = fs.readFileSync(`/proc/${c}/status`, 'utf8')
          const kb = name => {
            const m = new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)
            return m ? Number(m[1]) * 1024 : null
          }
          const rss = kb('VmRSS')
          if (rss != null) out.push({ pid: c, rss, anon: kb('RssAnon'), file: kb('RssFile'), shmem: kb('RssShmem') })
        }
      } catch {}
      walk(c)
    }
  }
  walk(rootPid)
  return out
}
