#![no_main]
//! The WebSocket tracker signaling machine fed arbitrary tracker frames (raw bytes, and
//! well-formed offers and answers built from the input) interleaved with driver inputs and
//! time steps: it must never panic, and what it holds must stay within its configured bounds.
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use webtorrent_core::announce::{AnnounceConfig, AnnounceEvent, Announcer};
use webtorrent_core::signal::{AnnounceParams, Config, Output, SignalMachine};
use webtorrent_core::tracker::ws::{
    AnswerMessage, OfferMessage, SdpType, SessionDescription, TrackerMessage,
};
use webtorrent_core::{Id20, Time};

const EVENTS: [AnnounceEvent; 4] = [
    AnnounceEvent::None,
    AnnounceEvent::Started,
    AnnounceEvent::Completed,
    AnnounceEvent::Stopped,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Job ids come from a real announcer (their constructor is private to it).
    let urls = vec![
        vec!["wss://a.example".into()],
        vec!["wss://b.example".into()],
    ];
    let announce_config = AnnounceConfig {
        announce_to_all_trackers: true,
        ..AnnounceConfig::default()
    };
    let mut announcer = Announcer::new(urls, announce_config, 0, Time::ZERO);
    announcer.start(Time::ZERO, None);
    let jobs: Vec<_> = std::iter::from_fn(|| announcer.poll_job(Time::ZERO)).collect();
    let config = if mode & 1 == 0 {
        Config::default()
    } else {
        Config {
            max_offers: 3,
            max_answering: 2,
            max_offers_per_torrent: 4,
            max_pending_offers: 6,
            max_queued_messages: 2,
            max_pending_announces: 3,
            max_pending_scrapes: 1,
            reconnect_variance: Duration::ZERO,
            ..Config::default()
        }
    };
    let me = Id20([1; 20]);
    let mut m = SignalMachine::new(me, config.clone(), u64::from(mode), Time::ZERO);
    let torrents = [Id20([0xa0; 20]), Id20([0xa1; 20])];
    let mut offers: Vec<(Id20, Id20)> = Vec::new();
    let mut accepts: Vec<(Id20, Id20, Id20)> = Vec::new();
    let mut now = Time::ZERO;
    let mut i = 0;
    while i + 2 <= rest.len() {
        let action = rest[i];
        let arg = rest[i + 1];
        i += 2;
        let ih = torrents[usize::from(arg & 1)];
        let pick = usize::from(arg >> 1);
        match action % 14 {
            0 => m.add_torrent(now, ih),
            1 => m.remove_torrent(now, ih),
            2 => {
                if let Some(job) = jobs.get(pick % jobs.len().max(1)) {
                    let mut p = AnnounceParams::from_job(ih, job);
                    p.event = EVENTS[usize::from(action >> 4) % 4];
                    p.numwant = u32::from(arg);
                    m.announce(now, p);
                }
            }
            3 => {
                if let Some(&(id, _)) = offers.get(pick % offers.len().max(1)) {
                    m.offer_created(now, id, format!("v=0 {arg}"));
                }
            }
            4 => {
                if let Some(&(id, _)) = offers.get(pick % offers.len().max(1)) {
                    m.offer_failed(now, id);
                }
            }
            5 => {
                if let Some(&(h, peer, id)) = accepts.get(pick % accepts.len().max(1)) {
                    if action & 0x80 == 0 {
                        m.answer_created(now, h, peer, id, "v=0 answer".into());
                    } else {
                        m.answer_failed(now, h, peer, id);
                    }
                }
            }
            6 => m.connected(now),
            7 if action & 0x80 == 0 => m.closed(now),
            7 => m.connect_failed(now, "refused"),
            8 => {
                now += Duration::from_millis(u64::from(arg) * 500);
                m.handle_timeout(now);
            }
            9 => m.scrape(now, vec![ih]),
            10 => {
                // A well-formed remote offer; peer byte 1 is ourselves.
                let msg = TrackerMessage::Offer(OfferMessage {
                    info_hash: ih,
                    peer_id: Id20([arg >> 4; 20]),
                    offer: SessionDescription {
                        kind: SdpType::Offer,
                        sdp: "v=0 offer".into(),
                    },
                    offer_id: Id20([arg; 20]),
                });
                m.handle_message(now, &msg.to_json());
            }
            11 => {
                // A well-formed answer to one of our offers (or to a made-up one).
                let (offer_id, info_hash) = offers
                    .get(pick % offers.len().max(1))
                    .copied()
                    .unwrap_or((Id20([arg; 20]), ih));
                let msg = TrackerMessage::Answer(AnswerMessage {
                    info_hash: if action & 0x80 == 0 { info_hash } else { ih },
                    peer_id: Id20([action; 20]),
                    answer: SessionDescription {
                        kind: SdpType::Answer,
                        sdp: "v=0 answer".into(),
                    },
                    offer_id,
                });
                m.handle_message(now, &msg.to_json());
            }
            _ => {
                // Raw bytes as a frame.
                let end = (i + usize::from(arg)).min(rest.len());
                let text = String::from_utf8_lossy(&rest[i..end]);
                i = end;
                m.handle_message(now, &text);
            }
        }
        while let Some(out) = m.poll_output() {
            match out {
                Output::CreateOffer {
                    info_hash,
                    offer_id,
                } => {
                    if offers.len() < 4096 {
                        offers.push((offer_id, info_hash));
                    }
                }
                Output::AcceptOffer {
                    info_hash,
                    peer_id,
                    offer_id,
                    ..
                } => {
                    assert_ne!(peer_id, me);
                    if accepts.len() < 4096 {
                        accepts.push((info_hash, peer_id, offer_id));
                    }
                }
                _ => {}
            }
        }
        assert!(m.pending_offers() <= config.max_pending_offers);
        for t in &torrents {
            assert!(m.pending_offers_for(t) <= config.max_offers_per_torrent);
        }
        assert!(m.answering() <= config.max_answering);
        assert!(m.queued_messages() <= config.max_queued_messages);
        assert!(m.pending_announces() <= config.max_pending_announces);
        assert!(m.pending_scrapes() <= config.max_pending_scrapes);
    }
});
