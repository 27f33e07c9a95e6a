// DEVELOPMENT AID ONLY: a stand-in for the wasm-bindgen package `www/pkg/webtorrent_wasm.js`
// with the same JavaScript API, implemented with the real webtorrent browser bundle
// (served by tests/browser/server.mjs at /wt/webtorrent.min.js). It lets the page and the
// Chromium harness be developed and checked before the wasm client exists:
//
//   WWW_PKG_DIR=tests/browser/shim tests/netns.sh node --test tests/browser/browser.test.mjs
//
// The tests run against the real www/pkg/ by default. Nothing here is shipped.
//
// The bundle's bittorrent-tracker client has no HTTP tracker in browsers; like the wasm client,
// this shim sends HTTP announces itself with fetch (mode no-cors: the tracker gets the request,
// the reply is not readable) so that HTTP trackers count the page as a peer.

import WT from '/wt/webtorrent.min.js'

export default async function init () {}

const QUIET = { dht: false, lsd: false, natUpnp: false, natPmp: false, webSeeds: false, utp: false }
const BROWSER_ANNOUNCE_PORT = 9

const isHttp = u => /^https?:/i.test(u)
const isWs = u => /^wss?:/i.test(u)
const message = e => (e && e.message) ? e.message : String(e)

function hexToBytes (hex) {
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16)
  return out
}
const percentBytes = bytes => Array.from(bytes, b => '%' + b.toString(16).padStart(2, '0')).join('')

function randomPeerIdHex () {
  const prefix = new TextEncoder().encode('-WS0001-')
  const id = new Uint8Array(20)
  id.set(prefix)
  crypto.getRandomValues(id.subarray(prefix.length))
  return Array.from(id, b => b.toString(16).padStart(2, '0')).join('')
}

function toSeedInput (input, name) {
  if (input instanceof Uint8Array) return new File([input], name || 'data')
  if (Array.isArray(input)) return input
  if (typeof FileList !== 'undefined' && input instanceof FileList) return Array.from(input)
  if (input instanceof Blob && !(input instanceof File)) return new File([input], name || 'data')
  return input
}

class ShimTorrent {
  constructor (client, wt, httpTrackers) {
    this._client = client
    this._t = wt
    this._http = httpTrackers
    this._handlers = new Map()
    this._stoppedHttp = false
    const fwd = (ev, map = x => x) => wt.on(ev, (...a) => this._emit(ev, ...a.map(map)))
    fwd('metadata')
    fwd('ready')
    fwd('done')
    fwd('download')
    fwd('upload')
    wt.on('wire', (wire, addr) => this._emit('wire', { peerId: wire.peerId, addr: addr || wire.remoteAddress || null }))
    wt.on('warning', e => this._emit('warning', message(e)))
    wt.on('error', e => { this._error = message(e); this._emit('error', this._error) })
    wt.on('ready', () => this._announceHttp('started'))
    wt.on('done', () => { if (this._announcedHttp) this._announceHttp('completed') })
  }

  _emit (ev, ...args) {
    for (const fn of this._handlers.get(ev) || []) {
      try { fn(...args) } catch (e) { console.error(`torrent '${ev}' handler threw`, e) }
    }
  }

  on (ev, fn) {
    if (!this._handlers.has(ev)) this._handlers.set(ev, [])
    this._handlers.get(ev).push(fn)
    return this
  }

  off (ev, fn) {
    const l = this._handlers.get(ev)
    if (l) this._handlers.set(ev, l.filter(f => f !== fn))
    return this
  }

  _announceHttp (event) {
    if (!this._http.length || !this._t.infoHash) return
    this._announcedHttp = true
    const left = this._t.length != null ? Math.max(0, this._t.length - this._t.downloaded) : 0
    for (const base of this._http) {
      const q = `info_hash=${percentBytes(hexToBytes(this._t.infoHash))}` +
        `&peer_id=${percentBytes(hexToBytes(this._client._peerIdHex))}` +
        `&port=${BROWSER_ANNOUNCE_PORT}&uploaded=${this._t.uploaded}&downloaded=${this._t.downloaded}` +
        `&left=${left}&compact=1&numwant=0&event=${event}`
      const url = base + (base.includes('?') ? '&' : '?') + q
      fetch(url, { mode: 'no-cors', cache: 'no-store' })
        .catch(e => this._emit('warning', `HTTP announce to ${base} failed: ${message(e)}`))
    }
  }

  get infoHash () { return this._t.infoHash }
  get magnetURI () {
    let m = this._t.magnetURI
    for (const u of this._http) m += '&tr=' + encodeURIComponent(u)
    return m
  }

  get torrentFile () { return this._t.torrentFile ? new Uint8Array(this._t.torrentFile) : undefined }
  get name () { return this._t.name }
  get length () { return this._t.length || 0 }
  get files () {
    return (this._t.files || []).map(f => ({
      name: f.name,
      path: f.path,
      length: f.length,
      blob: () => f.blob()
    }))
  }

  get progress () { return this._t.progress || 0 }
  get downloaded () { return this._t.downloaded || 0 }
  get uploaded () { return this._t.uploaded || 0 }
  get downloadSpeed () { return this._t.downloadSpeed || 0 }
  get uploadSpeed () { return this._t.uploadSpeed || 0 }
  get numPeers () { return this._t.numPeers || 0 }
  get done () { return !!this._t.done }
  get ready () { return !!this._t.ready }
  get error () { return this._error }

  destroy () {
    if (this._announcedHttp && !this._stoppedHttp) {
      this._stoppedHttp = true
      this._announceHttp('stopped')
    }
    this._client._forget(this)
    return new Promise(resolve => this._t.destroy(() => resolve()))
  }
}

export class WebTorrent {
  constructor (opts = {}) {
    this._announce = Array.from(opts.announce || [])
    this._peerIdHex = opts.peerId || randomPeerIdHex()
    const o = { ...QUIET, peerId: this._peerIdHex }
    if (opts.maxConns) o.maxConns = opts.maxConns
    this._c = new WT(o)
    this._list = []
    this._c.on('error', e => console.warn('[shim] client error:', message(e)))
  }

  get torrents () { return this._list.slice() }
  get peerId () { return this._peerIdHex }
  get (infoHash) { return this._list.find(t => t.infoHash === infoHash) }
  remove (infoHash) { const t = this.get(infoHash); if (t) t.destroy() }

  _lists (announce) {
    const all = [...new Set([...(announce || []), ...this._announce])]
    return { ws: all.filter(isWs), http: all.filter(isHttp) }
  }

  _forget (t) { this._list = this._list.filter(x => x !== t) }

  seed (input, opts = {}) {
    const { ws, http } = this._lists(opts.announce)
    const o = { announce: ws }
    if (opts.name) o.name = opts.name
    if (opts.pieceLength) o.pieceLength = opts.pieceLength
    return new Promise((resolve, reject) => {
      let wt
      const onErr = e => reject(new Error(message(e)))
      try {
        wt = this._c.seed(toSeedInput(input, opts.name), o)
      } catch (e) {
        return reject(e)
      }
      const t = new ShimTorrent(this, wt, http)
      wt.once('error', onErr)
      wt.once('ready', () => {
        wt.removeListener('error', onErr)
        this._list.push(t)
        resolve(t)
      })
    })
  }

  add (id, opts = {}) {
    const { ws, http } = this._lists(opts.announce)
    return new Promise((resolve, reject) => {
      let wt
      try {
        wt = this._c.add(id instanceof Uint8Array ? id : String(id), { announce: ws })
      } catch (e) {
        return reject(e)
      }
      const t = new ShimTorrent(this, wt, http)
      const onErr = e => reject(new Error(message(e)))
      wt.once('error', onErr)
      const ok = () => { wt.removeListener('error', onErr); this._list.push(t); resolve(t) }
      if (wt.infoHash) queueMicrotask(ok)
      else wt.once('infoHash', ok)
    })
  }

  destroy () {
    for (const t of this._list) t.destroy()
    this._list = []
    return new Promise(resolve => this._c.destroy(() => resolve()))
  }
}
