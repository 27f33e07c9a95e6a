//! UDP tracker packets (BEP 15 / BEP 41) in both directions and both address families.
//! Whatever decodes must re-encode and decode to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webtorrent_core::tracker::udp::{Request, Response};
use webtorrent_core::tracker::AddressFamily;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::decode(data) {
        assert_eq!(Request::decode(&req.encode()), Ok(req));
    }
    for family in [AddressFamily::V4, AddressFamily::V6] {
        if let Ok(resp) = Response::decode(data, family) {
            let _ = resp.check_transaction_id(0);
            assert_eq!(Response::decode(&resp.encode(family), family), Ok(resp));
        }
    }
});
