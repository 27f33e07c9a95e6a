// Helpers shared by seed.mjs and download.mjs (the webtorrent client side).

import { emit } from './common.mjs'

/**
 * Options for a deterministic, loopback-only, TCP-only webtorrent client:
 * no DHT, no local service discovery, no UPnP/NAT-PMP, no web seeds, no uTP.
 * Torrents must always be given `announce: [...]` as well, or create-torrent
 * fills in its list of public trackers.
 */
export function clientOptions ({ torrentPort, webrtc = true } = {}) {
  const opts = {
    dht: false,
    lsd: false,
    natUpnp: false,
    natPmp: false,
    webSeeds: false,
    utp: false
  }
  if (torrentPort) opts.torrentPort = torrentPort
  // A desktop client: WebSocket (WebRTC) trackers are skipped, as qBittorrent or Transmission do.
  if (!webrtc) opts.tracker = { wrtc: false }
  return opts
}

/** Resolve once the client's TCP server listens (client.torrentPort is set). */
export function waitListening (client) {
  if (client.listening) return Promise.resolve()
  return new Promise(resolve => client.once('listening', resolve))
}

export function describeTorrent (torrent) {
  return {
    infoHash: torrent.infoHash,
    magnetURI: torrent.magnetURI,
    name: torrent.name,
    length: torrent.length,
    pieceLength: torrent.pieceLength,
    numPieces: torrent.pieces ? torrent.pieces.length : undefined,
    files: torrent.files.map(f => ({ path: toPosix(f.path), length: f.length }))
  }
}

/** Torrent file paths use the platform separator; report them with '/'. */
export function toPosix (p) {
  return p.split('\\').join('/')
}

/** "::ffff:127.0.0.1:6881" -> "127.0.0.1:6881" (IPv4-mapped IPv6). */
export function normalizeAddr (addr) {
  return typeof addr === 'string' ? addr.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+:\d+)$/i, '$1') : addr
}

/** Print a JSON line for every peer wire that opens and closes. */
export function watchWires (torrent) {
  torrent.on('wire', (wire, rawAddr) => {
    const addr = normalizeAddr(rawAddr)
    emit({ event: 'wire', addr, type: wire.type, peerId: wire.peerId || null })
    wire.once('close', () => {
      emit({
        event: 'wire-closed',
        addr,
        uploaded: wire.uploaded,
        downloaded: wire.downloaded
      })
    })
  })
}
