//! WebTorrent in the browser: drivers for [`webtorrent_core`] built on wasm-bindgen.
