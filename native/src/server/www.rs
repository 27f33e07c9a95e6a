//! Static files for the page: the page built into the binary ([`Www::embedded`]) or a folder
//! served read-only ([`Www::new`]), with MIME types the browser needs (`application/wasm` for
//! WebAssembly streaming compilation, `text/javascript` for modules) and no way out of the
//! folder.

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
        // Media and documents, for files streamed out of torrents.
        Some("mp4" | "m4v") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        Some("mov") => "video/quicktime",
        Some("avi") => "video/x-msvideo",
        Some("ogv") => "video/ogg",
        Some("m2ts") => "video/mp2t",
        Some("mp3") => "audio/mpeg",
        Some("m4a" | "m4b") => "audio/mp4",
        Some("aac") => "audio/aac",
        Some("ogg" | "oga") => "audio/ogg",
        Some("opus") => "audio/opus",
        Some("flac") => "audio/flac",
        Some("wav") => "audio/wav",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("srt") => "application/x-subrip",
        Some("pdf") => "application/pdf",
        Some("avif") => "image/avif",
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

/// The page's files as `build.rs` embedded them from `www/` (`FILES`: URL path without the
/// leading slash, content; sorted by path).
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/www_files.rs"));
}

/// The wasm client's file, below `pkg/`, that the page cannot work without.
const WASM_CLIENT: &str = "pkg/webtorrent_wasm_bg.wasm";

/// The page served at `/`: a folder, or the files built into the binary.
#[derive(Debug, Clone)]
pub struct Www {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Folder(PathBuf),
    Embedded,
}

impl Www {
    /// Serves the folder `root`.
    pub fn new(root: PathBuf) -> Self {
        Www {
            source: Source::Folder(root),
        }
    }

    /// Serves the page built into the binary: the repository's `www/` (and `www/pkg/` when
    /// `bash wasm/build.sh` had run) as they were when this crate was compiled.
    pub fn embedded() -> Self {
        Www {
            source: Source::Embedded,
        }
    }

    /// The folder served, or `None` for the embedded page.
    pub fn root(&self) -> Option<&Path> {
        match &self.source {
            Source::Folder(root) => Some(root),
            Source::Embedded => None,
        }
    }

    /// Whether there is an `index.html` at `/`.
    pub fn has_index(&self) -> bool {
        match &self.source {
            Source::Folder(root) => root.join("index.html").is_file(),
            Source::Embedded => embedded_file("index.html").is_some(),
        }
    }

    /// Whether the page's wasm client (`pkg/webtorrent_wasm_bg.wasm`, built by
    /// `bash wasm/build.sh`) is there.
    pub fn has_wasm_client(&self) -> bool {
        match &self.source {
            Source::Folder(root) => root.join(WASM_CLIENT).is_file(),
            Source::Embedded => embedded_file(WASM_CLIENT).is_some(),
        }
    }

    /// Looks up the URL path `url_path` (percent-encoded, without the query).
    pub async fn get(&self, url_path: &str) -> WwwReply {
        let Some(rel) = resolve(url_path) else {
            return WwwReply::NotFound;
        };
        match &self.source {
            Source::Folder(root) => get_file(root, &rel, url_path).await,
            Source::Embedded => get_embedded(&rel, url_path),
        }
    }
}

impl From<PathBuf> for Www {
    fn from(root: PathBuf) -> Self {
        Www::new(root)
    }
}

/// A file below `root`.
async fn get_file(root: &Path, rel: &Path, url_path: &str) -> WwwReply {
    let mut path = root.join(rel);
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

/// An embedded file, with a folder's redirect and `index.html` as [`get_file`] has them.
fn get_embedded(rel: &Path, url_path: &str) -> WwwReply {
    let segments: Option<Vec<&str>> = rel.iter().map(|s| s.to_str()).collect();
    let Some(segments) = segments else {
        return WwwReply::NotFound;
    };
    let key = segments.join("/");
    if let Some(data) = embedded_file(&key) {
        return WwwReply::File {
            body: Bytes::from_static(data),
            content_type: content_type(Path::new(&key)),
        };
    }
    if !embedded_dir(&key) {
        return WwwReply::NotFound;
    }
    if !url_path.ends_with('/') {
        return WwwReply::Redirect(format!("{url_path}/"));
    }
    let index = if key.is_empty() {
        "index.html".to_string()
    } else {
        format!("{key}/index.html")
    };
    match embedded_file(&index) {
        Some(data) => WwwReply::File {
            body: Bytes::from_static(data),
            content_type: content_type(Path::new(&index)),
        },
        None => WwwReply::NotFound,
    }
}

/// The embedded file at `key` (`pkg/x.js`).
fn embedded_file(key: &str) -> Option<&'static [u8]> {
    let files = embedded::FILES;
    files
        .binary_search_by(|(k, _)| (*k).cmp(key))
        .ok()
        .and_then(|i| files.get(i))
        .map(|(_, data)| *data)
}

/// Whether `key` is a folder of the embedded page (`""` is its root).
fn embedded_dir(key: &str) -> bool {
    key.is_empty()
        || embedded::FILES
            .iter()
            .any(|(k, _)| k.strip_prefix(key).is_some_and(|r| r.starts_with('/')))
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

    /// The repository's `www/` file `rel`, which the embedded page must equal.
    fn www_file(rel: &str) -> Vec<u8> {
        let path = crate::server::default_www_dir().join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[tokio::test]
    async fn embedded_page_serves_the_repository_page() {
        let www = Www::embedded();
        assert!(www.root().is_none());
        assert!(www.has_index());
        for (path, file, ty) in [
            ("/", "index.html", "text/html; charset=utf-8"),
            ("/index.html", "index.html", "text/html; charset=utf-8"),
            ("/app.js", "app.js", "text/javascript; charset=utf-8"),
            ("/style.css", "style.css", "text/css; charset=utf-8"),
        ] {
            assert_eq!(
                www.get(path).await,
                WwwReply::File {
                    body: Bytes::from(www_file(file)),
                    content_type: ty,
                },
                "{path}"
            );
        }
        let wasm = crate::server::default_www_dir().join(WASM_CLIENT);
        assert_eq!(www.has_wasm_client(), wasm.is_file());
        if www.has_wasm_client() {
            assert_eq!(
                www.get("/pkg/webtorrent_wasm_bg.wasm").await,
                WwwReply::File {
                    body: Bytes::from(www_file(WASM_CLIENT)),
                    content_type: "application/wasm",
                }
            );
            match www.get("/pkg/webtorrent_wasm.js").await {
                WwwReply::File { content_type, .. } => {
                    assert_eq!(content_type, "text/javascript; charset=utf-8")
                }
                other => panic!("pkg/webtorrent_wasm.js: {other:?}"),
            }
            assert_eq!(www.get("/pkg").await, WwwReply::Redirect("/pkg/".into()));
            assert_eq!(www.get("/pkg/").await, WwwReply::NotFound);
        } else {
            eprintln!("www/pkg not built: the wasm client is not embedded");
            assert_eq!(www.get("/pkg").await, WwwReply::NotFound);
        }
    }

    #[tokio::test]
    async fn embedded_page_has_nothing_else() {
        let www = Www::embedded();
        for bad in [
            "/serve.sh",
            "/../www/index.html",
            "/../native/Cargo.toml",
            "/%2e%2e/README.md",
            "/.gitignore",
            "/pkg/.sources",
            "/pkg/webtorrent_wasm.d.ts",
            "/missing.js",
            "/index.html/x",
            "/app",
            "relative",
        ] {
            assert_eq!(www.get(bad).await, WwwReply::NotFound, "{bad}");
        }
        // Every embedded file is a page asset of www/, and their table is sorted for lookup.
        for (key, data) in embedded::FILES {
            assert!(!key.starts_with('/') && !key.split('/').any(|s| s.starts_with('.')));
            assert!(!key.ends_with(".sh") && !key.ends_with(".ts"), "{key}");
            assert_eq!(*data, &www_file(key)[..], "{key}");
        }
        assert!(embedded::FILES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[tokio::test]
    async fn folder_and_embedded_answer_alike() {
        let dir = crate::server::default_www_dir();
        let folder = Www::new(dir.clone());
        let embedded = Www::embedded();
        assert_eq!(folder.root(), Some(dir.as_path()));
        for path in [
            "/",
            "/app.js",
            "/app.js/",
            "/style.css",
            "/missing",
            "/.x",
            "/pkg",
            "/pkg/",
        ] {
            assert_eq!(folder.get(path).await, embedded.get(path).await, "{path}");
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
