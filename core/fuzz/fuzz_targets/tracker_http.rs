//! HTTP tracker codecs: announce/scrape responses (bencode) and announce/scrape query strings.
//! Whatever decodes must re-encode and decode to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webtorrent_core::tracker::http::{encode_failure, MAX_QUERY_LEN};
use webtorrent_core::tracker::{
    scrape_url, AnnounceRequest, AnnounceResponse, HttpError, Peer, PeerEncoding, ScrapeRequest,
    ScrapeResponse,
};

fuzz_target!(|data: &[u8]| {
    match AnnounceResponse::decode(data) {
        Ok(r) => {
            let dict = r.encode(PeerEncoding::Dictionary);
            assert_eq!(AnnounceResponse::decode(&dict).as_ref(), Ok(&r));
            // Compact drops peer ids and lists IPv4 peers before IPv6 ones.
            let (v4, v6): (Vec<Peer>, Vec<Peer>) = r
                .peers
                .iter()
                .map(|p| Peer::from(p.addr))
                .partition(|p| p.addr.is_ipv4());
            let want = AnnounceResponse {
                peers: v4.into_iter().chain(v6).collect(),
                ..r.clone()
            };
            let compact = r.encode(PeerEncoding::Compact);
            assert_eq!(AnnounceResponse::decode(&compact), Ok(want));
        }
        Err(HttpError::Failure(reason)) => {
            assert_eq!(
                AnnounceResponse::decode(&encode_failure(&reason)),
                Err(HttpError::Failure(reason))
            );
        }
        Err(_) => {}
    }

    if let Ok(r) = ScrapeResponse::decode(data) {
        assert_eq!(ScrapeResponse::decode(&r.encode()), Ok(r));
    }

    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(req) = AnnounceRequest::from_query(s) {
            let q = req.to_query();
            if q.len() <= MAX_QUERY_LEN {
                assert_eq!(AnnounceRequest::from_query(&q), Ok(req));
            }
        }
        if let Ok(req) = ScrapeRequest::from_query(s) {
            let q = req.to_query();
            if q.len() <= MAX_QUERY_LEN {
                assert_eq!(ScrapeRequest::from_query(&q), Ok(req));
            }
        }
        if let Some(u) = scrape_url(s) {
            assert!(u.contains("scrape"));
        }
    }
});
