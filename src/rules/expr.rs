//! The part of Apache's ap_expr that header recipes use: conditions
//! (`expr=` on `Header`/`RequestHeader`) and string values
//! (`expr=%{REQUEST_SCHEME}`). Anything outside it is a configuration error
//! that names the unsupported part, never a silent mismatch.

pub use crate::config::model::headers::expr::{Cond, ExprVar, IpNet, Word};

/// What an expression reads while it is evaluated.
pub trait Context {
    fn var(&self, var: &ExprVar) -> String;
}

impl Word {
    pub fn eval(&self, ctx: &dyn Context) -> String {
        match self {
            Word::Literal(s) => s.clone(),
            Word::Var(v) => ctx.var(v),
            Word::Concat(parts) => parts.iter().map(|p| p.eval(ctx)).collect(),
            Word::Lower(w) => w.eval(ctx).to_lowercase(),
            Word::Upper(w) => w.eval(ctx).to_uppercase(),
        }
    }
}

impl IpNet {
    pub fn contains(&self, ip: &str) -> bool {
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
            return false;
        };
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

impl Cond {
    pub fn eval(&self, ctx: &dyn Context) -> bool {
        match self {
            Cond::True => true,
            Cond::False => false,
            Cond::NonEmpty(w) => !w.eval(ctx).is_empty(),
            Cond::Empty(w) => w.eval(ctx).is_empty(),
            Cond::Eq(a, b) => a.eval(ctx) == b.eval(ctx),
            Cond::Ne(a, b) => a.eval(ctx) != b.eval(ctx),
            Cond::Less(a, b, eq) => {
                let (a, b) = (a.eval(ctx), b.eval(ctx));
                a < b || (*eq && a == b)
            }
            Cond::Greater(a, b, eq) => {
                let (a, b) = (a.eval(ctx), b.eval(ctx));
                a > b || (*eq && a == b)
            }
            Cond::IntCmp(a, op, b) => {
                let num = |w: &Word| w.eval(ctx).trim().parse::<i64>().unwrap_or(0);
                op.holds(num(a), num(b))
            }
            Cond::Matches(w, re, want) => re.is_match(&w.eval(ctx)) == *want,
            Cond::IpMatch(w, net) => net.contains(&w.eval(ctx)),
            Cond::In(w, list) => {
                let v = w.eval(ctx);
                list.iter().any(|l| l.eval(ctx) == v)
            }
            Cond::Not(c) => !c.eval(ctx),
            Cond::And(a, b) => a.eval(ctx) && b.eval(ctx),
            Cond::Or(a, b) => a.eval(ctx) || b.eval(ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::expr::{parse_cond, parse_string};

    struct Vars;
    impl Context for Vars {
        fn var(&self, v: &ExprVar) -> String {
            match v {
                ExprVar::RequestScheme => "https".into(),
                ExprVar::RequestUri => "/app/x".into(),
                ExprVar::RemoteAddr => "127.0.0.5".into(),
                ExprVar::Header(h) if h == "X-A" => "v".into(),
                _ => String::new(),
            }
        }
    }

    fn holds(text: &str) -> bool {
        parse_cond(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval(&Vars)
    }

    #[test]
    fn conditions() {
        assert!(holds("%{REQUEST_URI} =~ m#^/app/#"));
        assert!(holds("%{HTTP:X-A} == 'v' && -n %{HTTP:X-A}"));
        assert!(holds("-z %{HTTP:X-Missing} || false"));
        assert!(holds("!(%{REQUEST_SCHEME} != 'https')"));
        assert!(holds("%{REMOTE_ADDR} -ipmatch '127.0.0.0/8'"));
        assert!(!holds("%{REMOTE_ADDR} -ipmatch '10.0.0.0/8'"));
        assert!(holds("%{REQUEST_SCHEME} in { 'http', 'https' }"));
        assert!(holds("tolower(%{HTTP:X-A}) == 'v'"));
        assert!(holds("%{REQUEST_URI} !~ /admin/i"));
    }

    #[test]
    fn strings_interpolate() {
        assert_eq!(
            parse_string("%{REQUEST_SCHEME}").unwrap().eval(&Vars),
            "https"
        );
        assert_eq!(
            parse_string("proto=%{REQUEST_SCHEME};")
                .unwrap()
                .eval(&Vars),
            "proto=https;"
        );
    }

    #[test]
    fn unsupported_parts_are_named() {
        assert!(parse_cond("%{TIME_HOUR} -gt 6")
            .unwrap_err()
            .contains("TIME_HOUR"));
        assert!(parse_cond("-f '/etc/passwd'").unwrap_err().contains("-f"));
        assert!(parse_cond("%{HTTP:X} -strmatch 'a*'")
            .unwrap_err()
            .contains("-strmatch"));
    }
}
