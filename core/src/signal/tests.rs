use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::announce::{AnnounceConfig, Announcer, TrackerFailure, TrackerReply};
use crate::tracker::ws::{
    AnnounceReply, AnnounceRequest, AnswerMessage, AnswerRequest, Failure, OfferMessage,
    ScrapeReply, ScrapeRequest, SdpType, SessionDescription, TrackerMessage, WsAction,
};
use crate::tracker::{Event, ScrapeFile};

const T0: Time = Time::ZERO;
const ME: PeerId = Id20([1; 20]);
const OTHER: PeerId = Id20([2; 20]);
const IH: InfoHash = Id20([0xaa; 20]);
const IH2: InfoHash = Id20([0xbb; 20]);

fn t(secs: u64) -> Time {
    Time::from_millis(secs * 1000)
}

fn ms(ms: u64) -> Time {
    Time::from_millis(ms)
}

/// `n` distinct job ids, taken from a real [`Announcer`] (their constructor is private to it).
fn jobs(n: usize) -> Vec<JobId> {
    let urls = (0..n)
        .map(|i| vec![format!("wss://t{i}.example/announce")])
        .collect();
    let config = AnnounceConfig {
        announce_to_all_trackers: true,
        ..AnnounceConfig::default()
    };
    let mut a = Announcer::new(urls, config, 1, T0);
    a.start(T0, Some(100));
    let ids: Vec<JobId> = std::iter::from_fn(|| a.poll_job(T0).map(|j| j.id)).collect();
    assert_eq!(ids.len(), n);
    ids
}

fn job() -> JobId {
    jobs(1)[0]
}

fn params(job: JobId, info_hash: InfoHash, event: AnnounceEvent, numwant: u32) -> AnnounceParams {
    AnnounceParams {
        job,
        info_hash,
        event,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        numwant,
        tracker_id: None,
    }
}

fn no_variance() -> Config {
    Config {
        reconnect_variance: Duration::ZERO,
        ..Config::default()
    }
}

fn machine(config: Config) -> SignalMachine {
    SignalMachine::new(ME, config, 7, T0)
}

fn drain(m: &mut SignalMachine) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

/// A machine with torrent `IH` registered and the socket open.
fn open(config: Config) -> SignalMachine {
    let mut m = machine(config);
    m.add_torrent(T0, IH);
    assert_eq!(drain(&mut m), vec![Output::Connect]);
    m.connected(T0);
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.connection_state(), ConnectionState::Open);
    m
}

fn sent(outputs: &[Output]) -> Vec<ClientMessage> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(text) => Some(ClientMessage::from_json(text).expect("valid JSON sent")),
            _ => None,
        })
        .collect()
}

fn one_announce(outputs: &[Output]) -> AnnounceRequest {
    let msgs = sent(outputs);
    assert_eq!(msgs.len(), 1, "expected one frame: {outputs:?}");
    match msgs.into_iter().next() {
        Some(ClientMessage::Announce(a)) => a,
        other => panic!("expected an announce, got {other:?}"),
    }
}

fn created(outputs: &[Output]) -> Vec<OfferId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::CreateOffer { offer_id, .. } => Some(*offer_id),
            _ => None,
        })
        .collect()
}

fn dropped(outputs: &[Output]) -> BTreeSet<OfferId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::DropOffer { offer_id, .. } => Some(*offer_id),
            _ => None,
        })
        .collect()
}

fn sdp_for(id: &OfferId) -> String {
    format!("v=0 offer {}", id.to_hex())
}

/// Announces `numwant` with torrent `IH` on an open machine and creates every offer; returns
/// the announce sent and its offer ids.
fn announce_with_offers(
    m: &mut SignalMachine,
    now: Time,
    job: JobId,
    numwant: u32,
) -> (AnnounceRequest, Vec<OfferId>) {
    m.announce(now, params(job, IH, AnnounceEvent::Started, numwant));
    let mut out = drain(m);
    let ids = created(&out);
    for id in &ids {
        m.offer_created(now, *id, sdp_for(id));
    }
    out.extend(drain(m));
    (one_announce(&out), ids)
}

fn reply_msg(info_hash: InfoHash) -> String {
    TrackerMessage::AnnounceReply(AnnounceReply {
        info_hash,
        interval: Some(120),
        min_interval: None,
        complete: Some(4),
        incomplete: Some(8),
        warning_message: None,
        tracker_id: None,
    })
    .to_json()
}

fn answer_msg(info_hash: InfoHash, peer_id: PeerId, offer_id: OfferId) -> String {
    TrackerMessage::Answer(AnswerMessage {
        info_hash,
        peer_id,
        answer: SessionDescription {
            kind: SdpType::Answer,
            sdp: "v=0 answer".into(),
        },
        offer_id,
    })
    .to_json()
}

fn offer_msg(info_hash: InfoHash, peer_id: PeerId, offer_id: OfferId) -> String {
    TrackerMessage::Offer(OfferMessage {
        info_hash,
        peer_id,
        offer: SessionDescription {
            kind: SdpType::Offer,
            sdp: "v=0 remote offer".into(),
        },
        offer_id,
    })
    .to_json()
}

#[test]
fn announce_waits_for_offers_then_sends_one_announce() {
    let mut m = open(Config::default());
    let j = job();
    m.announce(t(1), params(j, IH, AnnounceEvent::Started, 50));
    let out = drain(&mut m);
    let ids = created(&out);
    // bittorrent-tracker 11 generates min(numwant, 5) offers.
    assert_eq!(ids.len(), 5);
    assert_eq!(
        out.len(),
        5,
        "only offer requests until they resolve: {out:?}"
    );
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 5);
    for (i, id) in ids.iter().enumerate() {
        m.offer_created(t(2), *id, sdp_for(id));
        let out = drain(&mut m);
        if i + 1 < ids.len() {
            assert!(out.is_empty(), "nothing sent before all offers: {out:?}");
        } else {
            let a = one_announce(&out);
            assert_eq!(a.info_hash, IH);
            assert_eq!(a.peer_id, ME);
            assert_eq!(a.event, Some(Event::Started));
            assert_eq!(a.numwant, Some(5));
            assert_eq!(
                (a.uploaded, a.downloaded, a.left),
                (Some(10), Some(20), Some(30))
            );
            let got: Vec<(OfferId, String, SdpType)> = a
                .offers
                .iter()
                .map(|o| (o.offer_id, o.offer.sdp.clone(), o.offer.kind))
                .collect();
            let want: Vec<(OfferId, String, SdpType)> = ids
                .iter()
                .map(|id| (*id, sdp_for(id), SdpType::Offer))
                .collect();
            assert_eq!(got, want);
        }
    }
    assert_eq!(m.pending_offers(), 5);
    m.handle_message(t(3), &reply_msg(IH));
    assert_eq!(
        drain(&mut m),
        vec![Output::AnnounceDone {
            job: Some(j),
            info_hash: IH,
            reply: TrackerReply {
                interval: Some(Duration::from_secs(120)),
                complete: Some(4),
                incomplete: Some(8),
                ..TrackerReply::default()
            },
        }]
    );
    // A second reply matches nothing.
    m.handle_message(t(3), &reply_msg(IH));
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.stats().ignored_messages, 1);
}

#[test]
fn numwant_and_max_offers_limit_the_offers() {
    let mut m = open(Config {
        max_offers: 10,
        ..Config::default()
    });
    let ids = jobs(2);
    m.announce(T0, params(ids[0], IH, AnnounceEvent::None, 3));
    assert_eq!(created(&drain(&mut m)).len(), 3);
    m.announce(T0, params(ids[1], IH, AnnounceEvent::None, 50));
    assert_eq!(created(&drain(&mut m)).len(), 10);
}

#[test]
fn offers_not_ready_by_the_deadline_are_dropped_and_the_announce_goes() {
    let mut m = open(Config::default());
    m.announce(T0, params(job(), IH, AnnounceEvent::None, 3));
    let ids = created(&drain(&mut m));
    m.offer_created(t(1), ids[0], sdp_for(&ids[0]));
    m.offer_failed(t(1), ids[1]);
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.poll_timeout(), Some(t(10)));
    m.handle_timeout(ms(9_999));
    assert_eq!(drain(&mut m), vec![]);
    m.handle_timeout(t(10));
    let out = drain(&mut m);
    assert_eq!(dropped(&out), BTreeSet::from([ids[2]]));
    let a = one_announce(&out);
    assert_eq!(a.event, None);
    assert_eq!(a.numwant, Some(1));
    assert_eq!(a.offers.len(), 1);
    assert_eq!(a.offers[0].offer_id, ids[0]);
    // The late offer is not wanted any more.
    m.offer_created(t(11), ids[2], "late".into());
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.pending_offers(), 1);
}

#[test]
fn from_job_copies_the_announcer_job() {
    let mut a = Announcer::new(
        vec![vec!["wss://tracker.example".into()]],
        AnnounceConfig::default(),
        3,
        T0,
    );
    a.start(T0, Some(99));
    a.update_stats(5, 6, Some(99));
    let j = a.poll_job(T0).expect("started is due");
    let p = AnnounceParams::from_job(IH, &j);
    assert_eq!(
        p,
        AnnounceParams {
            job: j.id,
            info_hash: IH,
            event: AnnounceEvent::Started,
            uploaded: 5,
            downloaded: 6,
            left: 99,
            numwant: 50,
            tracker_id: None,
        }
    );
}

#[test]
fn stopped_has_no_offers_and_drops_pending() {
    let mut m = open(Config::default());
    let ids = jobs(3);
    let (_, announced) = announce_with_offers(&mut m, T0, ids[0], 2);
    m.handle_message(T0, &reply_msg(IH));
    drain(&mut m);
    // A second announce still gathering offers, and a remote offer being answered.
    m.announce(t(1), params(ids[1], IH, AnnounceEvent::None, 2));
    let creating = created(&drain(&mut m));
    m.handle_message(t(1), &offer_msg(IH, OTHER, Id20([9; 20])));
    assert_eq!(drain(&mut m).len(), 1);
    assert_eq!(m.pending_offers(), 4);

    m.announce(t(2), params(ids[2], IH, AnnounceEvent::Stopped, 0));
    let out = drain(&mut m);
    let all: BTreeSet<OfferId> = announced.iter().chain(&creating).copied().collect();
    assert_eq!(dropped(&out), all);
    assert!(out.contains(&Output::AnnounceFailed {
        job: Some(ids[1]),
        info_hash: IH,
        failure: TrackerFailure::Network("superseded by a stopped announce".into()),
    }));
    assert!(out.contains(&Output::DropAnswer {
        info_hash: IH,
        peer_id: OTHER,
        offer_id: Id20([9; 20]),
    }));
    let a = one_announce(&out);
    assert_eq!(a.event, Some(Event::Stopped));
    assert!(a.offers.is_empty());
    assert_eq!(a.numwant, Some(0));
    assert_eq!((m.pending_offers(), m.answering()), (0, 0));
    // A stopped torrent takes no offers, and answers to its old offers are ignored.
    m.handle_message(t(3), &offer_msg(IH, OTHER, Id20([8; 20])));
    m.handle_message(t(3), &answer_msg(IH, OTHER, announced[0]));
    assert_eq!(drain(&mut m), vec![]);
    m.handle_message(t(3), &reply_msg(IH));
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Output::AnnounceDone { job: Some(j), .. }] if *j == ids[2]
    ));
}

#[test]
fn completed_has_no_offers_and_keeps_pending() {
    let mut m = open(Config::default());
    let ids = jobs(2);
    let (_, announced) = announce_with_offers(&mut m, T0, ids[0], 2);
    m.announce(t(1), params(ids[1], IH, AnnounceEvent::Completed, 50));
    let out = drain(&mut m);
    let a = one_announce(&out);
    assert_eq!(a.event, Some(Event::Completed));
    assert!(a.offers.is_empty());
    assert_eq!(a.numwant, Some(50));
    assert_eq!(m.pending_offers(), 2);
    m.handle_message(t(2), &answer_msg(IH, OTHER, announced[1]));
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Output::ApplyAnswer { offer_id, .. }] if *offer_id == announced[1]
    ));
}

#[test]
fn answers_route_by_offer_id() {
    let mut m = open(Config::default());
    let (_, ids) = announce_with_offers(&mut m, T0, job(), 3);
    m.handle_message(t(1), &answer_msg(IH, OTHER, ids[1]));
    assert_eq!(
        drain(&mut m),
        vec![Output::ApplyAnswer {
            info_hash: IH,
            peer_id: OTHER,
            offer_id: ids[1],
            sdp: "v=0 answer".into(),
        }]
    );
    assert_eq!(m.pending_offers(), 2);
    // Consumed: a second answer to the same offer is ignored.
    m.handle_message(t(1), &answer_msg(IH, Id20([3; 20]), ids[1]));
    assert_eq!(drain(&mut m), vec![]);
    m.handle_message(t(1), &answer_msg(IH, Id20([3; 20]), ids[0]));
    assert_eq!(created(&drain(&mut m)), vec![]);
    assert_eq!(m.pending_offers(), 1);
}

#[test]
fn unknown_or_mismatched_answers_are_ignored() {
    let mut m = open(Config::default());
    m.add_torrent(T0, IH2);
    let (_, ids) = announce_with_offers(&mut m, T0, job(), 2);
    m.handle_message(t(1), &answer_msg(IH, OTHER, Id20([0x42; 20])));
    m.handle_message(t(1), &answer_msg(IH2, OTHER, ids[0]));
    let wrong_kind = TrackerMessage::Answer(AnswerMessage {
        info_hash: IH,
        peer_id: OTHER,
        answer: SessionDescription {
            kind: SdpType::Offer,
            sdp: String::new(),
        },
        offer_id: ids[0],
    })
    .to_json();
    m.handle_message(t(1), &wrong_kind);
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.stats().ignored_messages, 3);
    assert_eq!(m.pending_offers(), 2);
}

#[test]
fn answers_to_offers_not_yet_announced_are_ignored() {
    let mut m = open(Config::default());
    m.announce(T0, params(job(), IH, AnnounceEvent::None, 2));
    let ids = created(&drain(&mut m));
    m.offer_created(T0, ids[0], sdp_for(&ids[0]));
    m.handle_message(T0, &answer_msg(IH, OTHER, ids[0]));
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn own_offers_and_answers_are_ignored() {
    let mut m = open(Config::default());
    let (_, ids) = announce_with_offers(&mut m, T0, job(), 1);
    m.handle_message(t(1), &offer_msg(IH, ME, Id20([5; 20])));
    m.handle_message(t(1), &answer_msg(IH, ME, ids[0]));
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.answering(), 0);
    // Offers for a torrent we do not have, or one not announced yet, are ignored too.
    m.handle_message(t(1), &offer_msg(IH2, OTHER, Id20([5; 20])));
    m.add_torrent(t(1), IH2);
    m.handle_message(t(1), &offer_msg(IH2, OTHER, Id20([5; 20])));
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn remote_offer_is_answered_with_to_peer_id_and_trackerid() {
    let mut m = open(Config::default());
    let j = jobs(2);
    announce_with_offers(&mut m, T0, j[0], 1);
    let with_id = TrackerMessage::AnnounceReply(AnnounceReply {
        info_hash: IH,
        interval: Some(120),
        min_interval: Some(60),
        complete: Some(4),
        incomplete: Some(5),
        warning_message: Some("careful".into()),
        tracker_id: Some("tid-1".into()),
    })
    .to_json();
    m.handle_message(t(1), &with_id);
    assert_eq!(
        drain(&mut m),
        vec![Output::AnnounceDone {
            job: Some(j[0]),
            info_hash: IH,
            reply: TrackerReply {
                interval: Some(Duration::from_secs(120)),
                min_interval: Some(Duration::from_secs(60)),
                complete: Some(4),
                incomplete: Some(5),
                peers_count: 0,
                tracker_id: Some(b"tid-1".to_vec()),
                warning: Some("careful".into()),
            },
        }]
    );
    let offer_id = Id20([7; 20]);
    m.handle_message(t(2), &offer_msg(IH, OTHER, offer_id));
    assert_eq!(
        drain(&mut m),
        vec![Output::AcceptOffer {
            info_hash: IH,
            peer_id: OTHER,
            offer_id,
            sdp: "v=0 remote offer".into(),
        }]
    );
    // The same offer again is not answered twice.
    m.handle_message(t(2), &offer_msg(IH, OTHER, offer_id));
    assert_eq!(drain(&mut m), vec![]);
    m.answer_created(t(3), IH, OTHER, offer_id, "v=0 my answer".into());
    let msgs = sent(&drain(&mut m));
    assert_eq!(
        msgs,
        vec![ClientMessage::Answer(AnswerRequest {
            info_hash: IH,
            peer_id: ME,
            to_peer_id: OTHER,
            answer: SessionDescription {
                kind: SdpType::Answer,
                sdp: "v=0 my answer".into(),
            },
            offer_id,
            trackerid: Some("tid-1".into()),
        })]
    );
    assert_eq!(m.answering(), 0);
    // Answering again is ignored.
    m.answer_created(t(3), IH, OTHER, offer_id, "again".into());
    assert_eq!(drain(&mut m), vec![]);
    // The stored tracker id is echoed by later announces too.
    m.announce(t(4), params(j[1], IH, AnnounceEvent::Completed, 0));
    assert_eq!(one_announce(&drain(&mut m)).trackerid, Some("tid-1".into()));
}

#[test]
fn answers_not_created_in_time_are_dropped() {
    let mut m = open(Config::default());
    announce_with_offers(&mut m, T0, job(), 0);
    m.handle_message(t(1), &offer_msg(IH, OTHER, Id20([7; 20])));
    drain(&mut m);
    assert_eq!(m.poll_timeout(), Some(t(21)));
    m.handle_timeout(t(21));
    assert!(drain(&mut m).contains(&Output::DropAnswer {
        info_hash: IH,
        peer_id: OTHER,
        offer_id: Id20([7; 20]),
    }));
    m.answer_created(t(22), IH, OTHER, Id20([7; 20]), "late".into());
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn simultaneous_incoming_offers_are_bounded() {
    let mut m = open(Config {
        max_answering: 3,
        ..Config::default()
    });
    announce_with_offers(&mut m, T0, job(), 0);
    for p in 10..15u8 {
        m.handle_message(t(1), &offer_msg(IH, Id20([p; 20]), Id20([p; 20])));
    }
    let accepted: Vec<PeerId> = drain(&mut m)
        .into_iter()
        .filter_map(|o| match o {
            Output::AcceptOffer { peer_id, .. } => Some(peer_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        accepted,
        vec![Id20([10; 20]), Id20([11; 20]), Id20([12; 20])]
    );
    assert_eq!(m.answering(), 3);
    assert_eq!(m.stats().refused_offers, 2);
    // A slot frees up: the next offer is accepted.
    m.answer_failed(t(2), IH, Id20([10; 20]), Id20([10; 20]));
    assert_eq!(drain(&mut m), vec![]);
    m.handle_message(t(2), &offer_msg(IH, Id20([20; 20]), Id20([20; 20])));
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Output::AcceptOffer { peer_id, .. }] if *peer_id == Id20([20; 20])
    ));
}

#[test]
fn offers_expire_after_50_seconds() {
    let mut m = open(Config::default());
    let (_, ids) = announce_with_offers(&mut m, t(1), job(), 5);
    m.handle_message(t(2), &reply_msg(IH));
    drain(&mut m);
    assert_eq!(m.poll_timeout(), Some(t(51)));
    m.handle_timeout(ms(50_999));
    assert_eq!(drain(&mut m), vec![]);
    m.handle_timeout(t(51));
    let out = drain(&mut m);
    assert_eq!(out.len(), 5);
    assert_eq!(dropped(&out), ids.iter().copied().collect());
    assert_eq!(m.pending_offers(), 0);
    assert_eq!(m.poll_timeout(), None);
    // An answer after expiry is ignored.
    m.handle_message(t(52), &answer_msg(IH, OTHER, ids[0]));
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn reconnect_backoff_grows_and_resets_after_a_connection() {
    let mut m = machine(no_variance());
    m.add_torrent(T0, IH);
    assert_eq!(drain(&mut m), vec![Output::Connect]);
    let mut now = T0;
    for delay in [10, 20, 40, 80, 160] {
        m.closed(now);
        assert_eq!(
            m.connection_state(),
            ConnectionState::Backoff {
                until: now + Duration::from_secs(delay)
            }
        );
        assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(delay)));
        m.handle_timeout(now + Duration::from_millis(delay * 1000 - 1));
        assert_eq!(drain(&mut m), vec![]);
        now += Duration::from_secs(delay);
        m.handle_timeout(now);
        assert_eq!(drain(&mut m), vec![Output::Connect]);
    }
    m.connected(now);
    m.closed(now);
    assert_eq!(
        m.connection_state(),
        ConnectionState::Backoff {
            until: now + Duration::from_secs(10)
        }
    );
    assert_eq!(m.stats().connections, 1);
    assert_eq!(m.stats().disconnections, 6);
}

#[test]
fn reconnect_backoff_is_capped_and_jittered() {
    let mut m = machine(Config::default());
    m.add_torrent(T0, IH);
    drain(&mut m);
    let mut now = T0;
    let variance = Duration::from_secs(5 * 60);
    let mut jitters = BTreeSet::new();
    for i in 0..14u32 {
        m.closed(now);
        let ConnectionState::Backoff { until } = m.connection_state() else {
            panic!("backing off");
        };
        let base = Duration::from_secs(10 * (1u64 << i)).min(Duration::from_secs(3600));
        let delay = until - now;
        assert!(
            delay >= base && delay < base + variance,
            "{i}: {delay:?} vs {base:?}"
        );
        jitters.insert(delay - base);
        now = until;
        m.handle_timeout(now);
        assert_eq!(drain(&mut m), vec![Output::Connect]);
    }
    assert!(jitters.len() > 10, "jitter varies: {jitters:?}");
}

#[test]
fn no_reconnect_without_torrents() {
    let mut m = machine(no_variance());
    m.add_torrent(T0, IH);
    drain(&mut m);
    m.closed(T0);
    m.remove_torrent(t(1), IH);
    m.handle_timeout(t(10));
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.connection_state(), ConnectionState::Idle);
    assert_eq!(m.poll_timeout(), None);
    // A new torrent connects at once.
    m.add_torrent(t(11), IH);
    assert_eq!(drain(&mut m), vec![Output::Connect]);
}

#[test]
fn a_failed_connection_reports_its_reason() {
    let mut m = machine(no_variance());
    m.add_torrent(T0, IH);
    let j = jobs(2);
    m.announce(T0, params(j[0], IH, AnnounceEvent::Started, 0));
    assert_eq!(drain(&mut m), vec![Output::Connect]);
    m.connect_failed(t(1), "invalid peer certificate: NotValidForName");
    let reasons = |out: &[Output]| -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::AnnounceFailed {
                    failure: TrackerFailure::Network(r),
                    ..
                } => Some(r.clone()),
                _ => None,
            })
            .collect()
    };
    let r = reasons(&drain(&mut m));
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].contains("NotValidForName"), "{r:?}");
    // While backing off, later announces carry the same reason.
    m.announce(t(2), params(j[1], IH, AnnounceEvent::None, 0));
    let r = reasons(&drain(&mut m));
    assert!(r.len() == 1 && r[0].contains("NotValidForName"), "{r:?}");
    // A reason from the network is bounded.
    let mut m = machine(no_variance());
    m.add_torrent(T0, IH);
    m.announce(T0, params(j[0], IH, AnnounceEvent::Started, 0));
    drain(&mut m);
    m.connect_failed(t(1), &"x".repeat(100_000));
    let r = reasons(&drain(&mut m));
    assert!(r.len() == 1 && r[0].len() < 300, "{}", r[0].len());
}

#[test]
fn announces_fail_on_close() {
    let mut m = open(no_variance());
    m.add_torrent(T0, IH2);
    let j = jobs(2);
    let (_, ids) = announce_with_offers(&mut m, T0, j[0], 2);
    m.announce(T0, params(j[1], IH2, AnnounceEvent::Started, 1));
    let creating = created(&drain(&mut m));
    m.handle_message(T0, &offer_msg(IH, OTHER, Id20([4; 20])));
    drain(&mut m);
    m.closed(t(1));
    let out = drain(&mut m);
    let all: BTreeSet<OfferId> = ids.iter().chain(&creating).copied().collect();
    assert_eq!(dropped(&out), all);
    let failed: Vec<(Option<JobId>, InfoHash)> = out
        .iter()
        .filter_map(|o| match o {
            Output::AnnounceFailed {
                job,
                info_hash,
                failure: TrackerFailure::Network(_),
            } => Some((*job, *info_hash)),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![(Some(j[0]), IH), (Some(j[1]), IH2)]);
    assert!(out.contains(&Output::DropAnswer {
        info_hash: IH,
        peer_id: OTHER,
        offer_id: Id20([4; 20]),
    }));
    assert_eq!(
        (m.pending_offers(), m.pending_announces(), m.answering()),
        (0, 0, 0)
    );
    // While waiting to reconnect, announces fail at once.
    m.announce(t(2), params(j[0], IH, AnnounceEvent::None, 5));
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Output::AnnounceFailed {
            job: Some(_),
            failure: TrackerFailure::Network(_),
            ..
        }]
    ));
    // A late reply on the old socket means nothing.
    m.handle_message(t(2), &reply_msg(IH));
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn queued_messages_are_flushed_on_connect() {
    let mut m = machine(Config::default());
    let j = jobs(2);
    m.announce(T0, params(j[0], IH, AnnounceEvent::Started, 1));
    let out = drain(&mut m);
    assert_eq!(out[0], Output::Connect);
    let ids = created(&out);
    m.offer_created(t(1), ids[0], sdp_for(&ids[0]));
    m.announce(t(1), params(j[1], IH2, AnnounceEvent::Completed, 0));
    m.scrape(t(1), vec![IH, IH2]);
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.queued_messages(), 3);
    m.connected(t(2));
    let msgs = sent(&drain(&mut m));
    assert_eq!(msgs.len(), 3);
    assert!(matches!(&msgs[0], ClientMessage::Announce(a)
        if a.info_hash == IH && a.offers.len() == 1 && a.offers[0].offer_id == ids[0]));
    assert!(matches!(&msgs[1], ClientMessage::Announce(a)
        if a.info_hash == IH2 && a.event == Some(Event::Completed)));
    assert_eq!(
        msgs[2],
        ClientMessage::Scrape(ScrapeRequest {
            info_hashes: vec![IH, IH2]
        })
    );
    assert_eq!(m.queued_messages(), 0);
    // No re-announce on the first connection.
    m.handle_message(t(2), &reply_msg(IH));
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Output::AnnounceDone { job: Some(x), .. }] if *x == j[0]
    ));
}

#[test]
fn offers_lost_while_queued_are_left_out_of_the_announce() {
    let mut m = machine(Config::default());
    m.announce(T0, params(job(), IH, AnnounceEvent::Started, 3));
    let ids = created(&drain(&mut m));
    for id in &ids {
        m.offer_created(t(1), *id, sdp_for(id));
    }
    assert_eq!(m.queued_messages(), 1);
    // The driver's connection for one offer died before the socket opened.
    m.offer_failed(t(2), ids[1]);
    m.connected(t(3));
    let a = one_announce(&drain(&mut m));
    let sent: Vec<OfferId> = a.offers.iter().map(|o| o.offer_id).collect();
    assert_eq!(sent, vec![ids[0], ids[2]]);
    assert_eq!(a.numwant, Some(2));
}

#[test]
fn queue_is_bounded() {
    let mut m = machine(Config {
        max_queued_messages: 2,
        ..Config::default()
    });
    let j = jobs(3);
    for (i, info_hash) in [IH, IH2, Id20([0xcc; 20])].into_iter().enumerate() {
        m.announce(T0, params(j[i], info_hash, AnnounceEvent::Completed, 0));
    }
    let out = drain(&mut m);
    assert_eq!(m.queued_messages(), 2);
    assert!(out.contains(&Output::AnnounceFailed {
        job: Some(j[2]),
        info_hash: Id20([0xcc; 20]),
        failure: TrackerFailure::Network("too many messages queued while connecting".into()),
    }));
}

#[test]
fn reconnect_announces_again_with_fresh_offers() {
    let mut m = open(no_variance());
    let (first, _) = announce_with_offers(&mut m, T0, job(), 2);
    m.handle_message(t(1), &reply_msg(IH));
    drain(&mut m);
    m.closed(t(5));
    drain(&mut m);
    m.handle_timeout(t(15));
    assert_eq!(drain(&mut m), vec![Output::Connect]);
    m.connected(t(16));
    let ids = created(&drain(&mut m));
    assert_eq!(ids.len(), 2);
    for id in &ids {
        m.offer_created(t(17), *id, sdp_for(id));
    }
    let a = one_announce(&drain(&mut m));
    assert_eq!(a.event, None);
    assert_eq!(
        (a.uploaded, a.downloaded, a.left),
        (first.uploaded, first.downloaded, first.left)
    );
    assert_eq!(a.offers.len(), 2);
    m.handle_message(t(18), &reply_msg(IH));
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Output::AnnounceDone { job: None, info_hash, .. }] if *info_hash == IH
    ));
}

#[test]
fn announce_without_reply_times_out() {
    let mut m = open(Config::default());
    let j = job();
    announce_with_offers(&mut m, t(1), j, 1);
    assert_eq!(m.poll_timeout(), Some(t(26)));
    m.handle_timeout(t(26));
    assert_eq!(
        drain(&mut m),
        vec![Output::AnnounceFailed {
            job: Some(j),
            info_hash: IH,
            failure: TrackerFailure::Timeout,
        }]
    );
    // Its offers stay until their own expiry.
    assert_eq!(m.pending_offers(), 1);
    m.handle_message(t(27), &reply_msg(IH));
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn failures_route_to_the_torrents_announce() {
    let mut m = open(Config::default());
    m.add_torrent(T0, IH2);
    let j = jobs(2);
    m.announce(T0, params(j[0], IH, AnnounceEvent::Completed, 0));
    m.announce(T0, params(j[1], IH2, AnnounceEvent::Completed, 0));
    drain(&mut m);
    let failure = TrackerMessage::Failure(Failure {
        action: Some(WsAction::Announce),
        reason: "torrent not allowed".into(),
        info_hash: Some(IH2),
    })
    .to_json();
    m.handle_message(t(1), &failure);
    assert_eq!(
        drain(&mut m),
        vec![Output::AnnounceFailed {
            job: Some(j[1]),
            info_hash: IH2,
            failure: TrackerFailure::Failure("torrent not allowed".into()),
        }]
    );
    let bare = r#"{"failure reason":"invalid info_hash"}"#;
    m.handle_message(t(1), bare);
    assert_eq!(
        drain(&mut m),
        vec![Output::Warning("tracker failure: invalid info_hash".into())]
    );
    assert_eq!(m.pending_announces(), 1);
}

#[test]
fn garbage_is_reported_and_the_machine_keeps_working() {
    let mut m = open(Config::default());
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(200 * 1024));
    for text in ["not json", "{}", "[1]", "", r#"{"action":"dance"}"#, &huge] {
        m.handle_message(t(1), text);
        let out = drain(&mut m);
        assert!(
            matches!(out.as_slice(), [Output::Warning(w)] if w.starts_with("invalid tracker message")),
            "{text:.20}: {out:?}"
        );
    }
    assert_eq!(m.stats().invalid_messages, 6);
    let (_, ids) = announce_with_offers(&mut m, t(2), job(), 1);
    m.handle_message(t(3), "\u{0}garbage");
    m.handle_message(t(3), &answer_msg(IH, OTHER, ids[0]));
    let out = drain(&mut m);
    assert!(matches!(out[0], Output::Warning(_)));
    assert!(matches!(out[1], Output::ApplyAnswer { .. }));
}

#[test]
fn scrape_round_trip() {
    let mut m = open(Config::default());
    m.scrape(T0, vec![IH]);
    assert_eq!(
        sent(&drain(&mut m)),
        vec![ClientMessage::Scrape(ScrapeRequest {
            info_hashes: vec![IH]
        })]
    );
    let reply = ScrapeReply {
        files: [(
            IH,
            ScrapeFile {
                complete: 1,
                downloaded: 2,
                incomplete: 3,
                name: None,
            },
        )]
        .into(),
        min_request_interval: None,
    };
    m.handle_message(t(1), &TrackerMessage::ScrapeReply(reply.clone()).to_json());
    assert_eq!(drain(&mut m), vec![Output::ScrapeDone(reply)]);
    m.scrape(t(2), vec![]);
    drain(&mut m);
    let refused = TrackerMessage::Failure(Failure {
        action: Some(WsAction::Scrape),
        reason: "no".into(),
        info_hash: None,
    })
    .to_json();
    m.handle_message(t(3), &refused);
    assert_eq!(
        drain(&mut m),
        vec![Output::ScrapeFailed(TrackerFailure::Failure("no".into()))]
    );
    m.scrape(t(4), vec![]);
    drain(&mut m);
    m.handle_timeout(t(19));
    assert_eq!(
        drain(&mut m),
        vec![Output::ScrapeFailed(TrackerFailure::Timeout)]
    );
}

#[test]
fn remove_torrent_drops_its_offers_and_closes_when_idle() {
    let mut m = open(Config::default());
    let (_, ids) = announce_with_offers(&mut m, T0, job(), 2);
    m.handle_message(t(1), &reply_msg(IH));
    m.handle_message(t(1), &offer_msg(IH, OTHER, Id20([6; 20])));
    drain(&mut m);
    m.remove_torrent(t(2), IH);
    let out = drain(&mut m);
    assert_eq!(dropped(&out), ids.iter().copied().collect());
    assert!(out.contains(&Output::DropAnswer {
        info_hash: IH,
        peer_id: OTHER,
        offer_id: Id20([6; 20]),
    }));
    assert_eq!(out.last(), Some(&Output::Disconnect));
    assert_eq!(m.connection_state(), ConnectionState::Idle);
    assert!(!m.has_torrent(&IH));
}

#[test]
fn stopped_after_remove_is_still_sent_then_the_socket_closes() {
    let mut m = open(Config::default());
    let j = jobs(2);
    announce_with_offers(&mut m, T0, j[0], 0);
    m.handle_message(T0, &reply_msg(IH));
    drain(&mut m);
    m.announce(t(1), params(j[1], IH, AnnounceEvent::Stopped, 0));
    m.remove_torrent(t(1), IH);
    let out = drain(&mut m);
    assert_eq!(one_announce(&out).event, Some(Event::Stopped));
    assert!(!out.contains(&Output::Disconnect));
    m.handle_message(t(2), &reply_msg(IH));
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Output::AnnounceDone { job: Some(x), .. }, Output::Disconnect] if *x == j[1]
    ));
    // A stopped with no socket has nobody to tell.
    m.announce(t(3), params(j[1], IH, AnnounceEvent::Stopped, 0));
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Output::AnnounceFailed {
            failure: TrackerFailure::Network(_),
            ..
        }]
    ));
    assert_eq!(m.connection_state(), ConnectionState::Idle);
}

#[test]
fn connect_attempt_times_out() {
    let mut m = machine(no_variance());
    let j = job();
    m.announce(T0, params(j, IH, AnnounceEvent::Completed, 0));
    assert_eq!(drain(&mut m), vec![Output::Connect]);
    assert_eq!(m.poll_timeout(), Some(t(15)));
    m.handle_timeout(t(15));
    let out = drain(&mut m);
    assert_eq!(out[0], Output::Disconnect);
    assert!(matches!(
        out[1],
        Output::AnnounceFailed { job: Some(x), failure: TrackerFailure::Network(_), .. } if x == j
    ));
    assert_eq!(
        m.connection_state(),
        ConnectionState::Backoff { until: t(25) }
    );
    // The old socket's late open is ignored.
    m.connected(t(16));
    assert_eq!(
        m.connection_state(),
        ConnectionState::Backoff { until: t(25) }
    );
}

#[test]
fn offer_limits_per_torrent_and_total() {
    let mut m = open(Config {
        max_offers: 5,
        max_offers_per_torrent: 7,
        max_pending_offers: 9,
        ..Config::default()
    });
    m.add_torrent(T0, IH2);
    let j = jobs(3);
    m.announce(T0, params(j[0], IH, AnnounceEvent::None, 50));
    assert_eq!(created(&drain(&mut m)).len(), 5);
    m.announce(T0, params(j[1], IH, AnnounceEvent::None, 50));
    assert_eq!(created(&drain(&mut m)).len(), 2);
    m.announce(T0, params(j[2], IH2, AnnounceEvent::None, 50));
    assert_eq!(created(&drain(&mut m)).len(), 2);
    assert_eq!(m.pending_offers(), 9);
}

#[test]
fn time_going_backwards_is_clamped() {
    let mut m = open(Config::default());
    announce_with_offers(&mut m, t(100), job(), 1);
    m.handle_timeout(t(50));
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.poll_timeout(), Some(t(125)));
}

// ---------------------------------------------------------------------------------------------
// Property test: arbitrary input sequences.

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Remove(u8),
    Announce(u8, u8, u32),
    OfferCreated(u16, bool),
    OfferFailed(u16),
    AnswerCreated(u16),
    AnswerFailed(u16),
    Connected,
    Closed,
    ConnectFailed(String),
    Advance(u32),
    Timeout,
    Garbage(String),
    Reply(u8, bool),
    FailureMsg(u8, bool, bool),
    RemoteOffer(u8, u8, u8),
    AnswerKnown(u16, bool, bool),
    AnswerRandom(u8),
    Scrape(u8),
    ScrapeReplyMsg,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<u8>().prop_map(Op::Add),
        1 => any::<u8>().prop_map(Op::Remove),
        4 => (any::<u8>(), any::<u8>(), 0..60u32).prop_map(|(a, b, c)| Op::Announce(a, b, c)),
        8 => (any::<u16>(), prop::bool::weighted(0.1)).prop_map(|(a, b)| Op::OfferCreated(a, b)),
        1 => any::<u16>().prop_map(Op::OfferFailed),
        2 => any::<u16>().prop_map(Op::AnswerCreated),
        1 => any::<u16>().prop_map(Op::AnswerFailed),
        4 => Just(Op::Connected),
        1 => Just(Op::Closed),
        1 => ".{0,300}".prop_map(Op::ConnectFailed),
        4 => (0..3_000u32).prop_map(Op::Advance),
        1 => (0..400_000u32).prop_map(Op::Advance),
        1 => Just(Op::Timeout),
        1 => ".{0,40}".prop_map(Op::Garbage),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(a, b)| Op::Reply(a, b)),
        1 => (any::<u8>(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c)| Op::FailureMsg(a, b, c)),
        3 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Op::RemoteOffer(a, b, c)),
        4 => (any::<u16>(), prop::bool::weighted(0.2), prop::bool::weighted(0.2))
            .prop_map(|(a, b, c)| Op::AnswerKnown(a, b, c)),
        1 => any::<u8>().prop_map(Op::AnswerRandom),
        1 => any::<u8>().prop_map(Op::Scrape),
        1 => Just(Op::ScrapeReplyMsg),
    ]
}

fn arb_config() -> impl Strategy<Value = Config> {
    prop_oneof![
        Just(Config::default()),
        Just(Config {
            max_offers: 4,
            max_answering: 3,
            max_offers_per_torrent: 6,
            max_pending_offers: 10,
            max_queued_messages: 3,
            max_pending_announces: 5,
            max_pending_scrapes: 2,
            reconnect_variance: Duration::from_secs(3),
            ..Config::default()
        }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfferFate {
    Asked,
    Created,
    Announced,
    Done,
}

/// The driver's side of the conversation, checking every output against what it was told.
struct Harness {
    m: SignalMachine,
    now: Time,
    torrents: Vec<InfoHash>,
    jobs: Vec<JobId>,
    /// Every offer id ever asked for, in order, and what became of it.
    offers: Vec<(OfferId, InfoHash)>,
    fate: BTreeMap<OfferId, OfferFate>,
    /// Every remote offer ever accepted, and whether it is still the driver's to answer.
    accepted: Vec<(InfoHash, PeerId, OfferId)>,
    answering: BTreeSet<(PeerId, OfferId)>,
    announce_calls: usize,
    announce_outcomes: usize,
}

impl Harness {
    fn new(config: Config) -> Self {
        Harness {
            m: SignalMachine::new(ME, config, 11, T0),
            now: T0,
            torrents: (0..4u8).map(|i| Id20([0xa0 + i; 20])).collect(),
            jobs: jobs(8),
            offers: Vec::new(),
            fate: BTreeMap::new(),
            accepted: Vec::new(),
            answering: BTreeSet::new(),
            announce_calls: 0,
            announce_outcomes: 0,
        }
    }

    fn torrent(&self, i: u8) -> InfoHash {
        self.torrents[usize::from(i) % self.torrents.len()]
    }

    fn settle(&mut self) -> Result<(), TestCaseError> {
        let max_offers = self.m.config().max_offers;
        while let Some(out) = self.m.poll_output() {
            match out {
                Output::CreateOffer {
                    info_hash,
                    offer_id,
                } => {
                    prop_assert!(!self.fate.contains_key(&offer_id), "offer id reused");
                    self.fate.insert(offer_id, OfferFate::Asked);
                    self.offers.push((offer_id, info_hash));
                }
                Output::Send(text) => {
                    let msg = ClientMessage::from_json(&text);
                    prop_assert!(msg.is_ok(), "unparseable frame {text}");
                    match msg.unwrap_or(ClientMessage::Scrape(ScrapeRequest::default())) {
                        ClientMessage::Announce(a) => {
                            prop_assert_eq!(a.peer_id, ME);
                            prop_assert!(a.offers.len() <= max_offers);
                            if matches!(a.event, Some(Event::Stopped | Event::Completed)) {
                                prop_assert!(a.offers.is_empty());
                            }
                            for o in &a.offers {
                                let fate = self.fate.get_mut(&o.offer_id);
                                prop_assert_eq!(fate.as_deref(), Some(&OfferFate::Created));
                                prop_assert_eq!(&o.offer.sdp, &sdp_for(&o.offer_id));
                                if let Some(f) = fate {
                                    *f = OfferFate::Announced;
                                }
                            }
                        }
                        ClientMessage::Answer(a) => {
                            prop_assert_eq!(a.peer_id, ME);
                            prop_assert!(self.accepted.contains(&(
                                a.info_hash,
                                a.to_peer_id,
                                a.offer_id
                            )));
                        }
                        ClientMessage::Scrape(_) => {}
                    }
                }
                Output::DropOffer {
                    info_hash,
                    offer_id,
                } => {
                    let fate = self.fate.get_mut(&offer_id);
                    prop_assert!(
                        matches!(
                            fate.as_deref(),
                            Some(OfferFate::Asked | OfferFate::Created | OfferFate::Announced)
                        ),
                        "DropOffer of {offer_id:?} in state {fate:?}"
                    );
                    prop_assert!(self.offers.contains(&(offer_id, info_hash)));
                    if let Some(f) = fate {
                        *f = OfferFate::Done;
                    }
                }
                Output::ApplyAnswer {
                    offer_id,
                    info_hash,
                    ..
                } => {
                    prop_assert!(self.offers.contains(&(offer_id, info_hash)));
                    let fate = self.fate.get_mut(&offer_id);
                    prop_assert_eq!(fate.as_deref(), Some(&OfferFate::Announced));
                    if let Some(f) = fate {
                        *f = OfferFate::Done;
                    }
                }
                Output::AcceptOffer {
                    info_hash,
                    peer_id,
                    offer_id,
                    ..
                } => {
                    prop_assert_ne!(peer_id, ME);
                    prop_assert!(self.answering.insert((peer_id, offer_id)));
                    self.accepted.push((info_hash, peer_id, offer_id));
                }
                Output::DropAnswer {
                    info_hash,
                    peer_id,
                    offer_id,
                } => {
                    prop_assert!(self.accepted.contains(&(info_hash, peer_id, offer_id)));
                    self.answering.remove(&(peer_id, offer_id));
                }
                Output::AnnounceDone { job, .. } | Output::AnnounceFailed { job, .. } => {
                    if job.is_some() {
                        self.announce_outcomes += 1;
                    }
                }
                Output::Connect
                | Output::Disconnect
                | Output::ScrapeDone(_)
                | Output::ScrapeFailed(_)
                | Output::Warning(_) => {}
            }
        }
        let c = self.m.config().clone();
        prop_assert!(self.m.pending_offers() <= c.max_pending_offers);
        for ih in &self.torrents {
            prop_assert!(self.m.pending_offers_for(ih) <= c.max_offers_per_torrent);
        }
        prop_assert!(self.m.answering() <= c.max_answering);
        prop_assert!(self.m.queued_messages() <= c.max_queued_messages);
        prop_assert!(self.m.pending_announces() <= c.max_pending_announces);
        prop_assert!(self.m.pending_scrapes() <= c.max_pending_scrapes);
        let live = self
            .fate
            .values()
            .filter(|f| **f != OfferFate::Done)
            .count();
        prop_assert_eq!(self.m.pending_offers(), live);
        prop_assert!(self.m.answering() <= self.answering.len());
        prop_assert!(self.announce_outcomes <= self.announce_calls);
        Ok(())
    }

    /// Offer number `i` among those in state `fate` (any state if `None` or none is).
    fn pick_offer(&self, i: u16, fate: Option<OfferFate>) -> Option<(OfferId, InfoHash)> {
        let in_state: Vec<(OfferId, InfoHash)> = self
            .offers
            .iter()
            .filter(|(id, _)| fate.is_none_or(|f| self.fate.get(id) == Some(&f)))
            .copied()
            .collect();
        let from = if in_state.is_empty() {
            &self.offers
        } else {
            &in_state
        };
        (!from.is_empty()).then(|| from[usize::from(i) % from.len()])
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match op {
            Op::Add(i) => self.m.add_torrent(now, self.torrent(i)),
            Op::Remove(i) => self.m.remove_torrent(now, self.torrent(i)),
            Op::Announce(i, e, numwant) => {
                let event = [
                    AnnounceEvent::None,
                    AnnounceEvent::Started,
                    AnnounceEvent::Completed,
                    AnnounceEvent::Stopped,
                ][usize::from(e % 4)];
                let job = self.jobs[usize::from(i) % self.jobs.len()];
                self.announce_calls += 1;
                self.m
                    .announce(now, params(job, self.torrent(i), event, numwant));
            }
            Op::OfferCreated(i, stale) => {
                let fate = (!stale).then_some(OfferFate::Asked);
                if let Some((id, _)) = self.pick_offer(i, fate) {
                    if self.fate.get(&id) == Some(&OfferFate::Asked) {
                        self.fate.insert(id, OfferFate::Created);
                    }
                    self.m.offer_created(now, id, sdp_for(&id));
                }
            }
            Op::OfferFailed(i) => {
                if let Some((id, _)) = self.pick_offer(i, None) {
                    // Let what is due at `now` happen first, as a driver sees DropOffer first.
                    self.m.handle_timeout(now);
                    self.settle()?;
                    if self.fate.get(&id) != Some(&OfferFate::Done) {
                        self.fate.insert(id, OfferFate::Done);
                    }
                    self.m.offer_failed(now, id);
                }
            }
            Op::AnswerCreated(i) => {
                if !self.accepted.is_empty() {
                    let (ih, peer, offer) = self.accepted[usize::from(i) % self.accepted.len()];
                    self.answering.remove(&(peer, offer));
                    self.m
                        .answer_created(now, ih, peer, offer, "v=0 answer".into());
                }
            }
            Op::AnswerFailed(i) => {
                if !self.accepted.is_empty() {
                    let (ih, peer, offer) = self.accepted[usize::from(i) % self.accepted.len()];
                    self.answering.remove(&(peer, offer));
                    self.m.answer_failed(now, ih, peer, offer);
                }
            }
            Op::Connected => self.m.connected(now),
            Op::Closed => self.m.closed(now),
            Op::ConnectFailed(r) => self.m.connect_failed(now, &r),
            Op::Advance(ms) => self.now += Duration::from_millis(u64::from(ms)),
            Op::Timeout => self.m.handle_timeout(now),
            Op::Garbage(s) => self.m.handle_message(now, &s),
            Op::Reply(i, with_id) => {
                let msg = TrackerMessage::AnnounceReply(AnnounceReply {
                    info_hash: self.torrent(i),
                    interval: Some(120),
                    min_interval: None,
                    complete: Some(1),
                    incomplete: None,
                    warning_message: None,
                    tracker_id: with_id.then(|| "tid".into()),
                });
                self.m.handle_message(now, &msg.to_json());
            }
            Op::FailureMsg(i, with_ih, scrape) => {
                let msg = TrackerMessage::Failure(Failure {
                    action: Some(if scrape {
                        WsAction::Scrape
                    } else {
                        WsAction::Announce
                    }),
                    reason: "refused".into(),
                    info_hash: with_ih.then(|| self.torrent(i)),
                });
                self.m.handle_message(now, &msg.to_json());
            }
            Op::RemoteOffer(i, peer, offer) => {
                let peer_id = if peer % 5 == 0 { ME } else { Id20([peer; 20]) };
                self.m
                    .handle_message(now, &offer_msg(self.torrent(i), peer_id, Id20([offer; 20])));
            }
            Op::AnswerKnown(i, stale, wrong_torrent) => {
                // Let what is due at `now` happen first, so the expectation below is exact.
                self.m.handle_timeout(now);
                self.settle()?;
                let fate = (!stale).then_some(OfferFate::Announced);
                if let Some((id, ih)) = self.pick_offer(i, fate) {
                    let target = if wrong_torrent {
                        self.torrents
                            .iter()
                            .copied()
                            .find(|t| *t != ih)
                            .unwrap_or(ih)
                    } else {
                        ih
                    };
                    let expect = !wrong_torrent
                        && self.fate.get(&id) == Some(&OfferFate::Announced)
                        && self.m.connection_state() == ConnectionState::Open;
                    self.m.handle_message(now, &answer_msg(target, OTHER, id));
                    let applied = std::iter::from_fn(|| self.m.poll_output()).collect::<Vec<_>>();
                    let got = applied.iter().any(
                        |o| matches!(o, Output::ApplyAnswer { offer_id, .. } if *offer_id == id),
                    );
                    prop_assert_eq!(got, expect, "answer routing: {:?}", applied);
                    for o in applied {
                        self.m.outputs.push_back(o);
                    }
                }
            }
            Op::AnswerRandom(b) => {
                self.m
                    .handle_message(now, &answer_msg(self.torrent(b), OTHER, Id20([b; 20])));
            }
            Op::Scrape(i) => self.m.scrape(now, vec![self.torrent(i)]),
            Op::ScrapeReplyMsg => {
                let msg = TrackerMessage::ScrapeReply(ScrapeReply::default());
                self.m.handle_message(now, &msg.to_json());
            }
        }
        self.settle()
    }

    /// Removes every torrent and lets all timers run out: everything must be resolved.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for i in 0..self.torrents.len() {
            self.m.remove_torrent(self.now, self.torrents[i]);
        }
        self.settle()?;
        for _ in 0..1000 {
            let Some(at) = self.m.poll_timeout() else {
                break;
            };
            self.now = self.now.max(at);
            self.m.handle_timeout(self.now);
            self.settle()?;
        }
        prop_assert_eq!(self.m.poll_timeout(), None);
        prop_assert_eq!(self.m.pending_offers(), 0);
        prop_assert_eq!(self.m.pending_announces(), 0);
        prop_assert_eq!(self.m.pending_scrapes(), 0);
        prop_assert_eq!(self.m.answering(), 0);
        prop_assert_eq!(self.m.queued_messages(), 0);
        prop_assert_eq!(self.announce_calls, self.announce_outcomes);
        // Every offer asked for got into an announce or was resolved otherwise.
        prop_assert!(self.fate.values().all(|f| *f == OfferFate::Done));
        prop_assert!(self.answering.is_empty());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_inputs_keep_invariants(
        config in arb_config(),
        ops in proptest::collection::vec(arb_op(), 0..200),
    ) {
        let mut h = Harness::new(config);
        for op in ops {
            h.apply(op)?;
        }
        h.finish()?;
    }
}

/// A tracker forwards an announce's offers one per other peer, first ones first: offers past
/// the swarm's size are closed when the reply comes, not 50 s later.
#[test]
fn offers_beyond_the_swarm_are_dropped_on_the_reply() {
    let mut m = open(Config::default());
    let (req, _) = announce_with_offers(&mut m, t(1), job(), 5);
    let ids: Vec<OfferId> = req.offers.iter().map(|o| o.offer_id).collect();
    assert_eq!(m.pending_offers(), 5);
    // Us and two others: two offers can have gone out.
    let reply = TrackerMessage::AnnounceReply(AnnounceReply {
        info_hash: IH,
        interval: Some(120),
        min_interval: None,
        complete: Some(1),
        incomplete: Some(2),
        warning_message: None,
        tracker_id: None,
    });
    m.handle_message(t(2), &reply.to_json());
    let out = drain(&mut m);
    assert_eq!(dropped(&out), ids[2..].iter().copied().collect());
    assert!(out.iter().any(|o| matches!(o, Output::AnnounceDone { .. })));
    assert_eq!(m.pending_offers(), 2);
    // The two that may be answered still are.
    m.handle_message(t(3), &answer_msg(IH, Id20([7; 20]), ids[1]));
    assert!(drain(&mut m)
        .iter()
        .any(|o| matches!(o, Output::ApplyAnswer { offer_id, .. } if *offer_id == ids[1])));
}
