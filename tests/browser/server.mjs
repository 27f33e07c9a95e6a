#!/usr/bin/env node
// A small static server for the browser tests and for trying the page by hand.
//
//   /                 www/ (index.html, app.js, style.css)
//   /pkg/...          www/pkg/ (the wasm-bindgen output), or $WWW_PKG_DIR
//                     (e.g. tests/browser/shim: the dev-only shim on top of the
//                     real webtorrent browser bundle)
//   /wt.html, /wt-page.js
//                     a test page driving the real webtorrent browser bundle
//                     (tests/browser/pages/)
//   /wt/...           webtorrent/dist/ from tests/interop/node_modules
//
// Binds 127.0.0.1 only; port 0 (the default) picks a free port.
//
//   node tests/browser/server.mjs [--port N] [--pkg DIR]
//
// prints {"event":"ready","url":"http://127.0.0.1:PORT/","pkgDir":...} and serves until
// SIGTERM/SIGINT or stdin EOF with --exit-with-stdin.

import http from 'node:http'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

export const HERE = path.dirname(fileURLToPath(import.meta.url))
export const ROOT = path.resolve(HERE, '..', '..')
export const WWW_DIR = path.join(ROOT, 'www')
export const SHIM_DIR = path.join(HERE, 'shim')
export const PAGES_DIR = path.join(HERE, 'pages')
export const WT_DIST_DIR = path.join(ROOT, 'tests', 'interop', 'node_modules', 'webtorrent', 'dist')

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8'
}

/** The directory `/pkg/` is served from: $WWW_PKG_DIR, else www/pkg. */
export function defaultPkgDir () {
  const env = process.env.WWW_PKG_DIR
  return env ? path.resolve(env) : path.join(WWW_DIR, 'pkg')
}

/** Resolve `rel` inside `dir`, refusing anything that escapes it. */
function inside (dir, rel) {
  const p = path.resolve(dir, '.' + path.posix.normalize('/' + rel))
  return p === dir || p.startsWith(dir + path.sep) ? p : null
}

/** A path prefix the whole site is also served under. */
export const PREFIX = '/under/a/prefix/'

function route (pathname, pkgDir) {
  // The page again under a folder, as a reverse proxy might serve it.
  if (pathname.startsWith(PREFIX)) return route(pathname.slice(PREFIX.length - 1), pkgDir)
  if (pathname === '/') return path.join(WWW_DIR, 'index.html')
  if (pathname.startsWith('/pkg/')) return inside(pkgDir, pathname.slice('/pkg/'.length))
  if (pathname.startsWith('/wt/')) return inside(WT_DIST_DIR, pathname.slice('/wt/'.length))
  if (pathname === '/wt.html' || pathname === '/wt-page.js') return path.join(PAGES_DIR, pathname.slice(1))
  if (pathname.startsWith('/pkg') || pathname.startsWith('/wt')) return null
  return inside(WWW_DIR, pathname.slice(1))
}

/**
 * Start the server. Resolves with { url, port, pkgDir, close(), requests }, where
 * `requests` lists `METHOD path status` strings (for failure messages).
 */
export function startServer ({ port = 0, pkgDir = defaultPkgDir(), crossOriginIsolated = false } = {}) {
  pkgDir = path.resolve(pkgDir)
  const requests = []
  const server = http.createServer((req, res) => {
    let pathname
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname)
    } catch {
      pathname = null
    }
    const file = pathname && route(pathname, pkgDir)
    const finish = status => {
      requests.push(`${req.method} ${req.url} ${status}`)
      if (requests.length > 500) requests.shift()
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return finish(405)
    }
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
      return finish(404)
    }
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) {
        const msg = pathname.startsWith('/pkg/')
          ? `not found: ${file}\n(build the wasm package into www/pkg, or set WWW_PKG_DIR)\n`
          : `not found: ${pathname}\n`
        res.writeHead(404, { 'content-type': 'text/plain' }).end(msg)
        return finish(404)
      }
      const headers = {
        'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
        'content-length': st.size,
        'cache-control': 'no-store'
      }
      if (crossOriginIsolated) {
        // For performance.measureUserAgentSpecificMemory() (bench only): it needs a
        // cross-origin isolated page. Cross-origin no-cors fetches (HTTP tracker announces)
        // are blocked then, so the tests do not use it.
        headers['cross-origin-opener-policy'] = 'same-origin'
        headers['cross-origin-embedder-policy'] = 'require-corp'
        headers['cross-origin-resource-policy'] = 'same-origin'
      }
      res.writeHead(200, headers)
      finish(200)
      if (req.method === 'HEAD') return res.end()
      fs.createReadStream(file).pipe(res)
    })
  })
  const sockets = new Set()
  server.on('connection', s => { sockets.add(s); s.once('close', () => sockets.delete(s)) })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      const actual = server.address().port
      resolve({
        url: `http://127.0.0.1:${actual}/`,
        port: actual,
        pkgDir,
        requests,
        close: () => new Promise(resolve => {
          for (const s of sockets) s.destroy()
          server.close(() => resolve())
        })
      })
    })
  })
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      pkg: { type: 'string' },
      shim: { type: 'boolean', default: false },
      'exit-with-stdin': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' }
    }
  })
  if (values.help) {
    process.stdout.write('usage: node tests/browser/server.mjs [--port N] [--pkg DIR | --shim] [--exit-with-stdin]\n')
    process.exit(0)
  }
  const pkgDir = values.shim ? SHIM_DIR : (values.pkg ? path.resolve(values.pkg) : defaultPkgDir())
  const srv = await startServer({ port: Number(values.port), pkgDir })
  process.stdout.write(JSON.stringify({ event: 'ready', url: srv.url, port: srv.port, pkgDir }) + '\n')
  process.stderr.write(`[server] ${srv.url} (/pkg/ from ${pkgDir})\n`)
  const stop = () => srv.close().then(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  if (values['exit-with-stdin']) {
    process.stdin.on('end', stop)
    process.stdin.resume()
  }
}
