#!/usr/bin/env node
// Runs the real npm `bittorrent-tracker` server (HTTP + WebSocket + UDP on one
// port, bound to loopback) for interop tests. See README.md.

import Server from 'bittorrent-tracker/server'
import {
  emit, log, fail, setScriptName, parseCommandLine, intOption, secondsOption,
  onTermination, installLifetimeGuards, installCrashHandlers, packageVersion,
  EXIT_USAGE
} from './common.mjs'

setScriptName('tracker')
installCrashHandlers()

const USAGE = `
usage: node tracker.mjs [options]

Starts a bittorrent-tracker ${packageVersion('bittorrent-tracker')} server. HTTP (/announce, /scrape),
WebSocket and UDP share one port. /stats (HTML) and /stats.json are served as
by the package's own CLI. Prints {"event":"ready","port":N,...} on stdout once
every socket listens, then one JSON line per announce.

  --port N            port for every protocol (default 0: pick a free one)
  --host ADDR         IPv4 address for HTTP/WebSocket and UDP (default 127.0.0.1)
  --udp6-host ADDR    IPv6 address for the second UDP socket (default ::1)
  --no-udp            no UDP tracker (neither IPv4 nor IPv6)
  --no-udp6           no IPv6 UDP socket (also skipped, with a warning,
                      when the address cannot be bound)
  --no-ws             no WebSocket tracker
  --no-http           no HTTP announce/scrape (HTTP still serves /stats
                      unless --no-stats, and upgrades if WebSocket is on)
  --no-stats          no /stats and /stats.json
  --interval MS       announce interval given to clients (default 600000)
  --quiet             do not print announce events
  --exit-with-stdin   stop when stdin reaches EOF (the driver went away)
  --lifetime SECONDS  stop after this long, whatever happens
  -h, --help          this text
`

const args = parseCommandLine({
  port: { type: 'string' },
  host: { type: 'string', default: '127.0.0.1' },
  'udp6-host': { type: 'string', default: '::1' },
  'no-udp': { type: 'boolean', default: false },
  'no-udp6': { type: 'boolean', default: false },
  'no-ws': { type: 'boolean', default: false },
  'no-http': { type: 'boolean', default: false },
  'no-stats': { type: 'boolean', default: false },
  interval: { type: 'string' },
  quiet: { type: 'boolean', default: false },
  'exit-with-stdin': { type: 'boolean', default: false },
  lifetime: { type: 'string' }
}, USAGE)

const requestedPort = intOption(args, 'port', { max: 65535 }) ?? 0
const interval = intOption(args, 'interval', { min: 1 })
const lifetimeSeconds = secondsOption(args, 'lifetime')
const useHttp = !args['no-http']
const useWs = !args['no-ws']
const useStats = !args['no-stats']
const useUdp = !args['no-udp']
let useUdp6 = useUdp && !args['no-udp6']

if (!useHttp && !useWs && !useStats && !useUdp) fail('every protocol is disabled', EXIT_USAGE)

let server = null
const openSockets = new Set()

function listenTcp (srv, port, host) {
  return new Promise((resolve, reject) => {
    const onError = err => { srv.off('listening', onListening); reject(err) }
    const onListening = () => { srv.off('error', onError); resolve(srv.address().port) }
    srv.once('error', onError)
    srv.once('listening', onListening)
    srv.listen(port, host)
  })
}

function bindUdp (sock, port, host) {
  return new Promise((resolve, reject) => {
    const onError = err => { sock.off('listening', onListening); reject(err) }
    const onListening = () => { sock.off('error', onError); resolve(sock.address().port) }
    sock.once('error', onError)
    sock.once('listening', onListening)
    sock.bind(port, host)
  })
}

function createServer () {
  const srv = new Server({
    http: useHttp,
    udp: useUdp,
    ws: useWs,
    stats: useStats,
    interval
  })
  // The server re-emits socket errors as 'error'; during start-up they are
  // handled by the promises above, so only log them here.
  srv.on('error', err => {
    if (srv.ready) emit({ event: 'error', message: err.message, fatal: false })
  })
  return srv
}

// Bind every socket ourselves, one after another, so that with --port 0 the
// HTTP socket picks a free port and UDP then takes the same number. (The
// server's own listen() binds all at once, so with port 0 each protocol
// would get a different port.)
async function startOnce (port) {
  const srv = createServer()
  server = srv
  // The server adds its default request handler on the next tick.
  await new Promise(resolve => process.nextTick(resolve))
  try {
    let actual = port
    if (srv.http) {
      srv.http.on('connection', sock => {
        openSockets.add(sock)
        sock.once('close', () => openSockets.delete(sock))
      })
      actual = await listenTcp(srv.http, actual, args.host)
    }
    if (srv.udp4) actual = await bindUdp(srv.udp4, actual, args.host)
    if (srv.udp6) {
      if (useUdp6) {
        try {
          await bindUdp(srv.udp6, actual, args['udp6-host'])
        } catch (err) {
          if (err.code === 'EADDRINUSE') throw err
          emit({ event: 'warning', message: `IPv6 UDP socket disabled: cannot bind [${args['udp6-host']}]:${actual}: ${err.message}` })
          useUdp6 = false
        }
      }
      if (!useUdp6) {
        try { srv.udp6.close() } catch {}
        srv.udp6 = null
      }
    }
    srv.ready = true
    return actual
  } catch (err) {
    await closeServer(srv)
    throw err
  }
}

function closeServer (srv) {
  return new Promise(resolve => {
    if (!srv) return resolve()
    for (const sock of openSockets) sock.destroy()
    openSockets.clear()
    try {
      srv.close(() => resolve())
    } catch {
      resolve()
    }
    if (srv.http && srv.http.closeAllConnections) srv.http.closeAllConnections()
  })
}

async function start () {
  // With --port 0 the UDP port matching the kernel-picked TCP port may be
  // taken: retry with a fresh pick a few times.
  const attempts = requestedPort === 0 ? 20 : 1
  for (let i = 1; ; i++) {
    try {
      return await startOnce(requestedPort)
    } catch (err) {
      if (err.code === 'EADDRINUSE' && i < attempts) continue
      if (err.code === 'EADDRINUSE') fail(`port ${requestedPort} is already in use (${err.message})`)
      fail(`cannot start tracker: ${err.message}`)
    }
  }
}

const stop = onTermination(() => closeServer(server))
installLifetimeGuards({ exitWithStdin: args['exit-with-stdin'], lifetimeSeconds }, stop)

const port = await start()
const host = args.host.includes(':') ? `[${args.host}]` : args.host

if (!args.quiet) {
  for (const type of ['start', 'update', 'complete', 'stop']) {
    server.on(type, (addr, params) => {
      emit({
        event: 'announce',
        type,
        infoHash: params && params.info_hash,
        addr,
        left: params && params.left,
        protocol: params && params.type
      })
    })
  }
}
server.on('warning', err => {
  if (!args.quiet) emit({ event: 'warning', message: err.message })
})

const ready = {
  event: 'ready',
  port,
  host: args.host,
  version: packageVersion('bittorrent-tracker')
}
if (useHttp) ready.http = `http://${host}:${port}/announce`
if (useUdp) ready.udp = `udp://${host}:${port}`
if (useUdp6) ready.udp6 = `udp://[${args['udp6-host']}]:${port}`
if (useWs) ready.ws = `ws://${host}:${port}`
if (useStats) ready.stats = `http://${host}:${port}/stats.json`
emit(ready)
log(`listening on ${host}:${port} (http=${useHttp} ws=${useWs} udp=${useUdp} udp6=${useUdp6} stats=${useStats})`)
