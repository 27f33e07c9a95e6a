//! HTTP(S) announce and scrape over reqwest.

use std::error::Error as StdError;

use tracing::{debug, trace};
use webtorrent_core::tracker::{
    scrape_url, AnnounceRequest, AnnounceResponse, HttpError, ScrapeRequest, ScrapeResponse,
};
use webtorrent_core::InfoHash;

use super::{
    clean_peers, redact, secs, AnnounceOutcome, AnnounceParams, ScrapeStats, TrackerClientConfig,
    TrackerError, DEFAULT_INTERVAL,
};

/// Info hashes per HTTP scrape request: keeps the URL near 4 KB.
const SCRAPE_CHUNK: usize = 64;

/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// Largest body buffer reserved before any data arrives.
const INITIAL_BODY_CAPACITY: usize = 16 * 1024;

/// The shared reqwest client, with a rustls crypto provider in place.
pub(super) fn build_client(config: &TrackerClientConfig) -> Result<reqwest::Client, TrackerError> {
    ensure_crypto_provider();
    reqwest::Client::builder()
        .user_agent(config.user_agent.as_str())
        .timeout(config.http_timeout)
        .connect_timeout(config.http_timeout)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .build()
        .map_err(|e| TrackerError::Config(format!("HTTP client: {}", error_chain(&e))))
}

/// reqwest is built with `rustls-no-provider`: it uses the process-wide default provider, so
/// install `ring` unless someone already installed one.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: any default will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Announces over HTTP(S).
pub(super) async fn announce(
    client: &reqwest::Client,
    max_body: usize,
    url: &str,
    params: &AnnounceParams,
) -> Result<AnnounceOutcome, TrackerError> {
    let mut req = AnnounceRequest::new(params.info_hash, params.peer_id, params.port);
    req.uploaded = params.uploaded;
    req.downloaded = params.downloaded;
    req.left = params.left;
    req.event = params.event;
    req.numwant = params.numwant;
    req.key = Some(format!("{:08X}", params.key).into_bytes());
    req.trackerid.clone_from(&params.tracker_id);
    let body = get(client, &req.to_url(url), max_body).await?;
    let resp = AnnounceResponse::decode(&body).map_err(decode_error)?;
    Ok(AnnounceOutcome {
        interval: resp
            .interval
            .or(resp.min_interval)
            .map_or(DEFAULT_INTERVAL, secs),
        min_interval: resp.min_interval.map(secs),
        complete: resp.complete,
        incomplete: resp.incomplete,
        peers: clean_peers(resp.peers.iter().map(|p| p.addr)),
        tracker_id: resp.tracker_id,
        warning: resp.warning_message,
        external_ip: resp.external_ip,
    })
}

/// Scrapes over HTTP(S), [`SCRAPE_CHUNK`] hashes per request.
pub(super) async fn scrape(
    client: &reqwest::Client,
    max_body: usize,
    url: &str,
    info_hashes: &[InfoHash],
) -> Result<Vec<(InfoHash, ScrapeStats)>, TrackerError> {
    let scrape = scrape_url(url).ok_or(TrackerError::ScrapeUnsupported)?;
    let mut out = Vec::with_capacity(info_hashes.len());
    for chunk in info_hashes.chunks(SCRAPE_CHUNK) {
        let req = ScrapeRequest {
            info_hashes: chunk.to_vec(),
        };
        let body = get(client, &req.to_url(&scrape), max_body).await?;
        let resp = ScrapeResponse::decode(&body).map_err(decode_error)?;
        out.extend(chunk.iter().filter_map(|h| {
            resp.files.get(h).map(|f| {
                (
                    *h,
                    ScrapeStats {
                        complete: f.complete,
                        downloaded: f.downloaded,
                        incomplete: f.incomplete,
                    },
                )
            })
        }));
    }
    Ok(out)
}

/// A scrape without `info_hash`: every torrent the tracker is willing to list (a
/// `bittorrent-tracker` server lists all it knows).
pub(super) async fn scrape_all(
    client: &reqwest::Client,
    max_body: usize,
    url: &str,
) -> Result<Vec<(InfoHash, ScrapeStats)>, TrackerError> {
    let scrape = scrape_url(url).ok_or(TrackerError::ScrapeUnsupported)?;
    let body = get(client, &scrape, max_body).await?;
    let resp = ScrapeResponse::decode(&body).map_err(decode_error)?;
    Ok(resp
        .files
        .iter()
        .map(|(h, f)| {
            (
                *h,
                ScrapeStats {
                    complete: f.complete,
                    downloaded: f.downloaded,
                    incomplete: f.incomplete,
                },
            )
        })
        .collect())
}

/// `GET url`: the body of a 2xx reply, at most `max_body` bytes.
async fn get(
    client: &reqwest::Client,
    url: &str,
    max_body: usize,
) -> Result<Vec<u8>, TrackerError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| TrackerError::InvalidUrl(format!("{}: {e}", redact(url))))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(TrackerError::InvalidUrl(format!(
            "{}: no host",
            redact(url)
        )));
    }
    let mut resp = client.get(parsed).send().await.map_err(request_error)?;
    let status = resp.status();
    trace!(tracker = %redact(url), status = status.as_u16(), "HTTP tracker reply");
    if !status.is_success() {
        return Err(TrackerError::Http(status.as_u16()));
    }
    let declared = resp.content_length();
    if let Some(len) = declared {
        if len > u64::try_from(max_body).unwrap_or(u64::MAX) {
            return Err(too_large(max_body));
        }
    }
    let capacity = declared
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(INITIAL_BODY_CAPACITY)
        .min(max_body);
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
        if chunk.len() > max_body - body.len() {
            debug!(tracker = %redact(url), max_body, "HTTP tracker reply too large");
            return Err(too_large(max_body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(max_body: usize) -> TrackerError {
    TrackerError::Protocol(format!("response body larger than {max_body} bytes"))
}

/// A core decoding error: `failure reason` is the tracker's refusal, the rest is garbage.
fn decode_error(e: HttpError) -> TrackerError {
    match e {
        HttpError::Failure(reason) => TrackerError::Failure(reason),
        other => TrackerError::Protocol(other.to_string()),
    }
}

/// A reqwest error, without the URL (it may hold a passkey).
fn request_error(e: reqwest::Error) -> TrackerError {
    if e.is_timeout() {
        return TrackerError::Timeout;
    }
    let e = e.without_url();
    if e.is_builder() {
        TrackerError::InvalidUrl(error_chain(&e))
    } else {
        TrackerError::Network(error_chain(&e))
    }
}

/// `error: source: source…`, at most 8 levels.
fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    for _ in 0..8 {
        let Some(cause) = source else { break };
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}
