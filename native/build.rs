//! Embeds the browser page (`../www/`: index.html, app.js, style.css and the wasm client in
//! `pkg/`, present once `bash wasm/build.sh` has run) into the crate, so that `webtorrent
//! serve` serves it wherever the binary runs. Writes `$OUT_DIR/www_files.rs`, a sorted table
//! of `(url path, include_bytes!(…))` that `server::www` includes. Without the `server`
//! feature there is no page to serve: it does nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Extensions of page assets; anything else (scripts such as `serve.sh`, type declarations,
/// notes) stays out of the binary.
const ASSET_EXTENSIONS: &[&str] = &[
    "html",
    "htm",
    "js",
    "mjs",
    "css",
    "wasm",
    "json",
    "map",
    "svg",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "webp",
    "ico",
    "webmanifest",
    "woff2",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_SERVER").is_none() {
        return;
    }
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let www = manifest_dir.join("..").join("www");
    let www = www.canonicalize().unwrap_or(www);
    let pkg = www.join("pkg");
    // A directory is scanned for changes to anything below it; pkg/ is named too so that a
    // rebuild after `wasm/build.sh` re-embeds it. A path that does not exist would rerun this
    // script on every build, so only existing ones are named (creating pkg/ touches www/).
    for dir in [&www, &pkg] {
        if dir.is_dir() {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
    }

    let mut files = Vec::new();
    collect(&www, "", &mut files);
    files.sort();

    let mut code = String::from(
        "/// The page's files: URL path below `/` (no leading slash) and content, sorted.\n\
         pub(crate) static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, path) in &files {
        let Some(path) = path.to_str() else {
            println!("cargo:warning=not embedding {} (not UTF-8)", path.display());
            continue;
        };
        let _ = writeln!(code, "    ({rel:?}, include_bytes!({path:?})),");
    }
    code.push_str("];\n");

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let out = out_dir.join("www_files.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}

/// Adds the page assets below `dir` (URL path prefix `prefix`) to `files`, skipping dotfiles
/// and dot folders (`pkg/.sources`, `.gitignore`) and anything but [`ASSET_EXTENSIONS`].
fn collect(dir: &Path, prefix: &str, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = format!("{prefix}{name}");
        // `metadata` follows symlinks, as serving the folder does.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect(&path, &format!("{rel}/"), files);
        } else if meta.is_file() && is_asset(name) {
            files.push((rel, path));
        }
    }
}

fn is_asset(name: &str) -> bool {
    // `x.d.ts` declarations and the like end in an extension not listed.
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ASSET_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}
