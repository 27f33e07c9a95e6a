//! Browser tests of the wasm client (run in headless Chromium by wasm-bindgen-test-runner; see
//! tests/run.sh). They use no network: seeding, torrent files, magnet links, blobs, errors.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Object, Reflect, Uint8Array};
use sha1::Digest as _;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_wasm::{Torrent, WebTorrent};

wasm_bindgen_test_configure!(run_in_browser);

fn opts(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
    }
    o.into()
}

fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn client() -> WebTorrent {
    // No trackers: nothing leaves the page.
    WebTorrent::new(opts(&[("announce", Array::new().into())])).unwrap()
}

async fn seed(c: &WebTorrent, input: JsValue, o: JsValue) -> Result<Torrent, JsValue> {
    let v = JsFuture::from(c.seed(input, o)).await?;
    // wasm-bindgen hands back the exported class as a plain JS object.
    Ok(Torrent::try_from_js(v))
}

trait FromJs {
    fn try_from_js(v: JsValue) -> Self;
}

impl FromJs for Torrent {
    fn try_from_js(v: JsValue) -> Self {
        <Torrent as wasm_bindgen::convert::TryFromJsValue>::try_from_js_value(v).expect("a Torrent")
    }
}

async fn blob_bytes(b: &JsValue) -> Vec<u8> {
    let blob: web_sys::Blob = b.clone().dyn_into().unwrap();
    let buf = JsFuture::from(blob.array_buffer()).await.unwrap();
    Uint8Array::new(&buf).to_vec()
}

#[wasm_bindgen_test]
async fn seeding_bytes_matches_the_core_creator() {
    let bytes = data(700_000, 1);
    let c = client();
    let arr = Uint8Array::from(&bytes[..]);
    let t = seed(
        &c,
        arr.into(),
        opts(&[("name", "a.bin".into()), ("pieceLength", 32768.into())]),
    )
    .await
    .unwrap();
    assert_eq!(t.name().as_deref(), Some("a.bin"));
    assert_eq!(t.length(), 700_000.0);
    assert!(t.done());
    // The torrent file parses, and its piece hashes (made with crypto.subtle) are the SHA-1 of
    // each piece.
    let file = t.torrent_file().unwrap().to_vec();
    let meta = Metainfo::from_bytes(&file).unwrap();
    assert_eq!(meta.info_hash.to_hex(), t.info_hash());
    assert_eq!(meta.info.piece_length(), 32768);
    for (i, chunk) in bytes.chunks(32768).enumerate() {
        let h: [u8; 20] = sha1::Sha1::digest(chunk).into();
        assert_eq!(&meta.info.pieces[i * 20..i * 20 + 20], &h[..], "piece {i}");
    }
    // The same data through the core creator gives the same info dictionary.
    let created = webtorrent_core::creator::TorrentCreator::new()
        .with_piece_length(32768)
        .create_single_with_hashes("a.bin", 700_000, 32768, meta.info.pieces.to_vec())
        .unwrap();
    assert_eq!(created.info_hash, meta.info_hash);
    c.destroy();
}

#[wasm_bindgen_test]
async fn multi_file_seed_serves_each_file_as_a_blob() {
    let a = data(100_000, 2);
    let b = data(33_333, 3);
    let parts_a = Array::of1(&Uint8Array::from(&a[..]));
    let parts_b = Array::of1(&Uint8Array::from(&b[..]));
    let fa = web_sys::File::new_with_u8_array_sequence(&parts_a, "one.bin").unwrap();
    let fb = web_sys::File::new_with_u8_array_sequence(&parts_b, "two.bin").unwrap();
    let c = client();
    let t = seed(
        &c,
        Array::of2(&fa, &fb).into(),
        opts(&[("name", "pair".into())]),
    )
    .await
    .unwrap();
    let files = t.files();
    assert_eq!(files.length(), 2);
    let mut got = Vec::new();
    for f in files.iter() {
        let name = Reflect::get(&f, &"name".into())
            .unwrap()
            .as_string()
            .unwrap();
        let path = Reflect::get(&f, &"path".into())
            .unwrap()
            .as_string()
            .unwrap();
        let blob_fn: js_sys::Function = Reflect::get(&f, &"blob".into())
            .unwrap()
            .dyn_into()
            .unwrap();
        let p: js_sys::Promise = blob_fn.call0(&f).unwrap().dyn_into().unwrap();
        let blob = JsFuture::from(p).await.unwrap();
        got.push((name, path, blob_bytes(&blob).await));
    }
    assert_eq!(got[0].0, "one.bin");
    assert_eq!(got[0].1, "pair/one.bin");
    assert_eq!(got[0].2, a);
    assert_eq!(got[1].0, "two.bin");
    assert_eq!(got[1].2, b);
    assert!(t
        .magnet_uri()
        .starts_with(&format!("magnet:?xt=urn:btih:{}", t.info_hash())));
    c.destroy();
}

#[wasm_bindgen_test]
async fn bad_input_is_rejected_with_a_clear_error() {
    let c = client();
    let err = JsFuture::from(c.add("magnet:?xt=urn:btih:nothex".into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    let msg = err
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap();
    assert!(msg.contains("magnet"), "{msg}");
    let err = JsFuture::from(c.add(
        Uint8Array::from(&b"d4:infoi1ee"[..]).into(),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap_err();
    let msg = err
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap();
    assert!(msg.contains(".torrent"), "{msg}");
    let err = JsFuture::from(c.seed(JsValue::from(42), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    let msg = err
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap();
    assert!(msg.contains("seed()"), "{msg}");
    c.destroy();
}

#[wasm_bindgen_test]
async fn adding_a_magnet_knows_the_hash_before_the_metadata() {
    let c = client();
    let hex = "0123456789abcdef0123456789abcdef01234567";
    let v = JsFuture::from(c.add(
        format!("magnet:?xt=urn:btih:{hex}&dn=x").into(),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    let t = Torrent::try_from_js(v);
    assert_eq!(t.info_hash(), hex);
    assert_eq!(t.name().as_deref(), Some("x"));
    assert_eq!(t.files().length(), 0);
    assert!(!t.done());
    assert_eq!(t.progress(), 0.0);
    assert!(c.get(hex).is_some());
    t.destroy();
    assert!(c.get(hex).is_none());
    c.destroy();
}

fn error_message(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn file_selection_and_priority_check_their_input() {
    let c = client();
    // Before the metadata there is nothing to select.
    let hex = "1123456789abcdef0123456789abcdef01234567";
    let v = JsFuture::from(c.add(
        format!("magnet:?xt=urn:btih:{hex}").into(),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    let m = Torrent::try_from_js(v);
    let msg = error_message(m.select_files(vec![1]).unwrap_err());
    assert!(msg.contains("metadata"), "{msg}");
    // A two-file torrent takes one flag per file, and byte ranges inside it.
    let parts_a = Array::of1(&Uint8Array::from(&data(40_000, 5)[..]));
    let parts_b = Array::of1(&Uint8Array::from(&data(20_000, 6)[..]));
    let fa = web_sys::File::new_with_u8_array_sequence(&parts_a, "a.bin").unwrap();
    let fb = web_sys::File::new_with_u8_array_sequence(&parts_b, "b.bin").unwrap();
    let t = seed(
        &c,
        Array::of2(&fa, &fb).into(),
        opts(&[("name", "ab".into())]),
    )
    .await
    .unwrap();
    let msg = error_message(t.select_files(vec![1]).unwrap_err());
    assert!(msg.contains("expected 2"), "{msg}");
    t.select_files(vec![1, 0]).unwrap();
    let msg = error_message(t.prioritize(10.0, 5.0).unwrap_err());
    assert!(msg.contains("start <= end"), "{msg}");
    let msg = error_message(t.prioritize(0.0, 1e9).unwrap_err());
    assert!(msg.contains("outside"), "{msg}");
    t.prioritize(0.0, 1000.0).unwrap();
    t.deprioritize().unwrap();
    // A seed stays done whatever is selected.
    assert!(t.done());
    c.destroy();
}

/// Everything a `ReadableStream` gives, read with its default reader.
async fn read_all(stream: &JsValue) -> Vec<u8> {
    let get_reader: js_sys::Function = Reflect::get(stream, &"getReader".into())
        .unwrap()
        .dyn_into()
        .unwrap();
    let reader = get_reader.call0(stream).unwrap();
    let read: js_sys::Function = Reflect::get(&reader, &"read".into())
        .unwrap()
        .dyn_into()
        .unwrap();
    let mut out = Vec::new();
    loop {
        let p: js_sys::Promise = read.call0(&reader).unwrap().dyn_into().unwrap();
        let r = JsFuture::from(p).await.unwrap();
        if Reflect::get(&r, &"done".into()).unwrap().as_bool() == Some(true) {
            return out;
        }
        let v: Uint8Array = Reflect::get(&r, &"value".into())
            .unwrap()
            .dyn_into()
            .unwrap();
        out.extend(v.to_vec());
    }
}

#[wasm_bindgen_test]
async fn a_file_streams_any_range_and_selects_like_webtorrent() {
    let a = data(300_000, 12);
    let b = data(77_777, 13);
    let parts_a = Array::of1(&Uint8Array::from(&a[..]));
    let parts_b = Array::of1(&Uint8Array::from(&b[..]));
    let fa = web_sys::File::new_with_u8_array_sequence(&parts_a, "a.webm").unwrap();
    let fb = web_sys::File::new_with_u8_array_sequence(&parts_b, "b.bin").unwrap();
    let c = client();
    let t = seed(
        &c,
        Array::of2(&fa, &fb).into(),
        opts(&[("name", "media".into()), ("pieceLength", 16384.into())]),
    )
    .await
    .unwrap();
    let files = t.files();
    let call = |f: &JsValue, name: &str, arg: JsValue| -> Result<JsValue, JsValue> {
        let func: js_sys::Function = Reflect::get(f, &name.into())?.dyn_into()?;
        func.call1(f, &arg)
    };
    let fa = files.get(0);
    let fb = files.get(1);
    // The whole file, a middle range (end inclusive) and the last byte.
    let whole = call(&fa, "stream", JsValue::UNDEFINED).unwrap();
    assert_eq!(read_all(&whole).await, a);
    let mid = call(
        &fa,
        "stream",
        opts(&[("start", 20_000.into()), ("end", 150_000.into())]),
    )
    .unwrap();
    assert_eq!(read_all(&mid).await, &a[20_000..=150_000]);
    let last = call(&fb, "stream", opts(&[("start", 77_776.into())])).unwrap();
    assert_eq!(read_all(&last).await, &b[77_776..]);
    // Past the end, or not a number: a clear error.
    let msg = error_message(call(&fb, "stream", opts(&[("start", 99_999.into())])).unwrap_err());
    assert!(msg.contains("past the end"), "{msg}");
    let msg = error_message(call(&fb, "stream", opts(&[("start", (-1).into())])).unwrap_err());
    assert!(msg.contains("whole number"), "{msg}");
    // Per-file selection, as webtorrent's file.select() / file.deselect().
    call(&fb, "deselect", JsValue::UNDEFINED).unwrap();
    call(&fb, "select", JsValue::UNDEFINED).unwrap();
    c.destroy();
}

#[wasm_bindgen_test]
async fn piece_ranges_select_deselect_and_critical_check_their_input() {
    let c = client();
    let hex = "2123456789abcdef0123456789abcdef01234567";
    let v = JsFuture::from(c.add(
        format!("magnet:?xt=urn:btih:{hex}").into(),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    let m = Torrent::try_from_js(v);
    let msg = error_message(m.select(0.0, 1.0, None).unwrap_err());
    assert!(msg.contains("metadata"), "{msg}");
    let parts = Array::of1(&Uint8Array::from(&data(100_000, 8)[..]));
    let f = web_sys::File::new_with_u8_array_sequence(&parts, "p.bin").unwrap();
    let t = seed(&c, f.into(), opts(&[("pieceLength", 16384.into())]))
        .await
        .unwrap();
    // 100 000 bytes in 16 KiB pieces: 7 pieces, 0 to 6.
    t.select(0.0, 3.0, None).unwrap();
    t.select(5.0, 6.0, Some(1.0)).unwrap();
    t.critical(2.0, 2.0).unwrap();
    t.deselect(0.0, 3.0).unwrap();
    t.deselect(0.0, 6.0).unwrap();
    for (a, b) in [(4.0, 2.0), (0.0, 7.0), (-1.0, 1.0), (0.5, 1.0)] {
        let msg = error_message(t.select(a, b, None).unwrap_err());
        assert!(msg.contains("piece count"), "{msg}");
    }
    // A seed stays done whatever is selected.
    assert!(t.done());
    c.destroy();
}
