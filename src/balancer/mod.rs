//! mod_proxy_balancer's choice of a member: sticky route, lbset, hot spares
//! and standbys, lbmethod, error state with `retry`; and what a health
//! check's answer means for a member (mod_proxy_hcheck).
//!
//! A balancer as configured is plain data ([`Balancer`]); what changes
//! while wsgate runs — counters, busy counts, error and health states — is
//! a [`MemberState`] per member, which the runtime keeps by member identity
//! across reloads (as Apache keeps it in shared memory). Everything here is
//! a decision over those two; nothing here does I/O.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::model::balancer::{
    Balancer, HealthCheck, InitialStatus, LbMethod, Member, StatusExpr,
};

/// What changes of a member while wsgate runs.
#[derive(Debug, Default)]
pub struct MemberState {
    pub lbstatus: AtomicI64,
    /// Requests and tunnels in flight (bybusyness).
    pub busy: AtomicU64,
    /// Bytes to and from the member, tunnels excluded (bytraffic).
    pub traffic: AtomicU64,
    /// Of those, the bytes from the member (mod_status's "Rd").
    pub read: AtomicU64,
    pub disabled: AtomicBool,
    pub stopped: AtomicBool,
    pub drain: AtomicBool,
    /// In error until this instant (`retry`); `None`: not in error.
    pub error_until: Mutex<Option<Instant>>,
    /// Failed its health checks (flag C).
    pub hc_failed: AtomicBool,
    pub hc_fails: AtomicU32,
    pub hc_passes: AtomicU32,
    pub chosen: AtomicU64,
    /// loadfactor × 100 set through the balancer manager; 0: as configured.
    /// A reload clears it (as Apache without `BalancerPersist`).
    pub weight: AtomicI64,
}

impl MemberState {
    pub fn in_error(&self, now: Instant) -> bool {
        let guard = self.error_until.lock().unwrap_or_else(|p| p.into_inner());
        guard.is_some_and(|until| now < until)
    }

    pub fn set_error(&self, retry: Duration) {
        *self.error_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + retry);
    }

    pub fn clear_error(&self) {
        *self.error_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn has_error_flag(&self) -> bool {
        self.error_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Takes the states `status=` writes, as a newly read configuration
    /// names them (`retry`: how long `+E` lasts).
    pub fn apply(&self, initial: &InitialStatus, retry: Duration) {
        self.disabled.store(initial.disabled, Ordering::Relaxed);
        self.stopped.store(initial.stopped, Ordering::Relaxed);
        self.drain.store(initial.drain, Ordering::Relaxed);
        self.weight.store(0, Ordering::Relaxed);
        if initial.error {
            self.set_error(retry);
        }
    }

    /// S104: not disabled, stopped, in error (before `retry` ran out) or
    /// failing its health checks.
    pub fn usable(&self, now: Instant) -> bool {
        !self.disabled.load(Ordering::Relaxed)
            && !self.stopped.load(Ordering::Relaxed)
            && !self.hc_failed.load(Ordering::Relaxed)
            && !self.in_error(now)
    }
}

/// A balancer's live side: its members' states, in the order of
/// [`Balancer::members`].
#[derive(Debug, Default)]
pub struct BalancerState {
    pub members: Vec<Arc<MemberState>>,
    /// What the balancer manager's forms must send back (a new one per
    /// configuration, as Apache makes one per start and restart).
    pub nonce: String,
    /// Serialises choices so that lbstatus updates are consistent.
    choice: Mutex<()>,
}

impl BalancerState {
    pub fn new(members: Vec<Arc<MemberState>>) -> BalancerState {
        BalancerState {
            members,
            nonce: String::new(),
            choice: Mutex::new(()),
        }
    }
}

/// A member's loadfactor × 100: the balancer manager's, else the
/// configuration's.
pub fn weight(m: &Member, s: &MemberState) -> i64 {
    match s.weight.load(Ordering::Relaxed) {
        0 => m.weight,
        w => w,
    }
}

/// Marks a member failed (connect refused, failonstatus…) for `retry`,
/// unless `status=+I`.
pub fn fail(balancer: &Balancer, index: usize, state: &BalancerState, name: &str, retry: Duration) {
    let member = &balancer.members[index];
    let s = &state.members[index];
    if member.ignore_errors {
        return;
    }
    if !s.in_error(Instant::now()) {
        tracing::error!(
            "{}: member {name} in error state for {}s",
            balancer.name,
            retry.as_secs()
        );
    }
    s.set_error(retry);
}

/// The outcome of a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    pub index: usize,
    /// The sticky route named a member that could not take the request.
    pub route_changed: bool,
}

/// A balancer and its state, for one choice.
struct View<'a> {
    spec: &'a Balancer,
    state: &'a BalancerState,
}

impl View<'_> {
    fn member(&self, i: usize) -> (&Member, &MemberState) {
        (&self.spec.members[i], &self.state.members[i])
    }
}

/// Chooses a member (S105–S116), skipping the indexes in `tried`; `route`
/// is the sticky route the request carries. `None`: nothing usable (503).
pub fn choose(
    spec: &Balancer,
    state: &BalancerState,
    route: Option<&str>,
    tried: &[usize],
) -> Option<Chosen> {
    let _serial = state.choice.lock().unwrap_or_else(|p| p.into_inner());
    let v = View { spec, state };
    let now = Instant::now();
    let mut route_changed = false;
    if let Some(route) = route {
        if let Some(i) = spec
            .members
            .iter()
            .position(|m| m.route.as_deref() == Some(route))
        {
            let (m, s) = v.member(i);
            if s.usable(now) && !tried.contains(&i) {
                s.chosen.fetch_add(1, Ordering::Relaxed);
                s.clear_error();
                return Some(Chosen {
                    index: i,
                    route_changed: false,
                });
            }
            // Its redirect= member, then normal balancing.
            if let Some(j) = m.redirect.as_ref().and_then(|r| {
                spec.members
                    .iter()
                    .position(|x| x.route.as_deref() == Some(r))
            }) {
                let (_, r) = v.member(j);
                if r.usable(now) && !tried.contains(&j) {
                    r.chosen.fetch_add(1, Ordering::Relaxed);
                    return Some(Chosen {
                        index: j,
                        route_changed: true,
                    });
                }
            }
            if spec.nofailover {
                return None;
            }
            route_changed = true;
        }
    }
    // Apache sets BALANCER_ROUTE_CHANGED whenever a sticky balancer had to
    // balance: no route, an unknown one, or one whose member is down.
    let route_changed = route_changed || spec.sticky.is_some();
    if let Some(index) = v.pick(now, tried) {
        return Some(Chosen {
            index,
            route_changed,
        });
    }
    // S110: with forcerecovery, when every member is in error they are
    // all tried again at once.
    let all_down = state.members.iter().all(|s| {
        s.has_error_flag()
            || s.disabled.load(Ordering::Relaxed)
            || s.stopped.load(Ordering::Relaxed)
    });
    if spec.forcerecovery && all_down && state.members.iter().any(|s| s.has_error_flag()) {
        for s in &state.members {
            s.clear_error();
        }
        if let Some(index) = v.pick(now, tried) {
            return Some(Chosen {
                index,
                route_changed,
            });
        }
    }
    None
}

impl View<'_> {
    fn pick(&self, now: Instant, tried: &[usize]) -> Option<usize> {
        let members = &self.spec.members;
        let mut lbsets: Vec<u32> = members.iter().map(|m| m.lbset).collect();
        lbsets.sort_unstable();
        lbsets.dedup();
        for set in lbsets {
            let all: Vec<usize> = (0..members.len())
                .filter(|i| members[*i].lbset == set)
                .collect();
            let ok = |i: &usize| {
                let s = &self.state.members[*i];
                s.usable(now) && !tried.contains(i) && !s.drain.load(Ordering::Relaxed)
            };
            let regular: Vec<usize> = all
                .iter()
                .copied()
                .filter(|i| !members[*i].hot_standby && !members[*i].hot_spare)
                .collect();
            let mut candidates: Vec<usize> = regular.iter().copied().filter(ok).collect();
            // Each usable hot spare may stand in for one unusable regular member.
            let missing = regular.len() - candidates.len();
            candidates.extend(
                all.iter()
                    .copied()
                    .filter(|i| members[*i].hot_spare && ok(i))
                    .take(missing),
            );
            if candidates.is_empty() {
                candidates = all
                    .iter()
                    .copied()
                    .filter(|i| members[*i].hot_standby && ok(i))
                    .collect();
            }
            if candidates.is_empty() {
                continue;
            }
            let chosen = match self.spec.lbmethod {
                LbMethod::ByRequests => self.by_requests_among(&candidates, &candidates),
                LbMethod::ByBusyness => {
                    let busy = |i: &usize| self.state.members[*i].busy.load(Ordering::Relaxed);
                    let least = candidates.iter().map(busy).min().unwrap_or(0);
                    let idle: Vec<usize> = candidates
                        .iter()
                        .copied()
                        .filter(|i| busy(i) == least)
                        .collect();
                    // Ties are broken by the byrequests rule (S107), which
                    // also keeps every candidate's lbstatus moving.
                    self.by_requests_among(&candidates, &idle)
                }
                LbMethod::ByTraffic => {
                    let ratio = |i: &usize| {
                        let (m, s) = self.member(*i);
                        s.traffic.load(Ordering::Relaxed) as f64 / weight(m, s).max(1) as f64
                    };
                    candidates
                        .iter()
                        .copied()
                        .min_by(|a, b| ratio(a).total_cmp(&ratio(b)))
                }
            };
            if let Some(i) = chosen {
                let s = &self.state.members[i];
                s.clear_error();
                s.chosen.fetch_add(1, Ordering::Relaxed);
                return Some(i);
            }
        }
        None
    }

    /// S106, smooth weighted round robin: every candidate's lbstatus grows
    /// by its weight; the highest among `eligible` is chosen and pays the
    /// total back. Ties go to the first.
    fn by_requests_among(&self, candidates: &[usize], eligible: &[usize]) -> Option<usize> {
        let mut total = 0;
        for i in candidates {
            let (m, s) = self.member(*i);
            let w = weight(m, s);
            s.lbstatus.fetch_add(w, Ordering::Relaxed);
            total += w;
        }
        let mut best: Option<(usize, i64)> = None;
        for i in eligible {
            let s = self.state.members[*i].lbstatus.load(Ordering::Relaxed);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((*i, s));
            }
        }
        let (i, _) = best?;
        self.state.members[i]
            .lbstatus
            .fetch_sub(total, Ordering::Relaxed);
        Some(i)
    }
}

/// The sticky session value in the request (S114): the URL parameter
/// first, then the cookie; and from it the route (S115).
pub fn sticky_route(
    spec: &Balancer,
    raw_path: &str,
    query: Option<&str>,
    cookie: Option<&str>,
) -> Option<String> {
    let (cookie_name, url_name) = spec.sticky.as_ref()?;
    let from_url = || {
        let key = format!("{url_name}=");
        let path_param = if spec.scolon_path_delim {
            raw_path
                .split(';')
                .skip(1)
                .find_map(|p| p.strip_prefix(&key))
        } else {
            raw_path
                .find(&format!(";{key}"))
                .map(|i| &raw_path[i + 1 + key.len()..])
        };
        path_param
            .or_else(|| query?.split(['&', ';']).find_map(|p| p.strip_prefix(&key)))
            .map(|v| v.split(['?', '&', ';']).next().unwrap_or(v).to_string())
    };
    let from_cookie = || {
        let key = format!("{cookie_name}=");
        cookie?
            .split([';', ','])
            .map(str::trim)
            .find_map(|c| c.strip_prefix(&key))
            .map(str::to_string)
    };
    let value = from_url().or_else(from_cookie)?;
    match spec.sticky_sep {
        None => Some(value),
        Some(sep) => value.split_once(sep).map(|(_, route)| route.to_string()),
    }
}

/// Counts a request or tunnel against its member until dropped.
pub struct Busy(Arc<MemberState>);

impl Busy {
    pub fn new(state: Arc<MemberState>) -> Busy {
        state.busy.fetch_add(1, Ordering::Relaxed);
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a health check's answer passes (S120): its `hcexpr`, else a
/// status from 200 to 399.
pub fn check_passes(check: &HealthCheck, status: u16) -> bool {
    match &check.expr {
        Some(expr) => status_holds(expr, status),
        None => (200..400).contains(&status),
    }
}

/// Evaluates a `ProxyHCExpr` for a status.
pub fn status_holds(expr: &StatusExpr, status: u16) -> bool {
    let s = i64::from(status);
    match expr {
        StatusExpr::Compare(op, n) => op.holds(s, *n),
        StatusExpr::Matches(re, want) => re.is_match(&status.to_string()) == *want,
        StatusExpr::In(list) => list.contains(&s),
        StatusExpr::Not(e) => !status_holds(e, status),
        StatusExpr::And(a, b) => status_holds(a, status) && status_holds(b, status),
        StatusExpr::Or(a, b) => status_holds(a, status) || status_holds(b, status),
    }
}

/// What a check's result does to a member (S117, S118): `hcfails` failures
/// in a row take it out of use, `hcpasses` passes in a row bring it back.
/// Returns the change, if any, for the log.
pub fn record_check(check: &HealthCheck, s: &MemberState, ok: bool) -> Option<HealthChange> {
    if ok {
        s.hc_fails.store(0, Ordering::Relaxed);
        let passes = s.hc_passes.fetch_add(1, Ordering::Relaxed) + 1;
        if s.hc_failed.load(Ordering::Relaxed) && passes >= check.passes {
            s.hc_failed.store(false, Ordering::Relaxed);
            s.clear_error();
            return Some(HealthChange::Back);
        }
    } else {
        s.hc_passes.store(0, Ordering::Relaxed);
        let fails = s.hc_fails.fetch_add(1, Ordering::Relaxed) + 1;
        if !s.hc_failed.load(Ordering::Relaxed) && fails >= check.fails {
            s.hc_failed.store(true, Ordering::Relaxed);
            return Some(HealthChange::Out { fails });
        }
    }
    None
}

/// A member's change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    Out { fails: u32 },
    Back,
}

#[cfg(test)]
mod tests;
