#!/usr/bin/env node
// Seeds files with the real npm `webtorrent` client (Node, TCP only) for
// interop tests. See README.md. Run it inside tests/netns.sh.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import WebTorrent from 'webtorrent'
import {
  emit, log, fail, setScriptName, parseCommandLine, intOption, secondsOption,
  onTermination, installLifetimeGuards, installCrashHandlers, packageVersion,
  requireLoopbackOnlyNetwork, EXIT_USAGE
} from './common.mjs'
import { clientOptions, describeTorrent, watchWires, waitListening } from './wt-common.mjs'

setScriptName('seed')
installCrashHandlers()

const USAGE = `
usage: node seed.mjs --file PATH [--file PATH ...] [options]

Seeds with webtorrent ${packageVersion('webtorrent')} (TCP only; no DHT, LSD, NAT traversal, uTP or
web seeds). Prints {"event":"seeding","infoHash":...,"magnetURI":...,
"torrentFile":...,"port":N,...} once the torrent is ready and the client
listens, then {"event":"wire",...} per peer connection and {"event":"upload",
"bytes":N,...} while uploading. Stops on SIGTERM/SIGINT (exit 0).

  --file PATH          a file or a directory; repeat for several. One path is
                       seeded in place; several are copied into a temporary
                       store first (give --name then)
  --announce URL       tracker URL, repeatable (default: none - the torrent
                       then has no trackers; never the public default list)
  --torrent-out FILE   write the .torrent here (default: a temporary file,
                       removed on exit)
  --piece-length N     piece length in bytes (a power of two, >= 1024;
                       default: create-torrent's choice from the size)
  --name NAME          torrent name (default: the file or directory name)
  --comment TEXT       torrent comment
  --private            set the private flag
  --keep-hidden        include hidden and junk files (create-torrent drops
                       them by default)
  --port N             TCP port to listen on (default 0: a free one)
  --report-interval MS how often to print upload progress (default 1000)
  --exit-with-stdin    stop when stdin reaches EOF (the driver went away)
  --lifetime SECONDS   stop after this long, whatever happens
  -h, --help           this text
`

const args = parseCommandLine({
  file: { type: 'string', multiple: true },
  announce: { type: 'string', multiple: true },
  'torrent-out': { type: 'string' },
  'piece-length': { type: 'string' },
  name: { type: 'string' },
  comment: { type: 'string' },
  private: { type: 'boolean', default: false },
  'keep-hidden': { type: 'boolean', default: false },
  port: { type: 'string' },
  'report-interval': { type: 'string' },
  'exit-with-stdin': { type: 'boolean', default: false },
  lifetime: { type: 'string' }
}, USAGE)

const files = (args.file || []).map(f => path.resolve(f))
if (files.length === 0) fail('at least one --file is required', EXIT_USAGE)
for (const f of files) {
  try {
    fs.statSync(f)
  } catch (err) {
    fail(`--file ${f}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`, EXIT_USAGE)
  }
}
// Refuse directories without a single file up front: create-torrent's own
// error for them is a cryptic "Invalid torrent identifier".
function hasFile (dir) {
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    if (ent.isFile()) return true
    if (ent.isDirectory() && hasFile(path.join(dir, ent.name))) return true
  }
  return false
}
for (const f of files) {
  if (fs.statSync(f).isDirectory() && !hasFile(f)) fail(`--file ${f}: the directory contains no files`, EXIT_USAGE)
}
const pieceLength = intOption(args, 'piece-length', { min: 1024 })
if (pieceLength !== undefined && (pieceLength & (pieceLength - 1)) !== 0) {
  fail(`--piece-length must be a power of two, got ${pieceLength}`, EXIT_USAGE)
}
const torrentPort = intOption(args, 'port', { max: 65535 })
const reportInterval = intOption(args, 'report-interval', { min: 10 }) ?? 1000
const lifetimeSeconds = secondsOption(args, 'lifetime')
const announce = args.announce || []

requireLoopbackOnlyNetwork()

// Temporary files and directories, removed on exit.
const tempPaths = []
process.on('exit', () => {
  for (const p of tempPaths) {
    try { fs.rmSync(p, { recursive: true, force: true }) } catch {}
  }
})

const client = new WebTorrent(clientOptions({ torrentPort }))
client.on('error', err => fail(`webtorrent client error: ${err.message || err}`))

const stop = onTermination(() => new Promise(resolve => client.destroy(() => resolve())))
installLifetimeGuards({ exitWithStdin: args['exit-with-stdin'], lifetimeSeconds }, stop)

const seedOpts = { announce }
if (pieceLength !== undefined) seedOpts.pieceLength = pieceLength
if (args.name !== undefined) seedOpts.name = args.name
if (args.comment !== undefined) seedOpts.comment = args.comment
if (args.private) seedOpts.private = true
if (args['keep-hidden']) seedOpts.filterJunkFiles = false

// webtorrent seeds a single filesystem path in place (its store points at the
// path's parent directory). That only works when the torrent name equals the
// path's base name; otherwise, and for several paths, let webtorrent copy the
// data into a private temporary store.
let input
if (files.length === 1 && (args.name === undefined || args.name === path.basename(files[0]))) {
  input = files[0]
} else {
  input = files
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'interop-seed-store-'))
  tempPaths.push(store)
  seedOpts.path = store
}

const started = Date.now()
const torrent = client.seed(input, seedOpts)
torrent.on('error', err => fail(`torrent error: ${err.message || err}`))
torrent.on('warning', err => emit({ event: 'warning', message: String(err.message || err) }))
watchWires(torrent)

torrent.on('seed', async () => {
  await waitListening(client)
  let torrentFile = args['torrent-out'] && path.resolve(args['torrent-out'])
  if (!torrentFile) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interop-seed-'))
    tempPaths.push(dir)
    torrentFile = path.join(dir, `${torrent.infoHash}.torrent`)
  }
  try {
    fs.mkdirSync(path.dirname(torrentFile), { recursive: true })
    fs.writeFileSync(torrentFile, torrent.torrentFile)
  } catch (err) {
    fail(`cannot write ${torrentFile}: ${err.message}`)
  }
  emit({
    event: 'seeding',
    ...describeTorrent(torrent),
    torrentFile,
    port: client.torrentPort,
    announce: torrent.announce,
    elapsedMs: Date.now() - started,
    version: packageVersion('webtorrent')
  })
  log(`seeding ${torrent.infoHash} (${torrent.name}, ${torrent.length} bytes) on port ${client.torrentPort}`)

  let lastUploaded = -1
  setInterval(() => {
    if (torrent.uploaded === lastUploaded) return
    lastUploaded = torrent.uploaded
    emit({
      event: 'upload',
      bytes: torrent.uploaded,
      speed: Math.round(torrent.uploadSpeed),
      numPeers: torrent.numPeers
    })
  }, reportInterval)
})
