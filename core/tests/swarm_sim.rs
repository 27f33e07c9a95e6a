//! Simulated swarms: torrent state machines connected by in-memory links, no sockets, a seeded
//! RNG. Every leecher must end with data whose SHA-256 equals the source's.

mod sim;

use std::time::Duration;

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use sim::{content, multi_file_torrent, Behaviour, LinkSpec, Sim, Verify};
use webtorrent_core::torrent::TorrentEvent;

fn sha256(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

struct Outcome {
    all_done: bool,
    banned_corrupter: usize,
    sim_secs: f64,
}

/// One seeder, a corrupting peer, five leechers (one from a magnet link), a slow link and a
/// link that drops midway; multi-file torrent of 240 pieces. Pieces are hashed as `verify` says.
fn run_swarm(seed: u64, verify: Verify) -> Outcome {
    let piece_length = 16 * 1024;
    let lengths = [1_000_000, 7, 2_000_000, 932_153];
    let total: usize = lengths.iter().sum();
    let data = content(total, seed);
    let meta = multi_file_torrent(&data, &lengths, piece_length);
    assert!(meta.info.num_pieces() >= 200);
    let mut sim = Sim::new(seed);
    sim.verify = verify;
    let seeder = sim.add_seed(&meta, &data, Behaviour::Honest);
    let corrupter = sim.add_seed(&meta, &data, Behaviour::Corrupt);
    let leechers: Vec<usize> = (0..4).map(|_| sim.add_leecher(&meta)).collect();
    let magnet = sim.add_magnet_leecher(meta.info_hash, total);
    // A slow link between the seeder and the first leecher; a link that dies after 300 kB
    // between the seeder and the second.
    sim.link_specs.insert(
        (leechers[0], seeder),
        LinkSpec {
            latency: Duration::from_millis(80),
            bandwidth: 200_000,
            cut_after: None,
        },
    );
    sim.link_specs.insert(
        (leechers[1], seeder),
        LinkSpec {
            cut_after: Some(300_000),
            ..LinkSpec::default()
        },
    );
    // Tracker-like introductions: everyone knows the seeder and the corrupter; the last
    // leecher and the magnet leecher know only one other leecher and must use PEX for more.
    for &l in &leechers[..3] {
        sim.introduce(l, seeder);
        sim.introduce(l, corrupter);
    }
    sim.introduce(leechers[3], leechers[0]);
    sim.introduce(magnet, leechers[1]);
    sim.introduce(magnet, corrupter);
    let mut all = leechers.clone();
    all.push(magnet);
    let all_done = sim.run(Duration::from_secs(300), |s| {
        all.iter().all(|&i| s.nodes[i].done_at.is_some())
    });
    let expected = sha256(&data);
    let mut banned_corrupter = 0;
    for &i in &all {
        let n = &sim.nodes[i];
        if all_done {
            assert_eq!(
                sha256(&n.data()),
                expected,
                "node {i} data differs (seed {seed})"
            );
        }
        if n.events.iter().any(|e| {
            matches!(e, TorrentEvent::PeerBanned { addr: Some(a), .. } if *a == sim.nodes[corrupter].addr || a.ip() == sim.nodes[corrupter].addr.ip())
        }) {
            banned_corrupter += 1;
        }
    }
    assert!(
        sim.nodes[magnet]
            .events
            .contains(&TorrentEvent::MetadataReceived),
        "magnet leecher got metadata (seed {seed})"
    );
    Outcome {
        all_done,
        banned_corrupter,
        sim_secs: sim.now.as_micros() as f64 / 1e6,
    }
}

#[test]
fn swarm_with_corrupt_peer_slow_and_dropped_links() {
    let o = run_swarm(1, Verify::Inline);
    assert!(o.all_done, "not all leechers finished in {} s", o.sim_secs);
    assert!(
        o.banned_corrupter >= 1,
        "the corrupting peer was never banned"
    );
}

/// The same swarm with pieces hashed (and stored) on a worker thread, verdicts coming back
/// later: good pieces still land in storage, bad ones still get the corrupter banned.
#[test]
fn swarm_with_hashing_on_a_worker_thread() {
    let o = run_swarm(
        1,
        Verify::Thread {
            delay: Duration::from_millis(2),
        },
    );
    assert!(o.all_done, "not all leechers finished in {} s", o.sim_secs);
    assert!(
        o.banned_corrupter >= 1,
        "the corrupting peer was never banned"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn swarm_completes_for_many_seeds(seed in 2u64..1_000_000) {
        let o = run_swarm(seed, Verify::Inline);
        prop_assert!(o.all_done, "seed {} not done after {} s", seed, o.sim_secs);
    }
}

#[test]
fn two_peers_transfer_and_seed_to_seed_disconnects() {
    let data = content(3_000_000, 9);
    let meta = multi_file_torrent(&data, &[3_000_000], 32 * 1024);
    let mut sim = Sim::new(9);
    let s = sim.add_seed(&meta, &data, Behaviour::Honest);
    let l = sim.add_leecher(&meta);
    sim.introduce(l, s);
    assert!(sim.run(Duration::from_secs(60), |sim| sim.nodes[l]
        .done_at
        .is_some()));
    assert_eq!(sha256(&sim.nodes[l].data()), sha256(&data));
    // Once both are seeds the connection is closed.
    sim.run(Duration::from_secs(5), |_| false);
    assert_eq!(sim.nodes[l].torrent().num_peers(), 0);
    let st = sim.nodes[l].torrent_mut().stats(sim.now);
    assert_eq!(st.left, Some(0));
    assert!(st.downloaded >= 3_000_000);
}

#[test]
fn magnet_only_swarm_gets_metadata() {
    let data = content(500_000, 3);
    let meta = multi_file_torrent(&data, &[200_000, 300_000], 16 * 1024);
    let mut sim = Sim::new(3);
    let s = sim.add_seed(&meta, &data, Behaviour::Honest);
    let m = sim.add_magnet_leecher(meta.info_hash, data.len());
    sim.introduce(m, s);
    assert!(sim.run(Duration::from_secs(60), |sim| sim.nodes[m]
        .done_at
        .is_some()));
    assert_eq!(sha256(&sim.nodes[m].data()), sha256(&data));
    assert_eq!(
        sim.nodes[m].torrent().metainfo().unwrap().info_bytes,
        meta.info_bytes
    );
}

/// A leecher that wants one file of a multi-file torrent fetches exactly the pieces
/// overlapping that file from a seeder, stores that file right and nothing else, and reports
/// `Done` while the torrent stays incomplete.
#[test]
fn leecher_fetches_only_the_selected_file() {
    let piece_length = 16 * 1024;
    let lengths = [300_000, 123_457, 400_000];
    let total: usize = lengths.iter().sum();
    let data = content(total, 5);
    let meta = multi_file_torrent(&data, &lengths, piece_length);
    let mut sim = Sim::new(5);
    let s = sim.add_seed(&meta, &data, Behaviour::Honest);
    let l = sim.add_leecher(&meta);
    let now = sim.now;
    sim.nodes[l]
        .torrent_mut()
        .set_files_wanted(now, &[false, true, false])
        .expect("metadata is known");
    sim.introduce(l, s);
    assert!(sim.run(Duration::from_secs(60), |sim| sim.nodes[l]
        .done_at
        .is_some()));
    // Running on changes nothing: the selection is done.
    sim.run(Duration::from_secs(10), |_| false);

    let file = meta.info.files[1].range();
    let pl = u64::from(piece_length);
    let (first, last) = (file.start / pl, (file.end - 1) / pl);
    let span = (first * pl) as usize..(((last + 1) * pl) as usize).min(total);
    let node = &sim.nodes[l];
    let have: Vec<u32> = node.torrent().have().expect("metadata").ones().collect();
    assert_eq!(have, (first as u32..=last as u32).collect::<Vec<_>>());
    assert!(node.torrent().is_finished());
    assert!(!node.torrent().is_complete());
    let dones = node
        .events
        .iter()
        .filter(|e| **e == TorrentEvent::Done)
        .count();
    assert_eq!(dones, 1);
    let stored = node.data();
    let (fs, fe) = (file.start as usize, file.end as usize);
    assert_eq!(sha256(&stored[fs..fe]), sha256(&data[fs..fe]));
    // Nothing outside the wanted pieces was stored (the storage starts filled with 0xee).
    assert!(stored[..span.start].iter().all(|b| *b == 0xee));
    assert!(stored[span.end..].iter().all(|b| *b == 0xee));
    drop(stored);
    let st = sim.nodes[l].torrent_mut().stats(sim.now);
    assert_eq!(
        st.downloaded,
        span.len() as u64,
        "only the wanted pieces came"
    );
    assert_eq!(st.left, Some((total - span.len()) as u64));
    assert_eq!(
        sim.nodes[l].torrent().num_peers(),
        1,
        "still connected to the seed"
    );
}
