//! mod_proxy_balancer's manager page (`SetHandler balancer-manager`): the
//! balancers and their members, and the nonce-protected form that disables,
//! drains, stops or reweights a member. Pure: the page is written from a
//! snapshot, and the form's fields are read into an [`Edit`]; the caller
//! (`proxy::handler`) checks the Referer and the nonce and applies it.

use std::fmt::Write;

/// One balancer as the page shows it.
#[derive(Debug, Clone)]
pub struct BalancerView {
    /// Without `balancer://`.
    pub name: String,
    pub nonce: String,
    pub sticky: Option<String>,
    pub nofailover: bool,
    pub failover_attempts: usize,
    pub method: &'static str,
    /// The ProxyPass path that leads to it, if any.
    pub path: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone)]
pub struct MemberView {
    pub url: String,
    pub route: String,
    pub redirect: String,
    /// loadfactor × 100.
    pub weight: i64,
    pub lbset: u32,
    pub status: String,
    pub elected: u64,
    pub busy: u64,
    pub load: i64,
    /// Bytes to and from the member by requests (not tunnels).
    pub traffic: u64,
    /// Of those, the bytes from the member.
    pub read: u64,
    /// Tunnels open to it.
    pub tunnels: u64,
}

/// The whole page.
#[derive(Debug, Clone)]
pub struct Page {
    pub host: String,
    pub version: String,
    /// The page's own path (the form posts to it).
    pub path: String,
    pub balancers: Vec<BalancerView>,
    /// A balancer (and member) chosen by `b=` and `w=` with a good
    /// Referer: its edit form is shown.
    pub selected: Option<(usize, Option<usize>)>,
    /// The signature line (`ServerSignature`; empty when Off).
    pub signature: String,
}

/// The changes to a member the form asks for, as Apache reads them;
/// `None`: not asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edit {
    /// `w_lf` × 100, when from 100 to 10000 (loadfactor 1 to 100).
    pub weight: Option<i64>,
    /// `w_status_D`, `w_status_N`, `w_status_S` (1 sets, 0 clears).
    pub disabled: Option<bool>,
    pub drain: Option<bool>,
    pub stopped: Option<bool>,
}

impl Edit {
    pub fn from_params(params: &[(String, String)]) -> Edit {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let flag = |k: &str| get(k).map(|v| atoi(v) != 0);
        Edit {
            weight: get("w_lf")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|f| (f * 100.0) as i64)
                .filter(|w| (100..=10000).contains(w)),
            disabled: flag("w_status_D"),
            drain: flag("w_status_N"),
            stopped: flag("w_status_S"),
        }
    }
}

fn atoi(v: &str) -> i64 {
    let v = v.trim_start();
    let end = v
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+'))))
        .map_or(v.len(), |(i, _)| i);
    v[..end].parse().unwrap_or(0)
}

/// The parameters of a request: from the query only `b`, `w`, `nonce` and
/// `xml` (Apache reads the rest from a POST body only), then the body's.
pub fn params(query: &str, body: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs(query)
        .filter(|(k, _)| matches!(k.as_str(), "b" | "w" | "nonce" | "xml"))
        .collect();
    out.extend(pairs(body));
    out
}

fn pairs(s: &str) -> impl Iterator<Item = (String, String)> + '_ {
    s.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (unescape(k), unescape(v))
    })
}

/// `application/x-www-form-urlencoded` decoding.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The page: Apache's layout, plus a column of open tunnels per member.
pub fn html(p: &Page) -> String {
    let mut o = String::with_capacity(4096);
    o.push_str("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\" \"http://www.w3.org/TR/html4/strict.dtd\">\n<html><head><title>Balancer Manager</title>\n<style type='text/css'>\ntable { border-width: 1px; border-spacing: 3px; border-style: solid; border-color: gray; border-collapse: collapse; background-color: white; text-align: center; }\nth { border-width: 1px; padding: 2px; border-style: dotted; border-color: gray; background-color: lightgray; text-align: center; }\ntd { border-width: 1px; padding: 2px; border-style: dotted; border-color: gray; background-color: white; text-align: center; }\n</style>\n</head>\n");
    let _ = write!(
        o,
        "<body><h1>Load Balancer Manager for {}</h1>\n\n<dl><dt>Server Version: {}</dt>\n<dt>Balancer changes will NOT be persisted on restart.</dt></dl>\n<hr />\n",
        esc(&p.host),
        esc(&p.version)
    );
    for (bi, b) in p.balancers.iter().enumerate() {
        let _ = writeln!(
            o,
            "<h3>LoadBalancer Status for <a href=\"{}?b={}&amp;nonce={}\">balancer://{}</a></h3>\n",
            esc(&p.path),
            esc(&b.name),
            esc(&b.nonce),
            esc(&b.name)
        );
        o.push_str("<table><tr><th>MaxMembers</th><th>StickySession</th><th>DisableFailover</th><th>Timeout</th><th>FailoverAttempts</th><th>Method</th><th>Path</th><th>Active</th></tr>\n");
        let n = b.members.len();
        let _ = writeln!(
            o,
            "<tr><td>{n} [{n} Used]</td>\n<td> {} </td><td>{}</td>\n<td>0</td><td>{}</td>\n<td>{}</td>\n<td>{}</td>\n<td>Yes</td>\n</tr>\n</table>\n<br />\n",
            b.sticky.as_deref().map_or_else(|| "(None)".to_string(), esc),
            if b.nofailover { "On" } else { "Off" },
            b.failover_attempts,
            b.method,
            esc(&b.path)
        );
        o.push_str("<table><tr><th>Worker URL</th><th>Route</th><th>RouteRedir</th><th>Factor</th><th>Set</th><th>Status</th><th>Elected</th><th>Busy</th><th>Load</th><th>Traffic</th><th>Tunnels</th></tr>\n");
        for m in &b.members {
            let _ = writeln!(
                o,
                "<tr>\n<td><a href=\"{}?b={}&amp;w={}&amp;nonce={}\">{}</a></td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.path),
                esc(&b.name),
                esc(&m.url),
                esc(&b.nonce),
                esc(&m.url),
                esc(&m.route),
                esc(&m.redirect),
                m.weight as f64 / 100.0,
                m.lbset,
                m.status,
                m.elected,
                m.busy,
                m.load,
                m.traffic,
                m.tunnels
            );
        }
        o.push_str("</table>\n<hr />\n");
        if let Some((sb, Some(mi))) = p.selected {
            if sb == bi {
                edit_form(&mut o, p, b, &b.members[mi]);
            }
        }
    }
    o.push_str(&p.signature);
    o.push_str("</body></html>\n");
    o
}

fn edit_form(o: &mut String, p: &Page, b: &BalancerView, m: &MemberView) {
    let flag = |s: &str| m.status.contains(s);
    let _ = writeln!(
        o,
        "<h3>Edit worker settings for {}</h3>\n<form method='POST' enctype='application/x-www-form-urlencoded' action=\"{}\">\n<table><tr><td>Load factor:</td><td><input name='w_lf' id='w_lf' type=text value='{:.2}'></td></tr>\n<tr><td>Status:</td><td><table><tr><th>Draining Mode</th><th>Disabled</th><th>Stopped</th></tr>\n<tr>",
        esc(&m.url),
        esc(&p.path),
        m.weight as f64 / 100.0
    );
    for (key, on) in [
        ("N", flag("Drn ")),
        ("D", flag("Dis ")),
        ("S", flag("Stop ")),
    ] {
        let (c1, c0) = if on {
            (" checked", "")
        } else {
            ("", " checked")
        };
        let _ = writeln!(
            o,
            "<td><label for='w_status_{key}1'>On</label> <input name='w_status_{key}' id='w_status_{key}1' value='1' type=radio{c1}> <br/> <label for='w_status_{key}0'>Off</label> <input name='w_status_{key}' id='w_status_{key}0' value='0' type=radio{c0}></td>"
        );
    }
    let _ = writeln!(
        o,
        "</tr></table></td></tr>\n<tr><td colspan='2'><input type=submit value='Submit'></td></tr>\n</table>\n<input type=hidden name='w' id='w' value=\"{}\">\n<input type=hidden name='b' id='b' value=\"{}\">\n<input type=hidden name='nonce' id='nonce' value='{}'>\n</form>\n<hr />",
        esc(&m.url),
        esc(&b.name),
        esc(&b.nonce)
    );
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_carries_only_the_selection_and_the_body_the_changes() {
        let p = params(
            "b=pool&w=http%3A%2F%2Fh%2Fa&nonce=n1&w_status_D=1",
            "w_lf=2.5&w_status_N=1&w_status_S=0",
        );
        let e = Edit::from_params(&p);
        assert_eq!(
            e,
            Edit {
                weight: Some(250),
                disabled: None,
                drain: Some(true),
                stopped: Some(false),
            }
        );
        assert!(p.contains(&("w".into(), "http://h/a".into())));
        // Apache keeps a loadfactor between 1 and 100.
        let out_of_range = params("", "w_lf=0.5");
        assert_eq!(Edit::from_params(&out_of_range).weight, None);
    }
}
