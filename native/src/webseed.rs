//! Web seed fetches (BEP 19): the HTTP(S) GETs with a `Range` header that the core's
//! [`Output::Fetch`](webtorrent_core::session::Output::Fetch) asks for.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderValue, RANGE};
use reqwest::StatusCode;
use webtorrent_core::webseed::{Fetch, FETCH_TIMEOUT};

/// One client for every web seed of the process (connections are kept and reused).
fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    crate::tracker::ensure_crypto_provider();
    let c = reqwest::Client::builder()
        .user_agent(concat!("webtorrent-rs/", env!("CARGO_PKG_VERSION")))
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    Ok(CLIENT.get_or_init(|| c))
}

/// Carries out a fetch: each request in turn, one body per request.
pub(crate) async fn run(fetch: &Fetch) -> Result<Vec<Bytes>, String> {
    let client = client()?;
    let mut bodies = Vec::with_capacity(fetch.requests.len());
    for r in &fetch.requests {
        let want = r.range.end - r.range.start;
        let range = HeaderValue::from_str(&r.header()).map_err(|e| e.to_string())?;
        let mut resp = client
            .get(&r.url)
            .header(RANGE, range)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", r.url))?;
        r.check_status(resp.status().as_u16())?;
        let mut body = BytesMut::with_capacity(want.min(4 << 20) as usize);
        while (body.len() as u64) < want {
            match resp.chunk().await.map_err(|e| format!("{}: {e}", r.url))? {
                Some(c) => body.extend_from_slice(&c),
                None => break,
            }
        }
        // A whole file (200): its first bytes are the range. Any other length mismatch is
        // the adapter's to refuse.
        if resp.status() == StatusCode::OK {
            body.truncate(want as usize);
        }
        bodies.push(body.freeze());
    }
    Ok(bodies)
}
