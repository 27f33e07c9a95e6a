// The npm package (wasm/pkg/webtorrent-wasm-*.tgz, made by wasm/build.sh): it installs with
// `npm install ./webtorrent-wasm-x.y.z.tgz`, imports in Node 20 and through a bundler
// (webpack 5), and in both places makes the same torrent as an independent implementation
// (npm create-torrent) for the same bytes. Run inside the loopback-only namespace:
//
//   tests/netns.sh node --test tests/browser/package.test.mjs

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { requireLoopbackOnly, launchChromium, ROOT } from './lib.mjs'

requireLoopbackOnly()

const INTEROP = path.join(ROOT, 'tests', 'interop')
const PIECE = 32768
const NAME = 'package-check.bin'

function bytes (len, seed) {
  const out = Buffer.alloc(len)
  let x = (seed * 2654435761 + 1) >>> 0
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

/** The info hash npm create-torrent gives the same file. */
async function referenceInfoHash (data) {
  const { default: createTorrent } = await import(path.join(INTEROP, 'node_modules', 'create-torrent', 'index.js'))
  const { default: parseTorrent } = await import(path.join(INTEROP, 'node_modules', 'parse-torrent', 'index.js'))
  const buf = await new Promise((resolve, reject) => {
    const b = Buffer.from(data)
    b.name = NAME
    createTorrent(b, { name: NAME, pieceLength: PIECE, announceList: [], createdBy: 'x', creationDate: 1 },
      (err, t) => err ? reject(err) : resolve(t))
  })
  return (await parseTorrent(buf)).infoHash
}

const DATA = bytes(300_000, 5)
let dir, tgz, expected

before(async () => {
  const pkgDir = path.join(ROOT, 'wasm', 'pkg')
  const found = fs.existsSync(pkgDir) && fs.readdirSync(pkgDir).find(f => /^webtorrent-wasm-.*\.tgz$/.test(f))
  assert.ok(found, 'wasm/pkg/webtorrent-wasm-*.tgz is missing: run bash wasm/build.sh first')
  tgz = path.join(pkgDir, found)
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-wasm-pkg-'))
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', tgz], { cwd: dir, stdio: 'pipe' })
  expected = await referenceInfoHash(DATA)
})

after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }) })

test('the tarball installs and imports in Node; seeding bytes matches create-torrent', () => {
  const script = `
    import { WebTorrent } from 'webtorrent-wasm'
    const data = (await import('node:fs')).readFileSync(process.argv[2])
    const client = new WebTorrent({ announce: [] })
    const t = await client.seed(new Uint8Array(data), { name: ${JSON.stringify(NAME)}, pieceLength: ${PIECE} })
    console.log(JSON.stringify({ infoHash: t.infoHash, length: t.length, done: t.done, magnet: t.magnetURI }))
    client.destroy()
    process.exit(0)
  `
  fs.writeFileSync(path.join(dir, 'node-check.mjs'), script)
  fs.writeFileSync(path.join(dir, 'data.bin'), DATA)
  const out = execFileSync(process.execPath, ['node-check.mjs', 'data.bin'], { cwd: dir, timeout: 60_000 }).toString()
  const r = JSON.parse(out.trim().split('\n').pop())
  assert.equal(r.infoHash, expected)
  assert.equal(r.length, DATA.length)
  assert.equal(r.done, true)
  assert.ok(r.magnet.startsWith(`magnet:?xt=urn:btih:${expected}`), r.magnet)
  // The TypeScript types ship with it.
  const dts = fs.readFileSync(path.join(dir, 'node_modules', 'webtorrent-wasm', 'webtorrent_wasm.d.ts'), 'utf8')
  assert.match(dts, /class WebTorrent/)
  assert.match(dts, /seed\(/)
})

test('the package bundles with webpack 5 and runs in Chromium', { timeout: 180_000 }, async () => {
  fs.writeFileSync(path.join(dir, 'entry.js'), `
    import { WebTorrent } from 'webtorrent-wasm'
    window.seedBytes = async (b64) => {
      const data = Uint8Array.from(atob(b64), c => c.charCodeAt(0))
      const client = new WebTorrent({ announce: [] })
      const t = await client.seed(new File([data], ${JSON.stringify(NAME)}), { pieceLength: ${PIECE} })
      const r = { infoHash: t.infoHash, name: t.name, length: t.length }
      client.destroy()
      return r
    }
    document.documentElement.dataset.ready = 'true'
  `)
  fs.writeFileSync(path.join(dir, 'webpack.config.cjs'), `
    module.exports = {
      mode: 'production',
      entry: './entry.js',
      output: { path: require('path').join(__dirname, 'dist'), filename: 'bundle.js' },
      experiments: { asyncWebAssembly: true },
      performance: { hints: false }
    }
  `)
  const webpack = path.join(INTEROP, 'node_modules', '.bin', 'webpack')
  execFileSync(webpack, ['--config', 'webpack.config.cjs'], { cwd: dir, stdio: 'pipe', timeout: 120_000 })
  const dist = path.join(dir, 'dist')
  fs.writeFileSync(path.join(dist, 'index.html'), '<!doctype html><script src="bundle.js"></script>')
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' }
  const server = http.createServer((req, res) => {
    const f = path.join(dist, path.normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^\/+/, '') || 'index.html')
    if (!f.startsWith(dist) || !fs.existsSync(f) || fs.statSync(f).isDirectory()) {
      const idx = path.join(dist, 'index.html')
      if (req.url === '/') { res.writeHead(200, { 'content-type': 'text/html' }); return res.end(fs.readFileSync(idx)) }
      res.writeHead(404); return res.end()
    }
    res.writeHead(200, { 'content-type': types[path.extname(f)] || 'application/octet-stream' })
    res.end(fs.readFileSync(f))
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const browser = await launchChromium()
  try {
    const page = await browser.newPage()
    const logs = []
    page.on('console', m => logs.push(m.text()))
    page.on('pageerror', e => logs.push(String(e)))
    await page.goto(`http://127.0.0.1:${server.address().port}/`)
    await page.waitForFunction(() => typeof window.seedBytes === 'function', null, { timeout: 30_000 })
      .catch(e => { throw new Error(`bundle did not load: ${e.message}\n${logs.join('\n')}`) })
    const r = await page.evaluate(b64 => window.seedBytes(b64), DATA.toString('base64'))
    assert.equal(r.infoHash, expected)
    assert.equal(r.name, NAME)
    assert.equal(r.length, DATA.length)
  } finally {
    await browser.close()
    server.close()
  }
})
