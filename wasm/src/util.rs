//! Small browser helpers: the clock, randomness, hashing, sleeping, logging.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use webtorrent_core::Time;

/// The global object (`window` in a page, `self` in a worker).
pub(crate) fn global() -> js_sys::Object {
    js_sys::global()
}

/// Monotonic time since the page loaded (`performance.now()`), as core [`Time`].
pub(crate) fn now() -> Time {
    let ms = Reflect::get(&global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now);
    Time::from_micros((ms.max(0.0) * 1000.0) as u64)
}

fn crypto() -> Option<web_sys::Crypto> {
    Reflect::get(&global(), &"crypto".into())
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok())
}

/// Cryptographically random bytes (falls back to `Math.random` only if `crypto` is missing).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let filled = crypto()
        .map(|c| c.get_random_values_with_u8_array(&mut out).is_ok())
        .unwrap_or(false);
    if !filled {
        for b in out.iter_mut() {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    out
}

/// A random `u64` for seeding core RNGs.
pub(crate) fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

/// SHA-1 with `crypto.subtle.digest` when available (native speed, off the wasm heap), else the
/// `sha1` crate.
pub(crate) async fn sha1_js(data: &Uint8Array) -> [u8; 20] {
    if let Some(subtle) = crypto().map(|c| c.subtle()) {
        if let Ok(p) = subtle.digest_with_str_and_buffer_source("SHA-1", data) {
            if let Ok(v) = JsFuture::from(p).await {
                let arr = Uint8Array::new(&v);
                if arr.length() == 20 {
                    let mut out = [0u8; 20];
                    arr.copy_to(&mut out);
                    return out;
                }
            }
        }
    }
    webtorrent_core::piece::sha1(&data.to_vec())
}

/// A SHA-1 digest started by [`sha1_start`].
pub(crate) enum Sha1Pending {
    /// `crypto.subtle.digest`, running.
    Js(JsFuture),
    /// Hashed already (the `sha1` crate, where `crypto.subtle` is missing).
    Done([u8; 20]),
}

impl Sha1Pending {
    /// The digest, or `None` if `crypto.subtle` failed.
    pub(crate) async fn finish(self) -> Option<[u8; 20]> {
        match self {
            Sha1Pending::Done(h) => Some(h),
            Sha1Pending::Js(f) => {
                let arr = Uint8Array::new(&f.await.ok()?);
                (arr.length() == 20).then(|| {
                    let mut out = [0u8; 20];
                    arr.copy_to(&mut out);
                    out
                })
            }
        }
    }
}

/// Starts hashing `data` and returns before the digest is known. The bytes are consumed
/// before this returns (`crypto.subtle.digest` copies its input synchronously; the `sha1`
/// crate fallback hashes right away), so the caller may reuse or transfer the buffer at once.
pub(crate) fn sha1_start(data: &Uint8Array) -> Sha1Pending {
    if let Some(subtle) = crypto().map(|c| c.subtle()) {
        if let Ok(p) = subtle.digest_with_str_and_buffer_source("SHA-1", data) {
            return Sha1Pending::Js(JsFuture::from(p));
        }
    }
    Sha1Pending::Done(webtorrent_core::piece::sha1(&data.to_vec()))
}

/// [`sha1_js`] taking its array by value (for futures that outlive the caller's borrow).
pub(crate) async fn sha1_owned(data: Uint8Array) -> [u8; 20] {
    sha1_js(&data).await
}

/// SHA-1 of bytes in wasm memory (copied once into a JS buffer for `crypto.subtle`).
pub(crate) async fn sha1(data: &[u8]) -> [u8; 20] {
    let arr = Uint8Array::new_with_length(data.len() as u32);
    arr.copy_from(data);
    sha1_js(&arr).await
}

/// Resolves after `ms` milliseconds.
pub(crate) async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// Logs to the browser console at debug level (shown only when asked for: details such as
/// why a slower path was taken, which are not the user's problem).
pub(crate) fn debug(msg: &str) {
    web_sys::console::debug_1(&JsValue::from_str(msg));
}

/// Logs a warning to the browser console.
pub(crate) fn warn(msg: &str) {
    web_sys::console::warn_1(&JsValue::from_str(msg));
}

/// A readable message from a thrown JavaScript value.
pub(crate) fn js_error_message(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// Reads a property of a JavaScript object, `None` if missing, `undefined` or `null`.
pub(crate) fn prop(obj: &JsValue, key: &str) -> Option<JsValue> {
    if !obj.is_object() {
        return None;
    }
    Reflect::get(obj, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// A string list from a JS string or array of strings.
pub(crate) fn string_list(v: &JsValue) -> Vec<String> {
    if let Some(s) = v.as_string() {
        return vec![s];
    }
    if js_sys::Array::is_array(v) {
        return js_sys::Array::from(v)
            .iter()
            .filter_map(|x| x.as_string())
            .collect();
    }
    Vec::new()
}

/// What a worker's `error` or `messageerror` event says went wrong.
pub(crate) fn worker_error(e: &web_sys::Event) -> String {
    use wasm_bindgen::JsCast;
    e.dyn_ref::<web_sys::ErrorEvent>()
        .map(|e| e.message())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "the worker failed".into())
}
