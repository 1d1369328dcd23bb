//! Access control after mapping, in Apache 2.4's order (`request.c`):
//! mod_access_compat's `Allow`/`Deny` (the access checker), then
//! mod_authz_core's `Require` without a user; where a user could change
//! the answer, authentication (mod_auth_basic: the proxy reads the
//! `AuthUserFile` and comes back with the user) and `Require` again with
//! the user. `Satisfy Any` lets in a client `Allow`/`Deny` admit without
//! asking for one. Then the proxy handler, then a `SetHandler` page for
//! what nothing proxies.
//!
//! The sections that matter are the last matching `<Location>` with a
//! `Require` (else the `<Proxy>` section of the balancer a request goes
//! to), and each authentication setting as the last section that writes
//! it says (the `<Proxy>` section's first).

use std::net::IpAddr;
use std::path::Path;

use crate::config::model::authz::{Compat, From, Handler, Order, Require, Test};
use crate::config::model::files::Merged;
use crate::config::Config;
use crate::rules::{expr::Context, Env};

use super::{Backend, Decision};

/// What the matching sections say about a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Access<'c> {
    pub require: Option<&'c Require>,
    pub handler: Option<Handler>,
    pub auth: Policy<'c>,
}

pub use crate::config::model::authz::Policy;

impl<'c> Access<'c> {
    /// These (a `<Location>`'s) over the `<Directory>` and `<Files>`
    /// sections' settings for a file: a `Require` replaces theirs
    /// (`AuthMerging Off`), each authentication setting its own.
    pub fn over_files(self, files: &Merged<'c>) -> Access<'c> {
        Access {
            require: self.require.or(files.require),
            handler: self.handler,
            auth: self.auth.or(files.auth),
        }
    }

    /// Whether anything here can refuse a request or ask for a user.
    pub fn guards(&self) -> bool {
        self.require.is_some() || self.auth.guards()
    }
}

/// What access control reads of a request beyond its head and addresses,
/// which the proxy gathers.
#[derive(Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The request's environment as access control sees it (`SetEnvIf`
    /// and rewrite rules' `E=` have run; `SetEnv` runs after).
    pub env: Option<&'a Env>,
    /// The request's variables, for `Require expr`.
    pub expr: Option<&'a dyn Context>,
    /// The client's host name once looked up (`Some(None)`: it has none
    /// that its forward lookup confirms).
    pub remote_host: Option<Option<&'a str>>,
    /// The user, once authenticated.
    pub user: Option<&'a str>,
}

impl std::fmt::Debug for Facts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facts")
            .field("remote_host", &self.remote_host)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A test's result, mod_authz_core's four values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authz {
    Granted,
    Denied,
    /// Denied for want of a user: authenticating may change it.
    DeniedNoUser,
    /// A negation whose test did not grant: it neither grants nor refuses.
    Neutral,
}

/// A request as a test sees it.
#[derive(Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a str,
    pub client: IpAddr,
    pub local: IpAddr,
    pub facts: Facts<'a>,
    /// The user the tests see: none in the pass before authentication.
    pub user: Option<&'a str>,
}

impl<'a> Asked<'a> {
    /// A request without environment, variables, host name or user.
    pub fn bare(method: &'a str, client: IpAddr, local: IpAddr) -> Asked<'a> {
        Asked {
            method,
            client,
            local,
            facts: Facts::default(),
            user: None,
        }
    }

    fn env(&self, name: &str) -> bool {
        self.facts.env.is_some_and(|e| e.get(name).is_some())
    }

    fn host_in(&self, domain: &str) -> bool {
        matches!(self.facts.remote_host, Some(Some(h)) if in_domain(domain, h))
    }
}

/// mod_authz_host's `in_domain`: `what` is `domain`, or ends in it at a
/// dot (`good.com` does not match `nogood.com`).
fn in_domain(domain: &str, what: &str) -> bool {
    let (d, w) = (domain.as_bytes(), what.as_bytes());
    if w.len() < d.len() || !w[w.len() - d.len()..].eq_ignore_ascii_case(d) {
        return false;
    }
    w.len() == d.len() || d.first() == Some(&b'.') || w[w.len() - d.len() - 1] == b'.'
}

/// Evaluates a requirement as `apply_authz_sections` does.
pub fn evaluate(r: &Require, q: &Asked<'_>) -> Authz {
    let verdict = |granted: bool| {
        if granted {
            Authz::Granted
        } else {
            Authz::Denied
        }
    };
    let needs_user = |test: &dyn Fn(&str) -> bool| match q.user {
        None => Authz::DeniedNoUser,
        Some(u) => verdict(test(u)),
    };
    let result = match &r.test {
        Test::All(granted) => verdict(*granted),
        Test::Ip(subnets) => verdict(subnets.iter().any(|s| s.contains(q.client))),
        Test::Local => {
            let c = q.client.to_canonical();
            verdict(c == q.local.to_canonical() || c.is_loopback())
        }
        Test::User(names) => needs_user(&|u| names.iter().any(|n| n == u)),
        Test::ValidUser => needs_user(&|_| true),
        Test::Host(names) => verdict(names.iter().any(|n| q.host_in(n))),
        Test::Env(vars) => verdict(vars.iter().any(|v| q.env(v))),
        Test::Method(methods) => {
            let m = if q.method == "HEAD" { "GET" } else { q.method };
            verdict(methods.iter().any(|x| x == m))
        }
        Test::Expr(cond) => verdict(q.facts.expr.is_some_and(|cx| cond.eval(cx))),
        Test::Section { all, children } => {
            let mut result = Authz::Neutral;
            for child in children {
                let child = evaluate(child, q);
                if child == Authz::Neutral {
                    continue;
                }
                if *all {
                    if child == Authz::Denied {
                        result = child;
                        break;
                    }
                    if (child == Authz::DeniedNoUser && result != Authz::Denied)
                        || result == Authz::Neutral
                    {
                        result = child;
                    }
                } else {
                    if child == Authz::Granted {
                        result = child;
                        break;
                    }
                    if (child == Authz::DeniedNoUser && result == Authz::Denied)
                        || result == Authz::Neutral
                    {
                        result = child;
                    }
                }
            }
            result
        }
    };
    match (r.negate, result) {
        (false, r) => r,
        (true, Authz::Granted) => Authz::Denied,
        (true, _) => Authz::Neutral,
    }
}

/// mod_access_compat's `check_dir_access`: whether `Allow`/`Deny` let the
/// client in.
pub fn compat_allows(c: &Compat, q: &Asked<'_>) -> bool {
    let hit = |list: &[From]| {
        list.iter().any(|f| match f {
            From::All => true,
            From::Ip(s) => s.contains(q.client),
            From::Env(v) => q.env(v),
            From::NotEnv(v) => !q.env(v),
            From::Host(d) => q.host_in(d),
        })
    };
    match c.order {
        Order::DenyAllow => hit(&c.allow) || !hit(&c.deny),
        // Both refuse unless allowed and not denied (in 2.4 they agree).
        Order::AllowDeny | Order::MutualFailure => hit(&c.allow) && !hit(&c.deny),
    }
}

/// What the proxy must find out before access can be decided.
#[derive(Debug)]
pub enum Need<'c> {
    /// The client's host name (`Require host`, `Allow from NAME`).
    Host,
    /// The user, from the request's Basic credentials checked against the
    /// file (mod_auth_basic, mod_authn_file).
    User {
        realm: &'c str,
        user_file: Option<&'c Path>,
    },
}

/// A decision waiting for what access control needs: the proxy finds it
/// out, puts it in the request's [`Facts`] and calls [`resume`].
#[derive(Debug)]
pub struct Pending<'c> {
    pub need: Need<'c>,
    then: Decision<'c>,
    access: Access<'c>,
}

/// Why access control stops a request.
#[derive(Debug)]
pub enum Refusal<'c> {
    /// 403.
    Denied,
    /// 401, with the realm.
    Unauthorized(&'c str),
    /// 500: a configuration Apache accepts but cannot apply; the log line.
    Error(&'static str),
    Need(Need<'c>),
}

/// Apache's access phase for one request (`ap_process_request_internal`).
pub fn check<'c, T: super::Trace + ?Sized>(
    access: &Access<'c>,
    q: &Asked<'_>,
    trace: &mut T,
) -> Result<(), Refusal<'c>> {
    let policy = &access.auth;
    let needs_host = access.require.is_some_and(Require::needs_host)
        || policy.compat.is_some_and(Compat::needs_host);
    if needs_host && q.facts.remote_host.is_none() {
        return Err(Refusal::Need(Need::Host));
    }
    let any = policy.compat.and_then(|c| c.satisfy_any) == Some(true);
    let compat_ok = policy.compat.is_none_or(|c| compat_allows(c, q));
    if any && compat_ok {
        return Ok(());
    }
    if !compat_ok && !any {
        return Err(Refusal::Denied);
    }
    let basic = policy.basic == Some(true);
    let Some(require) = access.require else {
        return if basic {
            Err(Refusal::Error(
                "AH01627: AuthType configured with no corresponding authorization directives",
            ))
        } else {
            Ok(())
        };
    };
    // Without a user first (`authorize_userless`).
    let userless = evaluate(require, &Asked { user: None, ..*q });
    match userless {
        Authz::Granted => {
            trace.require(require, userless);
            return Ok(());
        }
        Authz::DeniedNoUser => {}
        Authz::Denied | Authz::Neutral => {
            trace.require(require, userless);
            return Err(Refusal::Denied);
        }
    }
    // Authentication (`check_user_id`).
    if !basic {
        return Err(Refusal::Error("AH00027: No authentication done but request not allowed without authentication. Authentication not configured?"));
    }
    let Some(realm) = policy.realm else {
        return Err(Refusal::Error("AH01615: need AuthName"));
    };
    let Some(user) = q.facts.user else {
        return Err(Refusal::Need(Need::User {
            realm,
            user_file: policy.user_file,
        }));
    };
    // With the user (`authorize_user`): a refusal asks again.
    let verdict = evaluate(
        require,
        &Asked {
            user: Some(user),
            ..*q
        },
    );
    trace.require(require, verdict);
    match verdict {
        Authz::Granted => Ok(()),
        _ => Err(Refusal::Unauthorized(realm)),
    }
}

/// The decision once access is checked: a refusal replaces any mapping
/// (but not a rewrite's redirect or status, which Apache's rewriting makes
/// before access is checked); a request nothing proxies gets the
/// location's handler page, for GET and HEAD only (as mod_status; other
/// methods find nothing: 404).
pub(super) fn checked<'c, T: super::Trace + ?Sized>(
    config: &'c Config,
    decision: Decision<'c>,
    mut access: Access<'c>,
    q: &Asked<'_>,
    trace: &mut T,
) -> Decision<'c> {
    if matches!(decision, Decision::Redirect { .. } | Decision::Status(_)) {
        return decision;
    }
    // A file: access is checked by the file server, which knows where the
    // file is, with the `<Directory>` and `<Files>` sections' settings
    // under the `<Location>`s' (as Apache merges them before its access
    // phase). A `SetHandler` page wins over a file, as over nothing.
    let mut decision = decision;
    if let Decision::File(f) = &mut decision {
        if !access.handler.is_some_and(|h| takes(h, q.method)) {
            f.location_access = Access {
                handler: None,
                ..access
            };
            return decision;
        }
    }
    // The balancer's `<Proxy>` section comes before the Locations.
    if let Decision::Proxy(m) = &decision {
        if let Backend::Balanced(b) = m.backend {
            let balancer = config.balancer(b);
            access.require = access.require.or(balancer.require.as_ref());
            let mut earlier = Policy::default();
            if let Some(a) = balancer.auth.as_deref() {
                earlier.add(a);
            }
            access.auth = access.auth.or(earlier);
        }
    }
    guard(decision, access, q, trace)
}

/// Goes on with a pending decision once the proxy has put what it needed
/// in the request's facts.
pub fn resume<'c, T: super::Trace + ?Sized>(
    pending: Pending<'c>,
    q: &Asked<'_>,
    trace: &mut T,
) -> Decision<'c> {
    guard(pending.then, pending.access, q, trace)
}

fn guard<'c, T: super::Trace + ?Sized>(
    decision: Decision<'c>,
    access: Access<'c>,
    q: &Asked<'_>,
    trace: &mut T,
) -> Decision<'c> {
    if access.guards() {
        match check(&access, q, trace) {
            Ok(()) => {}
            Err(Refusal::Denied) => return Decision::Denied,
            Err(Refusal::Unauthorized(realm)) => return Decision::Unauthorized { realm },
            Err(Refusal::Error(why)) => return Decision::AccessError(why),
            Err(Refusal::Need(need)) => {
                return Decision::Pending(Box::new(Pending {
                    need,
                    then: decision,
                    access,
                }))
            }
        }
    }
    // A `SetHandler` page wins over a file, as over nothing.
    match (decision, access.handler) {
        (Decision::NotFound | Decision::File(_), Some(h)) if takes(h, q.method) => {
            Decision::Handler(h)
        }
        (d, _) => d,
    }
}

/// Whether a `SetHandler` page answers `method`: mod_status answers GET
/// (HEAD is a GET to Apache); the balancer manager takes its form by POST
/// too.
fn takes(h: Handler, method: &str) -> bool {
    match h {
        Handler::None => false,
        Handler::BalancerManager => matches!(method, "GET" | "HEAD" | "POST"),
        _ => matches!(method, "GET" | "HEAD"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::authz::Subnet;

    fn req(test: Test) -> Require {
        Require {
            negate: false,
            test,
        }
    }

    fn ip(net: u32, mask: u32) -> Require {
        req(Test::Ip(vec![Subnet {
            v6: false,
            addr: net.into(),
            mask: mask.into(),
        }]))
    }

    fn not(r: Require) -> Require {
        Require {
            negate: !r.negate,
            ..r
        }
    }

    fn section(all: bool, children: Vec<Require>) -> Require {
        req(Test::Section { all, children })
    }

    fn at(client: &str) -> Asked<'static> {
        Asked::bare("GET", client.parse().unwrap(), "10.9.9.9".parse().unwrap())
    }

    #[test]
    fn three_valued_logic_as_mod_authz_core() {
        let ten = ip(0x0a00_0000, 0xff00_0000);
        let (inside, outside, local) = (at("10.1.2.3"), at("192.0.2.1"), at("10.9.9.9"));
        // A negation never grants.
        assert_eq!(evaluate(&not(ten.clone()), &outside), Authz::Neutral);
        assert_eq!(evaluate(&not(ten.clone()), &inside), Authz::Denied);
        // All: one denial refuses; neutral children are skipped.
        let guarded = section(true, vec![req(Test::All(true)), not(ten.clone())]);
        assert_eq!(evaluate(&guarded, &outside), Authz::Granted);
        assert_eq!(evaluate(&guarded, &inside), Authz::Denied);
        // Any: a denial is the result only when nothing grants.
        let any = section(false, vec![ten.clone(), req(Test::Local)]);
        assert_eq!(evaluate(&any, &local), Authz::Granted);
        assert_eq!(evaluate(&any, &outside), Authz::Denied);
        // An IPv4-mapped client is its IPv4 address.
        assert_eq!(evaluate(&ten, &at("::ffff:10.1.2.3")), Authz::Granted);
    }

    #[test]
    fn user_tests_ask_for_a_user_until_there_is_one() {
        let alice = req(Test::User(vec!["alice".into(), "bob".into()]));
        let anon = at("192.0.2.1");
        assert_eq!(evaluate(&alice, &anon), Authz::DeniedNoUser);
        assert_eq!(evaluate(&req(Test::ValidUser), &anon), Authz::DeniedNoUser);
        let as_bob = Asked {
            user: Some("bob"),
            ..anon
        };
        let as_carol = Asked {
            user: Some("carol"),
            ..anon
        };
        assert_eq!(evaluate(&alice, &as_bob), Authz::Granted);
        assert_eq!(evaluate(&alice, &as_carol), Authz::Denied);
        assert_eq!(evaluate(&req(Test::ValidUser), &as_carol), Authz::Granted);
        // Any of (ip, valid-user): without a user, "no user" wins over a
        // plain denial, so authentication is asked for.
        let either = section(
            false,
            vec![ip(0x0a00_0000, 0xff00_0000), req(Test::ValidUser)],
        );
        assert_eq!(evaluate(&either, &anon), Authz::DeniedNoUser);
        assert_eq!(evaluate(&either, &at("10.0.0.1")), Authz::Granted);
        // All of (ip, valid-user): a plain denial ends it.
        let both = section(
            true,
            vec![ip(0x0a00_0000, 0xff00_0000), req(Test::ValidUser)],
        );
        assert_eq!(evaluate(&both, &anon), Authz::Denied);
        assert_eq!(evaluate(&both, &at("10.0.0.1")), Authz::DeniedNoUser);
        // `not user`: neutral until there is a user.
        assert_eq!(evaluate(&not(alice.clone()), &anon), Authz::Neutral);
        assert_eq!(evaluate(&not(alice), &as_bob), Authz::Denied);
    }

    #[test]
    fn method_env_and_host_tests() {
        let get = req(Test::Method(vec!["GET".into()]));
        let head = Asked {
            method: "HEAD",
            ..at("192.0.2.1")
        };
        let post = Asked {
            method: "POST",
            ..at("192.0.2.1")
        };
        assert_eq!(evaluate(&get, &head), Authz::Granted);
        assert_eq!(evaluate(&get, &post), Authz::Denied);
        let mut env = Env::default();
        env.set("trusted", "1");
        let with_env = Asked {
            facts: Facts {
                env: Some(&env),
                ..Facts::default()
            },
            ..at("192.0.2.1")
        };
        let trusted = req(Test::Env(vec!["other".into(), "trusted".into()]));
        assert_eq!(evaluate(&trusted, &with_env), Authz::Granted);
        assert_eq!(evaluate(&trusted, &at("192.0.2.1")), Authz::Denied);
        let named = |h: Option<&'static str>| Asked {
            facts: Facts {
                remote_host: Some(h),
                ..Facts::default()
            },
            ..at("192.0.2.1")
        };
        let example = req(Test::Host(vec!["example.org".into()]));
        assert_eq!(
            evaluate(&example, &named(Some("www.example.org"))),
            Authz::Granted
        );
        assert_eq!(
            evaluate(&example, &named(Some("example.org"))),
            Authz::Granted
        );
        assert_eq!(
            evaluate(&example, &named(Some("notexample.org"))),
            Authz::Denied
        );
        assert_eq!(evaluate(&example, &named(None)), Authz::Denied);
    }

    #[test]
    fn allow_and_deny_in_each_order() {
        let ten = From::Ip(Subnet {
            v6: false,
            addr: 0x0a00_0000,
            mask: 0xff00_0000,
        });
        let compat = |order, allow: Vec<From>, deny: Vec<From>| Compat {
            order,
            allow,
            deny,
            satisfy_any: None,
        };
        let (inside, outside) = (at("10.1.1.1"), at("192.0.2.1"));
        // Deny,Allow: allowed unless denied and not allowed.
        let c = compat(Order::DenyAllow, vec![ten.clone()], vec![From::All]);
        assert!(compat_allows(&c, &inside));
        assert!(!compat_allows(&c, &outside));
        assert!(compat_allows(
            &compat(Order::DenyAllow, vec![], vec![]),
            &outside
        ));
        // Allow,Deny: refused unless allowed and not denied.
        let c = compat(Order::AllowDeny, vec![From::All], vec![ten.clone()]);
        assert!(!compat_allows(&c, &inside));
        assert!(compat_allows(&c, &outside));
        assert!(!compat_allows(
            &compat(Order::AllowDeny, vec![], vec![]),
            &outside
        ));
        let c = compat(Order::MutualFailure, vec![From::All], vec![ten]);
        assert!(!compat_allows(&c, &inside));
        // env= and env=!.
        let c = compat(Order::AllowDeny, vec![From::NotEnv("bad".into())], vec![]);
        assert!(compat_allows(&c, &outside));
    }

    #[test]
    fn a_location_merges_over_the_file_sections_field_by_field() {
        use crate::config::model::authz::Auth;
        use crate::config::model::files::Merged;
        let dir_require = req(Test::ValidUser);
        let dir_auth = Auth {
            basic: Some(true),
            realm: Some("Dir".into()),
            ..Auth::default()
        };
        let mut files = Merged {
            options: Default::default(),
            require: Some(&dir_require),
            auth: Policy::default(),
            directory_index: None,
            directory_slash: true,
            fallback: None,
        };
        files.auth.add(&dir_auth);
        // A <Location> with only an AuthName: the file sections' Require
        // and AuthType stay, its realm wins.
        let loc_auth = Auth {
            realm: Some("Loc".into()),
            ..Auth::default()
        };
        let mut location = Access::default();
        location.auth.add(&loc_auth);
        let merged = location.over_files(&files);
        assert!(matches!(
            merged.require.map(|r| &r.test),
            Some(Test::ValidUser)
        ));
        assert_eq!(merged.auth.basic, Some(true));
        assert_eq!(merged.auth.realm, Some("Loc"));
        let anon = at("192.0.2.1");
        assert!(matches!(
            check(&merged, &anon, &mut ()),
            Err(Refusal::Need(Need::User { realm: "Loc", .. }))
        ));
        // Its own Require replaces theirs.
        let granted = req(Test::All(true));
        let open = Access {
            require: Some(&granted),
            ..location
        };
        assert!(check(&open.over_files(&files), &anon, &mut ()).is_ok());
        // Nothing anywhere: nothing guards.
        let bare = Merged {
            require: None,
            auth: Policy::default(),
            ..files
        };
        assert!(!Access::default().over_files(&bare).guards());
    }

    #[test]
    fn domains_match_whole_labels() {
        assert!(in_domain("example.org", "example.org"));
        assert!(in_domain("example.org", "a.EXAMPLE.org"));
        assert!(in_domain(".example.org", "a.example.org"));
        assert!(!in_domain("example.org", "badexample.org"));
        assert!(!in_domain("www.example.org", "example.org"));
    }
}
