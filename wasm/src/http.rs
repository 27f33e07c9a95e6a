//! HTTP(S) tracker announces with `fetch`, so HTTP trackers (such as a `bittorrent-tracker`
//! server's stats page) count browser peers. Browsers cannot take TCP connections, so the
//! peers an HTTP tracker returns are of no use here and none are asked for.

use std::time::Duration;

use js_sys::Uint8Array;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, RequestMode, Response};
use webtorrent_core::announce::{AnnounceJob, TrackerFailure, TrackerReply};
use webtorrent_core::tracker::http::{AnnounceRequest, AnnounceResponse};
use webtorrent_core::{InfoHash, PeerId};

use crate::util::{global, js_error_message};

/// The port announced to HTTP trackers. A browser listens on no port; trackers refuse port 0,
/// so the discard port stands in for "not reachable over TCP".
pub(crate) const BROWSER_ANNOUNCE_PORT: u16 = 9;

/// Largest tracker reply read.
const MAX_REPLY: u32 = 1 << 20;

/// What an HTTP announce came to.
pub(crate) enum HttpOutcome {
    /// The tracker's reply, read and parsed.
    Reply(TrackerReply),
    /// The request reached the tracker but the browser may not read the reply (no CORS
    /// headers): the announce counts, the figures are unknown.
    Opaque,
}

/// Starts a `GET`, aborted (body included) after `timeout`.
async fn fetch(url: &str, mode: RequestMode, timeout: Duration) -> Result<Response, String> {
    fetch_range(url, mode, timeout, None).await
}

/// A `GET` with an optional `Range` header, aborted (body included) after `timeout`.
async fn fetch_range(
    url: &str,
    mode: RequestMode,
    timeout: Duration,
    range: Option<&str>,
) -> Result<Response, String> {
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_mode(mode);
    if let Some(r) = range {
        let headers = web_sys::Headers::new().map_err(|e| js_error_message(&e))?;
        headers.set("Range", r).map_err(|e| js_error_message(&e))?;
        init.set_headers(&headers);
    }
    let abort = web_sys::AbortController::new().map_err(|e| js_error_message(&e))?;
    init.set_signal(Some(&abort.signal()));
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    wasm_bindgen_futures::spawn_local(async move {
        crate::util::sleep(ms).await;
        abort.abort();
    });
    let promise = if let Some(w) = web_sys::window() {
        w.fetch_with_str_and_init(url, &init)
    } else {
        global()
            .unchecked_into::<web_sys::WorkerGlobalScope>()
            .fetch_with_str_and_init(url, &init)
    };
    let resp = JsFuture::from(promise)
        .await
        .map_err(|e| js_error_message(&e))?;
    resp.dyn_into::<Response>()
        .map_err(|_| "not a Response".to_string())
}

/// Sends one announce.
pub(crate) async fn announce(
    job: &AnnounceJob,
    info_hash: InfoHash,
    peer_id: PeerId,
) -> Result<HttpOutcome, TrackerFailure> {
    let mut req = AnnounceRequest::from_job(job, info_hash, peer_id, BROWSER_ANNOUNCE_PORT);
    req.numwant = Some(0);
    let url = req.to_url(&job.url);
    match fetch(&url, RequestMode::Cors, job.timeout).await {
        Ok(resp) => {
            if !resp.ok() {
                return Err(TrackerFailure::Network(format!("HTTP {}", resp.status())));
            }
            let buf = JsFuture::from(
                resp.array_buffer()
                    .map_err(|e| TrackerFailure::Network(js_error_message(&e)))?,
            )
            .await
            .map_err(|e| TrackerFailure::Network(js_error_message(&e)))?;
            let arr = Uint8Array::new(&buf);
            if arr.length() > MAX_REPLY {
                return Err(TrackerFailure::Network("tracker reply too large".into()));
            }
            let body = arr.to_vec();
            match AnnounceResponse::decode(&body) {
                Ok(r) => Ok(HttpOutcome::Reply(TrackerReply {
                    interval: r.interval.map(|s| std::time::Duration::from_secs(s.into())),
                    min_interval: r
                        .min_interval
                        .map(|s| std::time::Duration::from_secs(s.into())),
                    complete: r.complete,
                    incomplete: r.incomplete,
                    peers_count: 0,
                    tracker_id: r.tracker_id,
                    warning: r.warning_message,
                })),
                Err(webtorrent_core::tracker::http::HttpError::Failure(m)) => {
                    Err(TrackerFailure::Failure(m))
                }
                Err(e) => Err(TrackerFailure::Network(e.to_string())),
            }
        }
        Err(first) => {
            // A CORS-blocked reply and an unreachable tracker look the same to a page. An
            // opaque request tells them apart: it resolves if the tracker answered at all.
            match fetch(&url, RequestMode::NoCors, job.timeout).await {
                Ok(_) => Ok(HttpOutcome::Opaque),
                Err(_) => Err(TrackerFailure::Network(first)),
            }
        }
    }
}

/// A web seed fetch (BEP 19): each request's range in turn, one body per request. The
/// server must allow the page's origin (CORS) and expose ranged replies.
pub(crate) async fn web_seed(
    fetch: &webtorrent_core::webseed::Fetch,
) -> Result<Vec<bytes::Bytes>, String> {
    let mut bodies = Vec::with_capacity(fetch.requests.len());
    for r in &fetch.requests {
        let want = r.range.end - r.range.start;
        let resp = fetch_range(
            &r.url,
            RequestMode::Cors,
            webtorrent_core::webseed::FETCH_TIMEOUT,
            Some(&r.header()),
        )
        .await
        .map_err(|e| format!("{}: {e}", r.url))?;
        r.check_status(resp.status())?;
        let buf = JsFuture::from(resp.array_buffer().map_err(|e| js_error_message(&e))?)
            .await
            .map_err(|e| js_error_message(&e))?;
        let mut body = Uint8Array::new(&buf).to_vec();
        // A whole file (200): its first bytes are the range. Any other length mismatch is
        // the adapter's to refuse.
        if resp.status() == 200 {
            body.truncate(want as usize);
        }
        bodies.push(bytes::Bytes::from(body));
    }
    Ok(bodies)
}
