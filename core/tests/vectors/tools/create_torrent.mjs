// Driver for the npm `create-torrent` package (the library webtorrent uses).
// generate.py copies this file next to the scratch node_modules and runs:
//   node create_torrent.mjs jobs.json result.json
// jobs.json: {
//   "torrents": [ { "id", "input" (file or directory path), "out",
//                   "pieceLength" (number or null = automatic),
//                   "private" (true | false | null = do not pass the option) } ],
//   "piece_length_sizes": [ numbers ],
//   "announce", "comment", "createdBy", "creationDate" (unix seconds)
// }
// result.json: { "versions": {...}, "torrents": {id: {"ok": true} | {"error"}},
//                "piece_length_table": [ {size, piece_length_fn, create_torrent} ] }
import fs from 'node:fs'
import createTorrent from 'create-torrent'
import calcPieceLength from 'piece-length'

const [jobsPath, resultPath] = process.argv.slice(2)
const jobs = JSON.parse(fs.readFileSync(jobsPath, 'utf8'))

function create (job) {
  const opts = {
    announce: [jobs.announce],
    comment: jobs.comment,
    createdBy: jobs.createdBy,
    // create-torrent always writes "creation date"; it cannot be omitted, so pin it.
    creationDate: new Date(jobs.creationDate * 1000)
  }
  if (job.pieceLength != null) opts.pieceLength = job.pieceLength
  // Passing private:false makes create-torrent write `private: 0` into info,
  // which changes the info hash; null means "leave the option out".
  if (job.private !== null && job.private !== undefined) opts.private = job.private
  return new Promise((resolve, reject) => {
    createTorrent(job.input, opts, (err, buf) => (err ? reject(err) : resolve(buf)))
  })
}

const result = { versions: {}, torrents: {}, piece_length_table: [] }
const here = new URL('.', import.meta.url).pathname
for (const pkg of ['create-torrent', 'piece-length', 'bencode', 'uint8-util']) {
  // read package.json from disk: some of these packages do not export it
  const pj = JSON.parse(fs.readFileSync(`${here}node_modules/${pkg}/package.json`, 'utf8'))
  result.versions[pkg] = pj.version
}
result.versions.node = process.version

for (const job of jobs.torrents) {
  try {
    const buf = await create(job)
    fs.writeFileSync(job.out, buf)
    result.torrents[job.id] = { ok: true }
  } catch (err) {
    result.torrents[job.id] = { error: String(err && err.message ? err.message : err) }
  }
}

// Automatic piece length: create-torrent computes
//   Math.min(calcPieceLength(totalLength), opts.maxPieceLength || 4 MiB)
// (see onFiles() / _parseInput() in create-torrent/index.js). We call the
// `piece-length` function directly and apply the same cap.
const MAX_PIECE_LENGTH = 4 * 1024 * 1024
for (const size of jobs.piece_length_sizes) {
  const raw = calcPieceLength(size)
  result.piece_length_table.push({
    size,
    piece_length_fn: raw,
    create_torrent: Math.min(raw, MAX_PIECE_LENGTH)
  })
}

fs.writeFileSync(resultPath, JSON.stringify(result, null, 2))
