#!/usr/bin/env node
// Downloads a torrent with the real npm `webtorrent` client (Node, TCP only)
// for interop tests, writing the files to disk. See README.md. Run it inside
// tests/netns.sh.

import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import WebTorrent from 'webtorrent'
import {
  emit, log, fail, setScriptName, parseCommandLine, intOption, secondsOption,
  onTermination, installLifetimeGuards, installCrashHandlers, packageVersion,
  requireLoopbackOnlyNetwork, signalExitCode, EXIT_USAGE, EXIT_TIMEOUT
} from './common.mjs'
import { clientOptions, describeTorrent, toPosix, watchWires, waitListening } from './wt-common.mjs'

setScriptName('download')
installCrashHandlers()

const USAGE = `
usage: node download.mjs (--torrent FILE | --magnet URI) --out DIR [options]

Downloads with webtorrent ${packageVersion('webtorrent')} (TCP only; no DHT, LSD, NAT traversal, uTP or
web seeds) into DIR. Prints {"event":"metadata",...}, {"event":"wire",...} and
periodic {"event":"progress",...} lines, then on completion
{"event":"done","files":[{"path":...,"length":N,"sha256":...,"diskPath":...}],...}
and exits 0. On timeout prints {"event":"error",...} and exits 3; on any other
error exits 1.

  --torrent FILE        a .torrent file
  --magnet URI          a magnet link (metadata is fetched from peers)
  --out DIR             where the files are written (created if missing)
  --announce URL        extra tracker URL, repeatable (added to the torrent's
                        own; the public default list is never used)
  --peer HOST:PORT      connect to this peer directly, repeatable
                        (IPv6: [::1]:PORT)
  --timeout SECONDS     give up after this long (default 120)
  --port N              TCP port to listen on (default 0: a free one)
  --progress-interval MS  how often to print progress (default 1000)
  --seed-after          keep running and seeding after the download is done
                        (until SIGTERM/SIGINT, exit 0; --timeout then only
                        covers the download)
  --exit-with-stdin     stop when stdin reaches EOF (the driver went away)
  --no-webrtc           skip ws:// and wss:// trackers (no WebRTC), as desktop
                        clients such as qBittorrent or Transmission do
  -h, --help            this text
`

const args = parseCommandLine({
  torrent: { type: 'string' },
  magnet: { type: 'string' },
  out: { type: 'string' },
  announce: { type: 'string', multiple: true },
  peer: { type: 'string', multiple: true },
  timeout: { type: 'string', default: '120' },
  port: { type: 'string' },
  'progress-interval': { type: 'string' },
  'seed-after': { type: 'boolean', default: false },
  'exit-with-stdin': { type: 'boolean', default: false },
  'no-webrtc': { type: 'boolean', default: false }
}, USAGE)

if (!!args.torrent === !!args.magnet) fail('give exactly one of --torrent FILE and --magnet URI', EXIT_USAGE)
if (!args.out) fail('--out DIR is required', EXIT_USAGE)
if (args.magnet && !args.magnet.startsWith('magnet:')) fail(`--magnet must be a magnet: URI, got ${JSON.stringify(args.magnet)}`, EXIT_USAGE)
const peers = args.peer || []
for (const p of peers) {
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):\d{1,5}$/.test(p)) fail(`--peer must be HOST:PORT or [IPv6]:PORT, got ${JSON.stringify(p)}`, EXIT_USAGE)
}
const timeoutSeconds = secondsOption(args, 'timeout')
const torrentPort = intOption(args, 'port', { max: 65535 })
const progressInterval = intOption(args, 'progress-interval', { min: 10 }) ?? 1000
const announce = args.announce || []
const outDir = path.resolve(args.out)

let torrentId
if (args.torrent) {
  try {
    torrentId = fs.readFileSync(args.torrent)
  } catch (err) {
    fail(`cannot read --torrent ${args.torrent}: ${err.message}`, EXIT_USAGE)
  }
} else {
  torrentId = args.magnet
}
try {
  fs.mkdirSync(outDir, { recursive: true })
} catch (err) {
  fail(`cannot create --out ${outDir}: ${err.message}`)
}

requireLoopbackOnlyNetwork()

const started = Date.now()
let metadataAt = null
let finished = false

const client = new WebTorrent(clientOptions({ torrentPort, webrtc: !args['no-webrtc'] }))
client.on('error', err => fail(`webtorrent client error: ${err.message || err}`))

const stop = onTermination(
  () => new Promise(resolve => client.destroy(() => resolve())),
  { exitCode: signal => (finished ? 0 : signalExitCode(signal)) }
)
installLifetimeGuards({ exitWithStdin: args['exit-with-stdin'] }, stop)

let torrent
try {
  torrent = client.add(torrentId, { path: outDir, announce })
} catch (err) {
  fail(`cannot add torrent: ${err.message}`)
}

function progressRecord () {
  return {
    downloaded: torrent.downloaded,
    verified: torrent.ready ? Math.round(torrent.progress * torrent.length) : 0,
    length: torrent.ready ? torrent.length : null,
    progress: torrent.ready ? Number(torrent.progress.toFixed(4)) : 0,
    speed: Math.round(torrent.downloadSpeed),
    numPeers: torrent.numPeers,
    elapsedMs: Date.now() - started
  }
}

const timeoutTimer = setTimeout(() => {
  if (finished) return
  const phase = torrent.ready ? 'download' : (torrent.infoHash ? 'metadata' : 'start')
  emit({ event: 'error', message: `timeout after ${timeoutSeconds} s (waiting for ${phase})`, code: EXIT_TIMEOUT, timeout: true, ...progressRecord() })
  log(`timeout after ${timeoutSeconds} s (waiting for ${phase})`)
  process.exit(EXIT_TIMEOUT)
}, timeoutSeconds * 1000)

torrent.on('error', err => fail(`torrent error: ${err.message || err}`))
torrent.on('warning', err => emit({ event: 'warning', message: String(err.message || err) }))
watchWires(torrent)

function addPeers () {
  for (const p of peers) {
    const added = torrent.addPeer(p)
    emit({ event: 'peer-added', addr: p, added: !!added })
  }
}
torrent.once('infoHash', () => {
  emit({ event: 'infoHash', infoHash: torrent.infoHash })
  addPeers()
})

torrent.once('metadata', () => {
  metadataAt = Date.now()
  emit({ event: 'metadata', ...describeTorrent(torrent), elapsedMs: metadataAt - started })
})

const progressTimer = setInterval(() => {
  if (!finished) emit({ event: 'progress', ...progressRecord() })
}, progressInterval)

async function sha256File (file) {
  const hash = crypto.createHash('sha256')
  await pipeline(fs.createReadStream(file), hash)
  return hash.digest('hex')
}

torrent.once('done', async () => {
  const doneAt = Date.now()
  clearInterval(progressTimer)
  try {
    const files = []
    for (const f of torrent.files) {
      const diskPath = path.join(outDir, f.path)
      const st = fs.statSync(diskPath)
      if (st.size !== f.length) throw new Error(`${diskPath}: ${st.size} bytes on disk, expected ${f.length}`)
      files.push({ path: toPosix(f.path), length: f.length, sha256: await sha256File(diskPath), diskPath })
    }
    finished = true
    clearTimeout(timeoutTimer)
    const elapsedMs = doneAt - started
    const transferMs = doneAt - (metadataAt ?? started)
    emit({
      event: 'done',
      infoHash: torrent.infoHash,
      name: torrent.name,
      length: torrent.length,
      files,
      elapsedMs,
      transferMs,
      mbPerSec: Number((torrent.length / 1e6 / Math.max(transferMs, 1) * 1000).toFixed(2)),
      version: packageVersion('webtorrent')
    })
    log(`done: ${torrent.length} bytes in ${elapsedMs} ms`)
  } catch (err) {
    fail(`download finished but checking the files failed: ${err.message}`)
  }
  if (args['seed-after']) {
    await waitListening(client)
    emit({ event: 'seeding', infoHash: torrent.infoHash, port: client.torrentPort })
    return
  }
  client.destroy(err => {
    if (err) log(`error while closing the client: ${err.message || err}`)
    process.exit(0)
  })
  setTimeout(() => process.exit(0), 5000).unref()
})
