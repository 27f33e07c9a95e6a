use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const T0: Time = Time::ZERO;

fn t(secs: u64) -> Time {
    Time::from_millis(secs * 1000)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn urls(tiers: &[&[&str]]) -> Vec<Vec<String>> {
    tiers
        .iter()
        .map(|tier| tier.iter().map(|u| (*u).to_owned()).collect())
        .collect()
}

fn ok(interval: u64) -> Result<TrackerReply, TrackerFailure> {
    Ok(TrackerReply {
        interval: Some(secs(interval)),
        ..TrackerReply::default()
    })
}

fn ok_min(interval: u64, min: u64) -> Result<TrackerReply, TrackerFailure> {
    Ok(TrackerReply {
        interval: Some(secs(interval)),
        min_interval: Some(secs(min)),
        ..TrackerReply::default()
    })
}

fn net() -> Result<TrackerReply, TrackerFailure> {
    Err(TrackerFailure::Network("connection refused".into()))
}

fn drain(a: &mut Announcer, now: Time) -> Vec<AnnounceJob> {
    std::iter::from_fn(|| a.poll_job(now)).collect()
}

fn one(a: &mut Announcer, now: Time) -> AnnounceJob {
    let jobs = drain(a, now);
    assert_eq!(
        jobs.len(),
        1,
        "expected exactly one job at {now:?}: {jobs:?}"
    );
    jobs.into_iter().next().unwrap()
}

fn events(a: &mut Announcer) -> Vec<AnnouncerEvent> {
    std::iter::from_fn(|| a.poll_event()).collect()
}

fn single(url: &str) -> Announcer {
    Announcer::new(urls(&[&[url]]), AnnounceConfig::default(), 1, T0)
}

/// A started announcer with one tracker whose `started` was answered at `T0`.
fn running_single(interval: u64) -> Announcer {
    let mut a = single("http://a/announce");
    a.start(T0, Some(1000));
    let job = one(&mut a, T0);
    assert_eq!(job.event, AnnounceEvent::Started);
    assert!(a.handle_reply(T0, job.id, ok(interval)));
    a
}

#[test]
fn started_once_per_tier_to_the_first_shuffled_tracker() {
    let tiers = urls(&[
        &["http://a/ann", "http://b/ann", "http://c/ann"],
        &["udp://d:1", "wss://e"],
    ]);
    let mut a = Announcer::new(tiers.clone(), AnnounceConfig::default(), 7, T0);
    assert_eq!(a.state(), AnnouncerState::Idle);
    assert!(a.poll_job(T0).is_none());
    assert_eq!(a.poll_timeout(), None);
    a.start(T0, Some(1000));
    let jobs = drain(&mut a, T0);
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.event == AnnounceEvent::Started));
    let tiers_hit: BTreeSet<usize> = jobs
        .iter()
        .map(|j| a.tracker(j.tracker).unwrap().tier)
        .collect();
    assert_eq!(tiers_hit, BTreeSet::from([0, 1]));
    // Nothing more while they are in flight; starting again changes nothing.
    a.start(t(1), Some(1000));
    assert!(drain(&mut a, t(10)).is_empty());

    let first_of_tier0 = |seed: u64| {
        let mut a = Announcer::new(tiers.clone(), AnnounceConfig::default(), seed, T0);
        a.start(T0, None);
        drain(&mut a, T0)
            .into_iter()
            .find(|j| a.tracker(j.tracker).unwrap().tier == 0)
            .unwrap()
            .url
    };
    assert_eq!(first_of_tier0(7), first_of_tier0(7));
    let chosen: BTreeSet<String> = (0..64).map(first_of_tier0).collect();
    assert_eq!(
        chosen.len(),
        3,
        "shuffle should pick every tracker: {chosen:?}"
    );
}

#[test]
fn interval_honoured() {
    let mut a = running_single(600);
    assert_eq!(a.poll_timeout(), Some(t(600)));
    assert!(a.poll_job(t(599)).is_none());
    let job = one(&mut a, t(600));
    assert_eq!(job.event, AnnounceEvent::None);
    // A reply without interval keeps the last one.
    assert!(a.handle_reply(t(601), job.id, Ok(TrackerReply::default())));
    assert!(a.poll_job(t(1200)).is_none());
    assert_eq!(one(&mut a, t(1201)).event, AnnounceEvent::None);
}

#[test]
fn default_interval_until_a_tracker_states_one() {
    let mut a = single("udp://a:6969");
    a.start(T0, None);
    let job = one(&mut a, T0);
    assert!(a.handle_reply(t(1), job.id, Ok(TrackerReply::default())));
    assert_eq!(a.poll_timeout(), Some(t(1 + 30 * 60)));
}

#[test]
fn intervals_are_clamped() {
    for (reply, expected) in [
        (ok(5), 60),
        (ok(24 * 3600), 2 * 3600),
        (ok_min(100, 500), 500),
        (ok_min(100, 5), 100),
        (
            Ok(TrackerReply {
                min_interval: Some(secs(120)),
                ..TrackerReply::default()
            }),
            120,
        ),
    ] {
        let mut a = single("http://a/announce");
        a.start(T0, None);
        let job = one(&mut a, T0);
        assert!(a.handle_reply(T0, job.id, reply));
        assert_eq!(a.poll_timeout(), Some(t(expected)));
        match events(&mut a).as_slice() {
            [AnnouncerEvent::Reply { interval, .. }] => assert_eq!(*interval, secs(expected)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn want_peers_honours_min_interval() {
    let mut a = single("http://a/announce");
    a.start(T0, None);
    let job = one(&mut a, T0);
    assert!(a.handle_reply(T0, job.id, ok_min(1800, 300)));
    a.want_peers(t(100));
    assert_eq!(a.poll_timeout(), Some(t(300)));
    assert!(a.poll_job(t(299)).is_none());
    let job = one(&mut a, t(300));
    assert_eq!(job.event, AnnounceEvent::None);
    // No `min interval` in the reply: the 60 s floor applies.
    assert!(a.handle_reply(t(300), job.id, ok(1800)));
    a.want_peers(t(400));
    assert_eq!(one(&mut a, t(400)).event, AnnounceEvent::None);
    // While a job is out, want_peers does nothing.
    a.want_peers(t(401));
    assert!(drain(&mut a, t(402)).is_empty());
}

#[test]
fn reannounce_goes_at_once_past_min_interval_and_after_a_job_in_flight() {
    let mut a = single("http://a/announce");
    a.start(T0, None);
    let job = one(&mut a, T0);
    // The address changes while `started` is out: the reply brings the next announce to now.
    a.reannounce(t(1));
    assert!(drain(&mut a, t(1)).is_empty(), "one job at a time");
    assert!(a.handle_reply(t(2), job.id, ok_min(1800, 300)));
    let again = one(&mut a, t(2));
    assert_eq!(again.event, AnnounceEvent::None);
    assert!(a.handle_reply(t(3), again.id, ok_min(1800, 300)));
    // Then the regular interval; another change goes at once, min interval or not.
    assert_eq!(a.poll_timeout(), Some(t(1803)));
    a.reannounce(t(10));
    assert_eq!(one(&mut a, t(10)).event, AnnounceEvent::None);
}

#[test]
fn reannounce_does_not_cut_a_back_off_short() {
    let mut a = running_single(1800);
    let job = one(&mut a, t(1800));
    assert!(a.handle_reply(t(1800), job.id, net()));
    let retry = a.poll_timeout().unwrap();
    a.reannounce(t(1801));
    assert_eq!(a.poll_timeout(), Some(retry));
}

#[test]
fn want_peers_does_not_cut_a_back_off_short() {
    let mut a = running_single(1800);
    let job = one(&mut a, t(1800));
    assert!(a.handle_reply(t(1800), job.id, net()));
    let retry = a.poll_timeout().unwrap();
    assert!(retry >= t(1815));
    a.want_peers(t(1801));
    assert_eq!(a.poll_timeout(), Some(retry));
}

#[test]
fn completed_after_started_while_leeching() {
    let mut a = running_single(1800);
    a.update_stats(5, 1000, Some(0));
    a.completed(t(10));
    let job = one(&mut a, t(10));
    assert_eq!(job.event, AnnounceEvent::Completed);
    assert_eq!((job.left, job.downloaded, job.uploaded), (0, 1000, 5));
    assert!(a.handle_reply(t(11), job.id, ok(1800)));
    // Once only; then regular announces.
    a.completed(t(12));
    assert!(drain(&mut a, t(100)).is_empty());
    assert_eq!(one(&mut a, t(11 + 1800)).event, AnnounceEvent::None);
}

#[test]
fn completed_while_started_in_flight_follows_the_reply() {
    let mut a = single("http://a/announce");
    a.start(T0, Some(1000));
    let started = one(&mut a, T0);
    a.completed(t(1));
    assert!(drain(&mut a, t(2)).is_empty());
    assert!(a.handle_reply(t(3), started.id, ok(1800)));
    assert_eq!(one(&mut a, t(3)).event, AnnounceEvent::Completed);
}

#[test]
fn no_completed_when_started_as_seed() {
    let mut a = single("http://a/announce");
    a.start(T0, Some(0));
    assert!(a.is_complete());
    let job = one(&mut a, T0);
    assert_eq!((job.event, job.left), (AnnounceEvent::Started, 0));
    assert!(a.handle_reply(T0, job.id, ok(1800)));
    a.completed(t(5));
    assert!(drain(&mut a, t(1799)).is_empty());
    assert_eq!(one(&mut a, t(1800)).event, AnnounceEvent::None);
}

#[test]
fn no_completed_to_a_tracker_first_started_after_completion() {
    let mut a = single("http://a/announce");
    a.start(T0, Some(1000));
    let job = one(&mut a, T0);
    assert!(a.handle_reply(T0, job.id, net()));
    a.completed(t(1));
    let retry = one(&mut a, t(60));
    assert_eq!((retry.event, retry.left), (AnnounceEvent::Started, 0));
    assert!(a.handle_reply(t(60), retry.id, ok(1800)));
    assert!(drain(&mut a, t(1859)).is_empty());
    assert_eq!(one(&mut a, t(1860)).event, AnnounceEvent::None);
}

#[test]
fn stopped_only_to_trackers_that_got_started() {
    let tiers = urls(&[&["http://a/ann"], &["http://b/ann"], &["http://c/ann"]]);
    let mut a = Announcer::new(tiers, AnnounceConfig::default(), 3, T0);
    a.start(T0, Some(100));
    let jobs = drain(&mut a, T0);
    let by_url = |u: &str| jobs.iter().find(|j| j.url == u).unwrap().clone();
    let (ja, jb, jc) = (
        by_url("http://a/ann"),
        by_url("http://b/ann"),
        by_url("http://c/ann"),
    );
    assert!(a.handle_reply(t(1), ja.id, ok(1800)));
    assert!(a.handle_reply(
        t(1),
        jb.id,
        Err(TrackerFailure::Failure("unregistered torrent".into()))
    ));
    a.stop(t(2));
    assert_eq!(a.state(), AnnouncerState::Stopping);
    let stops = drain(&mut a, t(2));
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].tracker, ja.tracker);
    assert_eq!(
        (stops[0].event, stops[0].numwant),
        (AnnounceEvent::Stopped, 0)
    );
    // c answers its `started` after stop(): it knows us now, so it is told too.
    assert!(a.handle_reply(t(3), jc.id, ok(1800)));
    let stop_c = one(&mut a, t(3));
    assert_eq!(
        (stop_c.tracker, stop_c.event),
        (jc.tracker, AnnounceEvent::Stopped)
    );
    assert!(a.handle_reply(t(3), stops[0].id, ok(1800)));
    assert_eq!(a.state(), AnnouncerState::Stopping);
    assert!(a.handle_reply(t(4), stop_c.id, net()));
    assert_eq!(a.state(), AnnouncerState::Stopped);
    assert!(events(&mut a).contains(&AnnouncerEvent::StopFinished));
    assert_eq!(a.poll_timeout(), None);
    assert!(drain(&mut a, t(100_000)).is_empty());
}

#[test]
fn no_stopped_to_a_tracker_whose_started_timed_out() {
    let mut a = single("http://a/announce");
    a.start(T0, None);
    let job = one(&mut a, T0);
    a.stop(t(1));
    assert_eq!(a.state(), AnnouncerState::Stopping);
    assert_eq!(a.poll_timeout(), Some(t(30)));
    assert!(drain(&mut a, t(30)).is_empty());
    assert_eq!(a.state(), AnnouncerState::Stopped);
    assert!(!a.handle_reply(t(31), job.id, ok(1800)));
    assert!(drain(&mut a, t(31)).is_empty());
}

#[test]
fn stop_before_any_started_finishes_at_once() {
    let mut a = single("http://a/announce");
    a.stop(T0);
    assert_eq!(a.state(), AnnouncerState::Idle);
    a.start(T0, None);
    let job = one(&mut a, T0);
    assert!(a.handle_reply(T0, job.id, net()));
    a.stop(t(1));
    assert_eq!(a.state(), AnnouncerState::Stopped);
    assert_eq!(events(&mut a).last(), Some(&AnnouncerEvent::StopFinished));
}

#[test]
fn stopped_job_times_out_quickly_and_is_not_retried() {
    let mut a = running_single(1800);
    a.stop(t(10));
    let stop = one(&mut a, t(10));
    assert_eq!(a.poll_timeout(), Some(t(15)));
    assert!(drain(&mut a, t(15)).is_empty());
    assert_eq!(a.state(), AnnouncerState::Stopped);
    assert!(!a.handle_reply(t(16), stop.id, ok(1800)));
    assert_eq!(a.tracker(stop.tracker).unwrap().consecutive_failures, 0);
}

#[test]
fn failures_back_off_exponentially() {
    let mut a = single("http://a/announce");
    a.start(T0, None);
    let mut now = T0;
    for n in 0..10u32 {
        let job = one(&mut a, now);
        assert!(a.handle_reply(now, job.id, net()));
        let delay = secs((15u64 << n).min(1800));
        let at = a.poll_timeout().unwrap();
        assert!(at >= now + delay, "failure {n}: {at:?} < {:?}", now + delay);
        assert!(at <= now + delay + delay / 8, "failure {n}: jitter too big");
        assert!(a.poll_job(Time::from_micros(at.as_micros() - 1)).is_none());
        match events(&mut a).as_slice() {
            [AnnouncerEvent::Failed {
                consecutive_failures,
                next_attempt,
                ..
            }] => {
                assert_eq!(*consecutive_failures, n + 1);
                assert_eq!(*next_attempt, Some(at));
            }
            other => panic!("{other:?}"),
        }
        now = at;
    }
    // Success resets the back-off.
    let job = one(&mut a, now);
    assert!(a.handle_reply(now, job.id, ok(60)));
    let job = one(&mut a, now + secs(60));
    assert!(a.handle_reply(now + secs(60), job.id, net()));
    assert!(a.poll_timeout().unwrap() <= now + secs(60 + 15 + 2));
}

#[test]
fn failure_moves_to_next_tracker_and_success_promotes() {
    let tiers = urls(&[&["http://a/ann", "http://b/ann", "http://c/ann"]]);
    let mut a = Announcer::new(tiers, AnnounceConfig::default(), 11, T0);
    a.start(T0, None);
    let x = one(&mut a, T0);
    assert!(a.handle_reply(t(1), x.id, net()));
    let y = one(&mut a, t(1));
    assert_ne!(y.tracker, x.tracker);
    assert_eq!(y.event, AnnounceEvent::Started);
    let failed = events(&mut a);
    assert!(matches!(
        failed.as_slice(),
        [AnnouncerEvent::Failed { tracker, next_tracker: Some(next), next_attempt: Some(at), .. }]
            if *tracker == x.tracker && *next == y.tracker && *at == t(1)
    ));
    assert!(a.handle_reply(t(2), y.id, ok(600)));
    assert!(events(&mut a).contains(&AnnouncerEvent::Promoted {
        tracker: y.tracker,
        tier: 0
    }));
    // The promoted tracker is used for the next announce.
    let again = one(&mut a, t(602));
    assert_eq!(
        (again.tracker, again.event),
        (y.tracker, AnnounceEvent::None)
    );
    // Order is now [y, x, z]: y fails → x (its back-off long over), x fails → z.
    assert!(a.handle_reply(t(602), again.id, net()));
    let x2 = one(&mut a, t(602));
    assert_eq!((x2.tracker, x2.event), (x.tracker, AnnounceEvent::Started));
    assert!(a.handle_reply(t(602), x2.id, net()));
    let z = one(&mut a, t(602));
    assert!(z.tracker != x.tracker && z.tracker != y.tracker);
    // z fails too: the tier wraps around to y, waiting for y's own back-off.
    assert!(a.handle_reply(t(602), z.id, net()));
    assert!(drain(&mut a, t(616)).is_empty());
    let y2 = one(&mut a, t(602 + 15 + 2));
    assert_eq!((y2.tracker, y2.event), (y.tracker, AnnounceEvent::None));
}

#[test]
fn strict_bep12_only_falls_through_to_the_next_tier() {
    let config = AnnounceConfig {
        announce_to_all_tiers: false,
        ..AnnounceConfig::default()
    };
    let tiers = urls(&[&["http://a/ann"], &["http://b/ann"]]);
    let mut a = Announcer::new(tiers, config, 5, T0);
    a.start(T0, None);
    let ja = one(&mut a, T0);
    assert_eq!(ja.url, "http://a/ann");
    assert!(a.handle_reply(t(1), ja.id, net()));
    let jb = one(&mut a, t(1));
    assert_eq!(
        (jb.url.as_str(), jb.event),
        ("http://b/ann", AnnounceEvent::Started)
    );
    assert!(a.handle_reply(t(2), jb.id, ok(600)));
    // The next announce starts over at tier 0.
    assert!(drain(&mut a, t(601)).is_empty());
    let ja2 = one(&mut a, t(602));
    assert_eq!(
        (ja2.url.as_str(), ja2.event),
        ("http://a/ann", AnnounceEvent::Started)
    );
    assert!(a.handle_reply(t(603), ja2.id, net()));
    let jb2 = one(&mut a, t(603));
    assert_eq!(
        (jb2.url.as_str(), jb2.event),
        ("http://b/ann", AnnounceEvent::None)
    );
}

#[test]
fn failover_after_a_failed_event_honours_the_next_trackers_min_interval() {
    let config = AnnounceConfig {
        announce_to_all_tiers: false,
        ..AnnounceConfig::default()
    };
    let tiers = urls(&[&["http://a/ann"], &["http://b/ann"]]);
    let mut a = Announcer::new(tiers, config, 5, T0);
    a.start(T0, Some(1000));
    let ja = one(&mut a, T0);
    assert!(a.handle_reply(T0, ja.id, ok(1800)));
    a.completed(T0);
    let done = one(&mut a, T0);
    assert_eq!(done.event, AnnounceEvent::Completed);
    assert!(a.handle_reply(T0, done.id, net()));
    // b first hears of us as a seed: `started`, never `completed`.
    let jb = one(&mut a, T0);
    assert_eq!(
        (jb.url.as_str(), jb.event),
        ("http://b/ann", AnnounceEvent::Started)
    );
    assert!(a.handle_reply(T0, jb.id, ok_min(1800, 300)));
    // Back to tier 0, where a still owes `completed`, after a's back-off.
    let done2 = one(&mut a, t(20));
    assert_eq!(
        (done2.url.as_str(), done2.event),
        ("http://a/ann", AnnounceEvent::Completed)
    );
    assert!(a.handle_reply(t(20), done2.id, net()));
    // Falling over to b makes a regular announce: not before b's min interval.
    assert_eq!(a.poll_timeout(), Some(t(300)));
    assert!(a.poll_job(t(299)).is_none());
    let jb2 = one(&mut a, t(300));
    assert_eq!(
        (jb2.url.as_str(), jb2.event),
        ("http://b/ann", AnnounceEvent::None)
    );
}

#[test]
fn strict_bep12_want_peers_and_completed_respect_the_first_tiers_back_off() {
    let config = AnnounceConfig {
        announce_to_all_tiers: false,
        ..AnnounceConfig::default()
    };
    let tiers = urls(&[&["http://a/ann"], &["http://b/ann"]]);

    // want_peers after b answered must not cut a's back-off short.
    let mut a = Announcer::new(tiers.clone(), config.clone(), 5, T0);
    a.start(T0, Some(1000));
    let mut now = T0;
    let mut back_to_a = T0;
    for n in 1..=4u32 {
        let ja = one(&mut a, now);
        assert_eq!(ja.url, "http://a/ann");
        assert!(a.handle_reply(now, ja.id, net()));
        let jb = one(&mut a, now);
        assert_eq!(jb.url, "http://b/ann");
        assert!(a.handle_reply(now, jb.id, ok_min(1800, 60)));
        assert_eq!(
            a.tracker(ja.tracker).unwrap().consecutive_failures,
            n,
            "a's failures"
        );
        back_to_a = now;
        now += secs(1800);
    }
    // a failed 4 times: back-off ≥ 120 s, longer than b's 60 s min interval.
    a.want_peers(back_to_a + secs(1));
    let at = a.poll_timeout().unwrap();
    assert!(at >= back_to_a + secs(120), "{at:?}");
    assert!(a.poll_job(back_to_a + secs(119)).is_none());
    assert_eq!(one(&mut a, at).url, "http://a/ann");

    // completed() during a's back-off waits for it too.
    let mut a = Announcer::new(tiers, config, 5, T0);
    a.start(T0, Some(1000));
    let ja = one(&mut a, T0);
    assert!(a.handle_reply(T0, ja.id, ok(1800)));
    let ja = one(&mut a, t(1800));
    assert!(a.handle_reply(t(1800), ja.id, net()));
    let jb = one(&mut a, t(1800));
    assert_eq!(jb.url, "http://b/ann");
    assert!(a.handle_reply(t(1800), jb.id, ok(1800)));
    a.completed(t(1801));
    let at = a.poll_timeout().unwrap();
    assert!(at >= t(1815), "{at:?}");
    assert!(a.poll_job(t(1814)).is_none());
    let done = one(&mut a, at);
    assert_eq!(
        (done.url.as_str(), done.event),
        ("http://a/ann", AnnounceEvent::Completed)
    );
}

#[test]
fn all_tiers_announces_every_tier_and_all_trackers_every_tracker() {
    let tiers = urls(&[&["http://a/ann", "udp://b:1"], &["wss://c"]]);
    let mut a = Announcer::new(tiers.clone(), AnnounceConfig::default(), 5, T0);
    a.start(T0, None);
    assert_eq!(drain(&mut a, T0).len(), 2);

    let config = AnnounceConfig {
        announce_to_all_trackers: true,
        ..AnnounceConfig::default()
    };
    let mut a = Announcer::new(tiers, config, 5, T0);
    a.start(T0, None);
    let jobs = drain(&mut a, T0);
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j.event == AnnounceEvent::Started));
    // A failing tracker does not fail over: the others already have their own schedule.
    assert!(a.handle_reply(t(1), jobs[0].id, net()));
    assert!(drain(&mut a, t(1)).is_empty());
    assert_eq!(one(&mut a, t(20)).tracker, jobs[0].tracker);
}

#[test]
fn request_timeout_counts_as_failure() {
    let mut a = single("wss://tracker.example");
    a.start(T0, None);
    let job = one(&mut a, T0);
    assert_eq!(a.poll_timeout(), Some(t(30)));
    assert!(a.poll_job(t(29)).is_none());
    assert!(a.tracker(job.tracker).unwrap().in_flight);
    assert!(a.poll_job(t(30)).is_none());
    let info = a.tracker(job.tracker).unwrap();
    assert!(!info.in_flight);
    assert_eq!(info.consecutive_failures, 1);
    assert_eq!(info.last_error, Some(&TrackerFailure::Timeout));
    assert!(matches!(
        events(&mut a).as_slice(),
        [AnnouncerEvent::Failed {
            error: TrackerFailure::Timeout,
            event: AnnounceEvent::Started,
            ..
        }]
    ));
    // A late reply is ignored.
    assert!(!a.handle_reply(t(31), job.id, ok(1800)));
    assert!(!a.tracker(job.tracker).unwrap().started);
    let retry = a.poll_timeout().unwrap();
    assert!(retry >= t(45) && retry <= t(47));
    assert_eq!(one(&mut a, retry).event, AnnounceEvent::Started);
}

#[test]
fn unsupported_schemes_are_skipped_and_listed() {
    let config = AnnounceConfig {
        schemes: SchemeSet::WEBSOCKET,
        ..AnnounceConfig::default()
    };
    let tiers = urls(&[&["http://a/ann", "wss://b"], &["udp://c:1"], &["bogus"]]);
    let mut a = Announcer::new(tiers, config.clone(), 1, T0);
    assert_eq!(
        a.unsupported_trackers().collect::<Vec<_>>(),
        ["http://a/ann", "udp://c:1", "bogus"]
    );
    let infos: Vec<_> = a
        .trackers()
        .map(|i| (i.url, i.supported, i.scheme))
        .collect();
    assert_eq!(
        infos,
        [
            ("http://a/ann", false, Some(Scheme::Http)),
            ("wss://b", true, Some(Scheme::Wss)),
            ("udp://c:1", false, Some(Scheme::Udp)),
            ("bogus", false, None),
        ]
    );
    a.start(T0, None);
    let job = one(&mut a, T0);
    assert_eq!(job.url, "wss://b");
    assert!(events(&mut a).is_empty());

    let mut none = Announcer::new(urls(&[&["udp://x:1"]]), config, 1, T0);
    none.start(T0, None);
    assert!(none.poll_job(T0).is_none());
    assert_eq!(none.poll_timeout(), None);
}

#[test]
fn duplicates_and_empty_urls_are_dropped() {
    let tiers = urls(&[
        &["http://a/ann", "", "http://a/ann"],
        &[],
        &["http://a/ann", " http://b/ann "],
    ]);
    let a = Announcer::new(tiers, AnnounceConfig::default(), 1, T0);
    let infos: Vec<_> = a.trackers().map(|i| (i.url, i.tier)).collect();
    assert_eq!(infos, [("http://a/ann", 0), ("http://b/ann", 2)]);
}

#[test]
fn stats_key_and_tracker_id_in_jobs() {
    let mut a = single("http://a/announce");
    a.update_stats(10, 20, Some(5));
    a.start(T0, None);
    let job = one(&mut a, T0);
    assert_eq!(
        (job.uploaded, job.downloaded, job.left, job.numwant, job.key),
        (10, 20, UNKNOWN_LEFT, 50, a.key())
    );
    assert_eq!(job.tracker_id, None);
    let reply = TrackerReply {
        interval: Some(secs(600)),
        tracker_id: Some(b"xyz".to_vec()),
        complete: Some(3),
        incomplete: Some(4),
        peers_count: 7,
        ..TrackerReply::default()
    };
    assert!(a.handle_reply(T0, job.id, Ok(reply)));
    assert!(matches!(
        events(&mut a).as_slice(),
        [AnnouncerEvent::Reply {
            seeders: Some(3),
            leechers: Some(4),
            peers: 7,
            ..
        }]
    ));
    a.update_stats(11, 21, Some(4));
    let job2 = one(&mut a, t(600));
    assert_eq!((job2.uploaded, job2.downloaded, job2.left), (11, 21, 4));
    assert_eq!(job2.key, job.key);
    assert_eq!(job2.tracker_id.as_deref(), Some(&b"xyz"[..]));
    // A reply without tracker id keeps the old one.
    assert!(a.handle_reply(t(600), job2.id, ok(600)));
    assert_eq!(
        one(&mut a, t(1200)).tracker_id.as_deref(),
        Some(&b"xyz"[..])
    );
    // Different seeds, different keys.
    assert_ne!(
        Announcer::new(vec![], AnnounceConfig::default(), 1, T0).key(),
        Announcer::new(vec![], AnnounceConfig::default(), 2, T0).key()
    );
}

#[test]
fn warning_and_failure_reason_are_reported_distinctly() {
    let mut a = single("http://a/announce");
    a.start(T0, None);
    let job = one(&mut a, T0);
    let reply = TrackerReply {
        warning: Some("slow down".into()),
        ..TrackerReply::default()
    };
    assert!(a.handle_reply(T0, job.id, Ok(reply)));
    let evs = events(&mut a);
    assert!(evs.contains(&AnnouncerEvent::Warning {
        tracker: job.tracker,
        message: "slow down".into()
    }));
    let job = one(&mut a, t(1800));
    let failure = TrackerFailure::Failure("torrent not registered".into());
    assert!(a.handle_reply(t(1800), job.id, Err(failure.clone())));
    assert!(matches!(
        events(&mut a).as_slice(),
        [AnnouncerEvent::Failed { error, .. }] if *error == failure
    ));
    assert_eq!(a.tracker(job.tracker).unwrap().last_error, Some(&failure));
    assert_ne!(
        failure.to_string(),
        TrackerFailure::Network("x".into()).to_string()
    );
}

#[test]
fn pause_and_resume() {
    let mut a = running_single(1800);
    a.completed(t(5));
    let done = one(&mut a, t(5));
    assert!(a.handle_reply(t(5), done.id, ok(1800)));
    a.pause(t(10));
    let stop = one(&mut a, t(10));
    assert_eq!(stop.event, AnnounceEvent::Stopped);
    assert!(a.handle_reply(t(10), stop.id, ok(1800)));
    assert_eq!(a.state(), AnnouncerState::Stopped);
    assert!(drain(&mut a, t(10_000)).is_empty());
    a.resume(t(10_000));
    assert_eq!(a.state(), AnnouncerState::Running);
    let job = one(&mut a, t(10_000));
    assert_eq!((job.event, job.left), (AnnounceEvent::Started, 0));
    assert!(a.handle_reply(t(10_000), job.id, ok(1800)));
    // Still a seed: no `completed` this session.
    assert_eq!(one(&mut a, t(11_800)).event, AnnounceEvent::None);
}

#[test]
fn restart_while_stopping_waits_for_the_stopped_reply() {
    let mut a = running_single(1800);
    a.stop(t(1));
    let stop = one(&mut a, t(1));
    a.start(t(2), Some(10));
    assert_eq!(a.state(), AnnouncerState::Running);
    assert!(drain(&mut a, t(2)).is_empty(), "one job per tracker");
    assert!(a.handle_reply(t(3), stop.id, ok(1800)));
    assert_eq!(one(&mut a, t(3)).event, AnnounceEvent::Started);
}

#[test]
fn time_going_backwards_is_harmless() {
    let mut a = running_single(600);
    assert!(a.poll_job(t(700)).is_some());
    assert!(a.poll_job(t(1)).is_none());
    a.want_peers(T0);
    a.completed(T0);
    assert!(a.poll_timeout().is_some());
}

#[test]
fn unknown_job_ids_are_ignored() {
    let mut a = running_single(600);
    assert!(!a.handle_reply(t(1), JobId(999), ok(5)));
    assert!(!a.handle_reply(t(1), JobId(0), net()));
    assert_eq!(a.poll_timeout(), Some(t(600)));
}

// ---- property test ----

#[derive(Debug, Clone)]
enum Outcome {
    Ok {
        interval: Option<u64>,
        min: Option<u64>,
    },
    Failure,
    Network,
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Start(Option<u64>),
    Stop,
    Pause,
    Resume,
    Completed,
    WantPeers,
    Stats(u64, u64, Option<u64>),
    Reply(usize, Outcome),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => (
            proptest::option::of(0u64..8000),
            proptest::option::of(0u64..4000)
        )
            .prop_map(|(interval, min)| Outcome::Ok { interval, min }),
        1 => Just(Outcome::Failure),
        1 => Just(Outcome::Network),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![0u64..5, 0u64..40, 0u64..4000].prop_map(Op::Advance),
        1 => proptest::option::of(0u64..3).prop_map(Op::Start),
        1 => Just(Op::Stop),
        1 => Just(Op::Pause),
        1 => Just(Op::Resume),
        1 => Just(Op::Completed),
        1 => Just(Op::WantPeers),
        1 => (0u64..100, 0u64..100, proptest::option::of(0u64..3))
            .prop_map(|(u, d, l)| Op::Stats(u, d, l)),
        6 => (0usize..16, outcome()).prop_map(|(i, o)| Op::Reply(i, o)),
    ]
}

fn tracker_list() -> impl Strategy<Value = Vec<Vec<String>>> {
    let url = (
        prop::sample::select(vec!["http", "https", "udp", "ws", "wss", "ftp"]),
        0u8..6,
    )
        .prop_map(|(scheme, host)| format!("{scheme}://t{host}.example/announce"));
    prop::collection::vec(prop::collection::vec(url, 0..4), 0..4)
}

struct Outstanding {
    job: AnnounceJob,
    deadline: Time,
    session: u64,
    leeching: bool,
}

/// The test's own account of what the announcer should be doing.
struct Model {
    now: Time,
    session: u64,
    running: bool,
    complete: bool,
    stats: (u64, u64, Option<u64>),
    outstanding: Vec<Outstanding>,
    started: Vec<bool>,
    started_leeching: Vec<bool>,
    completed_sent: Vec<bool>,
    /// Time of the last successful reply and the effective min interval it set.
    last_ok: Vec<Option<(Time, Duration)>>,
    /// Consecutive counted failures (this session's, not `stopped`) and when the last was.
    fails: Vec<(u32, Time)>,
}

impl Model {
    fn expire(&mut self) {
        let now = self.now;
        let (expired, kept) = std::mem::take(&mut self.outstanding)
            .into_iter()
            .partition(|o| o.deadline <= now);
        self.outstanding = kept;
        for o in expired {
            self.failed(&o);
        }
    }

    fn failed(&mut self, o: &Outstanding) {
        if o.session == self.session && o.job.event != AnnounceEvent::Stopped {
            let f = &mut self.fails[o.job.tracker.index()];
            *f = (f.0 + 1, self.now);
        }
    }

    /// Earliest time a tracker may be announced to again after its failures (jitter only
    /// adds to this).
    fn back_off_until(&self, config: &AnnounceConfig, i: usize) -> Time {
        match self.fails[i] {
            (0, _) => T0,
            (n, at) => {
                at + config
                    .retry_base
                    .saturating_mul(1u32 << (n - 1).min(30))
                    .min(config.retry_cap)
            }
        }
    }

    fn new_session(&mut self) {
        self.running = true;
        self.session += 1;
        self.started.iter_mut().for_each(|s| *s = false);
        self.started_leeching.iter_mut().for_each(|s| *s = false);
        self.completed_sent.iter_mut().for_each(|s| *s = false);
    }

    fn eff_min(config: &AnnounceConfig, min: Option<u64>) -> Duration {
        secs(min.unwrap_or(0)).clamp(config.interval_floor, config.interval_cap)
    }
}

fn check_drain(a: &mut Announcer, m: &mut Model, config: &AnnounceConfig) {
    while let Some(job) = a.poll_job(m.now) {
        let i = job.tracker.index();
        let info = a.tracker(job.tracker).expect("job for a known tracker");
        assert!(info.supported, "job to unsupported tracker {}", info.url);
        assert!(
            m.outstanding.iter().all(|o| o.job.tracker != job.tracker),
            "two jobs in flight to {}",
            job.url
        );
        assert_eq!(job.key, a.key());
        assert_eq!((job.uploaded, job.downloaded), (m.stats.0, m.stats.1));
        assert_eq!(job.left, m.stats.2.unwrap_or(config.unknown_left));
        match job.event {
            AnnounceEvent::Stopped => {
                assert!(!m.running, "stopped while running");
                assert!(
                    m.started[i],
                    "stopped to a tracker without a successful started"
                );
                assert_eq!(job.numwant, 0);
                m.started[i] = false;
            }
            event => {
                assert!(m.running, "{event:?} job after stop");
                assert!(
                    m.now >= m.back_off_until(config, i),
                    "{event:?} during a failure back-off"
                );
                assert_eq!(job.numwant, config.numwant);
                if event == AnnounceEvent::Started {
                    assert!(!m.started[i], "started twice in one session");
                } else {
                    assert!(m.started[i], "{event:?} before a successful started");
                }
                if event == AnnounceEvent::Completed {
                    assert!(m.complete && m.started_leeching[i] && !m.completed_sent[i]);
                }
                if event == AnnounceEvent::None {
                    let (at, min) = m.last_ok[i].expect("regular announce before any reply");
                    assert!(m.now >= at + min, "min interval violated");
                }
            }
        }
        let timeout = if job.event == AnnounceEvent::Stopped {
            config.stop_timeout
        } else {
            config.request_timeout
        };
        m.outstanding.push(Outstanding {
            deadline: m.now + timeout,
            session: m.session,
            leeching: !m.complete,
            job,
        });
    }
    while a.poll_event().is_some() {}
    if let Some(at) = a.poll_timeout() {
        assert!(
            at > m.now,
            "poll_timeout {at:?} not after drained now {:?}",
            m.now
        );
        // No spurious or late wake-up: at that time a job is due or a job times out.
        let mut probe = a.clone();
        let progressed = probe.poll_job(at).is_some() || probe.poll_event().is_some();
        assert!(progressed, "nothing happens at poll_timeout {at:?}");
        let just_before = Time::from_micros(at.as_micros() - 1);
        if just_before > m.now {
            let mut probe = a.clone();
            let early = probe.poll_job(just_before).is_some() || probe.poll_event().is_some();
            assert!(!early, "something happens before poll_timeout {at:?}");
        }
    }
    let any_supported = a.trackers().any(|i| i.supported);
    if m.running && any_supported {
        assert!(a.poll_timeout().is_some(), "running announcer went silent");
    }
    if !m.running {
        assert_eq!(
            a.state() == AnnouncerState::Stopped || a.state() == AnnouncerState::Idle,
            m.outstanding.is_empty() && a.poll_timeout().is_none(),
        );
    }
}

fn run(tiers: Vec<Vec<String>>, all_tiers: bool, all_trackers: bool, seed: u64, ops: Vec<Op>) {
    let config = AnnounceConfig {
        announce_to_all_tiers: all_tiers,
        announce_to_all_trackers: all_trackers,
        schemes: SchemeSet::ALL.without(Scheme::Https),
        ..AnnounceConfig::default()
    };
    let mut a = Announcer::new(tiers, config.clone(), seed, T0);
    let n = a.trackers().count();
    let mut m = Model {
        now: T0,
        session: 0,
        running: false,
        complete: false,
        stats: (0, 0, None),
        outstanding: Vec::new(),
        started: vec![false; n],
        started_leeching: vec![false; n],
        completed_sent: vec![false; n],
        last_ok: vec![None; n],
        fails: vec![(0, T0); n],
    };
    for op in ops {
        match op {
            Op::Advance(s) => m.now += secs(s),
            Op::Start(left) => {
                a.start(m.now, left);
                m.stats.2 = left;
                if !m.running {
                    m.complete = left == Some(0);
                    m.new_session();
                }
            }
            Op::Resume => {
                a.resume(m.now);
                if !m.running {
                    m.new_session();
                }
            }
            Op::Stop => {
                a.stop(m.now);
                m.running = false;
            }
            Op::Pause => {
                a.pause(m.now);
                m.running = false;
            }
            Op::Completed => {
                a.completed(m.now);
                if !m.complete {
                    m.complete = true;
                    m.stats.2 = Some(0);
                }
            }
            Op::WantPeers => a.want_peers(m.now),
            Op::Stats(u, d, l) => {
                a.update_stats(u, d, l);
                m.stats = (u, d, l);
            }
            Op::Reply(pick, outcome) => {
                m.expire();
                if m.outstanding.is_empty() {
                    continue;
                }
                let o = m.outstanding.remove(pick % m.outstanding.len());
                let i = o.job.tracker.index();
                let result = match &outcome {
                    Outcome::Ok { interval, min } => Ok(TrackerReply {
                        interval: interval.map(secs),
                        min_interval: min.map(secs),
                        ..TrackerReply::default()
                    }),
                    Outcome::Failure => Err(TrackerFailure::Failure("no".into())),
                    Outcome::Network => net(),
                };
                assert!(a.handle_reply(m.now, o.job.id, result), "reply refused");
                if let Outcome::Ok { min, .. } = outcome {
                    m.last_ok[i] = Some((m.now, Model::eff_min(&config, min)));
                    m.fails[i] = (0, m.now);
                    if o.session == m.session {
                        match o.job.event {
                            AnnounceEvent::Started => {
                                m.started[i] = true;
                                m.started_leeching[i] = o.leeching;
                            }
                            AnnounceEvent::Completed => m.completed_sent[i] = true,
                            _ => {}
                        }
                    }
                } else {
                    m.failed(&o);
                }
                // A duplicate reply is refused.
                assert!(!a.handle_reply(m.now, o.job.id, net()));
            }
        }
        assert_eq!(a.state() == AnnouncerState::Running, m.running);
        m.expire();
        check_drain(&mut a, &mut m, &config);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_under_random_operation(
        tiers in tracker_list(),
        all_tiers in any::<bool>(),
        all_trackers in any::<bool>(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 0..120),
    ) {
        run(tiers, all_tiers, all_trackers, seed, ops);
    }
}

#[test]
fn jobs_carry_the_timeout_the_announcer_waits_for() {
    let mut a = single("http://a/announce");
    a.start(T0, Some(1000));
    let job = one(&mut a, T0);
    assert_eq!(job.timeout, AnnounceConfig::default().request_timeout);
    a.handle_reply(T0, job.id, ok(1800));
    a.stop(t(10));
    let stop = one(&mut a, t(10));
    assert_eq!(stop.event, AnnounceEvent::Stopped);
    assert_eq!(stop.timeout, AnnounceConfig::default().stop_timeout);
}
