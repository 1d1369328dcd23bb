//! mod_proxy_balancer: `balancer://` groups of members, the choice of a
//! member (sticky route, lbset, hot spares and standbys, lbmethod), error
//! state with `retry`, and the counters the lbmethods read. Member state is
//! shared by configurations that keep the member (see [`StateRegistry`]), so
//! that a reload changes neither counters nor error states.

pub mod health;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::config::Worker;
use crate::http::TargetUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbMethod {
    ByRequests,
    ByBusyness,
    ByTraffic,
}

/// A `balancer://name` with its members and parameters.
#[derive(Debug)]
pub struct Balancer {
    /// `balancer://name`, lower-case.
    pub name: String,
    pub lbmethod: LbMethod,
    /// Cookie name, then the URL parameter name (`stickysession=C|U`).
    pub sticky: Option<(String, String)>,
    /// `stickysessionsep`; `None` for `Off` (the whole value is the route).
    pub sticky_sep: Option<char>,
    pub scolon_path_delim: bool,
    pub nofailover: bool,
    pub failonstatus: Vec<u16>,
    pub failontimeout: bool,
    /// Extra attempts after the first; `None`: members − 1.
    pub maxattempts: Option<usize>,
    pub forcerecovery: bool,
    pub members: Vec<Member>,
    /// Serialises choices so that lbstatus updates are consistent.
    pub choice: Mutex<()>,
    /// Header and environment rules of its `<Proxy>` section.
    pub rules: crate::config::headers::Rules,
}

/// One `BalancerMember`.
#[derive(Debug)]
pub struct Member {
    pub url: TargetUrl,
    pub worker: Arc<Worker>,
    /// loadfactor × 100.
    pub weight: i64,
    pub route: Option<String>,
    pub redirect: Option<String>,
    pub lbset: u32,
    pub hot_standby: bool,
    pub hot_spare: bool,
    pub ignore_errors: bool,
    pub health: Option<health::Check>,
    pub state: Arc<MemberState>,
}

/// What changes while wsgate runs.
#[derive(Debug, Default)]
pub struct MemberState {
    pub lbstatus: AtomicI64,
    /// Requests and tunnels in flight (bybusyness).
    pub busy: AtomicU64,
    /// Bytes to and from the member, tunnels excluded (bytraffic).
    pub traffic: AtomicU64,
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
}

impl Member {
    /// S104: not disabled, stopped, in error (before `retry` ran out) or
    /// failing its health checks.
    pub fn usable(&self, now: Instant) -> bool {
        let s = &self.state;
        !s.disabled.load(Ordering::Relaxed)
            && !s.stopped.load(Ordering::Relaxed)
            && !s.hc_failed.load(Ordering::Relaxed)
            && !s.in_error(now)
    }

    /// Marks the member failed (connect refused, failonstatus…), unless
    /// `status=+I`.
    pub fn fail(&self, balancer: &str) {
        if self.ignore_errors {
            return;
        }
        let retry = self.worker.params.retry;
        if !self.state.in_error(Instant::now()) {
            tracing::error!(
                "{balancer}: member {} in error state for {}s",
                self.worker.name,
                retry.as_secs()
            );
        }
        self.state.set_error(retry);
    }
}

/// The outcome of a choice.
pub struct Chosen<'b> {
    pub index: usize,
    pub member: &'b Member,
    /// The sticky route named a member that could not take the request.
    pub route_changed: bool,
}

impl Balancer {
    /// Chooses a member (S105–S116), skipping the indexes in `tried`.
    /// `None`: nothing usable (503).
    pub fn choose(&self, route: Option<&str>, tried: &[usize]) -> Option<Chosen<'_>> {
        let _serial = self.choice.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut route_changed = false;
        if let Some(route) = route {
            if let Some(i) = self
                .members
                .iter()
                .position(|m| m.route.as_deref() == Some(route))
            {
                let m = &self.members[i];
                if m.usable(now) && !tried.contains(&i) {
                    self.charge(i);
                    m.state.clear_error();
                    return Some(Chosen {
                        index: i,
                        member: m,
                        route_changed: false,
                    });
                }
                // Its redirect= member, then normal balancing.
                if let Some(j) = m.redirect.as_ref().and_then(|r| {
                    self.members
                        .iter()
                        .position(|x| x.route.as_deref() == Some(r))
                }) {
                    let r = &self.members[j];
                    if r.usable(now) && !tried.contains(&j) {
                        self.charge(j);
                        return Some(Chosen {
                            index: j,
                            member: r,
                            route_changed: true,
                        });
                    }
                }
                if self.nofailover {
                    return None;
                }
                route_changed = true;
            }
        }
        // Apache sets BALANCER_ROUTE_CHANGED whenever a sticky balancer had to
        // balance: no route, an unknown one, or one whose member is down.
        let route_changed = route_changed || self.sticky.is_some();
        if let Some(i) = self.pick(now, tried) {
            return Some(Chosen {
                index: i,
                member: &self.members[i],
                route_changed,
            });
        }
        // S110: with forcerecovery, when every member is in error they are
        // all tried again at once.
        if self.forcerecovery
            && self.members.iter().all(|m| {
                m.state.has_error_flag()
                    || m.state.disabled.load(Ordering::Relaxed)
                    || m.state.stopped.load(Ordering::Relaxed)
            })
            && self.members.iter().any(|m| m.state.has_error_flag())
        {
            for m in &self.members {
                m.state.clear_error();
            }
            if let Some(i) = self.pick(now, tried) {
                return Some(Chosen {
                    index: i,
                    member: &self.members[i],
                    route_changed,
                });
            }
        }
        None
    }

    fn pick(&self, now: Instant, tried: &[usize]) -> Option<usize> {
        let mut lbsets: Vec<u32> = self.members.iter().map(|m| m.lbset).collect();
        lbsets.sort_unstable();
        lbsets.dedup();
        for set in lbsets {
            let in_set = |i: &usize| self.members[*i].lbset == set;
            let all: Vec<usize> = (0..self.members.len()).filter(in_set).collect();
            let ok = |i: &usize| {
                let m = &self.members[*i];
                m.usable(now) && !tried.contains(i) && !m.state.drain.load(Ordering::Relaxed)
            };
            let regular: Vec<usize> = all
                .iter()
                .copied()
                .filter(|i| !self.members[*i].hot_standby && !self.members[*i].hot_spare)
                .collect();
            let mut candidates: Vec<usize> = regular.iter().copied().filter(ok).collect();
            // Each usable hot spare may stand in for one unusable regular member.
            let missing = regular.len() - candidates.len();
            candidates.extend(
                all.iter()
                    .copied()
                    .filter(|i| self.members[*i].hot_spare && ok(i))
                    .take(missing),
            );
            if candidates.is_empty() {
                candidates = all
                    .iter()
                    .copied()
                    .filter(|i| self.members[*i].hot_standby && ok(i))
                    .collect();
            }
            if candidates.is_empty() {
                continue;
            }
            let chosen = match self.lbmethod {
                LbMethod::ByRequests => self.by_requests(&candidates),
                LbMethod::ByBusyness => {
                    let least = candidates
                        .iter()
                        .map(|i| self.members[*i].state.busy.load(Ordering::Relaxed))
                        .min()
                        .unwrap_or(0);
                    let idle: Vec<usize> = candidates
                        .iter()
                        .copied()
                        .filter(|i| self.members[*i].state.busy.load(Ordering::Relaxed) == least)
                        .collect();
                    // Ties are broken by the byrequests rule (S107), which
                    // also keeps every candidate's lbstatus moving.
                    self.by_requests_among(&candidates, &idle)
                }
                LbMethod::ByTraffic => {
                    let ratio = |i: &usize| {
                        let m = &self.members[*i];
                        m.state.traffic.load(Ordering::Relaxed) as f64 / m.weight.max(1) as f64
                    };
                    candidates
                        .iter()
                        .copied()
                        .min_by(|a, b| ratio(a).total_cmp(&ratio(b)))
                }
            };
            if let Some(i) = chosen {
                self.members[i].state.clear_error();
                self.members[i].state.chosen.fetch_add(1, Ordering::Relaxed);
                return Some(i);
            }
        }
        None
    }

    /// S106: smooth weighted round robin.
    fn by_requests(&self, candidates: &[usize]) -> Option<usize> {
        self.by_requests_among(candidates, candidates)
    }

    /// Every candidate's lbstatus grows by its weight; the highest among
    /// `eligible` is chosen and pays the total back. Ties go to the first.
    fn by_requests_among(&self, candidates: &[usize], eligible: &[usize]) -> Option<usize> {
        let mut total = 0;
        for i in candidates {
            let m = &self.members[*i];
            m.state.lbstatus.fetch_add(m.weight, Ordering::Relaxed);
            total += m.weight;
        }
        let mut best: Option<(usize, i64)> = None;
        for i in eligible {
            let s = self.members[*i].state.lbstatus.load(Ordering::Relaxed);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((*i, s));
            }
        }
        let (i, _) = best?;
        self.members[i]
            .state
            .lbstatus
            .fetch_sub(total, Ordering::Relaxed);
        Some(i)
    }

    /// A sticky choice counts like a balanced one.
    fn charge(&self, i: usize) {
        self.members[i].state.chosen.fetch_add(1, Ordering::Relaxed);
    }

    /// How many tries a request gets: the first and `maxattempts` more.
    pub fn attempts(&self) -> usize {
        1 + self
            .maxattempts
            .unwrap_or(self.members.len().saturating_sub(1))
    }

    /// The sticky session value in the request (S114): the URL parameter
    /// first, then the cookie; and from it the route (S115).
    pub fn sticky_route(
        &self,
        raw_path: &str,
        query: Option<&str>,
        cookie: Option<&str>,
    ) -> Option<String> {
        let (cookie_name, url_name) = self.sticky.as_ref()?;
        let from_url = || {
            let key = format!("{url_name}=");
            let path_param = if self.scolon_path_delim {
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
        match self.sticky_sep {
            None => Some(value),
            Some(sep) => value.split_once(sep).map(|(_, route)| route.to_string()),
        }
    }
}

/// Keeps member state across reloads: a member of the same balancer with
/// the same url gets the state it had.
#[derive(Debug, Default, Clone)]
pub struct StateRegistry {
    states: Arc<Mutex<HashMap<MemberKey, Weak<MemberState>>>>,
}

/// A balancer's name and a member's url.
type MemberKey = (String, String);

impl StateRegistry {
    pub fn state_for(&self, balancer: &str, member: &str) -> Arc<MemberState> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.retain(|_, w| w.strong_count() > 0);
        let key = (balancer.to_string(), member.to_string());
        if let Some(s) = states.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(MemberState::default());
        states.insert(key, Arc::downgrade(&s));
        s
    }
}

/// Counts a request or tunnel against its member until dropped.
pub struct Busy(pub Arc<MemberState>);

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

#[cfg(test)]
mod tests;
