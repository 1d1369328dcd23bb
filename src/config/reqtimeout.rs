//! mod_reqtimeout's `RequestReadTimeout`: how long a client may take over
//! its TLS handshake, its request head and its body.

use std::num::NonZeroU32;
use std::time::Duration;

use super::error::ConfigError;
use super::lexer::Node;
use super::model::identity::{ReadStage, ReadTimeouts};
use super::{At, Builder};

/// A server's `RequestReadTimeout` stages as written; a stage not written
/// is the main server's (mod_reqtimeout's merge), else the module's
/// default.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadTimeoutsDraft {
    handshake: Option<ReadStage>,
    header: Option<ReadStage>,
    body: Option<ReadStage>,
}

impl ReadTimeoutsDraft {
    /// This server's stages over `base`'s (the main server's, merged).
    pub(crate) fn resolve(&self, base: &ReadTimeouts) -> ReadTimeouts {
        ReadTimeouts {
            handshake: self.handshake.unwrap_or(base.handshake),
            header: self.header.unwrap_or(base.header),
            body: self.body.unwrap_or(base.body),
        }
    }
}

/// `RequestReadTimeout [handshake=…] [header=…] [body=…]`, each
/// `TIMEOUT[-MAX][,MinRate=RATE]` in seconds and bytes per second.
pub(super) fn request_read_timeout(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    for word in &node.args {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ConfigError::new(
                o,
                format!("RequestReadTimeout '{word}': Invalid RequestReadTimeout parameter. Parameter must be in the form 'key=value'"),
            ));
        };
        let stage = read_stage(value).map_err(|why| {
            ConfigError::new(o, format!("RequestReadTimeout: {key}={value}: {why}"))
        })?;
        let draft = &mut at.server.read_timeouts;
        let slot = if key.eq_ignore_ascii_case("handshake") {
            &mut draft.handshake
        } else if key.eq_ignore_ascii_case("header") {
            &mut draft.header
        } else if key.eq_ignore_ascii_case("body") {
            &mut draft.body
        } else {
            return Err(ConfigError::new(
                o,
                format!("RequestReadTimeout: {key}={value}: Unknown RequestReadTimeout parameter"),
            )
            .hint("the stages are handshake, header and body"));
        };
        *slot = Some(stage);
    }
    Ok(())
}

/// One stage's value, as mod_reqtimeout reads it (its messages).
fn read_stage(value: &str) -> Result<ReadStage, String> {
    let lower = value.to_ascii_lowercase();
    let (times, rate) = match lower.find(",minrate=") {
        Some(at) => (&value[..at], Some(&value[at + ",minrate=".len()..])),
        None => (value, None),
    };
    let min_rate = match rate {
        None => None,
        Some(r) => {
            let n = whole(r)?;
            Some(NonZeroU32::new(n).ok_or("Minimum data rate must be larger than 0")?)
        }
    };
    let (initial, max) = match times.split_once('-') {
        Some(_) if min_rate.is_none() => {
            return Err("Must set MinRate option if using timeout range".into())
        }
        Some((i, m)) => (whole(i)?, whole(m)?),
        None => (whole(times)?, 0),
    };
    if max != 0 && initial >= max {
        return Err("Maximum timeout must be larger than initial timeout".into());
    }
    let secs = |n: u32| Duration::from_secs(u64::from(n));
    Ok(ReadStage {
        timeout: secs(initial),
        max: (max != 0).then(|| secs(max)),
        min_rate,
    })
}

/// A whole number of seconds or bytes per second.
fn whole(s: &str) -> Result<u32, String> {
    if s.starts_with('-') {
        return Err("Value must be non-negative".into());
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("Value '{s}' not numerical"));
    }
    if digits < s.len() {
        return Err(format!("Cannot parse '{}'", &s[digits..]));
    }
    s.parse().map_err(|_| format!("Value '{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn stages_read_as_mod_reqtimeout_reads_them() {
        let s = read_stage("20-40,MinRate=500").unwrap();
        assert_eq!(s.timeout, secs(20));
        assert_eq!(s.max, Some(secs(40)));
        assert_eq!(s.min_rate.map(NonZeroU32::get), Some(500));
        let s = read_stage("10,minrate=1").unwrap();
        assert_eq!((s.timeout, s.max), (secs(10), None));
        let s = read_stage("0").unwrap();
        assert!(s.is_off());
        assert_eq!(read_stage("5").unwrap().min_rate, None);
    }

    #[test]
    fn stage_errors_say_what_mod_reqtimeout_says() {
        let e = |v: &str| read_stage(v).unwrap_err();
        assert_eq!(e("20-40"), "Must set MinRate option if using timeout range");
        assert_eq!(e("20,MinRate=0"), "Minimum data rate must be larger than 0");
        assert_eq!(
            e("40-20,MinRate=5"),
            "Maximum timeout must be larger than initial timeout"
        );
        assert_eq!(e("abc"), "Value 'abc' not numerical");
        assert_eq!(e("20s"), "Cannot parse 's'");
    }

    #[test]
    fn a_vhost_stage_not_written_is_the_main_servers() {
        let base = ReadTimeouts::default();
        let draft = ReadTimeoutsDraft {
            body: Some(ReadStage::OFF),
            ..Default::default()
        };
        let merged = draft.resolve(&base);
        assert_eq!(merged.header, base.header);
        assert!(merged.body.is_off());
    }
}
