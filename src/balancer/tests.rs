//! Member choice, table-driven where Apache's behaviour is known (S105–S116).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{BalancerState, Chosen, MemberState};
use crate::config::model::balancer::Balancer;
use crate::config::{from_str, Config};

/// A balancer as configured, with fresh member states.
struct Fixture {
    config: Config,
    state: BalancerState,
}

impl Fixture {
    fn spec(&self) -> &Balancer {
        &self.config.balancers[0]
    }

    fn state(&self, member: usize) -> &MemberState {
        &self.state.members[member]
    }

    fn choose(&self, route: Option<&str>, tried: &[usize]) -> Option<Chosen> {
        super::choose(self.spec(), &self.state, route, tried)
    }

    fn sticky_route(
        &self,
        path: &str,
        query: Option<&str>,
        cookie: Option<&str>,
    ) -> Option<String> {
        super::sticky_route(self.spec(), path, query, cookie)
    }

    fn attempts(&self) -> usize {
        self.spec().attempts()
    }
}

fn balancer(members: &str, params: &str) -> Fixture {
    let text = format!(
        "Listen 127.0.0.1:80\n<Proxy balancer://b>\n{members}\nProxySet {params}\n</Proxy>\nProxyPass / balancer://b/\n"
    );
    let config = from_str(&text, "t.conf").unwrap();
    let members = config.balancers[0]
        .members
        .iter()
        .map(|m| {
            let s = Arc::new(MemberState::default());
            s.apply(&m.initial, config.worker(m.worker).params.retry);
            s
        })
        .collect();
    Fixture {
        config,
        state: BalancerState::new(members),
    }
}

fn sequence(b: &Fixture, n: usize) -> String {
    (0..n)
        .map(|_| {
            let i = b.choose(None, &[]).expect("a member").index;
            char::from(b'a' + i as u8)
        })
        .collect()
}

#[test]
fn byrequests_alternates_equal_members_and_weights_3_to_1() {
    let b = balancer(
        "BalancerMember http://h1:1\nBalancerMember http://h2:1",
        "lbmethod=byrequests",
    );
    assert_eq!(sequence(&b, 10), "ababababab");
    let b = balancer(
        "BalancerMember http://h1:1 loadfactor=3\nBalancerMember http://h2:1",
        "lbmethod=byrequests",
    );
    assert_eq!(sequence(&b, 8), "aabaaaba", "S106's observed order for 3:1");
}

#[test]
fn byrequests_shares_1_2_3_exactly_over_600() {
    let b = balancer(
        "BalancerMember http://h1:1 loadfactor=1\nBalancerMember http://h2:1 loadfactor=2\nBalancerMember http://h3:1 loadfactor=3",
        "lbmethod=byrequests",
    );
    let s = sequence(&b, 600);
    assert_eq!(
        [
            s.matches('a').count(),
            s.matches('b').count(),
            s.matches('c').count()
        ],
        [100, 200, 300]
    );
}

#[test]
fn bybusyness_picks_the_least_busy_and_breaks_ties_by_requests() {
    let b = balancer(
        "BalancerMember http://h1:1\nBalancerMember http://h2:1",
        "lbmethod=bybusyness",
    );
    b.state(0).busy.store(2, Ordering::Relaxed);
    b.state(1).busy.store(1, Ordering::Relaxed);
    assert_eq!(b.choose(None, &[]).unwrap().index, 1);
    b.state(1).busy.store(3, Ordering::Relaxed);
    assert_eq!(b.choose(None, &[]).unwrap().index, 0);
}

#[test]
fn lower_lbsets_first_then_hot_standby() {
    let b = balancer(
        "BalancerMember http://h1:1 lbset=1\nBalancerMember http://h2:1 lbset=0\nBalancerMember http://h3:1 lbset=1 status=+H",
        "",
    );
    assert_eq!(
        sequence(&b, 3),
        "bbb",
        "lbset 0 gets everything while usable"
    );
    b.state(1).set_error(std::time::Duration::from_secs(60));
    assert_eq!(sequence(&b, 2), "aa", "then lbset 1");
    b.state(0).disabled.store(true, Ordering::Relaxed);
    assert_eq!(
        sequence(&b, 2),
        "cc",
        "the hot standby only when nothing else is usable"
    );
}

#[test]
fn sticky_routes_from_url_and_cookie() {
    let b = balancer(
        "BalancerMember http://h1:1 route=r1\nBalancerMember http://h2:1 route=r2",
        "stickysession=SID|sid",
    );
    assert_eq!(
        b.sticky_route("/a", Some("x=1&sid=abc.r2"), None)
            .as_deref(),
        Some("r2")
    );
    assert_eq!(
        b.sticky_route("/a;sid=abc.r1", None, None).as_deref(),
        Some("r1")
    );
    assert_eq!(
        b.sticky_route("/a", None, Some("other=1; SID=xyz.r2"))
            .as_deref(),
        Some("r2")
    );
    assert_eq!(b.sticky_route("/a", None, Some("SID=noroute")), None);
    for _ in 0..4 {
        assert_eq!(b.choose(Some("r2"), &[]).unwrap().index, 1);
    }
    let c = b.choose(Some("nosuch"), &[]).unwrap();
    assert!(
        c.route_changed,
        "an unknown route is ignored, and the route counts as changed"
    );
    assert!(!b.choose(Some("r1"), &[]).unwrap().route_changed);
}

#[test]
fn a_failed_sticky_member_fails_over_unless_nofailover() {
    let b = balancer(
        "BalancerMember http://h1:1 route=r1\nBalancerMember http://h2:1 route=r2",
        "stickysession=SID",
    );
    b.state(0).set_error(std::time::Duration::from_secs(60));
    let c = b.choose(Some("r1"), &[]).unwrap();
    assert_eq!((c.index, c.route_changed), (1, true));
    let b = balancer(
        "BalancerMember http://h1:1 route=r1\nBalancerMember http://h2:1 route=r2",
        "stickysession=SID nofailover=On",
    );
    b.state(0).set_error(std::time::Duration::from_secs(60));
    assert!(b.choose(Some("r1"), &[]).is_none(), "nofailover: 503");
}

#[test]
fn drained_members_take_only_sticky_traffic() {
    let b = balancer(
        "BalancerMember http://h1:1 route=r1 status=+N\nBalancerMember http://h2:1 route=r2",
        "stickysession=SID",
    );
    assert_eq!(sequence(&b, 3), "bbb");
    assert_eq!(b.choose(Some("r1"), &[]).unwrap().index, 0);
}

#[test]
fn forcerecovery_retries_everything_when_all_are_in_error() {
    let b = balancer("BalancerMember http://h1:1\nBalancerMember http://h2:1", "");
    for m in &b.state.members {
        m.set_error(std::time::Duration::from_secs(60));
    }
    assert!(b.choose(None, &[]).is_some());
    let b = balancer(
        "BalancerMember http://h1:1\nBalancerMember http://h2:1",
        "forcerecovery=Off",
    );
    for m in &b.state.members {
        m.set_error(std::time::Duration::from_secs(60));
    }
    assert!(b.choose(None, &[]).is_none());
}

#[test]
fn tried_members_are_skipped_and_attempts_default_to_members_minus_one() {
    let b = balancer(
        "BalancerMember http://h1:1\nBalancerMember http://h2:1\nBalancerMember http://h3:1",
        "",
    );
    assert_eq!(b.attempts(), 3);
    let first = b.choose(None, &[]).unwrap().index;
    let second = b.choose(None, &[first]).unwrap().index;
    assert_ne!(first, second);
    assert!(b.choose(None, &[0, 1, 2]).is_none());
}

#[test]
fn hot_spares_stand_in_for_unusable_members() {
    let b = balancer("BalancerMember http://h1:1\nBalancerMember http://h2:1\nBalancerMember http://h3:1 status=+R", "");
    assert_eq!(sequence(&b, 4), "abab");
    b.state(0).disabled.store(true, Ordering::Relaxed);
    let s = sequence(&b, 4);
    assert!(
        s.contains('c') && s.contains('b') && !s.contains('a'),
        "{s}"
    );
}
