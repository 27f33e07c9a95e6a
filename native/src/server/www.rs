//! Static files for the page: a folder served read-only, with MIME types the browser needs
//! (`application/wasm` for WebAssembly streaming compilation, `text/javascript` for modules)
//! and no way out of the folder.

use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Largest file served, in bytes.
pub const MAX_FILE_LEN: u64 = 64 * 1024 * 1024;

/// The content type for a file name, by extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("txt" | "md" | "ts") => "text/plain; charset=utf-8",
        Some("webmanifest") => "application/manifest+json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// What a request for a path gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WwwReply {
    /// A file's bytes and type.
    File {
        /// The content.
        body: Bytes,
        /// Its `Content-Type`.
        content_type: &'static str,
    },
    /// A folder asked for without the trailing slash: redirect here.
    Redirect(String),
    /// No such file (or a path that is not allowed).
    NotFound,
    /// A file larger than [`MAX_FILE_LEN`].
    TooLarge,
}

/// A folder served at `/`.
#[derive(Debug, Clone)]
pub struct Www {
    root: PathBuf,
}

impl Www {
    /// Serves `root`.
    pub fn new(root: PathBuf) -> Self {
        Www { root }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Looks up the URL path `url_path` (percent-encoded, without the query).
    pub async fn get(&self, url_path: &str) -> WwwReply {
        let Some(rel) = resolve(url_path) else {
            return WwwReply::NotFound;
        };
        let mut path = self.root.join(&rel);
        let Ok(mut meta) = tokio::fs::metadata(&path).await else {
            return WwwReply::NotFound;
        };
        if meta.is_dir() {
            if !url_path.ends_with('/') {
                return WwwReply::Redirect(format!("{url_path}/"));
            }
            path.push("index.html");
            meta = match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_file() => m,
                _ => return WwwReply::NotFound,
            };
        }
        if !meta.is_file() {
            return WwwReply::NotFound;
        }
        if meta.len() > MAX_FILE_LEN {
            return WwwReply::TooLarge;
        }
        match tokio::fs::read(&path).await {
            Ok(data) if data.len() as u64 <= MAX_FILE_LEN => WwwReply::File {
                body: Bytes::from(data),
                content_type: content_type(&path),
            },
            Ok(_) => WwwReply::TooLarge,
            Err(_) => WwwReply::NotFound,
        }
    }
}

/// The relative file path for a URL path, or `None` when it is not allowed: not absolute, bad
/// percent-encoding or UTF-8, `.` / `..` or hidden (dot) segments, backslashes, NUL bytes.
pub fn resolve(url_path: &str) -> Option<PathBuf> {
    if !url_path.starts_with('/') {
        return None;
    }
    let decoded = webtorrent_core::percent::decode(url_path, false).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let mut rel = PathBuf::new();
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        if seg.starts_with('.') || seg.contains(['\\', '\0', ':']) {
            return None;
        }
        rel.push(seg);
    }
    Some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_escapes() {
        assert_eq!(resolve("/"), Some(PathBuf::new()));
        assert_eq!(
            resolve("/pkg/a%20b.js"),
            Some(PathBuf::from("pkg").join("a b.js"))
        );
        assert_eq!(resolve("//app.js"), Some(PathBuf::from("app.js")));
        for bad in [
            "/../etc/passwd",
            "/pkg/../../x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/a/%2e%2e%2f%2e%2e%2fx",
            "/.gitignore",
            "/a\\..\\b",
            "/a%00b",
            "/%ff",
            "/%zz",
            "relative",
            "/c:/windows",
        ] {
            assert_eq!(resolve(bad), None, "{bad}");
        }
    }

    #[test]
    fn types() {
        assert_eq!(content_type(Path::new("x.wasm")), "application/wasm");
        assert_eq!(
            content_type(Path::new("a/b.JS")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }
}
