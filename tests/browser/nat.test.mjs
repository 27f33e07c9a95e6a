// WebRTC through NAT: our page in a home network behind a router (tests/nat.sh) whose
// firewall lets UDP out only to a TURN server's port reaches `webtorrent serve` outside
// through Debian's coturn, and downloads a file serve seeds. serve is given the TURN server
// (--turn, --turn-username, --turn-credential) and a STUN server (--stun), and hands them to
// its page in /bridge.json; with no direct UDP path, only the relay can carry the data.
//
//   tests/netns.sh node --test tests/browser/nat.test.mjs
//
// Needs root (named network namespaces), nftables, coturn (turnserver), chromium, and our
// CLI (WEBTORRENT_BIN, default target/debug/webtorrent). The file is checked by SHA-256;
// coturn's log must count at least the file's bytes relayed, and the router's firewall must
// have dropped the page's direct UDP attempts.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import path from 'node:path'
import { loadPlaywright, CHROMIUM_ARGS, HERE, ROOT, waitDoneOnOurPage, checkSameFiles } from './lib.mjs'
import { MIB, runScenario, requireWebtorrentBin, startServe, spawnLogged } from './bridge-lib.mjs'

const NAME = `wtturn${process.pid}`
const CLIENT_NS = `${NAME}-client`
const ROUTER_NS = `${NAME}-router`
const NAT_SH = path.join(ROOT, 'tests', 'nat.sh')
const OUTSIDE = '11.0.0.1'
const ROUTER_WAN = '11.0.0.2'
const TURN_PORT = 3478
// serve's port, fixed so that Chromium can treat the page as the secure context it is when
// served over https in production (crypto.subtle, which the test's hashing uses, needs one).
const SERVE_PORT = 8089
const TEST_MIB = Number(process.env.NAT_TEST_MIB || 4)
const log = m => process.stderr.write(`[nat] ${new Date().toISOString().slice(11, 23)} ${m}\n`)

let browser

function problem () {
  if (process.getuid && process.getuid() !== 0) return 'needs root (named network namespaces)'
  if (spawnSync('ip', ['route', 'get', '1.1.1.1']).status === 0) return 'refusing to run with a route off this host: use tests/netns.sh'
  for (const tool of ['turnserver', 'nft']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is missing: apt-get install coturn nftables`
  }
  return null
}

before(async () => {
  const p = problem()
  if (p) throw new Error(p)
  requireWebtorrentBin()
  execFileSync(NAT_SH, ['up', NAME, '--udp-only-to', String(TURN_PORT)])
  process.env.WT_NETNS = CLIENT_NS
  const { chromium } = loadPlaywright()
  browser = await chromium.launch({
    executablePath: path.join(HERE, 'chromium-in-netns.sh'),
    headless: true,
    args: [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=http://${OUTSIDE}:${SERVE_PORT}`],
    timeout: 60_000
  })
}, { timeout: 90_000 })

after(async () => {
  if (browser) await browser.close().catch(() => {})
  spawnSync(NAT_SH, ['down', NAME])
})

/** Packets the router dropped: UDP from the home network to anything but the TURN port. */
function udpDrops () {
  const out = execFileSync('ip', ['netns', 'exec', ROUTER_NS, 'nft', 'list', 'chain', 'inet', 'filter', 'forward'], { encoding: 'utf8' })
  const m = out.match(/udp dport != \d+ counter packets (\d+)/)
  return m ? Number(m[1]) : NaN
}

test('our page behind a NAT that lets UDP out only to TURN downloads from serve through coturn', { timeout: 240_000 }, async () => {
  await runScenario(browser, 'page behind NAT through TURN', async s => {
    const turn = s.own(spawnLogged('coturn', 'turnserver', [
      '-n', '--listening-ip', OUTSIDE, '--relay-ip', OUTSIDE, '--listening-port', String(TURN_PORT),
      '--min-port', '49152', '--max-port', '49400', '--lt-cred-mech', '--user', 'wt:s3cret',
      '--realm', 'webtorrent.test', '--no-tls', '--no-dtls', '--no-cli', '--log-file', 'stdout',
      '--simple-log', '--verbose', '--pidfile', s.tmp('coturn') + '/pid'
    ]))
    await s.step('coturn listens', () => turn.waitLine(l => /listener opened on|Total (General|auth) servers/i.test(l), 15_000, 'coturn ready'), 20_000)
    const set = s.files([{ name: 'through-turn.bin', size: TEST_MIB * MIB + 7 }])
    const file = set.files[0]
    const srv = s.own(await startServe({
      port: SERVE_PORT,
      extra: [file.path, '--host', OUTSIDE, '--stun', `${OUTSIDE}:${TURN_PORT}`,
        '--turn', `${OUTSIDE}:${TURN_PORT}?transport=udp`, '--turn-username', 'wt', '--turn-credential', 's3cret']
    }))
    const { line: magnet } = await s.step('serve seeds the file', () => srv.waitLine(l => l.startsWith('magnet:'), 60_000, 'the magnet'), 65_000)
    const info = await (await fetch(`${srv.url}bridge.json`)).json()
    assert.deepEqual(info.iceServers, [
      { urls: [`stun:${OUTSIDE}:${TURN_PORT}`] },
      { urls: [`turn:${OUTSIDE}:${TURN_PORT}?transport=udp`], username: 'wt', credential: 's3cret' }
    ], 'serve hands its STUN and TURN servers to the page')
    const dropsBefore = udpDrops()
    // coturn logs, per allocation and interval, the bytes it received from the peer it relays
    // for ("peer usage: ... rb=N"): they must add up to at least the file.
    let relayedBytes = 0
    const relayed = turn.waitLine(l => {
      const m = l.match(/peer usage: .*\brb=(\d+)/)
      if (m) relayedBytes += Number(m[1])
      return relayedBytes >= file.size
    }, 150_000, `coturn relaying ${file.size} bytes`)
    relayed.catch(() => {})
    const b = await s.openPage('B-behind-NAT', `${srv.url}#${magnet}`)
    const saved = await s.step('the page downloads it (through the relay)', () => waitDoneOnOurPage(b, 120_000), 125_000)
    await s.step('same bytes as serve\'s', () => checkSameFiles(saved, [file]))
    await s.step('coturn relayed the file\'s bytes', () => relayed, 20_000)
    const drops = udpDrops() - dropsBefore
    assert.ok(drops > 0, 'the router dropped no direct UDP: the test would not show that the relay was needed')
    log(`page behind NAT got ${TEST_MIB} MiB through coturn (${relayedBytes} bytes relayed); the router dropped ${drops} direct UDP packets`)
  }, 'wt-nat')
})
