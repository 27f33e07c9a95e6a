//! Info hashes from our TorrentCreator must equal those of independent tools (create-torrent,
//! mktorrent, torf, transmission-create) for the same name, content and piece length. The
//! vectors and the tools' own .torrent files live in `tests/vectors/` (see its README).

use std::path::PathBuf;

use serde_json::Value;
use webtorrent_core::creator::{auto_piece_length, TorrentCreator};
use webtorrent_core::metainfo::Metainfo;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load() -> Value {
    let text = std::fs::read_to_string(vectors_dir().join("vectors.json")).expect("vectors.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// The documented content formula: byte i of a file with seed k.
fn content(file: &Value) -> Vec<u8> {
    if let Some(lit) = file["literal"].as_str() {
        return lit.as_bytes().to_vec();
    }
    let n = file["length"].as_u64().unwrap();
    let k = file["seed"].as_u64().unwrap();
    (0..n)
        .map(|i| ((i * 7 + k * 13 + (i >> 8)) % 251) as u8)
        .collect()
}

fn path_of(file: &Value) -> Vec<String> {
    file["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn created_info_hashes_match_independent_tools() {
    let v = load();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 8, "expected the full vector set");
    let mut checked_tools = 0;
    for case in cases {
        let id = case["case"].as_str().unwrap();
        let name = case["name"].as_str().unwrap();
        let files = case["files"].as_array().unwrap();
        let mut creator = TorrentCreator::new()
            .with_announce(vec![v["announce"].as_str().unwrap().to_string()])
            .with_private(case["private"].as_bool().unwrap());
        if let Some(pl) = case["piece_length"].as_u64() {
            creator = creator.with_piece_length(pl as u32);
        }
        let created = if case["single_file"].as_bool().unwrap() {
            let data = content(&files[0]);
            creator
                .create_single_from_reader(name, data.len() as u64, &data[..])
                .unwrap()
        } else {
            let sources: Vec<_> = files
                .iter()
                .map(|f| {
                    let data = content(f);
                    (path_of(f), data.len() as u64, std::io::Cursor::new(data))
                })
                .collect();
            creator.create_multi(name, sources).unwrap()
        };
        let ours = created.info_hash.to_hex();
        assert_eq!(
            ours,
            case["expected_info_hash"].as_str().unwrap(),
            "case {id}"
        );
        let tools = case["info_hash"].as_object().unwrap();
        assert!(tools.len() >= 2, "case {id}: needs two independent tools");
        for (tool, hash) in tools {
            assert_eq!(ours, hash.as_str().unwrap(), "case {id}, tool {tool}");
            checked_tools += 1;
            // Our info dictionary must be byte-identical to the tool's.
            let file = vectors_dir().join(format!("{id}.{tool}.torrent"));
            let theirs = Metainfo::from_bytes(&std::fs::read(&file).unwrap()).unwrap();
            assert_eq!(
                theirs.info_bytes, created.metainfo.info_bytes,
                "case {id}, tool {tool}"
            );
        }
        if case["piece_length"].is_null() {
            let total = case["total_length"].as_u64().unwrap();
            assert_eq!(
                u64::from(auto_piece_length(total)),
                case["auto_piece_length"].as_u64().unwrap(),
                "case {id}: automatic piece length"
            );
        }
        // create_from_data gives the same answer for single files.
        if case["single_file"].as_bool().unwrap() {
            let (bytes, hash) = creator.create_from_data(name, &content(&files[0])).unwrap();
            assert_eq!(hash, created.info_hash);
            assert_eq!(Metainfo::from_bytes(&bytes).unwrap().info_hash, hash);
        }
    }
    assert!(checked_tools >= 16);
}

#[test]
fn every_tool_torrent_parses_to_its_recorded_hash() {
    let v = load();
    let mut n = 0;
    for case in v["cases"].as_array().unwrap() {
        let id = case["case"].as_str().unwrap();
        let mut all: Vec<(String, String)> = case["info_hash"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(t, h)| (t.clone(), h.as_str().unwrap().to_string()))
            .collect();
        if let Some(others) = case["other_tools"].as_object() {
            for (t, o) in others {
                if let Some(h) = o["info_hash"].as_str() {
                    all.push((t.clone(), h.to_string()));
                }
            }
        }
        for (tool, hash) in all {
            let path = vectors_dir().join(format!("{id}.{tool}.torrent"));
            let m = Metainfo::from_bytes(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(m.info_hash.to_hex(), hash, "{}", path.display());
            assert_eq!(
                m.info.total_length(),
                case["total_length"].as_u64().unwrap()
            );
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} tool torrents checked");
}

#[test]
fn auto_piece_length_follows_create_torrent_up_to_its_cap() {
    let v = load();
    for row in v["create_torrent_piece_length"].as_array().unwrap() {
        let size = row["size"].as_u64().unwrap();
        let theirs = row["piece_length_fn"].as_u64().unwrap();
        let ours = u64::from(auto_piece_length(size));
        if size < 1 << 40 {
            // Same formula as the `piece-length` package; ours is capped at 16 MiB.
            assert_eq!(ours, theirs.min(16 * 1024 * 1024), "size {size}");
        } else {
            // Past ~1.4 TiB the JavaScript `1 << n` wraps around; ours stays at the cap.
            assert_eq!(ours, 16 * 1024 * 1024, "size {size}");
        }
    }
}
