// Test page for the real webtorrent browser bundle (served by tests/browser/server.mjs at
// /wt.html). The tests drive it through `window.wt`:
//
//   await wt.ready                       the module loaded
//   await wt.seedInput({ announce, name, pieceLength })
//       seeds the files put into #files (Playwright setInputFiles)
//       -> { infoHash, magnetURI, name, length, ms }
//   await wt.download(magnetURI, { announce })
//       -> { infoHash, name, length, ms, files: [{ path, name, length, sha256 }] }
//   wt.status()                          one line per torrent, for failure messages
//
// The client is deterministic and loopback-friendly (no DHT, LSD, NAT traversal, web seeds).

import WebTorrent from '/wt/webtorrent.min.js'

const log = (...a) => {
  const line = a.map(x => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ')
  document.getElementById('log').textContent += line + '\n'
  console.log('[wt]', line)
}

const client = new WebTorrent({ dht: false, lsd: false, natUpnp: false, natPmp: false, webSeeds: false, utp: false })
client.on('error', e => log('client error:', e.message || String(e)))

const hex = buf => Array.from(new Uint8Array(buf), b => b.toString(16).padStart(2, '0')).join('')

async function sha256 (blobOrBuffer) {
  const buf = blobOrBuffer instanceof Blob ? await blobOrBuffer.arrayBuffer() : blobOrBuffer
  return hex(await crypto.subtle.digest('SHA-256', buf))
}

function watch (torrent) {
  torrent.on('warning', e => log('warning', torrent.infoHash, e.message || String(e)))
  torrent.on('error', e => log('error', torrent.infoHash, e.message || String(e)))
  torrent.on('wire', (w, addr) => log('wire', torrent.infoHash, addr || ''))
}

function seedInput ({ announce = [], name, pieceLength } = {}) {
  const files = Array.from(document.getElementById('files').files)
  if (files.length === 0) throw new Error('no files in #files')
  const t0 = performance.now()
  const opts = { announce }
  if (name) opts.name = name
  if (pieceLength) opts.pieceLength = pieceLength
  return new Promise((resolve, reject) => {
    const torrent = client.seed(files.length === 1 ? files[0] : files, opts)
    watch(torrent)
    torrent.once('error', e => reject(new Error(e.message || String(e))))
    torrent.once('ready', () => {
      log('seeding', torrent.infoHash, torrent.magnetURI)
      resolve({
        infoHash: torrent.infoHash,
        magnetURI: torrent.magnetURI,
        name: torrent.name,
        length: torrent.length,
        ms: performance.now() - t0
      })
    })
  })
}

function download (magnetURI, { announce = [] } = {}) {
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const torrent = client.add(magnetURI, { announce })
    watch(torrent)
    torrent.once('error', e => reject(new Error(e.message || String(e))))
    torrent.once('done', async () => {
      const ms = performance.now() - t0
      try {
        const files = []
        for (const f of torrent.files) {
          files.push({ path: f.path, name: f.name, length: f.length, sha256: await sha256(await f.arrayBuffer()) })
        }
        log('done', torrent.infoHash, ms)
        resolve({ infoHash: torrent.infoHash, name: torrent.name, length: torrent.length, ms, files })
      } catch (e) {
        reject(e)
      }
    })
  })
}

function status () {
  return client.torrents.map(t =>
    `${t.infoHash} ${t.name || '?'} progress=${(t.progress * 100).toFixed(1)}% peers=${t.numPeers} ` +
    `down=${t.downloaded} up=${t.uploaded} ready=${t.ready} done=${t.done}`)
}

window.wt = { ready: Promise.resolve(true), client, seedInput, download, status, sha256, version: WebTorrent.VERSION }
document.documentElement.dataset.ready = 'true'
