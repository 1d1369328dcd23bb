//! mod_headers, mod_env and mod_setenvif: header rules on requests and
//! responses, and the per-request environment they (and the balancer) use.
//! Pure: rules take header lists and an [`Env`] and change them.

pub(crate) mod expr;

pub use crate::config::model::headers::{
    Action, Attribute, Condition, HeaderRule, Piece, SetEnvIf, Value,
};
use crate::http::{FieldValue, HeaderFields, Text};

/// The request's environment variables (`SetEnv`, `SetEnvIf`, `BALANCER_*`).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.unset(name);
        self.vars.push((name.to_string(), value.into()));
    }

    pub fn unset(&mut self, name: &str) {
        self.vars.retain(|(n, _)| n != name);
    }
}

/// What a rule's value and condition read.
pub struct Facts<'a> {
    pub env: &'a Env,
    pub expr: &'a dyn expr::Context,
    /// When the request arrived, as microseconds since the Unix epoch.
    pub received_us: u128,
    pub elapsed_us: u128,
    /// The request headers, for `echo`.
    pub request_headers: &'a [(Text, FieldValue)],
}

impl HeaderRule {
    pub fn applies(&self, facts: &Facts<'_>, early_phase: bool) -> bool {
        match &self.condition {
            Condition::Early => early_phase,
            _ if early_phase => false,
            Condition::Always => true,
            Condition::Env { name, present } => facts.env.get(name).is_some() == *present,
            Condition::Expr(c) => c.eval(facts.expr),
        }
    }

    fn value(&self, facts: &Facts<'_>) -> String {
        match &self.value {
            None => String::new(),
            Some(Value::Expr(w)) => w.eval(facts.expr),
            Some(Value::Format(pieces)) => pieces
                .iter()
                .map(|p| match p {
                    Piece::Literal(s) => s.clone(),
                    Piece::Env(v) => facts.env.get(v).unwrap_or("(null)").to_string(),
                    Piece::Time => format!("t={}", facts.received_us),
                    Piece::Duration => format!("D={}", facts.elapsed_us),
                })
                .collect(),
        }
    }

    /// Applies the rule to `headers` (the request's, or a response's).
    pub fn apply(&self, headers: &mut HeaderFields, facts: &Facts<'_>) {
        let name = self.name.as_str();
        let is = |n: &str| n.eq_ignore_ascii_case(name);
        let safe = |v: &[u8]| !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0);
        let value = self.value(facts);
        if !safe(value.as_bytes()) {
            // A header value can never carry CR, LF or NUL, whatever the
            // request held: the rule is skipped rather than split a head.
            tracing::warn!(
                "{}: header rule for {name} skipped: its value holds a line break or NUL",
                self.origin
            );
            return;
        }
        match &self.action {
            Action::Set => match headers.iter().position(|(n, _)| is(n)) {
                Some(first) => {
                    headers[first].1 = value.into();
                    let mut i = 0;
                    headers.retain(|(n, _)| {
                        i += 1;
                        i - 1 == first || !is(n)
                    });
                }
                None => headers.push((name.into(), value.into())),
            },
            Action::Append | Action::Merge => match headers.iter_mut().find(|(n, _)| is(n)) {
                Some((_, v)) => {
                    let present = v
                        .split(|&b| b == b',')
                        .any(|t| t.trim_ascii() == value.as_bytes());
                    if !(matches!(self.action, Action::Merge) && present) {
                        let mut joined = Vec::with_capacity(v.len() + 2 + value.len());
                        joined.extend_from_slice(v);
                        joined.extend_from_slice(b", ");
                        joined.extend_from_slice(value.as_bytes());
                        *v = joined.into();
                    }
                }
                None => headers.push((name.into(), value.into())),
            },
            Action::Add => headers.push((name.into(), value.into())),
            Action::SetIfEmpty => {
                if !headers.iter().any(|(n, _)| is(n)) {
                    headers.push((name.into(), value.into()));
                }
            }
            Action::Unset => headers.retain(|(n, _)| !is(n)),
            Action::Edit {
                pattern,
                replacement,
                all,
            } => {
                for (n, v) in headers.iter_mut() {
                    if !is(n) {
                        continue;
                    }
                    let text = String::from_utf8_lossy(v).into_owned();
                    let edited = if *all {
                        pattern.replace_all(&text, replacement.as_str())
                    } else {
                        pattern.replace(&text, replacement.as_str())
                    };
                    if safe(edited.as_bytes()) {
                        *v = edited.into_owned().into();
                    }
                }
            }
            Action::Echo(pattern) => {
                // Added beside any the response already has, as Apache does.
                for (n, v) in facts.request_headers {
                    if pattern.is_match(n) {
                        headers.push((n.clone(), v.clone()));
                    }
                }
            }
        }
    }
}

/// What `SetEnvIf` reads from a request.
pub struct RequestAttributes<'a> {
    pub remote_addr: String,
    pub server_addr: String,
    pub method: &'a str,
    pub protocol: &'a str,
    pub uri: &'a [u8],
    pub headers: &'a [(Text, FieldValue)],
}

impl SetEnvIf {
    pub fn apply(&self, a: &RequestAttributes<'_>, env: &mut Env) {
        let owned;
        let subject: &[u8] = match &self.attribute {
            Attribute::RemoteHost | Attribute::RemoteAddr => a.remote_addr.as_bytes(),
            Attribute::ServerAddr => a.server_addr.as_bytes(),
            Attribute::RequestMethod => a.method.as_bytes(),
            Attribute::RequestProtocol => a.protocol.as_bytes(),
            Attribute::RequestUri => a.uri,
            Attribute::Header(h) => match a.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(h))
            {
                Some((_, v)) => v,
                None => {
                    // An earlier variable of that name, else the empty
                    // string (Apache: a missing header matches `^$`).
                    owned = env.get(h).unwrap_or("").as_bytes().to_vec();
                    &owned
                }
            },
        };
        let Some(caps) = self.pattern.captures(subject) else {
            return;
        };
        for (name, value) in &self.assignments {
            if let Some(var) = name.strip_prefix('!') {
                env.unset(var);
                continue;
            }
            let mut out = String::new();
            if let Some(v) = value {
                let mut chars = v.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                        let n = chars.next().and_then(|d| d.to_digit(10)).unwrap_or(0) as usize;
                        if let Some(m) = caps.get(n) {
                            out.push_str(&String::from_utf8_lossy(m.as_bytes()));
                        }
                    } else {
                        out.push(c);
                    }
                }
            } else {
                out.push('1');
            }
            env.set(name, out);
        }
    }
}

#[cfg(test)]
mod tests;
