//! The tracker on a scripted clock: semantics, limits, per-join RADIUS, previews.

use super::*;
use crate::policy::{FailMode, Limits, Package, Preview, Unknown};

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x12]);

fn policy() -> Policy {
    let mut p = Policy {
        unknown: Unknown::Deny,
        limits: Limits { max_groups: Some(2), max_bandwidth_kbps: None },
        ..Default::default()
    };
    p.packages.insert(
        "basic".into(),
        Package {
            name: "basic".into(),
            groups: vec!["239.1.1.0/24".parse().unwrap()],
            channels: vec![],
            bandwidth_kbps: 0,
            preview: None,
        },
    );
    p
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rec(ty: RecordType, g: &str, s: &[&str]) -> GroupRecord {
    GroupRecord { record_type: ty, group: ip(g), sources: s.iter().map(|x| ip(x)).collect() }
}

fn out(t: &mut Tracker) -> Vec<Output> {
    std::iter::from_fn(|| t.poll_output()).collect()
}

fn mdb(o: &[Output]) -> Vec<String> {
    o.iter()
        .filter_map(|o| match o {
            Output::MdbAdd { port, group, source } => Some(format!("+{port} {group} {source:?}")),
            Output::MdbDel { port, group, source } => Some(format!("-{port} {group} {source:?}")),
            _ => None,
        })
        .collect()
}

fn upstream(o: &[Output]) -> Vec<GroupRecord> {
    o.iter()
        .filter_map(|o| if let Output::Upstream { records } = o { Some(records.clone()) } else { None })
        .flatten()
        .map(|(_, r)| r)
        .collect()
}

struct H {
    ent: Entitlement,
    names: [Arc<str>; 3],
}
impl H {
    fn host(&self, port: PortId, mac: MacAddr) -> Host<'_> {
        let [p, a, s] = &self.names;
        Host { port, port_name: p, vlan: None, mac, account: a, session_id: s, entitlement: &self.ent }
    }
}

fn setup(fast: bool) -> (Tracker, Policy, H, Instant) {
    (
        Tracker::new(Config::default(), vec![fast, fast]),
        policy(),
        H {
            ent: Entitlement { packages: vec!["basic".into()], max_groups: None },
            names: ["p".into(), "alice".into(), "s1".into()],
        },
        Instant::now(),
    )
}

#[test]
fn a_churning_host_costs_a_bounded_number_of_records_and_admissions() {
    let (mut t, mut p, h, t0) = setup(false);
    p.unknown = Unknown::Allow;
    p.limits.max_groups = None;
    let host = h.host(0, A);
    // one report of 180 joins: 64 read, the rest counted
    let joins: Vec<GroupRecord> =
        (0..180).map(|i| rec(RecordType::ToEx, &format!("239.2.{}.{}", i / 256, i % 256), &[])).collect();
    t.handle_report(t0, 0, &p, &host, &joins);
    assert_eq!((t.stats.records, t.stats.records_over_limit), (64, 116));
    // of those, 40 admitted at once (twice the rate), the others denied before policy
    let admitted = out(&mut t).iter().filter(|o| matches!(o, Output::Admitted { .. })).count();
    assert_eq!(admitted, 40);
    assert_eq!(t.stats.denied[&DenyReason::AdmissionRate], 24);
    // leave them all and join others a second later: 20 more (the rate), not 64
    let leaves: Vec<GroupRecord> =
        (0..40).map(|i| rec(RecordType::ToIn, &format!("239.2.{}.{}", i / 256, i % 256), &[])).collect();
    t.handle_report(t0, 0, &p, &host, &leaves);
    let again: Vec<GroupRecord> = (0..64).map(|i| rec(RecordType::ToEx, &format!("239.3.0.{i}"), &[])).collect();
    t.handle_report(t0 + Duration::from_secs(1), 0, &p, &host, &again);
    let admitted = out(&mut t).iter().filter(|o| matches!(o, Output::Admitted { .. })).count();
    assert_eq!(admitted, 20);
    // another host has its own allowance, and a session's end takes the host's with it
    t.handle_report(t0, 0, &p, &h.host(0, B), &again[..1]);
    assert_eq!(out(&mut t).iter().filter(|o| matches!(o, Output::Admitted { .. })).count(), 1);
    t.end_host(t0, 0, A, EndCause::SessionEnd(crate::auth::EndCause::UserRequest));
    t.end_host(t0, 0, B, EndCause::SessionEnd(crate::auth::EndCause::UserRequest));
    assert!(t.admissions.is_empty());
}

#[test]
fn preview_starts_are_forgotten_after_a_day() {
    let (mut t, mut p, h, t0) = setup(false);
    p.packages.get_mut("basic").unwrap().preview =
        Some(Preview { duration: Duration::from_secs(60), views_per_day: 3, min_gap: Duration::ZERO });
    let e = Entitlement { packages: vec![], max_groups: None };
    let host = Host { entitlement: &e, ..h.host(0, A) };
    for i in 0..100u32 {
        let r = rec(RecordType::ToEx, &format!("239.1.1.{}", i % 250), &[]);
        t.handle_report(t0, 1_000 + u64::from(i), &p, &host, std::slice::from_ref(&r));
        t.handle_report(
            t0,
            1_000 + u64::from(i),
            &p,
            &host,
            &[rec(RecordType::ToIn, &format!("239.1.1.{}", i % 250), &[])],
        );
    }
    assert!(t.stats.previews > 0 && !t.previews.is_empty());
    // a day later the next report sweeps them
    t.handle_report(t0, 1_000 + 86_400 + 100, &p, &host, &[]);
    assert!(t.previews.is_empty(), "{} kept", t.previews.len());
}

#[test]
fn only_multicast_groups_from_unicast_sources_are_ever_admitted() {
    let (mut t, mut p, h, t0) = setup(false);
    p.unknown = Unknown::Allow;
    let forged = [
        rec(RecordType::IsEx, "10.0.0.1", &[]),
        rec(RecordType::IsEx, "255.255.255.255", &[]),
        rec(RecordType::IsEx, "2001:db8::1", &[]),
        rec(RecordType::IsIn, "232.1.1.1", &["239.9.9.9"]),
        rec(RecordType::Allow, "232.1.1.1", &["0.0.0.0"]),
    ];
    t.handle_report(t0, 0, &p, &h.host(0, A), &forged);
    assert!(mdb(&out(&mut t)).is_empty());
    assert_eq!(t.stats.records_not_multicast, 5);
    // what unknown = "allow" is for still works
    t.handle_report(
        t0,
        0,
        &p,
        &h.host(0, A),
        &[rec(RecordType::IsEx, "239.200.0.1", &[]), rec(RecordType::IsEx, "ff3e::1", &[])],
    );
    assert_eq!(mdb(&out(&mut t)), ["+0 239.200.0.1 None", "+0 ff3e::1 None"]);
}

#[test]
fn join_admits_once_per_port_and_goes_upstream_once_per_switch() {
    let (mut t, p, h, t0) = setup(false);
    t.handle_report(t0, 0, &p, &h.host(0, A), &[rec(RecordType::IsEx, "239.1.1.1", &[])]);
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["+0 239.1.1.1 None"]);
    assert_eq!(upstream(&o), [rec(RecordType::ToEx, "239.1.1.1", &[])]);
    assert!(matches!(o[0], Output::Admitted { .. }), "durable record first");
    // a second host on the same port: a membership, no new MDB entry
    t.handle_report(t0, 0, &p, &h.host(0, B), &[rec(RecordType::IsEx, "239.1.1.1", &[])]);
    let o = out(&mut t);
    assert!(mdb(&o).is_empty() && upstream(&o).is_empty());
    // another port: an MDB entry, nothing upstream
    t.handle_report(t0, 0, &p, &h.host(1, A), &[rec(RecordType::IsEx, "239.1.1.1", &[])]);
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["+1 239.1.1.1 None"]);
    assert!(upstream(&o).is_empty());
    // a repeated report refreshes
    t.handle_report(t0, 0, &p, &h.host(0, A), &[rec(RecordType::IsEx, "239.1.1.1", &[])]);
    assert!(out(&mut t).is_empty());
    assert_eq!(t.stats.refreshed, 1);
}

#[test]
fn reevaluation_revokes_what_the_new_packages_do_not_allow() {
    let (mut t, p, mut h, t0) = setup(true);
    let joins = [rec(RecordType::ToEx, "239.1.1.1", &[]), rec(RecordType::ToEx, "ff02::1:ff00:11", &[])];
    t.handle_report(t0, 0, &p, &h.host(0, A), &joins);
    out(&mut t);
    // nothing changed: nothing goes
    assert_eq!(t.reevaluate(t0, &p, &h.host(0, A)), 0);
    assert!(out(&mut t).is_empty());
    // the package is gone (a CoA): the package's channel goes, link-scope stays
    h.ent.packages.clear();
    assert_eq!(t.reevaluate(t0, &p, &h.host(0, A)), 1);
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["-0 239.1.1.1 None"]);
    assert!(o.iter().any(|o| matches!(o, Output::Ended { cause: EndCause::Revoked, .. })));
    assert_eq!(t.memberships().count(), 1);
}

#[test]
fn a_withdrawn_package_ends_its_channels_whatever_unknown_groups_do() {
    for (unknown, ends) in [(Unknown::Deny, true), (Unknown::Radius, true), (Unknown::Allow, false)] {
        let (mut t, mut p, mut h, t0) = setup(true);
        p.unknown = unknown;
        t.handle_report(t0, 0, &p, &h.host(0, A), &[rec(RecordType::ToEx, "239.1.1.1", &[])]);
        assert_eq!(mdb(&out(&mut t)), ["+0 239.1.1.1 None"]);
        h.ent.packages.clear();
        assert_eq!(t.reevaluate(t0, &p, &h.host(0, A)), ends as usize, "{unknown:?}");
        let o = out(&mut t);
        assert_eq!(mdb(&o).len(), ends as usize, "{unknown:?}: {o:?}");
        assert!(!o.iter().any(|o| matches!(o, Output::AskRadius { .. })), "ends, not asked about");
    }
}

#[test]
fn a_mixed_v3_report_admits_only_the_entitled_record() {
    let (mut t, p, h, t0) = setup(false);
    t.handle_report(
        t0,
        0,
        &p,
        &h.host(0, A),
        &[rec(RecordType::ToEx, "239.1.1.1", &[]), rec(RecordType::ToEx, "239.9.9.9", &[])],
    );
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["+0 239.1.1.1 None"]);
    assert_eq!(upstream(&o), [rec(RecordType::ToEx, "239.1.1.1", &[])]);
    assert!(o.iter().any(|o| matches!(o, Output::Denied { reason: DenyReason::NotEntitled, .. })));
}

#[test]
fn leave_on_a_shared_port_queries_and_lingers() {
    let (mut t, p, h, t0) = setup(false);
    t.handle_report(t0, 0, &p, &h.host(0, A), &[rec(RecordType::IsEx, "239.1.1.1", &[])]);
    out(&mut t);
    t.handle_report(t0, 0, &p, &h.host(0, A), &[rec(RecordType::ToIn, "239.1.1.1", &[])]);
    let o = out(&mut t);
    assert!(o.iter().any(|o| matches!(o, Output::Query { port: 0, .. })));
    assert!(o.iter().any(|o| matches!(o, Output::Ended { cause: EndCause::Leave, .. })));
    assert!(mdb(&o).is_empty(), "lingers");
    // another host answers the query within the time: the entry stays, no MdbAdd
    t.handle_report(t0 + Duration::from_secs(1), 0, &p, &h.host(0, B), &[rec(RecordType::IsEx, "239.1.1.1", &[])]);
    let o = out(&mut t);
    assert!(mdb(&o).is_empty());
    t.handle_timeout(t0 + Duration::from_secs(3));
    assert!(mdb(&out(&mut t)).is_empty());
    // B leaves, nobody answers: removed after last_member_query_time, leave goes up
    t.handle_report(t0 + Duration::from_secs(5), 0, &p, &h.host(0, B), &[rec(RecordType::ToIn, "239.1.1.1", &[])]);
    out(&mut t);
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(7)));
    t.handle_timeout(t0 + Duration::from_secs(7));
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["-0 239.1.1.1 None"]);
    assert_eq!(upstream(&o), [rec(RecordType::ToIn, "239.1.1.1", &[])]);
}

#[test]
fn fast_leave_is_immediate() {
    let (mut t, p, h, t0) = setup(true);
    t.handle_report(t0, 0, &p, &h.host(0, A), &[rec(RecordType::IsEx, "239.1.1.1", &[])]);
    out(&mut t);
    t.handle_report(t0, 0, &p, &h.host(0, A), &[rec(RecordType::ToIn, "239.1.1.1", &[])]);
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["-0 239.1.1.1 None"]);
    assert!(!o.iter().any(|o| matches!(o, Output::Query { .. })));
}

#[test]
fn source_specific_semantics() {
    let (mut t, mut p, h, t0) = setup(true);
    p.packages.get_mut("basic").unwrap().groups.push("232.1.1.0/24".parse().unwrap());
    let host = h.host(0, A);
    t.handle_report(t0, 0, &p, &host, &[rec(RecordType::Allow, "232.1.1.1", &["192.0.2.254", "192.0.2.253"])]);
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["+0 232.1.1.1 Some(192.0.2.254)", "+0 232.1.1.1 Some(192.0.2.253)"]);
    assert_eq!(upstream(&o).len(), 2);
    // TO_IN with one source: the other goes
    t.handle_report(t0, 0, &p, &host, &[rec(RecordType::ToIn, "232.1.1.1", &["192.0.2.254"])]);
    assert_eq!(mdb(&out(&mut t)), ["-0 232.1.1.1 Some(192.0.2.253)"]);
    t.handle_report(t0, 0, &p, &host, &[rec(RecordType::Block, "232.1.1.1", &["192.0.2.254"])]);
    assert_eq!(mdb(&out(&mut t)), ["-0 232.1.1.1 Some(192.0.2.254)"]);
}

#[test]
fn limits_timeouts_session_end_and_link_local() {
    let (mut t, p, h, t0) = setup(false);
    let host = h.host(0, A);
    let recs: Vec<GroupRecord> = (1..=3).map(|i| rec(RecordType::IsEx, &format!("239.1.1.{i}"), &[])).collect();
    t.handle_report(t0, 0, &p, &host, &recs);
    let o = out(&mut t);
    assert_eq!(mdb(&o).len(), 2, "max_groups = 2");
    assert!(o.iter().any(|o| matches!(o, Output::Denied { reason: DenyReason::MaxGroups, .. })));
    // link-scope groups: admitted outside limits (ND needs them), 224.0.0.x ignored
    t.handle_report(
        t0,
        0,
        &p,
        &host,
        &[rec(RecordType::IsEx, "ff02::1:ff00:11", &[]), rec(RecordType::IsEx, "224.0.0.251", &[])],
    );
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["+0 ff02::1:ff00:11 None"]);
    assert_eq!(t.stats.link_local_ignored, 1);
    // nothing refreshed: all time out after the group membership interval
    t.handle_timeout(t0 + Duration::from_secs(260));
    let o = out(&mut t);
    assert_eq!(mdb(&o).len(), 3);
    assert_eq!(t.stats.timeouts, 3);
    // session end takes everything at once, no query
    t.handle_report(t0, 0, &p, &host, &recs[..1]);
    out(&mut t);
    t.end_host(t0, 0, A, EndCause::SessionEnd(crate::auth::EndCause::UserRequest));
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["-0 239.1.1.1 None"]);
    assert!(t.memberships().next().is_none());
}

fn asks(o: &[Output]) -> Vec<u64> {
    o.iter().filter_map(|o| if let Output::AskRadius { token, .. } = o { Some(*token) } else { None }).collect()
}

fn denied(o: &[Output]) -> Vec<DenyReason> {
    o.iter().filter_map(|o| if let Output::Denied { reason, .. } = o { Some(*reason) } else { None }).collect()
}

#[test]
fn resource_bounds_hold_whatever_the_policy_allows() {
    let (_, mut p, h, t0) = setup(true);
    p.unknown = Unknown::Radius;
    p.limits.max_groups = None;
    let bounds = Bounds {
        memberships_per_host: 3,
        channels_per_port: 4,
        pending_radius: 2,
        cached_decisions: 2,
        ..Bounds::default()
    };
    let mut t = Tracker::new(Config { bounds, ..Default::default() }, vec![true, true]);
    let join = |g: &str| [rec(RecordType::ToEx, g, &[])];
    // per host, link-scope groups included (they take no policy, but they take memory)
    for g in ["239.1.1.1", "ff02::1:ff00:1", "239.1.1.2", "239.1.1.3", "ff02::1:ff00:2"] {
        t.handle_report(t0, 0, &p, &h.host(0, A), &join(g));
    }
    let o = out(&mut t);
    assert_eq!(mdb(&o).len(), 3);
    assert_eq!(denied(&o), [DenyReason::HostMembershipLimit; 2]);
    // per port: channels (MDB entries), a channel already on the port costs nothing
    t.handle_report(t0, 0, &p, &h.host(0, B), &join("239.1.1.1"));
    t.handle_report(t0, 0, &p, &h.host(0, B), &join("239.1.1.4"));
    t.handle_report(t0, 0, &p, &h.host(0, B), &join("239.1.1.5"));
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["+0 239.1.1.4 None"]);
    assert_eq!(denied(&o), [DenyReason::PortChannelLimit]);
    // a channel leaving makes room
    t.handle_report(t0, 0, &p, &h.host(0, B), &[rec(RecordType::ToIn, "239.1.1.4", &[])]);
    t.handle_report(t0, 0, &p, &h.host(0, B), &join("239.1.1.5"));
    assert_eq!(mdb(&out(&mut t)), ["-0 239.1.1.4 None", "+0 239.1.1.5 None"]);
    // per-join questions in flight
    let q = h.host(1, A);
    for g in ["239.9.9.1", "239.9.9.2", "239.9.9.3"] {
        t.handle_report(t0, 0, &p, &q, &join(g));
    }
    let o = out(&mut t);
    assert_eq!(asks(&o).len(), 2);
    assert_eq!(denied(&o), [DenyReason::RadiusBusy]);
    // answers cached: two fit, the third is counted and not kept
    for (tok, g) in asks(&o).into_iter().zip(["239.9.9.1", "239.9.9.2"]) {
        t.radius_answer(t0, 0, &p, tok, RadiusAnswer::Reject { ttl: None });
        t.handle_report(t0, 0, &p, &q, &join(g));
    }
    assert_eq!(t.stats.radius_cache_hits, 2);
    t.handle_report(t0, 0, &p, &q, &join("239.9.9.3"));
    let tok = asks(&out(&mut t))[0];
    t.radius_answer(t0, 0, &p, tok, RadiusAnswer::Reject { ttl: None });
    assert_eq!(t.stats.radius_cache_full, 1);
    t.handle_report(t0, 0, &p, &q, &join("239.9.9.3"));
    assert_eq!(asks(&out(&mut t)).len(), 1, "not cached: asked again");
    // once the cached answers went stale, there is room again
    let later = t0 + p.radius.negative_ttl + Duration::from_secs(1);
    t.radius_answer(later, 0, &p, tok + 1, RadiusAnswer::Reject { ttl: None });
    assert_eq!(t.stats.radius_cache_full, 1);
    t.handle_report(later, 0, &p, &q, &join("239.9.9.3"));
    assert!(asks(&out(&mut t)).is_empty(), "cached this time");
    assert_eq!(t.stats.radius_cache_hits, 3);
}

#[test]
fn per_join_radius_is_asked_once_cached_and_fails_as_configured() {
    let (mut t, mut p, h, t0) = setup(true);
    p.unknown = Unknown::Radius;
    let (a, b) = (h.host(0, A), h.host(1, B));
    let join = |g: &str| [rec(RecordType::ToEx, g, &[])];
    // two reports of the same account and group before the answer: one request
    t.handle_report(t0, 0, &p, &a, &join("239.5.5.5"));
    t.handle_report(t0, 0, &p, &a, &join("239.5.5.5"));
    let o = out(&mut t);
    assert_eq!(asks(&o).len(), 1);
    assert!(mdb(&o).is_empty(), "nothing admitted before the answer");
    t.radius_answer(t0, 0, &p, asks(&o)[0], RadiusAnswer::Accept { ttl: Some(Duration::from_secs(10)) });
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["+0 239.5.5.5 None"]);
    assert!(o.iter().any(|o| matches!(o, Output::Admitted { .. })));
    assert_eq!(t.membership(0, A, (ip("239.5.5.5"), None)).unwrap().by, "radius".into());
    // the same account elsewhere within the TTL: from the cache, no request
    t.handle_report(t0, 0, &p, &b, &join("239.5.5.5"));
    let o = out(&mut t);
    assert!(asks(&o).is_empty());
    assert_eq!(mdb(&o), ["+1 239.5.5.5 None"]);
    assert_eq!(t.stats.radius_cache_hits, 1);
    // a reject is cached too
    t.handle_report(t0, 0, &p, &a, &join("239.6.6.6"));
    let tok = asks(&out(&mut t))[0];
    t.radius_answer(t0, 0, &p, tok, RadiusAnswer::Reject { ttl: None });
    assert!(out(&mut t).iter().any(|o| matches!(o, Output::Denied { reason: DenyReason::RadiusDenied, .. })));
    t.handle_report(t0, 0, &p, &a, &join("239.6.6.6"));
    assert!(asks(&out(&mut t)).is_empty(), "negative answer cached");

    // unreachable: deny, allow, or the stale answer
    let later = t0 + Duration::from_secs(100); // the positive answer has expired
    t.handle_report(later, 0, &p, &a, &[rec(RecordType::ToIn, "239.5.5.5", &[])]);
    out(&mut t);
    for (mode, expect_admit) in [(FailMode::Deny, false), (FailMode::Stale, true), (FailMode::Allow, true)] {
        p.radius.unreachable = mode;
        t.handle_report(later, 0, &p, &a, &join("239.5.5.5"));
        let tok = asks(&out(&mut t))[0];
        t.radius_answer(later, 0, &p, tok, RadiusAnswer::Unreachable);
        let o = out(&mut t);
        assert_eq!(!mdb(&o).is_empty(), expect_admit, "{mode:?}: {o:?}");
        t.handle_report(later, 0, &p, &a, &[rec(RecordType::ToIn, "239.5.5.5", &[])]);
        out(&mut t);
    }
    // stale with no answer ever given: denied
    p.radius.unreachable = FailMode::Stale;
    t.handle_report(later, 0, &p, &a, &join("239.7.7.7"));
    let tok = asks(&out(&mut t))[0];
    t.radius_answer(later, 0, &p, tok, RadiusAnswer::Unreachable);
    assert!(out(&mut t).iter().any(|o| matches!(o, Output::Denied { reason: DenyReason::RadiusUnreachable, .. })));
}

#[test]
fn a_host_that_leaves_before_the_answer_is_not_admitted() {
    let (mut t, mut p, h, t0) = setup(true);
    p.unknown = Unknown::Radius;
    t.handle_report(t0, 0, &p, &h.host(0, A), &[rec(RecordType::ToEx, "239.5.5.5", &[])]);
    let tok = asks(&out(&mut t))[0];
    t.end_host(t0, 0, A, EndCause::SessionEnd(crate::auth::EndCause::UserRequest));
    t.radius_answer(t0, 0, &p, tok, RadiusAnswer::Accept { ttl: None });
    assert!(mdb(&out(&mut t)).is_empty());
}

#[test]
fn free_preview_runs_its_time_and_its_quota() {
    let (mut t, mut p, h, t0) = setup(true);
    p.packages.insert(
        "sports".into(),
        Package {
            name: "sports".into(),
            groups: vec!["239.9.0.0/16".parse().unwrap()],
            channels: vec![],
            bandwidth_kbps: 0,
            preview: Some(Preview {
                duration: Duration::from_secs(300),
                views_per_day: 2,
                min_gap: Duration::from_secs(600),
            }),
        },
    );
    let a = h.host(0, A);
    let join = [rec(RecordType::ToEx, "239.9.0.1", &[])];
    let leave = [rec(RecordType::ToIn, "239.9.0.1", &[])];
    // alice has no sports: a preview, which ends after 5 minutes though she keeps reporting
    t.handle_report(t0, 0, &p, &a, &join);
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["+0 239.9.0.1 None"]);
    assert_eq!(&*t.membership(0, A, (ip("239.9.0.1"), None)).unwrap().by, "preview:sports");
    t.handle_report(t0 + Duration::from_secs(200), 200, &p, &a, &join);
    // the timeout before the refresh may still wake the tracker: nothing ends then
    let wake = t.poll_timeout().unwrap();
    assert!(wake <= t0 + Duration::from_secs(300));
    t.handle_timeout(wake.min(t0 + Duration::from_secs(299)));
    assert!(out(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    t.handle_timeout(t0 + Duration::from_secs(300));
    let o = out(&mut t);
    assert_eq!(mdb(&o), ["-0 239.9.0.1 None"]);
    assert!(o.iter().any(|o| matches!(o, Output::Ended { cause: EndCause::PreviewEnd, .. })));
    // too soon for another (min_gap 10 minutes from the start of the last)
    t.handle_report(t0 + Duration::from_secs(301), 301, &p, &a, &join);
    assert!(out(&mut t).iter().any(|o| matches!(o, Output::Denied { reason: DenyReason::PreviewExhausted, .. })));
    // the second of the day after the gap, then none
    t.handle_report(t0 + Duration::from_secs(700), 700, &p, &a, &join);
    assert_eq!(mdb(&out(&mut t)), ["+0 239.9.0.1 None"]);
    t.handle_report(t0 + Duration::from_secs(710), 710, &p, &a, &leave);
    out(&mut t);
    t.handle_report(t0 + Duration::from_secs(2000), 2000, &p, &a, &join);
    assert!(out(&mut t).iter().any(|o| matches!(o, Output::Denied { reason: DenyReason::PreviewExhausted, .. })));
    // a day later the quota is back
    t.handle_report(t0 + Duration::from_secs(90_000), 90_000, &p, &a, &join);
    assert_eq!(mdb(&out(&mut t)), ["+0 239.9.0.1 None"]);
    // a subscriber who has the package is not previewing
    let mut ent = h.ent.clone();
    ent.packages.push("sports".into());
    let b = Host { entitlement: &ent, ..h.host(1, B) };
    t.handle_report(t0, 0, &p, &b, &join);
    out(&mut t);
    assert_eq!(&*t.membership(1, B, (ip("239.9.0.1"), None)).unwrap().by, "sports");
}

#[test]
fn acct_ids_read_back_as_written() {
    let id = AcctId { run: 0x6B04_EFAD, n: 0x1F };
    assert_eq!(id.to_string(), "6B04EFAD-1F");
    assert_eq!("6B04EFAD-1F".parse::<AcctId>(), Ok(id));
    assert_eq!(serde_json::from_str::<AcctId>(&serde_json::to_string(&id).unwrap()).unwrap(), id);
    for bad in ["", "6B04EFAD", "x-1", "6B04EFAD-", "6B04EFAD-1-2"] {
        assert!(bad.parse::<AcctId>().is_err(), "{bad}");
    }
}

/// A process that takes over goes on where the old tracker was: a membership restored
/// from the store times out when the old one's would have (not a fresh interval later),
/// a per-join question in flight is answered into a membership without asking again,
/// the cached answers decide, and a question whose request did not come along is
/// dropped (its key may be asked again).
#[test]
fn a_tracker_that_takes_over_keeps_the_deadlines_questions_and_answers() {
    let (mut old, mut p, h, t0) = setup(true);
    p.unknown = Unknown::Radius;
    let (a, b) = (h.host(0, A), h.host(1, B));
    let join = |g: &str| [rec(RecordType::ToEx, g, &[])];
    old.handle_report(t0, 0, &p, &a, &join("239.1.1.1"));
    out(&mut old);
    // a cached answer, and two questions in flight
    old.handle_report(t0, 0, &p, &a, &join("239.5.5.5"));
    let tok = asks(&out(&mut old))[0];
    old.radius_answer(t0, 0, &p, tok, RadiusAnswer::Accept { ttl: Some(Duration::from_secs(600)) });
    out(&mut old);
    let later = t0 + Duration::from_secs(100);
    old.handle_report(later, 100, &p, &a, &join("239.6.6.6"));
    old.handle_report(later, 100, &p, &b, &join("239.7.7.7"));
    let asked = asks(&out(&mut old));
    assert_eq!(asked.len(), 2);
    let snap = serde_json::to_vec(&old.snapshot()).unwrap();

    // the new process: memberships from the store (fresh deadlines), then the snapshot
    let mut new = Tracker::new(Config::default(), vec![true, true]);
    for m in old.memberships() {
        new.restore(later, 0, m.clone());
    }
    out(&mut new);
    let taken = new.take_over(serde_json::from_slice(&snap).unwrap(), &asked[..1]);
    assert_eq!(taken, 1, "only the question whose request came along");
    // both were last reported at t0: they end at t0 + 260 s, not 100 s later
    new.handle_timeout(t0 + Duration::from_secs(261));
    let mut ended = mdb(&out(&mut new));
    ended.sort();
    assert_eq!(ended, ["-0 239.1.1.1 None", "-0 239.5.5.5 None"]);
    // the answer to the question in flight admits its waiter
    new.radius_answer(later, 100, &p, asked[0], RadiusAnswer::Accept { ttl: None });
    assert_eq!(mdb(&out(&mut new)), ["+0 239.6.6.6 None"]);
    // the dropped question's key is asked anew; the cached answer decides without asking
    new.handle_report(later, 100, &p, &b, &join("239.7.7.7"));
    let o = out(&mut new);
    assert_eq!(asks(&o).len(), 1);
    assert!(asks(&o)[0] > asked[1], "tokens go on from the old tracker's");
    new.handle_report(later, 100, &p, &b, &join("239.5.5.5"));
    assert_eq!(mdb(&out(&mut new)), ["+1 239.5.5.5 None"]);
    assert_eq!(new.stats.radius_cache_hits, 1);
}
