//! Backend addresses, resolved once per worker and kept as Apache keeps
//! them: until the next start or reload unless the worker's `addressttl=`
//! says otherwise. Without this, every connection to a backend named by a
//! host name would ask the system resolver (a thread hand-off and a read of
//! /etc/hosts at best, a DNS query at worst), and a resolver that stumbles
//! would fail new tunnels that a known address would have served.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

pub use crate::config::AddressTtl;

/// The addresses to try, in order.
pub enum Found {
    /// The url named an IP address: nothing to look up.
    Literal(SocketAddr),
    Resolved(Arc<[SocketAddr]>),
}

impl Found {
    pub fn as_slice(&self) -> &[SocketAddr] {
        match self {
            Found::Literal(a) => std::slice::from_ref(a),
            Found::Resolved(all) => all,
        }
    }
}

/// A worker's resolved backend address, shared by its connections.
#[derive(Debug)]
pub struct Addresses {
    /// How long addresses are kept (`addressttl=`, which a reload may
    /// change), and the ones kept.
    cached: Mutex<(AddressTtl, Option<Cached>)>,
    /// Held while one connection looks the name up, so that the others
    /// arriving meanwhile (a burst at start, or when the TTL ends) wait for
    /// its answer instead of each asking the resolver.
    resolving: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Cached {
    host: String,
    port: u16,
    addrs: Arc<[SocketAddr]>,
    /// `None`: for ever.
    until: Option<Instant>,
}

impl Addresses {
    pub fn new(ttl: AddressTtl) -> Addresses {
        Addresses {
            cached: Mutex::new((ttl, None)),
            resolving: tokio::sync::Mutex::new(()),
        }
    }

    /// Follows a reloaded `addressttl=`; addresses already kept stay until
    /// their old deadline.
    pub fn set_ttl(&self, ttl: AddressTtl) {
        self.cached.lock().unwrap_or_else(|p| p.into_inner()).0 = ttl;
    }

    /// The addresses of `host`, from the system resolver.
    pub async fn get(&self, host: &str, port: u16) -> io::Result<Found> {
        self.get_with(host, port, |host, port| async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
        .await
    }

    /// [`Addresses::get`] with the resolver given (tests count its calls).
    async fn get_with<F, Fut>(&self, host: &str, port: u16, resolve: F) -> io::Result<Found>
    where
        F: FnOnce(String, u16) -> Fut,
        Fut: std::future::Future<Output = io::Result<Vec<SocketAddr>>>,
    {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Found::Literal(SocketAddr::new(ip, port)));
        }
        let (ttl, held) = self.held(host, port);
        if ttl == AddressTtl::EveryTime {
            return match resolve(host.to_string(), port).await? {
                addrs if addrs.is_empty() => Err(no_address()),
                addrs => Ok(Found::Resolved(addrs.into())),
            };
        }
        if let Some((addrs, true)) = held {
            return Ok(Found::Resolved(addrs));
        }
        let _one_at_a_time = self.resolving.lock().await;
        // Someone else may have resolved it while this one waited.
        let (_, held) = self.held(host, port);
        if let Some((addrs, true)) = held {
            return Ok(Found::Resolved(addrs));
        }
        let fresh = match resolve(host.to_string(), port).await {
            Ok(addrs) if addrs.is_empty() => Err(no_address()),
            other => other,
        };
        let addrs: Arc<[SocketAddr]> = match (fresh, held) {
            (Ok(addrs), _) => addrs.into(),
            // Better than Apache, which fails the request: an expired
            // address that worked stays in use for another period when the
            // resolver cannot answer.
            (Err(e), Some((stale, _))) => {
                tracing::warn!(
                    "resolving backend {host} again failed ({e}); keeping its earlier addresses"
                );
                stale
            }
            (Err(e), None) => return Err(e),
        };
        self.cached.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(Cached {
            host: host.to_string(),
            port,
            addrs: addrs.clone(),
            until: match ttl {
                AddressTtl::For(ttl) => Some(Instant::now() + ttl),
                AddressTtl::Forever | AddressTtl::EveryTime => None,
            },
        });
        Ok(Found::Resolved(addrs))
    }

    /// How long addresses are kept; the addresses kept for `host`, and
    /// whether they are still good.
    #[allow(clippy::type_complexity)]
    fn held(&self, host: &str, port: u16) -> (AddressTtl, Option<(Arc<[SocketAddr]>, bool)>) {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let held = cached
            .1
            .as_ref()
            .filter(|c| c.host == host && c.port == port)
            .map(|c| (c.addrs.clone(), c.until.is_none_or(|t| Instant::now() < t)));
        (cached.0, held)
    }
}

fn no_address() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "the name has no address")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    /// A resolver that answers `answer` and counts its calls.
    struct Fake {
        calls: AtomicUsize,
    }

    impl Fake {
        async fn get(
            &self,
            a: &Addresses,
            host: &str,
            answer: io::Result<Vec<SocketAddr>>,
        ) -> io::Result<Vec<SocketAddr>> {
            let found = a
                .get_with(host, 80, |_, _| async {
                    self.calls.fetch_add(1, Ordering::SeqCst);
                    answer
                })
                .await?;
            Ok(found.as_slice().to_vec())
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn fake() -> Fake {
        Fake {
            calls: AtomicUsize::new(0),
        }
    }

    #[tokio::test]
    async fn an_address_in_the_url_needs_no_lookup() {
        let a = Addresses::new(AddressTtl::EveryTime);
        let f = fake();
        let got = f.get(&a, "127.0.0.1", Ok(vec![addr(9)])).await.unwrap();
        assert_eq!(got, vec![SocketAddr::from(([127, 0, 0, 1], 80))]);
        let got = f.get(&a, "::1", Ok(vec![addr(9)])).await.unwrap();
        assert_eq!(got, vec!["[::1]:80".parse().unwrap()]);
        assert_eq!(f.calls(), 0);
    }

    #[tokio::test]
    async fn by_default_a_name_is_resolved_once() {
        let a = Addresses::new(AddressTtl::Forever);
        let f = fake();
        for _ in 0..5 {
            let got = f.get(&a, "backend", Ok(vec![addr(1), addr(2)])).await;
            assert_eq!(got.unwrap(), vec![addr(1), addr(2)]);
        }
        assert_eq!(f.calls(), 1);
        // Another name (a ProxyPassMatch host from the request) is looked
        // up, never answered with the first one's addresses.
        let got = f.get(&a, "other", Ok(vec![addr(3)])).await.unwrap();
        assert_eq!((got, f.calls()), (vec![addr(3)], 2));
    }

    #[tokio::test]
    async fn every_time_looks_up_every_time() {
        let a = Addresses::new(AddressTtl::EveryTime);
        let f = fake();
        for i in 1..=3 {
            let got = f.get(&a, "backend", Ok(vec![addr(i)])).await.unwrap();
            assert_eq!(got, vec![addr(i)]);
        }
        assert_eq!(f.calls(), 3);
        let err = f
            .get(&a, "backend", Err(io::ErrorKind::NotFound.into()))
            .await;
        assert!(err.is_err(), "nothing kept to fall back on");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ttl_resolves_again_when_it_expires() {
        let a = Addresses::new(AddressTtl::For(Duration::from_secs(30)));
        let f = fake();
        assert_eq!(
            f.get(&a, "b", Ok(vec![addr(1)])).await.unwrap(),
            vec![addr(1)]
        );
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(
            f.get(&a, "b", Ok(vec![addr(2)])).await.unwrap(),
            vec![addr(1)]
        );
        assert_eq!(f.calls(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            f.get(&a, "b", Ok(vec![addr(2)])).await.unwrap(),
            vec![addr(2)],
            "the new address after the TTL"
        );
        assert_eq!(f.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lookup_keeps_the_expired_addresses_for_another_period() {
        let a = Addresses::new(AddressTtl::For(Duration::from_secs(10)));
        let f = fake();
        f.get(&a, "b", Ok(vec![addr(1)])).await.unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
        let got = f.get(&a, "b", Err(io::ErrorKind::TimedOut.into())).await;
        assert_eq!(got.unwrap(), vec![addr(1)]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        f.get(&a, "b", Err(io::ErrorKind::TimedOut.into()))
            .await
            .unwrap();
        assert_eq!(f.calls(), 2, "not asked again within the new period");
    }

    #[tokio::test]
    async fn connections_arriving_together_share_one_lookup() {
        let a = Arc::new(Addresses::new(AddressTtl::Forever));
        let calls = Arc::new(AtomicUsize::new(0));
        let (go, ready) = tokio::sync::watch::channel(false);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (a, calls, mut ready) = (a.clone(), calls.clone(), ready.clone());
                tokio::spawn(async move {
                    let found = a
                        .get_with("b", 80, |_, _| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            // The answer takes a while, as a DNS query does.
                            let _ = ready.wait_for(|go| *go).await;
                            Ok(vec![addr(7)])
                        })
                        .await;
                    found.unwrap().as_slice().to_vec()
                })
            })
            .collect();
        // The first lookup has started, and on this one thread every other
        // connection has reached its wait behind it.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        go.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), vec![addr(7)]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_address_at_all_is_an_error() {
        let a = Addresses::new(AddressTtl::Forever);
        let f = fake();
        assert!(f.get(&a, "b", Ok(vec![])).await.is_err());
        assert_eq!(
            f.get(&a, "b", Ok(vec![addr(4)])).await.unwrap(),
            vec![addr(4)]
        );
    }
}
