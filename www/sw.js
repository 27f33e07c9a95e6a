// The page's service worker: media elements on the page play files while they download.
// It answers GET webtorrent/<info hash>/<file index> (with or without a Range header) by
// asking the page that holds the torrent for those bytes over a MessageChannel; the page
// reads them with file.stream({ start, end }), which waits for the pieces and has them
// fetched first. Every other request goes to the network as usual.

const PATH = /\/webtorrent\/([0-9a-f]{40})\/(\d+)$/
// How long a page may take to say whether it holds the torrent.
const ASK_MS = 5000

self.addEventListener('install', () => self.skipWaiting())
self.addEventListener('activate', event => event.waitUntil(self.clients.claim()))

self.addEventListener('fetch', event => {
  if (event.request.method !== 'GET') return
  const m = new URL(event.request.url).pathname.match(PATH)
  if (!m) return
  event.respondWith(serve(event, m[1], Number(m[2])))
})

async function serve (event, infoHash, index) {
  const range = event.request.headers.get('range')
  const all = await self.clients.matchAll({ type: 'window' })
  const own = event.clientId ? await self.clients.get(event.clientId) : null
  const order = own ? [own, ...all.filter(c => c.id !== own.id)] : all
  for (const client of order) {
    const response = await ask(client, infoHash, index, range)
    if (response) return response
  }
  return new Response('No open page holds this torrent: open it on the page first.\n', {
    status: 404,
    headers: { 'Content-Type': 'text/plain; charset=utf-8' }
  })
}

// Asks one page; resolves to null when it does not hold the torrent.
function ask (client, infoHash, index, range) {
  return new Promise(resolve => {
    const { port1, port2 } = new MessageChannel()
    let controller = null
    let waiting = null
    const timer = setTimeout(() => { port1.close(); resolve(null) }, ASK_MS)
    const wake = () => { if (waiting) { const w = waiting; waiting = null; w() } }
    port1.onmessage = ({ data }) => {
      if (data.missing) {
        clearTimeout(timer)
        port1.close()
        resolve(null)
      } else if (data.head) {
        clearTimeout(timer)
        const { status, headers, text } = data.head
        if (text !== undefined) {
          port1.close()
          resolve(new Response(text, { status, headers }))
          return
        }
        const body = new ReadableStream({
          start (c) { controller = c },
          // One chunk at a time: the page reads the next only when asked.
          pull () {
            return new Promise(resolve => {
              waiting = resolve
              port1.postMessage({ pull: true })
            })
          },
          cancel () {
            port1.postMessage({ cancel: true })
            port1.close()
          }
        })
        resolve(new Response(body, { status, headers }))
      } else if (data.chunk) {
        controller.enqueue(new Uint8Array(data.chunk))
        wake()
      } else if (data.done) {
        controller.close()
        port1.close()
        wake()
      } else if (data.error) {
        controller.error(new Error(data.error))
        port1.close()
        wake()
      }
    }
    client.postMessage({ type: 'webtorrent-stream', infoHash, index, range }, [port2])
  })
}
