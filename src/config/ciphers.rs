//! `SSLCipherSuite` in OpenSSL's cipher-list syntax, evaluated over the
//! suites wsgate (rustls) speaks.
//!
//! TLS 1.2 lists are OpenSSL's: items separated by `:`, `,` or spaces; an
//! item is a suite name (`ECDHE-RSA-AES128-GCM-SHA256`) or aliases joined
//! by `+` that must all hold (`EECDH+AESGCM`); a bare item adds what it
//! matches (in OpenSSL's own order, keeping suites already listed where
//! they are), `-` removes, `!` removes for good, `+` moves to the end;
//! `@STRENGTH` sorts by key length. TLS 1.3 lists (`SSLCipherSuite TLSv1.3
//! …`) are plain names. What a list names that rustls does not have (DHE,
//! CBC, CCM, RC4…) is left out and reported once; nothing left at all is
//! an error.

use super::model::CipherSuite::{self, *};

/// Every TLS 1.2 suite wsgate speaks, in OpenSSL's default preference
/// order (the order a bare alias adds them in).
const TLS12: [CipherSuite; 6] = [
    EcdheEcdsaAes256Gcm,
    EcdheRsaAes256Gcm,
    EcdheEcdsaChacha20,
    EcdheRsaChacha20,
    EcdheEcdsaAes128Gcm,
    EcdheRsaAes128Gcm,
];

/// The TLS 1.3 suites, in OpenSSL's default order.
pub const TLS13: [CipherSuite; 3] = [Tls13Aes256Gcm, Tls13Chacha20, Tls13Aes128Gcm];

impl CipherSuite {
    /// OpenSSL's name (TLS 1.3: the IANA name OpenSSL uses).
    pub fn openssl_name(self) -> &'static str {
        match self {
            EcdheEcdsaAes128Gcm => "ECDHE-ECDSA-AES128-GCM-SHA256",
            EcdheEcdsaAes256Gcm => "ECDHE-ECDSA-AES256-GCM-SHA384",
            EcdheEcdsaChacha20 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            EcdheRsaAes128Gcm => "ECDHE-RSA-AES128-GCM-SHA256",
            EcdheRsaAes256Gcm => "ECDHE-RSA-AES256-GCM-SHA384",
            EcdheRsaChacha20 => "ECDHE-RSA-CHACHA20-POLY1305",
            Tls13Aes128Gcm => "TLS_AES_128_GCM_SHA256",
            Tls13Aes256Gcm => "TLS_AES_256_GCM_SHA384",
            Tls13Chacha20 => "TLS_CHACHA20_POLY1305_SHA256",
        }
    }

    fn ecdsa(self) -> bool {
        matches!(
            self,
            EcdheEcdsaAes128Gcm | EcdheEcdsaAes256Gcm | EcdheEcdsaChacha20
        )
    }

    fn bits(self) -> u32 {
        match self {
            EcdheEcdsaAes128Gcm | EcdheRsaAes128Gcm | Tls13Aes128Gcm => 128,
            _ => 256,
        }
    }

    fn aes128(self) -> bool {
        matches!(self, EcdheEcdsaAes128Gcm | EcdheRsaAes128Gcm)
    }

    fn aes256(self) -> bool {
        matches!(self, EcdheEcdsaAes256Gcm | EcdheRsaAes256Gcm)
    }

    fn chacha(self) -> bool {
        matches!(self, EcdheEcdsaChacha20 | EcdheRsaChacha20)
    }
}

/// Which of the TLS 1.2 suites an OpenSSL alias or suite name stands for;
/// `None`: a word OpenSSL may know that names none of them (or a typo).
fn alias(word: &str) -> Option<Vec<CipherSuite>> {
    let w = word.to_ascii_uppercase();
    let all = || TLS12.to_vec();
    let only = |f: fn(CipherSuite) -> bool| TLS12.iter().copied().filter(|s| f(*s)).collect();
    if let Some(s) = TLS12.iter().find(|s| s.openssl_name() == w) {
        return Some(vec![*s]);
    }
    Some(match w.as_str() {
        // Every suite here is ECDHE, AEAD, TLS 1.2, 128 bits or more.
        "ALL" | "DEFAULT" | "HIGH" | "TLSV1.2" | "KECDHE" | "KEECDH" | "ECDHE" | "EECDH"
        | "ECDH" | "AEAD" => all(),
        "AECDSA" | "ECDSA" => only(CipherSuite::ecdsa),
        "ARSA" => only(|s| !s.ecdsa()),
        "AES" => only(|s| !s.chacha()),
        "AESGCM" => only(|s| !s.chacha()),
        "AES128" => only(CipherSuite::aes128),
        "AES256" => only(CipherSuite::aes256),
        "CHACHA20" => only(CipherSuite::chacha),
        "SHA256" => only(|s| !s.aes256()),
        "SHA384" => only(CipherSuite::aes256),
        _ => return None,
    })
}

/// A TLS 1.2 list evaluated: the suites in order, and the items that
/// matched none of them (for the one warning).
pub fn tls12(list: &str) -> (Vec<CipherSuite>, Vec<String>) {
    let mut chosen: Vec<CipherSuite> = Vec::new();
    let mut killed: Vec<CipherSuite> = Vec::new();
    let mut unmatched = Vec::new();
    for item in list.split([':', ',', ' ']).filter(|i| !i.is_empty()) {
        if item.eq_ignore_ascii_case("@STRENGTH") {
            chosen.sort_by_key(|s| std::cmp::Reverse(s.bits()));
            continue;
        }
        if item.starts_with('@') {
            // @SECLEVEL=n: OpenSSL's floor, which every suite here clears.
            continue;
        }
        let (op, body) = match item.as_bytes()[0] {
            op @ (b'!' | b'-' | b'+') => (op, &item[1..]),
            _ => (b' ', item),
        };
        // Aliases joined by `+` must all hold.
        let mut matched: Option<Vec<CipherSuite>> = None;
        for part in body.split('+') {
            let set = alias(part).unwrap_or_default();
            matched = Some(match matched {
                None => set,
                Some(m) => m.into_iter().filter(|s| set.contains(s)).collect(),
            });
        }
        let matched = matched.unwrap_or_default();
        if matched.is_empty() {
            if op == b' ' {
                unmatched.push(item.to_string());
            }
            continue;
        }
        match op {
            b'!' => {
                chosen.retain(|s| !matched.contains(s));
                killed.extend(&matched);
            }
            b'-' => chosen.retain(|s| !matched.contains(s)),
            b'+' => {
                let (moved, kept): (Vec<_>, Vec<_>) =
                    chosen.iter().partition(|s| matched.contains(s));
                chosen = kept.into_iter().chain(moved).collect();
            }
            _ => {
                for s in matched {
                    if !chosen.contains(&s) && !killed.contains(&s) {
                        chosen.push(s);
                    }
                }
            }
        }
    }
    (chosen, unmatched)
}

/// A TLS 1.3 list (`TLS_AES_128_GCM_SHA256:…`): the suites in order, and
/// the names wsgate does not have.
pub fn tls13(list: &str) -> (Vec<CipherSuite>, Vec<String>) {
    let mut chosen = Vec::new();
    let mut unmatched = Vec::new();
    for name in list.split([':', ',', ' ']).filter(|i| !i.is_empty()) {
        match TLS13
            .iter()
            .find(|s| s.openssl_name().eq_ignore_ascii_case(name))
        {
            Some(s) if !chosen.contains(s) => chosen.push(*s),
            Some(_) => {}
            None => unmatched.push(name.to_string()),
        }
    }
    (chosen, unmatched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> (Vec<&'static str>, Vec<String>) {
        let (suites, left) = tls12(list);
        (suites.iter().map(|s| s.openssl_name()).collect(), left)
    }

    #[test]
    fn mozillas_intermediate_list_keeps_its_order_and_reports_the_dhe_suites() {
        let (got, left) = names("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384");
        assert_eq!(
            got,
            [
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ]
        );
        assert_eq!(
            left,
            ["DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384"]
        );
    }

    #[test]
    fn aliases_combine_remove_and_move_as_in_openssl() {
        // Debian's default, and the JupyterHub recipe's older list.
        assert_eq!(names("HIGH:!aNULL").0.len(), 6);
        let (got, left) = names("EECDH+AESGCM:EDH+AESGCM:AES256+EECDH:AES256+EDH");
        assert_eq!(
            got,
            [
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ]
        );
        assert_eq!(left, ["EDH+AESGCM", "AES256+EDH"]);
        assert_eq!(names("aRSA:-AES").0, ["ECDHE-RSA-CHACHA20-POLY1305"]);
        // `!` removes for good: a later item does not bring it back.
        assert_eq!(names("!CHACHA20:ALL").0.len(), 4);
        // `-` removes until something adds it again.
        assert_eq!(names("-CHACHA20:ALL").0.len(), 6);
        // `+` moves to the end; @STRENGTH sorts by key length, stably.
        let (got, _) = names("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:+AES128");
        assert_eq!(
            got,
            ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
        let (got, _) = names("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:@STRENGTH");
        assert_eq!(
            got,
            ["ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
        // Names are OpenSSL's, in any case; nothing wsgate has: empty.
        assert_eq!(names("ecdhe-rsa-aes128-gcm-sha256").0.len(), 1);
        assert_eq!(names("DHE-RSA-AES128-SHA:RC4").0.len(), 0);
    }

    /// OpenSSL itself (the `openssl` command, as Apache's mod_ssl links
    /// it) orders the same lists the same way, over the suites both have.
    #[test]
    fn lists_evaluate_as_openssl_evaluates_them() {
        let Ok(out) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "openssl is needed under CI"
            );
            eprintln!("SKIP: no openssl command");
            return;
        };
        assert!(out.status.success());
        for list in [
            "HIGH:!aNULL",
            "ALL",
            "EECDH+AESGCM:EDH+AESGCM:AES256+EECDH:AES256+EDH",
            "aRSA:-AES",
            "ECDSA+AES:RSA+CHACHA20",
            "AES128:CHACHA20:AES256",
            "CHACHA20:!ECDSA:AESGCM",
            "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:@STRENGTH",
            "ALL:+AES256",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384",
        ] {
            let out = std::process::Command::new("openssl")
                .args(["ciphers", list])
                .output()
                .unwrap();
            let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .trim()
                .split(':')
                .filter(|n| TLS12.iter().any(|s| s.openssl_name() == *n))
                .map(str::to_string)
                .collect();
            assert_eq!(names(list).0, theirs, "{list}");
        }
    }

    #[test]
    fn tls13_lists_are_plain_names() {
        let (got, left) =
            tls13("TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
        assert_eq!(got, [Tls13Aes128Gcm, Tls13Chacha20]);
        assert_eq!(left, ["TLS_AES_128_CCM_SHA256"]);
    }
}
