// End-to-end self-test of the harness: Node webtorrent <-> Node webtorrent
// through the real bittorrent-tracker, all on loopback.
//
//   tests/netns.sh node --test tests/interop/harness.test.mjs
//
// Set INTEROP_BIG_MIB=N to change the size of the timed transfer (default 50).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import dgram from 'node:dgram'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { run, startTracker, startSeeder, download } from './harness.mjs'

const MiB = 1024 * 1024
let tmp
let tracker
const running = []

function randomFile (file, bytes) {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const fd = fs.openSync(file, 'w')
  const chunk = 4 * MiB
  for (let left = bytes; left > 0; left -= chunk) {
    fs.writeSync(fd, crypto.randomBytes(Math.min(chunk, left)))
  }
  fs.closeSync(fd)
  return file
}

function sha256 (file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
}

async function seeder (args) {
  const s = await startSeeder(args)
  running.push(s)
  return s
}

async function statsJson () {
  const res = await fetch(`http://127.0.0.1:${tracker.port}/stats.json`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type'), /application\/json/)
  return res.json()
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'interop-selftest-'))
  tracker = await startTracker()
  running.push(tracker)
})

after(async () => {
  await Promise.all(running.map(p => p.stop()))
  fs.rmSync(tmp, { recursive: true, force: true })
})

test('tracker serves /stats, /stats.json and UDP connect on one port', async () => {
  const { port } = tracker
  assert.ok(port > 0)
  assert.equal(tracker.ready.ws, `ws://127.0.0.1:${port}`)
  const html = await (await fetch(`http://127.0.0.1:${port}/stats`)).text()
  assert.match(html, /torrents/)
  const byAccept = await fetch(`http://127.0.0.1:${port}/stats`, { headers: { accept: 'application/json' } })
  assert.equal(typeof (await byAccept.json()).torrents, 'number')

  // BEP 15 connect request: protocol id, action 0, transaction id.
  const sock = dgram.createSocket('udp4')
  try {
    const req = Buffer.alloc(16)
    req.writeBigUInt64BE(0x41727101980n, 0)
    req.writeUInt32BE(0, 8)
    req.writeUInt32BE(0xdeadbeef, 12)
    const reply = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no UDP reply')), 5000)
      sock.once('message', msg => { clearTimeout(timer); resolve(msg) })
      sock.send(req, port, '127.0.0.1')
    })
    assert.equal(reply.length, 16)
    assert.equal(reply.readUInt32BE(0), 0)
    assert.equal(reply.readUInt32BE(4), 0xdeadbeef)
  } finally {
    sock.close()
  }
})

test('10 MiB single file: .torrent and magnet downloads match, tracker stats list it', async t => {
  const src = randomFile(path.join(tmp, 'src10', 'random10.bin'), 10 * MiB)
  const torrentFile = path.join(tmp, 'random10.torrent')
  const s = await seeder(['--file', src, '--announce', tracker.announceUrl, '--torrent-out', torrentFile])
  assert.equal(s.seeding.torrentFile, torrentFile)
  assert.ok(fs.existsSync(torrentFile))
  assert.match(s.seeding.infoHash, /^[0-9a-f]{40}$/)
  assert.match(s.seeding.magnetURI, /^magnet:\?xt=urn:btih:/)
  const want = sha256(src)

  for (const [how, idArgs] of [
    ['torrent', ['--torrent', torrentFile]],
    ['magnet', ['--magnet', s.seeding.magnetURI]]
  ]) {
    const out = path.join(tmp, `out10-${how}`)
    const t0 = Date.now()
    const { status, done, proc } = await download([...idArgs, '--out', out, '--timeout', '90',
      '--announce', tracker.announceUrl])
    assert.equal(status.code, 0, `download via ${how} failed: ${proc.stderr}`)
    assert.equal(done.infoHash, s.seeding.infoHash)
    assert.equal(done.files.length, 1)
    assert.equal(done.files[0].path, 'random10.bin')
    assert.equal(done.files[0].length, 10 * MiB)
    assert.equal(done.files[0].sha256, want)
    assert.equal(sha256(path.join(out, 'random10.bin')), want)
    // Progress lines come every --progress-interval ms; a fast download may finish before the
    // first one, so only their shape is checked when there are any.
    for (const e of proc.events.filter(e => e.event === 'progress')) {
      assert.ok((e.length === null || e.length === 10 * MiB) && e.progress >= 0 && e.progress <= 1)
    }
    t.diagnostic(`10 MiB via ${how}: ${done.elapsedMs} ms in client (${done.mbPerSec} MB/s after metadata), ${Date.now() - t0} ms whole process`)
  }

  await s.waitFor(e => e.event === 'wire', 5000)
  await s.waitFor(e => e.event === 'upload' && e.bytes >= 10 * MiB, 5000)

  const stats = await statsJson()
  assert.ok(stats.torrents >= 1, JSON.stringify(stats))
  assert.ok(stats.peersSeederOnly >= 1, JSON.stringify(stats))
  assert.ok(stats.clients.WebTorrent, JSON.stringify(stats))
  const announced = tracker.events.filter(e => e.event === 'announce' && e.infoHash === s.seeding.infoHash)
  assert.ok(announced.some(e => e.type === 'start' && e.left === 0))
})

test('multi-file directory (nested) via magnet', async () => {
  const dir = path.join(tmp, 'srcdir', 'album')
  const files = {
    'a.bin': 3 * MiB + 123,
    'b.bin': 1,
    'sub/c.bin': 2 * MiB,
    'sub/deeper/d.bin': 77777
  }
  for (const [rel, size] of Object.entries(files)) randomFile(path.join(dir, rel), size)
  const s = await seeder(['--file', dir, '--announce', tracker.announceUrl, '--piece-length', '32768'])
  assert.equal(s.seeding.name, 'album')
  assert.equal(s.seeding.pieceLength, 32768)
  assert.equal(s.seeding.files.length, 4)

  const out = path.join(tmp, 'outdir')
  const { status, done, proc } = await download(['--magnet', s.seeding.magnetURI, '--out', out, '--timeout', '90'])
  assert.equal(status.code, 0, proc.stderr)
  const got = Object.fromEntries(done.files.map(f => [f.path, f]))
  for (const [rel, size] of Object.entries(files)) {
    const f = got[`album/${rel}`]
    assert.ok(f, `missing album/${rel} in ${JSON.stringify(done.files)}`)
    assert.equal(f.length, size)
    assert.equal(f.sha256, sha256(path.join(dir, rel)))
    assert.equal(sha256(path.join(out, 'album', rel)), f.sha256)
  }
})

test('several --file paths are copied into one torrent named by --name', async () => {
  const a = randomFile(path.join(tmp, 'loose', 'one.bin'), 100000)
  const b = randomFile(path.join(tmp, 'loose2', 'two.bin'), 200000)
  const s = await seeder(['--file', a, '--file', b, '--name', 'pair', '--announce', tracker.announceUrl])
  assert.equal(s.seeding.name, 'pair')
  const out = path.join(tmp, 'outpair')
  const { status, done, proc } = await download(['--torrent', s.seeding.torrentFile, '--out', out, '--timeout', '60'])
  assert.equal(status.code, 0, proc.stderr)
  const byPath = Object.fromEntries(done.files.map(f => [f.path, f.sha256]))
  assert.equal(byPath['pair/one.bin'], sha256(a))
  assert.equal(byPath['pair/two.bin'], sha256(b))
})

test('no tracker: --peer connects directly (magnet without tr=)', async () => {
  const src = randomFile(path.join(tmp, 'direct', 'direct.bin'), 1 * MiB)
  const s = await seeder(['--file', src])
  assert.deepEqual(s.seeding.announce, [])
  assert.ok(!s.seeding.magnetURI.includes('tr='))
  const out = path.join(tmp, 'outdirect')
  const { status, done, proc } = await download(['--magnet', s.seeding.magnetURI, '--out', out,
    '--peer', `127.0.0.1:${s.seeding.port}`, '--timeout', '60'])
  assert.equal(status.code, 0, proc.stderr)
  assert.equal(done.files[0].sha256, sha256(src))
  assert.ok(proc.events.some(e => e.event === 'peer-added' && e.added))
})

test('timeout: exits 3 with a JSON error line', async () => {
  const magnet = 'magnet:?xt=urn:btih:' + crypto.randomBytes(20).toString('hex')
  const t0 = Date.now()
  const { status, proc } = await download(['--magnet', magnet, '--out', path.join(tmp, 'never'),
    '--announce', tracker.announceUrl, '--timeout', '2'])
  assert.equal(status.code, 3)
  const err = proc.events.find(e => e.event === 'error')
  assert.ok(err && err.timeout, JSON.stringify(proc.events))
  assert.ok(Date.now() - t0 < 15000)
})

test('bad arguments: exit 2 with a JSON error line', async () => {
  const { status, proc } = await download(['--out', path.join(tmp, 'x')])
  assert.equal(status.code, 2)
  assert.ok(proc.events.some(e => e.event === 'error'))
  const missing = run('seed.mjs', ['--file', path.join(tmp, 'does-not-exist')])
  assert.equal((await missing.exit).code, 2)
})

test('SIGTERM stops seeder and tracker cleanly (exit 0), stdin EOF too', async () => {
  const src = randomFile(path.join(tmp, 'term', 'term.bin'), 50000)
  const t = await startTracker(['--quiet'])
  const s = await startSeeder(['--file', src, '--announce', t.announceUrl])
  const t0 = Date.now()
  assert.deepEqual(await s.stop(), { code: 0, signal: null })
  assert.deepEqual(await t.stop(), { code: 0, signal: null })
  assert.ok(Date.now() - t0 < 12000) // each stop has a 5 s hard deadline
  const t2 = await startTracker(['--quiet'])
  t2.child.stdin.end()
  assert.deepEqual(await t2.exit, { code: 0, signal: null })
  assert.ok(t2.events.some(e => e.event === 'signal' && e.reason === 'stdin-closed'))
})

test('timed transfer, Node -> Node over TCP via the tracker', async t => {
  const mib = Number(process.env.INTEROP_BIG_MIB || 50)
  const src = randomFile(path.join(tmp, 'big', 'big.bin'), mib * MiB)
  const s = await seeder(['--file', src, '--announce', tracker.announceUrl])
  const out = path.join(tmp, 'outbig')
  const t0 = Date.now()
  const { status, done, proc } = await download(['--torrent', s.seeding.torrentFile, '--out', out, '--timeout', '300'])
  const wall = Date.now() - t0
  assert.equal(status.code, 0, proc.stderr)
  assert.equal(done.files[0].sha256, sha256(src))
  t.diagnostic(`${mib} MiB Node->Node: ${done.elapsedMs} ms in client (start to done), ` +
    `${done.transferMs} ms after metadata = ${done.mbPerSec} MB/s, ${wall} ms whole process; ` +
    `piece length ${s.seeding.pieceLength}`)
})
