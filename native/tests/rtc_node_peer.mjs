// A WebRTC echo peer on the real npm stack (`@roamhq/wrtc`, libwebrtc), driven by
// native/tests/rtc.rs to check that our SDP and data channels interoperate with it.
//
//   node rtc_node_peer.mjs answer   stdin: {"sdp": OFFER}   stdout: {"type":"answer","sdp":...}
//   node rtc_node_peer.mjs offer    stdout: {"type":"offer","sdp":...}   stdin: {"sdp": ANSWER}
//
// One JSON object per line. Non-trickle: the SDP printed carries every candidate. Every
// message received on the data channel is sent back unchanged, paced on `bufferedAmount`.
// Progress goes to stderr as JSON lines ({"event": ...}); the script exits when the channel
// closes, when stdin ends before a description arrives, or after TIMEOUT_S seconds.

import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import readline from 'node:readline'

const require = createRequire(new URL('../../tests/interop/package.json', import.meta.url))
const wrtc = require('@roamhq/wrtc')

const mode = process.argv[2]
if (mode !== 'answer' && mode !== 'offer') {
  console.error('usage: rtc_node_peer.mjs answer|offer')
  process.exit(2)
}
const TIMEOUT_S = Number(process.env.TIMEOUT_S || 120)
const HIGH = 4 * 1024 * 1024
const LOW = 1024 * 1024

const log = (event, extra = {}) => process.stderr.write(JSON.stringify({ event, ...extra }) + '\n')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
let status = () => ({})
const timer = setTimeout(() => { log('timeout', status()); process.exit(3) }, TIMEOUT_S * 1000)

const lines = readline.createInterface({ input: process.stdin })
const nextLine = () => new Promise((resolve) => {
  lines.once('line', resolve)
  lines.once('close', () => resolve(null))
})

const pc = new wrtc.RTCPeerConnection({ iceServers: [] })
pc.onconnectionstatechange = () => log('connection', { state: pc.connectionState })

function gathered () {
  if (pc.iceGatheringState === 'complete') return Promise.resolve()
  return new Promise((resolve) => {
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve()
    })
  })
}

function echo (dc) {
  dc.binaryType = 'arraybuffer'
  dc.bufferedAmountLowThreshold = LOW
  const queue = []
  let received = 0
  const pump = () => {
    while (queue.length > 0 && dc.readyState === 'open' && dc.bufferedAmount < HIGH) {
      dc.send(queue.shift())
    }
  }
  dc.onbufferedamountlow = pump
  // @roamhq/wrtc does not always fire bufferedamountlow: poll as well.
  const poll = setInterval(pump, 5)
  status = () => ({ received, queued: queue.length, bufferedAmount: dc.bufferedAmount, readyState: dc.readyState })
  dc.onopen = () => log('open', { label: dc.label })
  dc.onmessage = (e) => {
    if (received === 0) log('first-message', { bytes: e.data.byteLength })
    received += e.data.byteLength
    queue.push(e.data)
    pump()
  }
  dc.onclose = () => {
    clearInterval(poll)
    log('closed', { received })
    clearTimeout(timer)
    pc.close()
    setTimeout(() => process.exit(0), 100)
  }
}

async function main () {
  if (mode === 'answer') {
    pc.ondatachannel = (e) => echo(e.channel)
    const line = await nextLine()
    if (line === null) { log('no-offer'); process.exit(4) }
    await pc.setRemoteDescription({ type: 'offer', sdp: JSON.parse(line).sdp })
    await pc.setLocalDescription(await pc.createAnswer())
    await gathered()
    out({ type: 'answer', sdp: pc.localDescription.sdp })
  } else {
    // Like simple-peer: a random hex label, ordered and reliable.
    echo(pc.createDataChannel(randomBytes(20).toString('hex')))
    await pc.setLocalDescription(await pc.createOffer())
    await gathered()
    out({ type: 'offer', sdp: pc.localDescription.sdp })
    const line = await nextLine()
    if (line === null) { log('no-answer'); process.exit(4) }
    await pc.setRemoteDescription({ type: 'answer', sdp: JSON.parse(line).sdp })
  }
}

main().catch((err) => { log('error', { message: String(err) }); process.exit(1) })
