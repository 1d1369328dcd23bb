//! The live side of the configuration: per worker its idle connections,
//! resolved addresses and `max=` slots; per balancer member its counters
//! and error and health states; per `SSLProxy*` setting its TLS client.
//!
//! The [`Runtime`] lives as long as the server and finds each of these by
//! the identity the configuration gives (a worker's [`WorkerId`], a
//! member's [`MemberId`]), so a reload that keeps a worker keeps its pool,
//! its addresses and the slots its live tunnels hold, and a reload that
//! keeps a member keeps its state (as Apache's shared memory does). Each
//! configuration is bound to it once, as a [`Generation`]: lookups on the
//! request path are then by index, never by name. A worker a reload drops
//! goes when the last generation and connection holding it end.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::connect::Network;
use super::limit::Limit;
use super::pool::Pool;
use super::resolve::Addresses;
use crate::balancer::{BalancerState, MemberState};
use crate::config::model::balancer::{BalancerIdx, MemberId};
use crate::config::{
    Config, SslIdx, SslProxy, TargetUrl, Worker, WorkerId, WorkerParams, WorkerRef,
};

/// What a worker keeps while wsgate runs.
#[derive(Debug)]
pub struct WorkerState {
    pub pool: Pool,
    /// The backend's addresses, once resolved (`addressttl=`).
    pub addresses: Addresses,
    /// `max=`.
    pub limit: Arc<Limit>,
}

impl WorkerState {
    fn new(params: &WorkerParams) -> WorkerState {
        WorkerState {
            pool: Pool::new(params.max),
            addresses: Addresses::new(params.effective_address_ttl()),
            limit: Limit::new(params.max),
        }
    }

    /// Follows a reloaded worker's parameters.
    fn update(&self, params: &WorkerParams) {
        self.pool.set_max(params.max);
        self.addresses.set_ttl(params.effective_address_ttl());
        self.limit.set_max(params.max);
    }
}

/// The state behind every configuration a server runs, by identity.
#[derive(Debug)]
pub struct Runtime {
    workers: Mutex<HashMap<WorkerId, Weak<WorkerState>>>,
    members: Mutex<HashMap<MemberId, Weak<MemberState>>>,
    tls: Mutex<Vec<(SslProxy, Weak<rustls::ClientConfig>)>>,
    /// Apache's default worker, for `[P]` rules to urls no ProxyPass names.
    generic: Arc<WorkerState>,
    /// Where backend connections go.
    network: Network,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::with_network(Network::Tcp)
    }
}

/// One configuration bound to the runtime's state.
#[derive(Debug)]
pub struct Generation {
    pub config: Config,
    /// In the order of [`Config::workers`].
    workers: Vec<Arc<WorkerState>>,
    /// In the order of [`Config::balancers`].
    balancers: Vec<BalancerState>,
    /// In the order of [`Config::ssl_proxies`]; `None` where
    /// `SSLProxyEngine` is off.
    tls: Vec<Option<Arc<rustls::ClientConfig>>>,
    generic: Arc<WorkerState>,
    /// Where backend connections go.
    pub network: Network,
}

/// A worker as a request uses it: its configuration and its state.
pub struct WorkerView<'g> {
    pub name: Cow<'g, str>,
    pub params: &'g WorkerParams,
    pub state: &'g Arc<WorkerState>,
}

static GENERIC_PARAMS: std::sync::LazyLock<WorkerParams> =
    std::sync::LazyLock::new(WorkerParams::generic);

/// A random nonce in the shape Apache's balancer manager uses (a UUID).
fn nonce() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // A nonce that is not random would only let a cross-site form guess
    // it; the Referer check still stands.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Generation {
    /// The state of a configured worker (for the metrics).
    pub fn worker_state(&self, idx: crate::config::WorkerIdx) -> &Arc<WorkerState> {
        &self.workers[idx.0]
    }

    /// The default worker's state (`[P]` rules to urls no ProxyPass names).
    pub fn generic_state(&self) -> &Arc<WorkerState> {
        &self.generic
    }

    /// A configured worker, or the generic one for a request to `url`.
    pub fn worker<'g>(&'g self, r: WorkerRef, url: &TargetUrl) -> WorkerView<'g> {
        match r {
            WorkerRef::Configured(idx) => {
                let w: &Worker = self.config.worker(idx);
                WorkerView {
                    name: Cow::Borrowed(&w.name),
                    params: &w.params,
                    state: &self.workers[idx.0],
                }
            }
            WorkerRef::Generic => WorkerView {
                name: Cow::Owned(url.origin()),
                params: &GENERIC_PARAMS,
                state: &self.generic,
            },
        }
    }

    pub fn balancer(&self, idx: BalancerIdx) -> &BalancerState {
        &self.balancers[idx.0]
    }

    /// The TLS client for a server's `SSLProxy*` settings, if they enable
    /// `SSLProxyEngine` and it could be built.
    pub fn tls(&self, idx: SslIdx) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls[idx.0].as_ref()
    }
}

impl Runtime {
    /// A runtime whose backend connections go over `network`.
    pub fn with_network(network: Network) -> Runtime {
        Runtime {
            workers: Mutex::default(),
            members: Mutex::default(),
            tls: Mutex::default(),
            generic: Arc::new(WorkerState::new(&WorkerParams::generic())),
            network,
        }
    }

    /// Binds a configuration: the state of every worker, member and TLS
    /// setting it keeps from the configurations before, new state for the
    /// rest. Members take the states their `status=` sets.
    pub fn bind(&self, config: Config) -> Generation {
        let workers = {
            let mut known = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            known.retain(|_, w| w.strong_count() > 0);
            config
                .workers
                .iter()
                .map(|w| match known.get(&w.id).and_then(Weak::upgrade) {
                    Some(state) => {
                        state.update(&w.params);
                        state
                    }
                    None => {
                        let state = Arc::new(WorkerState::new(&w.params));
                        known.insert(w.id.clone(), Arc::downgrade(&state));
                        state
                    }
                })
                .collect()
        };
        let balancers = {
            let mut known = self.members.lock().unwrap_or_else(|p| p.into_inner());
            known.retain(|_, w| w.strong_count() > 0);
            config
                .balancers
                .iter()
                .map(|b| {
                    let members = b
                        .members
                        .iter()
                        .map(|m| {
                            let state =
                                known.get(&m.id).and_then(Weak::upgrade).unwrap_or_else(|| {
                                    let state = Arc::new(MemberState::default());
                                    known.insert(m.id.clone(), Arc::downgrade(&state));
                                    state
                                });
                            state.apply(&m.initial, config.worker(m.worker).params.retry);
                            state
                        })
                        .collect();
                    let mut state = BalancerState::new(members);
                    state.nonce = nonce();
                    state
                })
                .collect()
        };
        let tls = config
            .ssl_proxies
            .iter()
            .map(|s| self.tls_client(s))
            .collect();
        Generation {
            config,
            workers,
            balancers,
            tls,
            generic: self.generic.clone(),
            network: self.network.clone(),
        }
    }

    /// The TLS client of these settings: the one already built for the same
    /// settings (its session cache kept across reloads), else a new one.
    fn tls_client(&self, ssl: &SslProxy) -> Option<Arc<rustls::ClientConfig>> {
        if !ssl.engine {
            return None;
        }
        let mut known = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|(_, w)| w.strong_count() > 0);
        if let Some(client) = known
            .iter()
            .find(|(s, _)| s == ssl)
            .and_then(|(_, w)| w.upgrade())
        {
            return Some(client);
        }
        match super::tls::client_config(ssl) {
            Ok(client) => {
                let client = Arc::new(client);
                known.push((ssl.clone(), Arc::downgrade(&client)));
                Some(client)
            }
            Err(e) => {
                // The configuration read and checked the certificates, so
                // this is not expected; requests to TLS backends then fail.
                tracing::error!("cannot build the TLS client for SSLProxy* settings: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_str, WorkerIdx};

    fn config(text: &str) -> Config {
        from_str(&format!("Listen 127.0.0.1:1\n{text}"), "t.conf").expect("a valid configuration")
    }

    #[test]
    fn a_reload_keeps_the_state_of_the_workers_and_members_it_keeps() {
        let rt = Runtime::default();
        let text = "ProxyPass /a http://a:1/ max=2\nProxyPass /b http://b:1/\n\
                    <Proxy balancer://x>\nBalancerMember http://m:1\n</Proxy>\n\
                    ProxyPass /x balancer://x/\n";
        let one = rt.bind(config(text));
        let two = rt.bind(config(&text.replace("/b http://b:1/", "/b http://c:1/")));
        let same = |g: &Generation, i: usize| g.workers[i].clone();
        assert!(
            Arc::ptr_eq(&same(&one, 0), &same(&two, 0)),
            "http://a:1/ kept"
        );
        assert!(
            !Arc::ptr_eq(&same(&one, 1), &same(&two, 1)),
            "http://b:1/ replaced"
        );
        assert!(Arc::ptr_eq(
            &one.balancers[0].members[0],
            &two.balancers[0].members[0]
        ));
        let url = crate::http::parse_target_url("http://a:1/").unwrap();
        let w = two.worker(WorkerRef::Configured(WorkerIdx(0)), &url);
        assert_eq!(w.params.max, Some(2));
    }

    #[test]
    fn a_dropped_worker_goes_with_the_last_generation_that_holds_it() {
        let rt = Runtime::default();
        let one = rt.bind(config("ProxyPass /a http://a:1/\n"));
        let weak = Arc::downgrade(&one.workers[0]);
        let two = rt.bind(config("ProxyPass /b http://b:1/\n"));
        assert!(weak.upgrade().is_some());
        drop(one);
        assert!(weak.upgrade().is_none());
        drop(two);
    }

    #[test]
    fn settings_that_do_not_change_keep_their_tls_client() {
        let rt = Runtime::default();
        let one = rt.bind(config("SSLProxyEngine On\nProxyPass /a https://a/\n"));
        let two = rt.bind(config("SSLProxyEngine On\nProxyPass /b https://b/\n"));
        let (a, b) = (one.tls(SslIdx(0)).unwrap(), two.tls(SslIdx(0)).unwrap());
        assert!(Arc::ptr_eq(a, b));
        let off = rt.bind(config("ProxyPass /a https://a/\n"));
        assert!(off.tls(SslIdx(0)).is_none());
    }
}
