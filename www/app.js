// The WebTorrent page: drop files to seed them and get a share link; open a share link
// (this page with a magnet link after `#`) to download. No framework, no build step.
//
// Hooks for automated tests (stable): the `<input type=file>` (#file-input), and per torrent
// (`article.torrent[data-infohash]`): [data-testid=state] (the state line, warnings included),
// [data-testid=progress] (aria-valuenow 0..100), [data-testid=peers], [data-testid=share] and
// [data-testid=magnet] (read-only inputs: read their value), [data-testid=done] (shown when a
// download is complete; one `a[download]` per file). When the server runs a bridge
// (bridge.json): `html[data-bridge=true|false]` once known, per card [data-testid=desktop]
// (data-state = the bridge's state, data-reachable = true|false; hidden until the first status)
// and [data-testid=keep] (the "Keep on server" button; data-error = the last refusal).
// Audio and video files get [data-testid=player] elements (data-file = the file's index)
// that play through sw.js while they download.
// Kept torrents (they survive a reload): #keep-seeding ([data-testid=keep-seeding]) is the
// "keep sharing after reload" checkbox; per card [data-testid=kept] (data-kept=true|false);
// #saved ([data-testid=saved]) lists what an earlier visit kept, one [data-testid=saved-item]
// per torrent (data-infohash; [data-testid=saved-resume], [data-testid=saved-remove],
// [data-testid=saved-error]) and [data-testid=resume-all]; [data-testid=storage] says how much
// the page stores (data-usage in bytes, data-persisted=true|false).

// The client library (wasm-bindgen output in pkg/) is imported in start(), so the page still
// explains itself when it is missing or fails to load.
const PKG_URL = './pkg/webtorrent_wasm.js'

const STORAGE_KEY = 'webtorrent-rs.trackers'
const KEEP_KEY = 'webtorrent-rs.keep-seeding'
const REFRESH_MS = 500
const BRIDGE_POLL_MS = 2000
const BRIDGE_POLL_HIDDEN_MS = 10_000
// How long opening a link waits for bridge.json (to leave the bridge's HTTP tracker out).
const BRIDGE_WAIT_MS = 3000
const WARNING_TTL_MS = 60_000

const $ = (sel, root = document) => root.querySelector(sel)

// ---------------------------------------------------------------- formatting

function fmtBytes (n) {
  if (!Number.isFinite(n) || n < 0) return '–'
  if (n < 1000) return `${Math.round(n)} B`
  const units = ['kB', 'MB', 'GB', 'TB']
  let i = -1
  do { n /= 1000; i++ } while (n >= 1000 && i < units.length - 1)
  return `${n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)} ${units[i]}`
}

// Under 1 kB/s is protocol chatter (keep-alives, have messages), not a transfer.
const fmtSpeed = n => (n >= 1000 ? `${fmtBytes(n)}/s` : '–')

function fmtDuration (s) {
  if (!Number.isFinite(s) || s < 0) return ''
  if (s < 60) return `${Math.max(1, Math.round(s))} s`
  if (s < 3600) return `${Math.round(s / 60)} min`
  const h = Math.floor(s / 3600)
  return `${h} h ${Math.round((s - h * 3600) / 60)} min`
}

const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`

function fmtPct (p) {
  const v = Math.max(0, Math.min(1, p || 0)) * 100
  if (v > 0 && v < 1) return '<1%'
  if (v < 100 && v > 99) return '99%'
  return `${Math.floor(v)}%`
}

const errorMessage = e => (typeof e === 'string' ? e : (e && e.message) ? e.message : String(e))

// ---------------------------------------------------------------- trackers

/**
 * The page's own WebSocket tracker (served by the webtorrent binary): ws(s)://<page host>, plus
 * the page's folder when it is not at the root (a reverse proxy serving it under /some/path/
 * forwards that path, WebSocket upgrades included).
 */
function originTracker () {
  const scheme = location.protocol === 'https:' ? 'wss:' : location.protocol === 'http:' ? 'ws:' : null
  if (!scheme) return null
  const dir = location.pathname.slice(0, location.pathname.lastIndexOf('/') + 1)
  return `${scheme}//${location.host}${dir === '/' ? '' : dir}`
}

const defaultTrackers = () => (originTracker() ? [originTracker()] : [])

function queryTrackers () {
  const params = new URLSearchParams(location.search)
  if (!params.has('announce')) return null
  return params.getAll('announce').map(s => s.trim()).filter(Boolean)
}

function storedTrackers () {
  try {
    const raw = localStorage.getItem(STORAGE_KEY)
    if (raw == null) return null
    const list = JSON.parse(raw)
    return Array.isArray(list) ? list.filter(s => typeof s === 'string' && s) : null
  } catch {
    return null
  }
}

function parseTrackerField (text) {
  return [...new Set(text.split(/[\s,]+/).map(s => s.trim()).filter(Boolean))]
}

/** Where the tracker list comes from: 'query' (?announce=), 'stored' (the field) or 'default'. */
function trackerSource () {
  if (queryTrackers()) return 'query'
  if (storedTrackers()) return 'stored'
  return 'default'
}

function currentTrackers () {
  return queryTrackers() || storedTrackers() || defaultTrackers()
}

function setupTrackerSettings () {
  const field = $('#trackers')
  const note = $('#trackers-note')
  const reset = $('#trackers-reset')
  const show = () => {
    const src = trackerSource()
    field.value = currentTrackers().join('\n')
    field.readOnly = src === 'query'
    reset.hidden = src !== 'stored'
    note.textContent = {
      query: 'Set by the page address (?announce=…); it overrides this field.',
      stored: 'Saved in this browser.',
      default: originTracker() ? 'Default: this site’s own tracker.' : 'No default tracker: add one.'
    }[src]
  }
  field.addEventListener('change', () => {
    if (field.readOnly) return
    const list = parseTrackerField(field.value)
    try {
      if (list.length === 0 || list.join('\n') === defaultTrackers().join('\n')) localStorage.removeItem(STORAGE_KEY)
      else localStorage.setItem(STORAGE_KEY, JSON.stringify(list))
    } catch (e) {
      showNotice(`Could not save the trackers: ${errorMessage(e)}`)
    }
    show()
  })
  reset.addEventListener('click', () => {
    try { localStorage.removeItem(STORAGE_KEY) } catch {}
    show()
  })
  show()
  if (currentTrackers().length === 0) $('#settings').open = true
}

// ---------------------------------------------------------------- links

/** The magnet link (or bare info hash) in a share link, a magnet link or a `#` fragment. */
function extractTorrentId (text) {
  if (!text) return null
  let s = text.trim()
  const hashAt = s.indexOf('#')
  if (/^https?:/i.test(s) && hashAt >= 0) s = s.slice(hashAt + 1)
  else if (s.startsWith('#')) s = s.slice(1)
  if (/^magnet%3A/i.test(s)) {
    try { s = decodeURIComponent(s) } catch {}
  }
  if (/^magnet:\?/i.test(s)) return s
  if (/^[0-9a-f]{40}$/i.test(s)) return `magnet:?xt=urn:btih:${s.toLowerCase()}`
  if (/^[A-Z2-7]{32}$/i.test(s)) return `magnet:?xt=urn:btih:${s.toUpperCase()}`
  return null
}

function magnetParams (magnet) {
  try {
    return new URLSearchParams(magnet.slice(magnet.indexOf('?') + 1))
  } catch {
    return new URLSearchParams()
  }
}

function base32ToHex (s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = ''
  for (const c of s.toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0')
  let hex = ''
  for (let i = 0; i + 4 <= bits.length; i += 4) hex += parseInt(bits.slice(i, i + 4), 2).toString(16)
  return hex
}

function magnetInfoHash (magnet) {
  for (const xt of magnetParams(magnet).getAll('xt')) {
    const m = /^urn:btih:([0-9a-z]+)$/i.exec(xt)
    if (!m) continue
    if (m[1].length === 40) return m[1].toLowerCase()
    if (m[1].length === 32) return base32ToHex(m[1])
  }
  return null
}

function shareLink (magnet) {
  return `${location.origin}${location.pathname}${location.search}#${magnet}`
}

const magnetTrackers = magnet => magnetParams(magnet).getAll('tr')

/** The magnet link with `tr=url` appended, unless that tracker is already in it. */
function withTracker (magnet, url) {
  if (!url || magnetTrackers(magnet).includes(url)) return magnet
  return `${magnet}&tr=${encodeURIComponent(url)}`
}

/** The magnet link without the `tr=url` parameters (the rest untouched). */
function withoutTracker (magnet, url) {
  const q = magnet.indexOf('?')
  if (!url || q < 0) return magnet
  const parts = magnet.slice(q + 1).split('&').filter(part => {
    if (!/^tr=/i.test(part)) return true
    try { return decodeURIComponent(part.slice(3).replace(/\+/g, ' ')) !== url } catch { return true }
  })
  return `${magnet.slice(0, q + 1)}${parts.join('&')}`
}

// ---------------------------------------------------------------- the server's bridge

// `webtorrent serve` bridges browsers (WebRTC) and desktop BitTorrent apps (TCP): bridge.json,
// next to the page, says so and gives its HTTP announce URL. Elsewhere it is missing, and the
// page works as a plain static page.
let bridgeInfo = null // { http, keep } when the server has a bridge
// STUN/TURN servers the server gives in bridge.json (`webtorrent serve --stun/--turn`), for
// the WebRTC connections of this tab; the browser's defaults when it names none.
let iceServers = null
let bridgeLoaded = Promise.resolve(null)

const bridgeUrl = rel => new URL(rel, location.href)

async function loadBridgeInfo () {
  try {
    const res = await fetch(bridgeUrl('bridge.json'), { cache: 'no-store', headers: { accept: 'application/json' } })
    if (!res.ok) throw new Error(`HTTP ${res.status}`)
    const j = await res.json()
    if (j && Array.isArray(j.iceServers) && j.iceServers.length) {
      iceServers = j.iceServers.filter(s => s && (typeof s.urls === 'string' || Array.isArray(s.urls)))
    }
    if (!j || j.bridge !== true) throw new Error('no bridge')
    const http = j.announce && typeof j.announce.http === 'string' && /^https?:\/\//i.test(j.announce.http) ? j.announce.http : null
    bridgeInfo = { http, keep: !!(j.settings && j.settings.keep) }
  } catch {
    bridgeInfo = null
  }
  document.documentElement.dataset.bridge = bridgeInfo ? 'true' : 'false'
  if (bridgeInfo) for (const e of entries) e.bridgeChanged()
  return bridgeInfo
}

/** What the page shows and shares: the torrent's magnet plus the bridge's HTTP tracker. */
function displayMagnet (magnet) {
  return bridgeInfo && bridgeInfo.http ? withTracker(magnet, bridgeInfo.http) : magnet
}

/** The bridge's HTTP tracker is for desktop apps: this tab does not announce to it. */
async function magnetForClient (magnet) {
  let timer
  const info = await Promise.race([
    bridgeLoaded,
    new Promise(resolve => { timer = setTimeout(() => resolve(bridgeInfo), BRIDGE_WAIT_MS) })
  ]).finally(() => clearTimeout(timer))
  if (!info || !info.http || currentTrackers().includes(info.http)) return magnet
  return withoutTracker(magnet, info.http)
}

function desktopText (s) {
  const pct = p => `${Math.floor(Math.max(0, Math.min(1, Number(p) || 0)) * 100)} %`
  if (s.desktopReachable) {
    return s.state === 'downloading'
      ? `Also available to desktop BitTorrent apps (the server has ${pct(s.progress)} so far)`
      : 'Also available to desktop BitTorrent apps'
  }
  switch (s.state) {
    case 'absent': return 'Desktop apps: the server joins when a desktop app asks for it'
    case 'queued': return 'Desktop apps: the server will join shortly'
    case 'joining': return 'Desktop apps: the server is joining…'
    case 'downloading': return `Desktop apps: the server is fetching it (${pct(s.progress)})`
    case 'seeding': return 'Desktop apps: the server has it'
    case 'refused': return `Desktop apps: the server refused it${s.reason ? `: ${s.reason}` : ''}`
    case 'leaving': return 'Desktop apps: the server is letting it go'
    default: return `Desktop apps: ${s.state}`
  }
}

// ---------------------------------------------------------------- notices

function showNotice (text, kind = 'error') {
  const n = $('#notice')
  n.textContent = text
  n.className = `notice ${kind}`
  n.hidden = false
}

async function copyText (text, button) {
  let ok = false
  try {
    await navigator.clipboard.writeText(text)
    ok = true
  } catch {
    const ta = document.createElement('textarea')
    ta.value = text
    ta.setAttribute('readonly', '')
    ta.style.position = 'fixed'
    ta.style.opacity = '0'
    document.body.append(ta)
    ta.select()
    try { ok = document.execCommand('copy') } catch {}
    ta.remove()
  }
  if (!button) return
  const label = button.dataset.label || button.textContent
  button.dataset.label = label
  button.textContent = ok ? 'Copied!' : 'Select and copy'
  button.classList.toggle('copied', ok)
  clearTimeout(button._timer)
  button._timer = setTimeout(() => {
    button.textContent = label
    button.classList.remove('copied')
  }, 1600)
}

// ---------------------------------------------------------------- playing while downloading

// Audio and video files get a player that starts while they download and can seek: the
// media element asks sw.js for webtorrent/<info hash>/<index> with Range headers, and sw.js
// asks this page, which reads the bytes with file.stream({ start, end }).
// The media types played, by extension; the element is the type's first part.
const MIME = {
  mp4: 'video/mp4', m4v: 'video/mp4', webm: 'video/webm', ogv: 'video/ogg', mov: 'video/quicktime',
  mkv: 'video/x-matroska', mp3: 'audio/mpeg', m4a: 'audio/mp4', aac: 'audio/aac', ogg: 'audio/ogg',
  oga: 'audio/ogg', opus: 'audio/opus', flac: 'audio/flac', wav: 'audio/wav'
}
const extOf = name => (/\.([a-z0-9]+)$/i.exec(name || '') || [])[1]?.toLowerCase()

function setupStreaming () {
  if (!('serviceWorker' in navigator)) return
  navigator.serviceWorker.addEventListener('message', event => {
    if (event.data?.type === 'webtorrent-stream' && event.ports[0]) answerStream(event.data, event.ports[0])
  })
  navigator.serviceWorker.register('sw.js').catch(e => console.warn('no service worker: media plays only once downloaded', e))
}

// A Range header (one range, as media elements send) for a file of `len` bytes:
// { start, end } (end inclusive), null for the whole file, or 'unsatisfiable'.
function parseRange (header, len) {
  const m = /^bytes=(\d*)-(\d*)$/.exec((header || '').trim())
  if (!m || (m[1] === '' && m[2] === '')) return null
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0 || len === 0) return 'unsatisfiable'
    return { start: Math.max(0, len - n), end: len - 1 }
  }
  const start = Number(m[1])
  if (start >= len) return 'unsatisfiable'
  const end = m[2] === '' ? len - 1 : Math.min(Number(m[2]), len - 1)
  return end < start ? null : { start, end }
}

function answerStream ({ infoHash, index, range }, port) {
  const e = findEntry(infoHash)
  const f = e?.torrent && (e.torrent.files || [])[index]
  if (!f) { port.postMessage({ missing: true }); return }
  const len = f.length
  const r = parseRange(range, len)
  const type = MIME[extOf(f.name)] || 'application/octet-stream'
  if (r === 'unsatisfiable') {
    port.postMessage({ head: { status: 416, headers: { 'Content-Range': `bytes */${len}` }, text: '' } })
    return
  }
  const { start, end } = r || { start: 0, end: len - 1 }
  const headers = { 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Content-Length': String(end - start + 1) }
  if (r) headers['Content-Range'] = `bytes ${start}-${end}/${len}`
  let reader = null
  port.onmessage = async ({ data }) => {
    if (data.cancel) {
      reader?.cancel().catch(() => {})
      port.close()
      return
    }
    if (!data.pull) return
    try {
      reader ??= f.stream({ start, end }).getReader()
      const { done, value } = await reader.read()
      if (done) {
        port.postMessage({ done: true })
        port.close()
        return
      }
      const whole = value.byteOffset === 0 && value.byteLength === value.buffer.byteLength
      const buf = whole ? value.buffer : value.slice().buffer
      port.postMessage({ chunk: buf }, [buf])
    } catch (err) {
      port.postMessage({ error: errorMessage(err) })
      port.close()
    }
  }
  port.postMessage({ head: { status: r ? 206 : 200, headers } })
}

// ---------------------------------------------------------------- torrent cards

const entries = new Set()
let client = null
let clientError = null

class Entry {
  constructor ({ role, name, meta }) {
    this.role = role // 'seed' | 'download'
    this.torrent = null
    this.phase = role === 'seed' ? 'hashing' : 'connecting'
    this.error = null
    this.warning = null
    this.warningAt = 0
    this.started = performance.now()
    this.blobUrls = []
    this.savePrepared = false
    this.infoHash = null
    this.removed = false
    // The server's bridge: its last status of this torrent, the poll timer, the keep request.
    this.bridge = { status: null, timer: null, ctl: null, polling: false, keeping: false, kept: false }

    this.el = $('#torrent-template').content.firstElementChild.cloneNode(true)
    this.el.classList.add(role)
    this.el.dataset.role = role
    this.$ = sel => $(sel, this.el)
    this.$('.t-badge').textContent = role === 'seed' ? '↑' : '↓'
    this.$('.t-badge').title = role === 'seed' ? 'Sharing' : 'Downloading'
    this.$('.s-total-label').textContent = role === 'seed' ? 'Sent' : 'Received'
    this.$('.t-share-hint').textContent = role === 'seed'
      ? '(anyone who opens it gets the files from you)'
      : '(pass it on: everyone who has the files shares them)'
    this.setTitle(name, meta)
    this.$('.t-remove').addEventListener('click', () => this.remove())
    this.$('[data-testid=keep]').addEventListener('click', () => this.keepOnServer())
    for (const b of this.el.querySelectorAll('button.copy')) {
      b.addEventListener('click', () => copyText(this.$(`[data-testid=${b.dataset.copy}]`).value, b))
    }
    for (const input of this.el.querySelectorAll('.copy-row input')) {
      input.addEventListener('focus', () => input.select())
    }
    const native = this.$('.native-share')
    if (navigator.share) {
      native.hidden = false
      native.addEventListener('click', () => {
        navigator.share({ title: this.torrent?.name || 'Files', url: this.$('[data-testid=share]').value }).catch(() => {})
      })
    }
    entries.add(this)
    $('#torrents').prepend(this.el)
    document.body.classList.add('has-torrents')
    if (role === 'download') document.body.classList.add('receiving')
    this.render()
  }

  setTitle (name, meta) {
    this.$('.t-name').textContent = name || 'Unnamed'
    this.$('.t-name').title = name || ''
    if (meta != null) this.$('.t-meta').textContent = meta
  }

  attach (torrent) {
    this.torrent = torrent
    this.infoHash = torrent.infoHash
    this.el.dataset.infohash = torrent.infoHash || ''
    if (this.role === 'seed') this.phase = 'active'
    const onWarning = m => { this.warning = errorMessage(m); this.warningAt = performance.now(); this.render() }
    torrent.on('warning', onWarning)
    torrent.on('error', m => { this.error = errorMessage(m); this.render() })
    torrent.on('metadata', () => this.render())
    torrent.on('ready', () => this.render())
    torrent.on('wire', () => this.render())
    torrent.on('done', () => this.render())
    torrent.on('kept', () => { this.render(); updateStorage() })
    this.render()
    this.bridgeChanged()
  }

  // ------------------------------------------------ the server's bridge

  /** bridge.json arrived or the info hash is known: start polling the bridge's status. */
  bridgeChanged () {
    if (this.removed || !bridgeInfo || !/^[0-9a-f]{40}$/i.test(this.infoHash || '')) return
    this.render()
    if (!this.bridge.timer && !this.bridge.polling) this.pollBridge()
  }

  schedulePoll (ms = document.hidden ? BRIDGE_POLL_HIDDEN_MS : BRIDGE_POLL_MS) {
    clearTimeout(this.bridge.timer)
    this.bridge.timer = this.removed ? null : setTimeout(() => { this.bridge.timer = null; this.pollBridge() }, ms)
  }

  async pollBridge () {
    if (this.removed || this.bridge.polling) return
    this.bridge.polling = true
    const ctl = this.bridge.ctl = new AbortController()
    const timer = setTimeout(() => ctl.abort(), 8000)
    try {
      const res = await fetch(bridgeUrl(`bridge/torrents/${this.infoHash.toLowerCase()}`), { cache: 'no-store', signal: ctl.signal })
      if (res.ok) this.applyBridgeStatus(await res.json())
    } catch {
      // Quietly keep the last status: the server may be restarting, or the network gone.
    } finally {
      clearTimeout(timer)
      this.bridge.polling = false
      this.bridge.ctl = null
      if (!this.removed) this.schedulePoll()
    }
  }

  applyBridgeStatus (s) {
    if (!s || typeof s.state !== 'string') return
    this.bridge.status = s
    if (s.kept) this.bridge.kept = true
    this.renderDesktop()
  }

  async keepOnServer () {
    const b = this.bridge
    if (b.keeping || b.kept || !this.infoHash) return
    b.keeping = true
    const button = this.$('[data-testid=keep]')
    delete button.dataset.error
    this.renderDesktop()
    try {
      const res = await fetch(bridgeUrl(`bridge/keep/${this.infoHash.toLowerCase()}`), { method: 'POST', cache: 'no-store' })
      let body = null
      try { body = await res.json() } catch {}
      if (!res.ok) throw new Error((body && body.error) || `HTTP ${res.status}`)
      b.kept = true
      if (body && typeof body.state === 'string') this.applyBridgeStatus(body)
    } catch (e) {
      button.dataset.error = errorMessage(e)
      showNotice(`The server cannot keep “${this.$('.t-name').textContent}”: ${errorMessage(e)}`)
    } finally {
      b.keeping = false
      this.renderDesktop()
    }
  }

  renderDesktop () {
    const box = this.$('.t-desktop')
    const s = this.bridge.status
    if (!bridgeInfo || !s) {
      box.hidden = true
      return
    }
    box.hidden = false
    const el = this.$('[data-testid=desktop]')
    const text = desktopText(s)
    if (el.textContent !== text) el.textContent = text
    el.dataset.state = s.state
    el.dataset.reachable = s.desktopReachable ? 'true' : 'false'
    box.dataset.state = s.state
    box.dataset.reachable = el.dataset.reachable

    const t = this.torrent
    const button = this.$('[data-testid=keep]')
    const seeding = this.role === 'seed' ? !!t : !!(t && t.done)
    button.hidden = !bridgeInfo.keep || !seeding || !!this.error
    const label = this.bridge.kept ? 'Kept on server' : this.bridge.keeping ? 'Asking the server…' : 'Keep on server'
    if (button.textContent !== label) button.textContent = label
    button.disabled = this.bridge.kept || this.bridge.keeping
    button.classList.toggle('kept', this.bridge.kept)
  }

  fail (e) {
    this.error = errorMessage(e)
    this.render()
  }

  hasMetadata () {
    const t = this.torrent
    if (!t) return false
    if (this.fileCount != null || t.length > 0) return true
    const files = t.files
    return !!(files && files.length > 0)
  }

  metaLine () {
    const t = this.torrent
    if (!t || !this.hasMetadata()) return this.role === 'download' ? 'Waiting for the file list' : null
    // Read the file list once: each read builds new objects.
    if (this.fileCount == null) this.fileCount = (t.files || []).length
    return `${plural(this.fileCount, 'file')} · ${fmtBytes(t.length)}`
  }

  stateText () {
    const t = this.torrent
    const peers = t ? t.numPeers : 0
    if (this.error) return { text: `Error: ${this.error}`, kind: 'error' }
    if (this.phase === 'hashing') {
      const s = (performance.now() - this.started) / 1000
      return { text: `Preparing: reading the files and computing checksums…${s >= 2 ? ` (${fmtDuration(s)})` : ''}`, kind: 'busy' }
    }
    if (!t) return { text: 'Starting…', kind: 'busy' }
    if (this.role === 'seed') {
      return peers === 0
        ? { text: 'Ready to share. Send the link below and keep this tab open; nobody has connected yet.', kind: 'idle' }
        : { text: `Sharing with ${plural(peers, 'peer')} (keep this tab open).`, kind: 'active' }
    }
    if (t.done && this.savePrepared) {
      return peers === 0
        ? { text: 'Done. Your files are ready to save below.', kind: 'done' }
        : { text: `Done. Your files are ready to save below. Still sharing with ${plural(peers, 'peer')}.`, kind: 'done' }
    }
    if (t.done) return { text: 'Download complete. Preparing your files…', kind: 'busy' }
    if (!this.hasMetadata()) {
      return peers === 0
        ? { text: 'Looking for people sharing these files…', kind: 'busy' }
        : { text: `Connected to ${plural(peers, 'peer')}; getting the file list…`, kind: 'busy' }
    }
    const pct = fmtPct(t.progress)
    if (peers === 0) return { text: `Waiting for peers… ${pct} downloaded.`, kind: 'idle' }
    const speed = t.downloadSpeed
    const left = Math.max(0, t.length - t.downloaded)
    // No estimate from the first moments' speed: it says "13 min" for a 5 s download.
    const eta = speed > 0 && t.progress >= 0.02 && left / speed < 86400 ? `, about ${fmtDuration(left / speed)} left` : ''
    return { text: `Downloading from ${plural(peers, 'peer')}: ${pct}${eta}.`, kind: 'active' }
  }

  // A player per audio or video file, playing through sw.js while the file downloads.
  makePlayers () {
    this.playersMade = true
    const box = this.$('.t-players')
    const files = this.torrent.files || []
    files.forEach((f, i) => {
      const kind = MIME[extOf(f.name)]?.split('/')[0]
      if (!kind || !/^[0-9a-f]{40}$/i.test(this.infoHash || '')) return
      const media = document.createElement(kind)
      media.controls = true
      media.preload = 'metadata'
      media.dataset.testid = 'player'
      media.dataset.file = String(i)
      media.src = `webtorrent/${this.infoHash.toLowerCase()}/${i}`
      const name = document.createElement('span')
      name.className = 'p-name'
      name.textContent = f.path || f.name
      // Say why instead of showing a dead player (an unsupported codec, most often).
      media.addEventListener('error', () => {
        const why = media.error?.message || `media error ${media.error?.code ?? ''}`.trim()
        name.textContent = `${f.path || f.name}: cannot play here (${why}); save the file once it is done`
        console.warn('player', i, why)
      })
      box.append(media, name)
    })
    box.hidden = box.childElementCount === 0
  }

  async prepareSave () {
    if (this.savePrepared || this.preparing) return
    this.preparing = true
    const list = this.$('.t-files')
    try {
      const files = this.torrent.files || []
      const items = []
      // Inside a multi-file torrent, paths start with the torrent's name: show the rest.
      const prefix = files.length > 1 && this.torrent.name ? `${this.torrent.name}/` : null
      const shown = f => {
        const p = f.path || f.name
        return prefix && p.startsWith(prefix) ? p.slice(prefix.length) : p
      }
      for (const f of files) {
        const blob = await f.blob()
        const url = URL.createObjectURL(blob)
        this.blobUrls.push(url)
        const li = document.createElement('li')
        const a = document.createElement('a')
        a.href = url
        a.download = f.name
        a.className = 'button save'
        a.textContent = 'Save'
        a.dataset.path = f.path || f.name
        a.title = `Save ${f.path || f.name}`
        const name = document.createElement('span')
        name.className = 'f-name'
        name.textContent = shown(f)
        name.title = f.path || f.name
        const size = document.createElement('span')
        size.className = 'f-size'
        size.textContent = fmtBytes(f.length)
        li.append(name, size, a)
        items.push(li)
      }
      list.replaceChildren(...items)
      const all = this.$('.save-all')
      all.hidden = files.length < 2
      all.onclick = async () => {
        for (const a of list.querySelectorAll('a[download]')) {
          a.click()
          await new Promise(resolve => setTimeout(resolve, 400))
        }
      }
      this.savePrepared = true
      this.$('[data-testid=done]').hidden = false
    } catch (e) {
      this.error = `cannot read the downloaded files: ${errorMessage(e)}`
    } finally {
      this.preparing = false
      this.render()
    }
  }

  render () {
    const t = this.torrent
    if (t) {
      if (!this.error && t.error) this.error = errorMessage(t.error)
      this.setTitle(t.name || this.$('.t-name').textContent, this.metaLine())
      if (t.magnetURI) {
        const magnet = this.$('[data-testid=magnet]')
        const shown = displayMagnet(t.magnetURI)
        if (magnet.value !== shown) {
          magnet.value = shown
          this.$('[data-testid=share]').value = shareLink(shown)
        }
        this.$('.t-share').hidden = false
      }
      if (this.role === 'download' && t.done && !this.savePrepared) this.prepareSave()
      if (!this.playersMade && this.hasMetadata() && navigator.serviceWorker?.controller) this.makePlayers()
    }

    const kept = this.$('[data-testid=kept]')
    const isKept = !!(t && t.kept)
    const keptText = !t || this.error
      ? ''
      : isKept
        ? (this.role === 'seed' ? 'Kept: after a reload, “Resume” shares it again.' : 'Kept: after a reload, “Resume” continues it.')
        : (this.role === 'seed' ? (this.keepWanted ? 'Keeping a copy so that sharing can resume after a reload…' : 'Not kept: reloading this page stops sharing.') : '')
    if (kept.textContent !== keptText) kept.textContent = keptText
    kept.hidden = !keptText
    kept.dataset.kept = isKept ? 'true' : 'false'

    if (this.warning && performance.now() - this.warningAt > WARNING_TTL_MS) this.warning = null
    const st = this.stateText()
    this.$('.t-state-main').textContent = st.text
    this.$('.t-state').dataset.kind = st.kind
    this.el.dataset.state = st.kind
    const w = this.$('.t-warning')
    w.hidden = !this.warning || !!this.error
    w.textContent = this.warning ? `Warning: ${this.warning}` : ''

    const indeterminate = this.phase === 'hashing' || (this.role === 'download' && t && !this.hasMetadata() && !this.error)
    const progress = this.role === 'seed' ? (t ? 1 : 0) : (t ? t.progress || 0 : 0)
    const bar = this.$('[data-testid=progress]')
    const fill = this.$('.fill')
    if (bar.classList.contains('indeterminate') && !indeterminate) {
      // Leaving the sliding animation: jump to the real width instead of shrinking to it.
      fill.style.transition = 'none'
      fill.style.width = `${(progress * 100).toFixed(2)}%`
      bar.classList.remove('indeterminate')
      void fill.offsetWidth
      fill.style.transition = ''
    }
    bar.classList.toggle('indeterminate', indeterminate)
    bar.classList.toggle('complete', progress >= 1)
    bar.setAttribute('aria-valuenow', String(Math.round(progress * 100)))
    bar.dataset.progress = String(progress)
    fill.style.width = indeterminate ? '' : `${(progress * 100).toFixed(2)}%`
    this.$('.pct').textContent = indeterminate ? '' : fmtPct(progress)

    this.$('[data-testid=peers]').textContent = String(t ? t.numPeers : 0)
    this.$('.s-down').textContent = t ? fmtSpeed(t.downloadSpeed) : '–'
    this.$('.s-up').textContent = t ? fmtSpeed(t.uploadSpeed) : '–'
    // Seeds show what they sent; downloads what they received of the whole.
    const total = this.$('.s-total')
    if (this.role === 'seed') total.textContent = t ? fmtBytes(t.uploaded) : '–'
    else total.textContent = t ? fmtBytes(t.done ? t.length : t.downloaded) : '–'

    this.renderDesktop()
  }

  remove () {
    this.removed = true
    clearTimeout(this.bridge.timer)
    this.bridge.timer = null
    if (this.bridge.ctl) this.bridge.ctl.abort()
    entries.delete(this)
    this.el.remove()
    document.body.classList.toggle('has-torrents', entries.size > 0)
    document.body.classList.toggle('receiving', [...entries].some(e => e.role === 'download'))
    for (const u of this.blobUrls) URL.revokeObjectURL(u)
    try { this.torrent && this.torrent.destroy() } catch (e) { console.warn('destroy failed', e) }
    // Removing a card forgets it: what this browser stores for it goes too (never the
    // user's own files).
    if (client && this.infoHash) {
      client.forget(this.infoHash).catch(e => console.warn('forget failed', e)).finally(updateStorage)
    }
    if (this.infoHash && magnetInfoHash(extractTorrentId(location.hash) || '') === this.infoHash) {
      history.replaceState(null, '', location.pathname + location.search)
    }
  }
}

function findEntry (infoHash) {
  for (const e of entries) if (e.infoHash && e.infoHash === infoHash) return e
  return null
}

function focusEntry (e) {
  e.el.classList.remove('flash')
  void e.el.offsetWidth
  e.el.classList.add('flash')
  e.el.scrollIntoView({ behavior: 'smooth', block: 'nearest' })
}

// ---------------------------------------------------------------- actions

function torrentNameFor (files) {
  if (files.length === 1) return undefined
  const tops = new Set(files.map(f => (f.fullPath || '').replace(/^\/+/, '').split('/')[0]))
  if (tops.size === 1 && [...tops][0] && files.every(f => (f.fullPath || '').replace(/^\/+/, '').includes('/'))) {
    return undefined // a dropped folder: the library names the torrent after it
  }
  return `${files.length} files`
}

const keepSeeding = () => !!$('#keep-seeding')?.checked

async function seedFiles (files) {
  files = files.filter(f => f && typeof f.size === 'number')
  if (files.length === 0) return
  const total = files.reduce((n, f) => n + f.size, 0)
  const name = torrentNameFor(files)
  const entry = new Entry({
    role: 'seed',
    name: name || (files.length === 1 ? files[0].name : (files[0].fullPath || '').replace(/^\/+/, '').split('/')[0]),
    meta: `${plural(files.length, 'file')} · ${fmtBytes(total)}`
  })
  // Without handles, keeping means a copy in the browser's storage: only when asked.
  entry.keepWanted = keepSeeding()
  const opts = { announce: currentTrackers(), keep: entry.keepWanted }
  if (name) opts.name = name
  await startSeed(entry, files.length === 1 ? files[0] : files, opts)
}

/**
 * Seeds File System Access handles (dropped or picked in browsers that give them): the
 * torrent is kept by its handles, so it comes back after a reload without a copy.
 */
async function seedHandles (handles) {
  const single = handles.length === 1
  const entry = new Entry({
    role: 'seed',
    name: single ? handles[0].name : `${handles.length} files`,
    meta: single && handles[0].kind === 'directory' ? 'Folder' : plural(handles.length, 'file')
  })
  entry.keepWanted = true
  const opts = { announce: currentTrackers(), keep: true }
  if (!single) opts.name = `${handles.length} files`
  await startSeed(entry, single ? handles[0] : handles, opts)
}

async function startSeed (entry, input, opts) {
  if (!client) return entry.fail(clientError || 'the WebTorrent engine did not start')
  try {
    const torrent = await client.seed(input, opts)
    const existing = findEntry(torrent.infoHash)
    if (existing && existing !== entry) {
      entry.remove()
      focusEntry(existing)
      return
    }
    entry.attach(torrent)
    refreshSaved()
  } catch (e) {
    entry.fail(e)
  }
}

async function openTorrent (id) {
  const magnet = extractTorrentId(id)
  if (!magnet) {
    showNotice('That does not look like a share link or a magnet link.', 'warn')
    return
  }
  const infoHash = magnetInfoHash(magnet)
  const existing = infoHash && findEntry(infoHash)
  if (existing) {
    focusEntry(existing)
    return
  }
  const entry = new Entry({ role: 'download', name: magnetParams(magnet).get('dn') || 'Incoming files', meta: 'Waiting for the file list' })
  entry.infoHash = infoHash
  entry.bridgeChanged()
  if (!client) return entry.fail(clientError || 'the WebTorrent engine did not start')
  try {
    // Downloads are kept in the browser's storage: after a reload they continue.
    const torrent = await client.add(await magnetForClient(magnet), { announce: currentTrackers(), keep: true })
    refreshSaved()
    if (entry.removed) {
      try { torrent.destroy() } catch {}
      return
    }
    entry.attach(torrent)
  } catch (e) {
    entry.fail(e)
  }
}

// ---------------------------------------------------------------- drag and drop

async function filesFromEntry (entry, prefix = '') {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject))
    try { file.fullPath = `${prefix}/${file.name}` } catch {}
    return [file]
  }
  if (entry.isDirectory) {
    const reader = entry.createReader()
    const children = []
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject))
      if (batch.length === 0) break
      children.push(...batch)
    }
    const out = []
    for (const c of children) out.push(...await filesFromEntry(c, `${prefix}/${entry.name}`))
    return out
  }
  return []
}

/**
 * What was dropped: { handles } when the browser gives File System Access handles for every
 * item (they let the page reopen the files after a reload), else { files }. Everything is
 * taken from the event before the first await: the DataTransfer empties afterwards.
 */
async function dropped (dt) {
  const items = Array.from(dt.items || []).filter(i => i.kind === 'file')
  const handlePromises = items.map(i => (typeof i.getAsFileSystemHandle === 'function' ? i.getAsFileSystemHandle() : null))
  const entriesList = items.map(i => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null))
  const files = Array.from(dt.files || [])
  if (handlePromises.length && handlePromises.every(Boolean)) {
    const handles = await Promise.all(handlePromises.map(p => p.catch(() => null)))
    if (handles.every(h => h && (h.kind === 'file' || h.kind === 'directory'))) return { handles }
  }
  if (entriesList.length && entriesList.every(Boolean) && entriesList.some(e => e.isDirectory)) {
    const out = []
    for (const e of entriesList) out.push(...await filesFromEntry(e))
    return { files: out }
  }
  return { files }
}

function setupDrop () {
  const drop = $('#drop')
  const input = $('#file-input')
  let depth = 0
  const hasFiles = e => Array.from(e.dataTransfer?.types || []).includes('Files')
  window.addEventListener('dragenter', e => {
    if (!hasFiles(e)) return
    e.preventDefault()
    depth++
    document.body.classList.add('dragging')
  })
  window.addEventListener('dragleave', e => {
    if (!hasFiles(e)) return
    depth = Math.max(0, depth - 1)
    if (depth === 0) document.body.classList.remove('dragging')
  })
  window.addEventListener('dragover', e => {
    if (!hasFiles(e)) return
    e.preventDefault()
    e.dataTransfer.dropEffect = 'copy'
  })
  window.addEventListener('drop', async e => {
    if (!hasFiles(e)) return
    e.preventDefault()
    depth = 0
    document.body.classList.remove('dragging')
    try {
      const got = await dropped(e.dataTransfer)
      if (got.handles) seedHandles(got.handles)
      else seedFiles(got.files)
    } catch (err) {
      showNotice(`Could not read the dropped files: ${errorMessage(err)}`)
    }
  })
  input.addEventListener('change', () => {
    const files = Array.from(input.files || [])
    input.value = ''
    seedFiles(files)
  })
  // Where the browser has a file picker that gives handles, use it: files shared through
  // handles come back after a reload without a copy.
  const choose = () => {
    if (typeof window.showOpenFilePicker !== 'function') return false
    window.showOpenFilePicker({ multiple: true }).then(handles => {
      if (handles && handles.length) seedHandles(handles)
    }, err => {
      if (err && err.name !== 'AbortError') showNotice(`Could not open the files: ${errorMessage(err)}`)
    })
    return true
  }
  $('label[for=file-input]', drop).addEventListener('click', e => {
    if (choose()) e.preventDefault()
  })
  drop.addEventListener('keydown', e => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault()
      if (!choose()) input.click()
    }
  })
  const keep = $('#keep-seeding')
  try { keep.checked = localStorage.getItem(KEEP_KEY) === '1' } catch {}
  keep.addEventListener('change', () => {
    try { localStorage.setItem(KEEP_KEY, keep.checked ? '1' : '0') } catch {}
    if (keep.checked && navigator.storage?.persist) navigator.storage.persist().then(updateStorage, () => {})
  })
}

// ---------------------------------------------------------------- kept torrents

/** One saved-list item per torrent an earlier visit kept (and this tab does not run). */
async function refreshSaved () {
  if (!client) return
  let list = []
  try {
    list = (await client.saved()).filter(s => !s.active)
  } catch (e) {
    console.warn('cannot read the kept torrents', e)
  }
  const box = $('#saved')
  const ul = $('#saved-list')
  const seen = new Set()
  for (const s of list) {
    seen.add(s.infoHash)
    let li = ul.querySelector(`[data-infohash="${s.infoHash}"]`)
    if (!li) {
      li = $('#saved-template').content.firstElementChild.cloneNode(true)
      li.dataset.infohash = s.infoHash
      $('.saved-resume', li).addEventListener('click', () => resumeSaved([s.infoHash]))
      $('.saved-remove', li).addEventListener('click', () => removeSaved(s.infoHash))
      ul.append(li)
    }
    li.dataset.kind = s.kind
    li.dataset.permission = s.permission || ''
    $('.saved-name', li).textContent = s.name || s.infoHash
    const what = s.kind === 'seed' ? 'shared' : 'downloading'
    const from = s.data === 'handles'
      ? (s.permission === 'granted' ? 'from your files' : 'from your files (the browser asks to read them again)')
      : s.data === 'copy' ? 'from a copy in this browser' : 'stored in this browser'
    $('.saved-meta', li).textContent = `${what} · ${s.length ? fmtBytes(s.length) + ' · ' : ''}${from}`
  }
  for (const li of ul.querySelectorAll('[data-testid=saved-item]')) {
    if (!seen.has(li.dataset.infohash)) li.remove()
  }
  box.hidden = ul.children.length === 0
}

/** Resumes kept torrents (from a click: reopening files may need the user's permission). */
async function resumeSaved (infoHashes) {
  if (!client) return
  const items = infoHashes.map(ih => $(`#saved-list [data-infohash="${ih}"]`)).filter(Boolean)
  for (const li of items) {
    for (const b of li.querySelectorAll('button')) b.disabled = true
    $('.saved-error', li).hidden = true
  }
  let results = []
  try {
    results = await client.restore(infoHashes)
  } catch (e) {
    showNotice(`Could not resume: ${errorMessage(e)}`)
  }
  for (const r of results) {
    const li = $(`#saved-list [data-infohash="${r.infoHash}"]`)
    if (r.torrent) {
      if (!findEntry(r.infoHash)) {
        const t = r.torrent
        const role = li?.dataset.kind === 'seed' ? 'seed' : 'download'
        const entry = new Entry({ role, name: t.name || r.name, meta: null })
        entry.keepWanted = true
        entry.attach(t)
      }
      li?.remove()
    } else if (li) {
      const err = $('.saved-error', li)
      err.textContent = `Could not resume: ${r.error}`
      err.hidden = false
    }
  }
  for (const li of items) for (const b of li.querySelectorAll('button')) b.disabled = false
  refreshSaved()
}

async function removeSaved (infoHash) {
  if (!client) return
  try {
    await client.forget(infoHash)
  } catch (e) {
    showNotice(`Could not remove it: ${errorMessage(e)}`)
  }
  refreshSaved()
  updateStorage()
}

/** "This page stores N MB in this browser", with whether the browser may clear it. */
async function updateStorage () {
  const el = $('#storage')
  const storage = navigator.storage
  if (!el || !storage?.estimate) return
  try {
    const [{ usage = 0 }, persisted] = await Promise.all([
      storage.estimate(),
      storage.persisted ? storage.persisted() : Promise.resolve(false)
    ])
    el.dataset.usage = String(usage)
    el.dataset.persisted = persisted ? 'true' : 'false'
    el.textContent = `This page stores ${fmtBytes(usage)} in this browser${persisted ? ' (kept until you remove it)' : ' (the browser may clear it when space runs low)'}.`
    el.hidden = usage < 1000
  } catch {
    el.hidden = true
  }
}

function setupOpenForm () {
  const form = $('#open-form')
  const input = $('#open-input')
  form.addEventListener('submit', e => {
    e.preventDefault()
    const v = input.value.trim()
    if (!v) return input.focus()
    input.value = ''
    openTorrent(v)
  })
}

function openFromHash () {
  const id = extractTorrentId(location.hash)
  if (id) openTorrent(id)
}

// ---------------------------------------------------------------- start

async function start () {
  // In parallel with the engine's load: nothing waits for it but links opened before it answers.
  bridgeLoaded = loadBridgeInfo()
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return
    for (const e of entries) if (e.bridge.timer) e.schedulePoll(0)
  })
  setupTrackerSettings()
  setupStreaming()
  setupDrop()
  setupOpenForm()
  try {
    const { default: init, WebTorrent } = await import(PKG_URL)
    await init()
    // The server's STUN/TURN servers, if it has any, before the first connection.
    let timer
    await Promise.race([
      bridgeLoaded,
      new Promise(resolve => { timer = setTimeout(resolve, BRIDGE_WAIT_MS) })
    ]).finally(() => clearTimeout(timer))
    client = new WebTorrent(iceServers ? { announce: currentTrackers(), iceServers } : { announce: currentTrackers() })
    window.webtorrentClient = client
  } catch (e) {
    clientError = errorMessage(e)
    console.error('cannot start WebTorrent', e)
    showNotice(`Could not start the WebTorrent engine in this browser: ${clientError}`)
  }
  if (typeof RTCPeerConnection === 'undefined') {
    showNotice('This browser has no WebRTC, which is needed to connect to other people. Try a current Firefox, Chrome or Safari.')
  }
  if (currentTrackers().length === 0) {
    showNotice('No tracker is configured: open “Trackers” below and add one.', 'warn')
  }
  window.addEventListener('hashchange', openFromHash)
  $('#resume-all').addEventListener('click', () => {
    resumeSaved([...document.querySelectorAll('#saved-list [data-testid=saved-item]')].map(li => li.dataset.infohash))
  })
  openFromHash()
  refreshSaved()
  updateStorage()
  setInterval(updateStorage, 15_000)
  setInterval(() => { for (const e of entries) e.render() }, REFRESH_MS)
  document.documentElement.dataset.ready = client ? 'true' : 'error'
}

start()
