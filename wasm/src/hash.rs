//! Hashing the files a page seeds: SHA-1 of every piece, read from `File`s without holding
//! them in memory.
//!
//! Fastest first: dedicated workers (each reads regions of the file and hashes them with
//! `crypto.subtle` on its own thread), then byte streams on this thread, then blob slices.

use std::cell::{Cell, RefCell};

use futures::channel::mpsc;
use futures::stream::{FuturesOrdered, StreamExt};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::client::js_err;
use crate::store::Store;
use crate::util::{self, prop};

/// Hashing workers started at most. More than the cores: each spends much of its time waiting
/// for the browser's file reads, so four keep two cores busy.
const WORKERS: usize = 4;

/// Bytes a worker reads before hashing them (whole pieces; at least one)...
const WORKER_BATCH: u64 = 1024 * 1024;

/// ... with at most this many batches being hashed while it reads on.
const WORKER_PENDING: u32 = 2;

/// Bytes per region handed to a worker at a time (whole batches).
const WORKER_REGION: u64 = 32 * 1024 * 1024;

/// Below this many bytes, starting workers costs more than it saves.
const WORKER_MIN_BYTES: u64 = 32 * 1024 * 1024;

/// The workers' script. A message `{ id, blob, start, end, pieceLength, batch, pending }` asks
/// for the SHA-1 of each piece of `blob` bytes `[start, end)` (`start` on a piece boundary).
/// The worker streams them with a BYOB reader into one reused buffer of `batch` bytes (whole
/// pieces) and hashes each full buffer with `crypto.subtle.digest`, which copies its input, so
/// memory stays flat. The reply is `{ id, hashes }` (20 bytes per piece), `{ id, error }` when
/// the file cannot be read, or `{ id, unsupported }` when this browser's workers lack
/// `crypto.subtle` or byte streams.
const WORKER_JS: &str = r#"'use strict'
self.onmessage = async (e) => {
  const { id, blob, start, end, pieceLength, batch, pending: most } = e.data
  if (!self.crypto || !self.crypto.subtle) {
    self.postMessage({ id, unsupported: 'no crypto.subtle in workers' })
    return
  }
  let reader
  try {
    reader = blob.slice(start, end).stream().getReader({ mode: 'byob' })
  } catch (err) {
    self.postMessage({ id, unsupported: 'no byte streams in workers' })
    return
  }
  try {
    const want = end - start
    const hashes = new Uint8Array(Math.ceil(want / pieceLength) * 20)
    const pending = []
    let buf = new ArrayBuffer(Math.min(batch, want))
    let fill = 0
    let got = 0
    let piece = 0
    const hash = async (n) => {
      for (let o = 0; o < n; o += pieceLength) {
        const p = piece++
        const d = crypto.subtle.digest('SHA-1', new Uint8Array(buf, o, Math.min(pieceLength, n - o)))
          .then((h) => hashes.set(new Uint8Array(h), 20 * p))
        d.catch(() => {})
        pending.push(d)
      }
      while (pending.length > most * (batch / pieceLength)) await pending.shift()
    }
    for (;;) {
      const { value, done } = await reader.read(new Uint8Array(buf, fill, buf.byteLength - fill))
      if (value) {
        buf = value.buffer
        fill += value.byteLength
        got += value.byteLength
      }
      if (done) break
      if (got > want) throw new Error('the file is longer than when it was added')
      if (fill === buf.byteLength) {
        await hash(fill)
        fill = 0
      }
    }
    if (fill > 0) await hash(fill)
    await Promise.all(pending)
    if (got !== want) throw new Error('the file is shorter than when it was added')
    self.postMessage({ id, hashes }, [hashes.buffer])
  } catch (err) {
    self.postMessage({ id, error: String((err && err.message) || err) })
  }
}
"#;

/// On this thread, with byte streams: streams reading the files at once (each with one reused
/// piece buffer); two keep the browser's file reads and our hashing overlapped.
const HASH_LANES: usize = 2;

/// Bytes of the torrent each such stream covers (whole pieces; at least one).
const HASH_REGION: u64 = 64 * 1024 * 1024;

/// Digests started but unfinished per stream before it reads on.
const HASH_PENDING: usize = 2;

/// On this thread without byte streams (`Blob.stream()` with BYOB readers): blob slices read
/// at once...
const HASH_CONCURRENCY: usize = 3;

/// ... of this many bytes each (whole pieces; at least one).
const HASH_CHUNK: u64 = 8 * 1024 * 1024;

/// SHA-1 of every piece of the blobs (laid out at their offsets), in torrent order. Reads and
/// hashes in workers where the browser has them; else streams the files into a few reused
/// piece buffers where its blob streams are byte streams (memory stays flat, no garbage per
/// read); else reads them in slices.
pub(crate) async fn hash_blobs(
    blobs: &[(web_sys::Blob, u64, u64)],
    total: u64,
    piece_length: u32,
) -> Result<Vec<u8>, JsValue> {
    if piece_length == 0 {
        return Err(js_err("piece length must not be 0"));
    }
    if total >= WORKER_MIN_BYTES {
        match hash_workers(blobs, total, piece_length).await? {
            Some(pieces) => return Ok(pieces),
            None => util::debug("hashing on the page's thread: workers are not available"),
        }
    }
    if byte_streams(blobs) {
        hash_streams(blobs, total, piece_length).await
    } else {
        hash_slices(blobs, total, piece_length).await
    }
}

/// Whether the blobs can be read with BYOB readers (`Blob.stream()` is a byte stream).
fn byte_streams(blobs: &[(web_sys::Blob, u64, u64)]) -> bool {
    let Some((blob, _, _)) = blobs.first() else {
        return false;
    };
    let has_stream = js_sys::Reflect::get(blob, &"stream".into())
        .map(|f| f.is_function())
        .unwrap_or(false);
    if !has_stream {
        return false;
    }
    let Ok(empty) = blob.slice_with_f64_and_f64(0.0, 0.0) else {
        return false;
    };
    match web_sys::ReadableStreamByobReader::new(&empty.stream()) {
        Ok(r) => {
            let _ = r.cancel();
            true
        }
        Err(_) => false,
    }
}

/// [`hash_blobs`] with byte streams: [`HASH_LANES`] streams, each taking the next region of
/// [`HASH_REGION`] bytes and reading it piece by piece into its own piece buffer with a BYOB
/// reader; each full piece goes to `crypto.subtle.digest` (which copies it), so the buffer is
/// refilled at once. Memory: per stream one piece plus [`HASH_PENDING`] pieces being hashed.
async fn hash_streams(
    blobs: &[(web_sys::Blob, u64, u64)],
    total: u64,
    piece_length: u32,
) -> Result<Vec<u8>, JsValue> {
    let pl = piece_length as u64;
    let count = total.div_ceil(pl);
    let per_region = (HASH_REGION / pl).max(1);
    let regions = count.div_ceil(per_region);
    let next = Cell::new(0u64);
    let out = RefCell::new(vec![0u8; count as usize * 20]);
    let piece_len = |p: u64| (total - p * pl).min(pl) as u32;
    let store = |p: u64, h: Option<[u8; 20]>| -> Result<(), JsValue> {
        let h = h.ok_or_else(|| js_err("crypto.subtle.digest failed"))?;
        let at = p as usize * 20;
        out.borrow_mut()[at..at + 20].copy_from_slice(&h);
        Ok(())
    };
    let lane = || async {
        let mut buf = js_sys::ArrayBuffer::new(piece_length);
        let mut pending: std::collections::VecDeque<(u64, util::Sha1Pending)> =
            std::collections::VecDeque::new();
        loop {
            let region = next.get();
            if region >= regions {
                break;
            }
            next.set(region + 1);
            let mut piece = region * per_region;
            let start = piece * pl;
            let end = (start + per_region * pl).min(total);
            let mut fill = 0u32;
            for (blob, off, blen) in blobs {
                if off + blen <= start || *off >= end || *blen == 0 {
                    continue;
                }
                let s = start.max(*off) - off;
                let e = end.min(off + blen) - off;
                let part = blob.slice_with_f64_and_f64(s as f64, e as f64)?;
                let reader = web_sys::ReadableStreamByobReader::new(&part.stream())?;
                let mut got = 0u64;
                while got < e - s {
                    let want = piece_len(piece) - fill;
                    let view = Uint8Array::new_with_byte_offset_and_length(&buf, fill, want);
                    let res = JsFuture::from(reader.read_with_array_buffer_view(&view))
                        .await
                        .map_err(|e| {
                            js_err(format!("reading the file: {}", util::js_error_message(&e)))
                        })?;
                    // The buffer was transferred to the stream and comes back in `value`.
                    let mut n = 0;
                    if let Some(v) =
                        prop(&res, "value").and_then(|v| v.dyn_into::<Uint8Array>().ok())
                    {
                        buf = v.buffer();
                        n = v.length();
                    }
                    if prop(&res, "done").and_then(|d| d.as_bool()).unwrap_or(true) {
                        break;
                    }
                    got += n as u64;
                    fill += n;
                    if got > e - s || fill > piece_len(piece) {
                        return Err(js_err("reading the file: more bytes than asked for"));
                    }
                    if fill == piece_len(piece) {
                        let data = Uint8Array::new_with_byte_offset_and_length(&buf, 0, fill);
                        pending.push_back((piece, util::sha1_start(&data)));
                        piece += 1;
                        fill = 0;
                        while pending.len() > HASH_PENDING {
                            if let Some((p, h)) = pending.pop_front() {
                                store(p, h.finish().await)?;
                            }
                        }
                    }
                }
                // Every byte asked for arrived: let the stream go without waiting for its end.
                let _ = reader.cancel();
                if got != e - s {
                    return Err(js_err(
                        "reading the file: it is shorter than when it was added",
                    ));
                }
            }
            if fill != 0 {
                return Err(js_err("reading the file: a piece ended early"));
            }
        }
        while let Some((p, h)) = pending.pop_front() {
            store(p, h.finish().await)?;
        }
        Ok::<(), JsValue>(())
    };
    futures::future::try_join_all((0..HASH_LANES).map(|_| lane())).await?;
    Ok(out.into_inner())
}

/// [`hash_blobs`] without byte streams: several pieces per `Blob.slice` read (fewer, larger
/// reads), the pieces of a read hashed concurrently with `crypto.subtle`, a bounded number of
/// reads in flight.
async fn hash_slices(
    blobs: &[(web_sys::Blob, u64, u64)],
    total: u64,
    piece_length: u32,
) -> Result<Vec<u8>, JsValue> {
    let pl = piece_length as u64;
    let count = total.div_ceil(pl);
    let per_chunk = (HASH_CHUNK / pl).max(1);
    let chunks = count.div_ceil(per_chunk);
    let mut out = Vec::with_capacity(count as usize * 20);
    let mut inflight = FuturesOrdered::new();
    let mut next = 0u64;
    loop {
        while next < chunks && inflight.len() < HASH_CONCURRENCY {
            let start = next * per_chunk * pl;
            let len = (total - start).min(per_chunk * pl);
            let blobs = blobs.to_vec();
            inflight.push_back(async move {
                let data = Store::read_js(&blobs, start, len).await?;
                let mut digests = Vec::new();
                let mut at = 0u32;
                while (at as u64) < len {
                    let end = (at as u64 + pl).min(len) as u32;
                    digests.push(util::sha1_owned(data.subarray(at, end)));
                    at = end;
                }
                let hashes = futures::future::join_all(digests).await;
                Ok::<_, crate::store::StoreError>(hashes)
            });
            next += 1;
        }
        match inflight.next().await {
            Some(Ok(hs)) => {
                for h in hs {
                    out.extend_from_slice(&h);
                }
            }
            Some(Err(e)) => return Err(js_err(format!("reading the file: {e}"))),
            None => break,
        }
    }
    Ok(out)
}

/// What a hashing worker reported.
enum WorkerEvent {
    /// A message from the script.
    Message(JsValue),
    /// The worker failed (its script did not load, or it crashed).
    Failed(String),
}

/// A worker's `onmessage` and `onerror` handlers, kept alive as long as the worker.
type WorkerHandlers = (
    Closure<dyn FnMut(web_sys::MessageEvent)>,
    Closure<dyn FnMut(web_sys::Event)>,
);

/// Dedicated workers running [`WORKER_JS`]: terminated, with their script URL revoked, when
/// dropped (also when the seeding is abandoned halfway).
struct WorkerPool {
    workers: Vec<web_sys::Worker>,
    url: String,
    events: mpsc::UnboundedReceiver<(usize, WorkerEvent)>,
    _handlers: Vec<WorkerHandlers>,
}

impl WorkerPool {
    /// Starts `n` workers, or `None` where the browser has no workers or refuses them (a
    /// content security policy without `blob:` workers, or no `Worker` in this scope).
    fn start(n: usize) -> Option<WorkerPool> {
        let has_worker = Reflect::has(&util::global(), &"Worker".into()).unwrap_or(false);
        if !has_worker {
            return None;
        }
        let bag = web_sys::BlobPropertyBag::new();
        bag.set_type("text/javascript");
        let script =
            web_sys::Blob::new_with_str_sequence_and_options(&Array::of1(&WORKER_JS.into()), &bag)
                .ok()?;
        let url = web_sys::Url::create_object_url_with_blob(&script).ok()?;
        let (tx, events) = mpsc::unbounded();
        let mut pool = WorkerPool {
            workers: Vec::new(),
            url,
            events,
            _handlers: Vec::new(),
        };
        for i in 0..n {
            let worker = web_sys::Worker::new(&pool.url).ok()?;
            let t = tx.clone();
            let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                move |e: web_sys::MessageEvent| {
                    let _ = t.unbounded_send((i, WorkerEvent::Message(e.data())));
                },
            );
            let t = tx.clone();
            let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
                let msg = util::worker_error(&e);
                let _ = t.unbounded_send((i, WorkerEvent::Failed(msg)));
            });
            worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            worker.set_onmessageerror(Some(on_error.as_ref().unchecked_ref()));
            pool.workers.push(worker);
            pool._handlers.push((on_message, on_error));
        }
        Some(pool)
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        for w in &self.workers {
            w.set_onmessage(None);
            w.set_onerror(None);
            w.set_onmessageerror(None);
            w.terminate();
        }
        let _ = web_sys::Url::revoke_object_url(&self.url);
    }
}

/// [`hash_blobs`] in [`WORKERS`] dedicated workers, each given the next region of the files
/// (one blob made of them all, which copies nothing) as it finishes the last. `Ok(None)` when
/// workers cannot be used here (the caller hashes on this thread instead); an error when the
/// files cannot be read.
async fn hash_workers(
    blobs: &[(web_sys::Blob, u64, u64)],
    total: u64,
    piece_length: u32,
) -> Result<Option<Vec<u8>>, JsValue> {
    let pl = piece_length as u64;
    let count = total.div_ceil(pl);
    let batch = (WORKER_BATCH / pl).max(1) * pl;
    let region = (WORKER_REGION / batch).max(1) * batch;
    let regions = total.div_ceil(region);
    let blob = match blobs {
        [(blob, 0, len)] if *len == total => blob.clone(),
        _ => {
            let parts: Array = blobs.iter().map(|(b, _, _)| JsValue::from(b)).collect();
            web_sys::Blob::new_with_blob_sequence(&parts)?
        }
    };
    if blob.size() as u64 != total {
        return Err(js_err(
            "reading the file: its size changed since it was added",
        ));
    }
    let Some(mut pool) = WorkerPool::start(WORKERS.min(regions as usize)) else {
        return Ok(None);
    };
    let ask = |worker: &web_sys::Worker, id: u64| -> Result<(), JsValue> {
        let start = id * region;
        let msg = Object::new();
        Reflect::set(&msg, &"id".into(), &(id as f64).into())?;
        Reflect::set(&msg, &"blob".into(), &blob)?;
        Reflect::set(&msg, &"start".into(), &(start as f64).into())?;
        Reflect::set(
            &msg,
            &"end".into(),
            &((start + region).min(total) as f64).into(),
        )?;
        Reflect::set(&msg, &"pieceLength".into(), &piece_length.into())?;
        Reflect::set(&msg, &"batch".into(), &(batch as f64).into())?;
        Reflect::set(&msg, &"pending".into(), &WORKER_PENDING.into())?;
        worker.post_message(&msg)
    };
    let mut next = 0u64;
    for w in &pool.workers {
        ask(w, next)?;
        next += 1;
    }
    let per_region = region / pl;
    let mut out = vec![0u8; count as usize * 20];
    let mut finished = vec![false; regions as usize];
    let mut done = 0u64;
    while done < regions {
        let Some((i, event)) = pool.events.next().await else {
            return Ok(None);
        };
        let data = match event {
            WorkerEvent::Failed(msg) => {
                util::debug(&format!("hashing worker failed: {msg}"));
                return Ok(None);
            }
            WorkerEvent::Message(data) => data,
        };
        if let Some(why) = prop(&data, "unsupported").and_then(|v| v.as_string()) {
            util::debug(&format!("hashing workers: {why}"));
            return Ok(None);
        }
        if let Some(err) = prop(&data, "error") {
            let msg = err.as_string().unwrap_or_default();
            return Err(js_err(format!("reading the file: {msg}")));
        }
        let id = prop(&data, "id").and_then(|v| v.as_f64()).unwrap_or(-1.0);
        let hashes = prop(&data, "hashes").and_then(|v| v.dyn_into::<Uint8Array>().ok());
        let (Some(hashes), true) = (hashes, id >= 0.0 && id < regions as f64) else {
            return Err(js_err("hashing worker: malformed reply"));
        };
        if std::mem::replace(&mut finished[id as usize], true) {
            return Err(js_err("hashing worker: a region was hashed twice"));
        }
        let first = id as u64 * per_region;
        let pieces = per_region.min(count - first);
        if hashes.length() as u64 != pieces * 20 {
            return Err(js_err("hashing worker: wrong number of hashes"));
        }
        let at = first as usize * 20;
        hashes.copy_to(&mut out[at..at + pieces as usize * 20]);
        done += 1;
        if next < regions {
            if let Some(w) = pool.workers.get(i) {
                ask(w, next)?;
                next += 1;
            }
        }
    }
    Ok(Some(out))
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use wasm_bindgen_test::*;

    wasm_bindgen_test_configure!(run_in_browser);

    /// Pseudo-random bytes (xorshift), so pieces differ.
    fn data(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn blob(bytes: &[u8]) -> web_sys::Blob {
        let parts = Array::of1(&Uint8Array::from(bytes));
        web_sys::Blob::new_with_u8_array_sequence(&parts).unwrap()
    }

    /// The SHA-1 of each piece of `bytes`, by the core's hasher.
    fn expected(bytes: &[u8], piece_length: usize) -> Vec<u8> {
        bytes
            .chunks(piece_length)
            .flat_map(webtorrent_core::piece::sha1)
            .collect()
    }

    #[wasm_bindgen_test]
    async fn workers_streams_and_slices_give_the_pieces_hashes() {
        // Three files whose boundaries fall inside pieces, the last piece short, more than one
        // region per worker.
        let pl = 256 * 1024;
        let sizes = [40 * 1024 * 1024 + 5, 3 * 1024 * 1024 + 77_777, 33];
        let files: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| data(*n, i as u32 + 7))
            .collect();
        let all: Vec<u8> = files.concat();
        let total = all.len() as u64;
        let mut blobs = Vec::new();
        let mut off = 0u64;
        for f in &files {
            blobs.push((blob(f), off, f.len() as u64));
            off += f.len() as u64;
        }
        let want = expected(&all, pl);
        let by_workers = hash_workers(&blobs, total, pl as u32)
            .await
            .unwrap()
            .expect("workers are available in Chromium");
        assert_eq!(by_workers, want, "workers");
        assert!(byte_streams(&blobs));
        assert_eq!(
            hash_streams(&blobs, total, pl as u32).await.unwrap(),
            want,
            "streams"
        );
        assert_eq!(
            hash_slices(&blobs, total, pl as u32).await.unwrap(),
            want,
            "slices"
        );
        // One file on its own, a piece length above the worker's batch.
        let single = [(blob(&files[0]), 0, files[0].len() as u64)];
        let pl = 2 * 1024 * 1024;
        let got = hash_workers(&single, files[0].len() as u64, pl as u32)
            .await
            .unwrap()
            .expect("workers");
        assert_eq!(got, expected(&files[0], pl));
    }

    #[wasm_bindgen_test]
    async fn workers_report_a_blob_shorter_than_its_stated_size() {
        let bytes = data(40 * 1024 * 1024, 3);
        // The layout claims one byte more than the blob holds.
        let blobs = [(blob(&bytes), 0, bytes.len() as u64 + 1)];
        let err = hash_workers(&blobs, bytes.len() as u64 + 1, 256 * 1024)
            .await
            .unwrap_err();
        let msg = crate::util::js_error_message(&err);
        assert!(msg.contains("size changed"), "{msg}");
    }
}
