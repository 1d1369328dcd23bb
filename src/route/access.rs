//! Access control after mapping, in Apache's order: mod_authz_core's
//! `Require` (the last matching `<Location>` that has any, else the
//! `<Proxy>` section of the balancer a request goes to), then the proxy
//! handler, then a `SetHandler` page for what nothing proxies.

use std::net::IpAddr;

use crate::config::model::authz::{Handler, Require, Test};
use crate::config::Config;

use super::{Backend, Decision};

/// What the matching `<Location>` sections say about a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Access<'c> {
    pub require: Option<&'c Require>,
    pub handler: Option<Handler>,
}

/// A test's result, mod_authz_core's three values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authz {
    Granted,
    Denied,
    /// A negation whose test did not grant: it neither grants nor refuses.
    Neutral,
}

/// Evaluates a requirement for a client at `client` reaching the server's
/// address `local`, as `apply_authz_sections` does.
pub fn evaluate(r: &Require, client: IpAddr, local: IpAddr) -> Authz {
    let verdict = |granted: bool| {
        if granted {
            Authz::Granted
        } else {
            Authz::Denied
        }
    };
    let result = match &r.test {
        Test::All(granted) => verdict(*granted),
        Test::Ip(subnets) => verdict(subnets.iter().any(|s| s.contains(client))),
        Test::Local => {
            let c = client.to_canonical();
            verdict(c == local.to_canonical() || c.is_loopback())
        }
        Test::Section { all, children } => {
            let mut result = Authz::Neutral;
            for child in children {
                let child = evaluate(child, client, local);
                match (child, *all) {
                    (Authz::Neutral, _) => {}
                    (Authz::Denied, true) | (Authz::Granted, false) => {
                        result = child;
                        break;
                    }
                    (other, _) if result == Authz::Neutral => result = other,
                    _ => {}
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

/// The decision once access is checked: a refusal replaces any mapping
/// (but not a rewrite's redirect or status, which Apache's rewriting makes
/// before access is checked); a request nothing proxies gets the
/// location's handler page, for GET and HEAD only (as mod_status; other
/// methods find nothing: 404).
pub(super) fn checked<'c, T: super::Trace + ?Sized>(
    config: &'c Config,
    decision: Decision<'c>,
    access: Access<'c>,
    (method, client, local): (&str, IpAddr, IpAddr),
    trace: &mut T,
) -> Decision<'c> {
    if matches!(decision, Decision::Redirect { .. } | Decision::Status(_)) {
        return decision;
    }
    // A file's access is the `<Directory>` and `<Files>` sections' with
    // the `<Location>`'s over them: the file server, which knows where
    // the file is, decides. A `SetHandler` page still wins.
    if let Decision::File(mut f) = decision {
        return match access.handler {
            Some(h) if takes(h, method) => Decision::Handler(h),
            _ => {
                f.location_require = access.require;
                Decision::File(f)
            }
        };
    }
    let require = access.require.or(match &decision {
        Decision::Proxy(m) => match m.backend {
            Backend::Balanced(b) => config.balancer(b).require.as_ref(),
            Backend::Single { .. } => None,
        },
        _ => None,
    });
    if let Some(r) = require {
        let verdict = evaluate(r, client, local);
        trace.require(r, verdict);
        if verdict != Authz::Granted {
            return Decision::Denied;
        }
    }
    match (decision, access.handler) {
        (Decision::NotFound, Some(h)) if takes(h, method) => Decision::Handler(h),
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

    fn ip(net: u32, mask: u32) -> Require {
        Require {
            negate: false,
            test: Test::Ip(vec![Subnet {
                v6: false,
                addr: net.into(),
                mask: mask.into(),
            }]),
        }
    }

    fn not(r: Require) -> Require {
        Require {
            negate: !r.negate,
            ..r
        }
    }

    fn section(all: bool, children: Vec<Require>) -> Require {
        Require {
            negate: false,
            test: Test::Section { all, children },
        }
    }

    #[test]
    fn three_valued_logic_as_mod_authz_core() {
        let ten = ip(0x0a00_0000, 0xff00_0000);
        let (inside, outside): (IpAddr, IpAddr) =
            ("10.1.2.3".parse().unwrap(), "192.0.2.1".parse().unwrap());
        let local: IpAddr = "10.9.9.9".parse().unwrap();
        // A negation never grants.
        assert_eq!(evaluate(&not(ten.clone()), outside, local), Authz::Neutral);
        assert_eq!(evaluate(&not(ten.clone()), inside, local), Authz::Denied);
        // All: one denial refuses; neutral children are skipped.
        let all_granted = Require {
            negate: false,
            test: Test::All(true),
        };
        let guarded = section(true, vec![all_granted.clone(), not(ten.clone())]);
        assert_eq!(evaluate(&guarded, outside, local), Authz::Granted);
        assert_eq!(evaluate(&guarded, inside, local), Authz::Denied);
        // Any: a denial is the result only when nothing grants.
        let any = section(
            false,
            vec![
                ten.clone(),
                Require {
                    negate: false,
                    test: Test::Local,
                },
            ],
        );
        assert_eq!(evaluate(&any, local, local), Authz::Granted);
        assert_eq!(evaluate(&any, outside, local), Authz::Denied);
        // An IPv4-mapped client is its IPv4 address.
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(evaluate(&ten, mapped, local), Authz::Granted);
    }
}
