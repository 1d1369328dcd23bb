//! The OCSP response a TLS server staples (`SSLUseStapling on` with
//! `WsgateStaplingFile`): what wsgate checks before it hands a response to
//! clients — a successful basic response (RFC 6960 §4.2.1) about this very
//! certificate, saying "good", and not past its `nextUpdate`. Its
//! signature is the client's to check, as with any stapled response.

/// Why a response cannot be stapled.
#[derive(Debug, PartialEq, Eq)]
pub enum Unfit {
    /// Not a DER OCSP response, or not one wsgate can read.
    Malformed(&'static str),
    /// The responder answered with an error status (RFC 6960 §4.2.1).
    Status(u8),
    /// It says nothing about this certificate (another serial number).
    OtherCertificate,
    Revoked,
    Unknown,
    /// Past its `nextUpdate` (seconds since 1970).
    Expired(i64),
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::Malformed(what) => write!(f, "not a DER OCSP response ({what})"),
            Unfit::Status(s) => write!(f, "the responder answered with status {s}, not successful"),
            Unfit::OtherCertificate => {
                write!(
                    f,
                    "the response is about another certificate (serial number)"
                )
            }
            Unfit::Revoked => write!(f, "the response says the certificate is revoked"),
            Unfit::Unknown => write!(f, "the responder does not know the certificate"),
            Unfit::Expired(at) => write!(f, "the response expired (nextUpdate {at} s after 1970)"),
        }
    }
}

/// One DER element at the start of `input`: its tag, its contents, and
/// what follows it.
fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), Unfit> {
    let short = Unfit::Malformed("truncated");
    let (&tag, rest) = input.split_first().ok_or(Unfit::Malformed("empty"))?;
    let (&first, rest) = rest.split_first().ok_or(short)?;
    let (len, rest) = match first {
        0..=0x7f => (first as usize, rest),
        0x81..=0x83 => {
            let n = (first & 0x7f) as usize;
            let bytes = rest.get(..n).ok_or(Unfit::Malformed("truncated"))?;
            let len = bytes.iter().fold(0usize, |acc, b| acc << 8 | *b as usize);
            (len, &rest[n..])
        }
        _ => return Err(Unfit::Malformed("length")),
    };
    let contents = rest.get(..len).ok_or(Unfit::Malformed("truncated"))?;
    Ok((tag, contents, &rest[len..]))
}

/// The contents of an element that must have tag `want`.
fn expect<'a>(
    input: &'a [u8],
    want: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), Unfit> {
    match element(input)? {
        (tag, contents, rest) if tag == want => Ok((contents, rest)),
        _ => Err(Unfit::Malformed(what)),
    }
}

const SEQUENCE: u8 = 0x30;
const ENUMERATED: u8 = 0x0a;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const INTEGER: u8 = 0x02;
const GENERALIZED_TIME: u8 = 0x18;
/// id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1.
const OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// Checks `response` for the certificate whose serial number's DER
/// contents are `serial`, at `now` (seconds since 1970).
pub fn check(response: &[u8], serial: &[u8], now: i64) -> Result<(), Unfit> {
    let (outer, _) = expect(response, SEQUENCE, "OCSPResponse")?;
    let (status, rest) = expect(outer, ENUMERATED, "responseStatus")?;
    match status {
        [0] => {}
        [s] => return Err(Unfit::Status(*s)),
        _ => return Err(Unfit::Malformed("responseStatus")),
    }
    let (bytes, _) = expect(rest, 0xa0, "responseBytes")?;
    let (bytes, _) = expect(bytes, SEQUENCE, "ResponseBytes")?;
    let (kind, rest) = expect(bytes, OID, "responseType")?;
    if kind != OCSP_BASIC {
        return Err(Unfit::Malformed("not a basic OCSP response"));
    }
    let (basic, _) = expect(rest, OCTET_STRING, "response")?;
    let (basic, _) = expect(basic, SEQUENCE, "BasicOCSPResponse")?;
    let (data, _) = expect(basic, SEQUENCE, "ResponseData")?;
    // [0] version (optional), responderID ([1] or [2]), producedAt.
    let mut rest = data;
    let (mut tag, _, mut after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
        (tag, _, after) = element(rest)?;
    }
    if tag != 0xa1 && tag != 0xa2 {
        return Err(Unfit::Malformed("responderID"));
    }
    let (_, rest) = expect(after, GENERALIZED_TIME, "producedAt")?;
    let (mut responses, _) = expect(rest, SEQUENCE, "responses")?;
    while !responses.is_empty() {
        let (single, next) = expect(responses, SEQUENCE, "SingleResponse")?;
        responses = next;
        let (cert_id, rest) = expect(single, SEQUENCE, "CertID")?;
        let (_, id) = expect(cert_id, SEQUENCE, "hashAlgorithm")?;
        let (_, id) = expect(id, OCTET_STRING, "issuerNameHash")?;
        let (_, id) = expect(id, OCTET_STRING, "issuerKeyHash")?;
        let (number, _) = expect(id, INTEGER, "serialNumber")?;
        if number != serial {
            continue;
        }
        let (status, _, rest) = element(rest)?;
        match status {
            0x80 => {}
            0xa1 => return Err(Unfit::Revoked),
            0x82 => return Err(Unfit::Unknown),
            _ => return Err(Unfit::Malformed("certStatus")),
        }
        let (_, rest) = expect(rest, GENERALIZED_TIME, "thisUpdate")?;
        if let Ok((0xa0, next, _)) = element(rest) {
            let (time, _) = expect(next, GENERALIZED_TIME, "nextUpdate")?;
            let at = generalized_time(time).ok_or(Unfit::Malformed("nextUpdate"))?;
            if at <= now {
                return Err(Unfit::Expired(at));
            }
        }
        return Ok(());
    }
    Err(Unfit::OtherCertificate)
}

/// `YYYYMMDDHHMMSS[.fff]Z` as seconds since 1970.
fn generalized_time(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let text = text.split('.').next()?;
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days since 1970 of a proleptic Gregorian date (Howard Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times_are_read_as_seconds_since_1970() {
        assert_eq!(generalized_time(b"19700101000000Z"), Some(0));
        assert_eq!(generalized_time(b"20000301000000Z"), Some(951_868_800));
        assert_eq!(generalized_time(b"20261207123456Z"), Some(1_796_646_896));
        assert_eq!(generalized_time(b"20261207123456.5Z"), Some(1_796_646_896));
        assert_eq!(generalized_time(b"20261307123456Z"), None);
        assert_eq!(generalized_time(b"20261207123456"), None);
    }

    /// A response as RFC 6960 lays it out, with `status` for the serial
    /// `07` and a nextUpdate.
    fn response(status: &[u8], next_update: &str) -> Vec<u8> {
        fn wrap(tag: u8, contents: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            if contents.len() < 0x80 {
                out.push(contents.len() as u8);
            } else {
                out.extend([0x82, (contents.len() >> 8) as u8, contents.len() as u8]);
            }
            out.extend_from_slice(contents);
            out
        }
        let time = |t: &str| wrap(GENERALIZED_TIME, t.as_bytes());
        let cert_id = [
            wrap(SEQUENCE, &wrap(OID, &[0x2b, 0x0e, 0x03, 0x02, 0x1a])),
            wrap(OCTET_STRING, &[1; 20]),
            wrap(OCTET_STRING, &[2; 20]),
            wrap(INTEGER, &[7]),
        ]
        .concat();
        let single = [
            wrap(SEQUENCE, &cert_id),
            status.to_vec(),
            time("20261201000000Z"),
            wrap(0xa0, &time(next_update)),
        ]
        .concat();
        let data = [
            wrap(0xa2, &wrap(OCTET_STRING, &[3; 20])),
            time("20261201000000Z"),
            wrap(SEQUENCE, &wrap(SEQUENCE, &single)),
        ]
        .concat();
        let basic = [
            wrap(SEQUENCE, &data),
            wrap(SEQUENCE, &wrap(OID, &[1])),
            wrap(0x03, &[0, 9, 9]),
        ]
        .concat();
        let bytes = [
            wrap(OID, OCSP_BASIC),
            wrap(OCTET_STRING, &wrap(SEQUENCE, &basic)),
        ]
        .concat();
        wrap(
            SEQUENCE,
            &[wrap(ENUMERATED, &[0]), wrap(0xa0, &wrap(SEQUENCE, &bytes))].concat(),
        )
    }

    #[test]
    fn a_good_current_response_for_the_certificate_is_fit() {
        let now = generalized_time(b"20261207000000Z").unwrap();
        let good = response(&[0x80, 0], "20261208000000Z");
        assert_eq!(check(&good, &[7], now), Ok(()));
        assert_eq!(check(&good, &[8], now), Err(Unfit::OtherCertificate));
        let later = generalized_time(b"20261209000000Z").unwrap();
        assert!(matches!(check(&good, &[7], later), Err(Unfit::Expired(_))));
        let revoked = response(&[0xa1, 2, 0x18, 0], "20261208000000Z");
        assert_eq!(check(&revoked, &[7], now), Err(Unfit::Revoked));
        assert_eq!(
            check(&response(&[0x82, 0], "20261208000000Z"), &[7], now),
            Err(Unfit::Unknown)
        );
        // tryLater (3), no responseBytes.
        assert_eq!(
            check(&[0x30, 3, 0x0a, 1, 3], &[7], now),
            Err(Unfit::Status(3))
        );
        assert!(matches!(
            check(b"-----BEGIN", &[7], now),
            Err(Unfit::Malformed(_))
        ));
        assert!(matches!(
            check(&good[..good.len() - 3], &[7], now),
            Err(Unfit::Malformed(_))
        ));
    }
}
