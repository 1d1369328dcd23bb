//! What wsgate's own answers say about it: the `Server` field
//! (`ServerTokens`) and the signature line of its pages (`ServerSignature`),
//! which names the host and port the client used, as Apache's
//! `ap_psignature` does with `UseCanonicalName Off`.

use crate::config::model::identity::{ServerSignature, NO_ADMIN};
use crate::config::{Config, Server};
use crate::http::host_without_port;
use crate::http::write::{Footer, Signed};

/// The signature of an answer from `server`, to a request whose `Host` is
/// `host` (`None` before a head was read, or without one).
pub fn signed<'a>(
    config: &'a Config,
    server: &'a Server,
    host: Option<&str>,
    https: bool,
) -> Signed<'a> {
    signed_as(config, server, host, https, server.signature.mode)
}

/// [`signed`] with `mode` for the server's `ServerSignature` (a
/// `<Location>`'s).
pub fn signed_as<'a>(
    config: &'a Config,
    server: &'a Server,
    host: Option<&str>,
    https: bool,
    mode: ServerSignature,
) -> Signed<'a> {
    let sig = &server.signature;
    let footer = (mode != ServerSignature::Off).then(|| {
        let given = host.map(str::trim).filter(|h| !h.is_empty());
        let name = given.map(host_without_port).filter(|h| !h.is_empty());
        // The Host's port, else the scheme's (ServerName's port is not
        // kept: wsgate reads the name only).
        let port = given
            .and_then(|h| h.strip_prefix(name.unwrap_or("")))
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|p| p.parse().ok())
            .unwrap_or(if https { 443 } else { 80 });
        Footer {
            host: name.unwrap_or(&server.server_name).to_ascii_lowercase(),
            port,
            mailto: (mode == ServerSignature::Email)
                .then(|| sig.admin.as_deref().unwrap_or(NO_ADMIN)),
        }
    });
    Signed {
        banner: &config.banner,
        footer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::from_str(
            &format!("Listen 127.0.0.1:0\nServerName main.test\n{text}"),
            "t.conf",
        )
        .expect("a valid configuration")
    }

    #[test]
    fn the_line_names_the_hosts_name_and_port_or_the_servers() {
        let c = config("ServerSignature On");
        let s = signed(&c, &c.main, Some("H.test:8080"), false);
        assert_eq!(
            s.footer_html(""),
            format!(
                "<address>{} Server at h.test Port 8080</address>\n",
                c.banner
            )
        );
        let s = signed(&c, &c.main, None, true);
        assert!(s.footer_html("").contains("Server at main.test Port 443"));
        let s = signed(&c, &c.main, Some("[::1]"), false);
        assert!(s.footer_html("").contains("Server at [::1] Port 80"));
    }

    #[test]
    fn email_links_the_server_admin_or_apaches_no_address() {
        let c = config("ServerSignature EMail\n<VirtualHost *:0>\nServerName v.test\nServerAdmin ops@v.test\n</VirtualHost>");
        let s = signed(&c, &c.main, Some("a.test"), false);
        assert!(s
            .footer_html("")
            .contains("<a href=\"mailto:[no address given]\">a.test</a>"));
        let s = signed(&c, &c.vhosts[0], Some("v.test"), false);
        assert!(s
            .footer_html("")
            .contains("<a href=\"mailto:ops@v.test\">v.test</a>"));
    }

    #[test]
    fn off_is_no_line_and_the_banner_follows_server_tokens() {
        let c = config("ServerTokens Prod");
        let s = signed(&c, &c.main, Some("a.test"), false);
        assert_eq!(s.banner, "wsgate");
        assert!(s.footer.is_none());
    }
}
