//! mod_proxy's part of the server-status page (`ProxyStatus On|Full`): a
//! table per balancer and its members, and their lines in `?auto`, as
//! mod_proxy's status hook writes them.

use std::fmt::Write;

use super::balancer_manager::BalancerView;

/// The HTML tables, with mod_proxy's legend after them.
pub fn html(o: &mut String, balancers: &[BalancerView]) {
    if balancers.is_empty() {
        return;
    }
    for b in balancers {
        let _ = write!(
            o,
            "<hr />\n<h1>Proxy LoadBalancer Status for balancer://{}</h1>\n\n",
            esc(&b.name)
        );
        o.push_str(
            "\n\n<table border=\"0\"><tr><th>SSes</th><th>Timeout</th><th>Method</th></tr>\n<tr>",
        );
        match &b.sticky {
            Some(s) => {
                let _ = write!(o, "<td>{}", esc(&s.replace('|', " | ")));
            }
            None => o.push_str("<td> - "),
        }
        // wsgate's balancers have no `timeout=` (waiting for a member).
        let _ = writeln!(o, "</td><td>0</td><td>{}</td>", b.method);
        o.push_str("</table>\n");
        o.push_str("\n\n<table border=\"0\"><tr><th>Sch</th><th>Host</th><th>Stat</th><th>Route</th><th>Redir</th><th>F</th><th>Set</th><th>Acc</th><th>Busy</th><th>Wr</th><th>Rd</th></tr>\n");
        for m in &b.members {
            let (scheme, host) = scheme_and_host(&m.url);
            let _ = write!(
                o,
                "<tr>\n<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\n</tr>\n",
                esc(scheme),
                esc(host),
                m.status,
                esc(&m.route),
                esc(&m.redirect),
                m.weight as f64 / 100.0,
                m.lbset,
                m.elected,
                m.busy,
                strfsize(m.traffic.saturating_sub(m.read)),
                strfsize(m.read),
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("<hr /><table>\n<tr><th>SSes</th><td>Sticky session name</td></tr>\n<tr><th>Timeout</th><td>Balancer Timeout</td></tr>\n<tr><th>Sch</th><td>Connection scheme</td></tr>\n<tr><th>Host</th><td>Backend Hostname</td></tr>\n<tr><th>Stat</th><td>Worker status</td></tr>\n<tr><th>Route</th><td>Session Route</td></tr>\n<tr><th>Redir</th><td>Session Route Redirection</td></tr>\n<tr><th>F</th><td>Load Balancer Factor</td></tr>\n<tr><th>Acc</th><td>Number of uses</td></tr>\n<tr><th>Wr</th><td>Number of bytes transferred</td></tr>\n<tr><th>Rd</th><td>Number of bytes read</td></tr>\n</table>");
}

/// The `?auto` lines.
pub fn auto(o: &mut String, balancers: &[BalancerView]) {
    for (i, b) in balancers.iter().enumerate() {
        let _ = writeln!(o, "ProxyBalancer[{i}]Name: balancer://{}", b.name);
        for (n, m) in b.members.iter().enumerate() {
            let w = format!("ProxyBalancer[{i}]Worker[{n}]");
            let _ = writeln!(o, "{w}Name: {}", m.url);
            let _ = writeln!(o, "{w}Status: {}", m.status);
            let _ = writeln!(o, "{w}Elected: {}", m.elected);
            let _ = writeln!(o, "{w}Busy: {}", m.busy);
            let _ = writeln!(o, "{w}Sent: {}K", m.traffic.saturating_sub(m.read) >> 10);
            let _ = writeln!(o, "{w}Rcvd: {}K", m.read >> 10);
        }
    }
}

/// A member url's scheme and host name (without port), as mod_proxy keeps
/// them.
fn scheme_and_host(url: &str) -> (&str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split('/').next().unwrap_or("");
    let host = if authority.starts_with('[') {
        authority.find(']').map_or(authority, |e| &authority[1..e])
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    (scheme, host)
}

fn esc(s: &str) -> String {
    crate::http::write::escape_html(s)
}

/// `apr_strfsize`: a size in four characters (`  0 `, `973 `, `1.2K`,
/// ` 12M`).
pub fn strfsize(size: u64) -> String {
    if size < 973 {
        return format!("{size:3} ");
    }
    let mut size = size;
    for unit in ['K', 'M', 'G', 'T', 'P', 'E'] {
        let mut remain = size & 1023;
        size >>= 10;
        if size >= 973 {
            continue;
        }
        if size < 9 || (size == 9 && remain < 973) {
            remain = (remain * 5 + 256) / 512;
            if remain >= 10 {
                size += 1;
                remain = 0;
            }
            return format!("{size}.{remain}{unit}");
        }
        if remain >= 512 {
            size += 1;
        }
        return format!("{size:3}{unit}");
    }
    format!("{size:3}E")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::balancer_manager::MemberView;

    #[test]
    fn sizes_are_written_as_apr_strfsize_writes_them() {
        assert_eq!(strfsize(0), "  0 ");
        assert_eq!(strfsize(972), "972 ");
        assert_eq!(strfsize(1024), "1.0K");
        assert_eq!(strfsize(1536), "1.5K");
        assert_eq!(strfsize(20 * 1024), " 20K");
        assert_eq!(strfsize(5 * 1024 * 1024), "5.0M");
    }

    #[test]
    fn each_balancer_gets_mod_proxys_tables_and_auto_lines() {
        let b = BalancerView {
            name: "app".into(),
            nonce: String::new(),
            sticky: Some("ROUTEID".into()),
            nofailover: false,
            failover_attempts: 1,
            method: "byrequests",
            path: "/b/".into(),
            members: vec![MemberView {
                url: "http://127.0.0.1:8080/m1".into(),
                route: "r1".into(),
                redirect: String::new(),
                weight: 200,
                lbset: 0,
                status: "Init Ok ".into(),
                elected: 3,
                busy: 0,
                load: 0,
                traffic: 3000,
                read: 1000,
                tunnels: 0,
            }],
        };
        let mut page = String::new();
        html(&mut page, std::slice::from_ref(&b));
        assert!(page.starts_with("<hr />\n<h1>Proxy LoadBalancer Status for balancer://app</h1>"));
        assert!(page.contains("<tr><td>ROUTEID</td><td>0</td><td>byrequests</td>\n</table>"));
        assert!(page.contains("<td>http</td><td>127.0.0.1</td><td>Init Ok </td><td>r1</td><td></td><td>2.00</td><td>0</td><td>3</td><td>0</td><td>2.0K</td><td>1.0K</td>"), "{page}");
        let mut auto_text = String::new();
        auto(&mut auto_text, &[b]);
        assert_eq!(
            auto_text,
            "ProxyBalancer[0]Name: balancer://app\nProxyBalancer[0]Worker[0]Name: http://127.0.0.1:8080/m1\nProxyBalancer[0]Worker[0]Status: Init Ok \nProxyBalancer[0]Worker[0]Elected: 3\nProxyBalancer[0]Worker[0]Busy: 0\nProxyBalancer[0]Worker[0]Sent: 1K\nProxyBalancer[0]Worker[0]Rcvd: 0K\n"
        );
    }
}
