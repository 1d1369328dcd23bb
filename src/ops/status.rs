//! mod_status's page (`SetHandler server-status`), from a snapshot of the
//! server's counters: the HTML page an operator reads, with a table of the
//! open tunnels that no Apache page has, and `?auto`, Apache's machine
//! format line for line, so that existing collectors read it.
//!
//! Pure: the caller (`proxy::handler`) takes the snapshot.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::tunnels::Entry;

/// What the page shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The name the client used (Host without port), else ServerName.
    pub host: String,
    /// The address the request reached.
    pub local_ip: String,
    pub version: String,
    /// When the binary was built (its file's time).
    pub built: Option<SystemTime>,
    pub now: SystemTime,
    /// The last start or reload.
    pub restarted: SystemTime,
    pub reloads: u64,
    pub load: [f64; 3],
    /// User, system, children's user and system CPU seconds.
    pub cpu: [f64; 4],
    pub extended: bool,
    pub requests: u64,
    pub kbytes: u64,
    pub duration_ms: u64,
    /// Client connections open, tunnels included.
    pub connections: usize,
    pub tunnels_open: usize,
    pub max_connections: Option<usize>,
    /// The open tunnels (empty when the registry is off).
    pub tunnels: Vec<Entry>,
    /// The signature line, with its rule (`ServerSignature`; empty when Off).
    pub signature: String,
    /// The balancers mod_proxy's part shows (`ProxyStatus`; empty when Off).
    pub balancers: Vec<super::balancer_manager::BalancerView>,
}

impl Snapshot {
    fn uptime(&self) -> u64 {
        self.now
            .duration_since(self.restarted)
            .map_or(0, |d| d.as_secs())
    }

    /// CPU seconds used per second up, in percent (both pages show it).
    fn cpu_load(&self, up: u64) -> Option<f64> {
        let cpu: f64 = self.cpu.iter().sum();
        (cpu > 0.0 && up > 0).then(|| cpu / up as f64 * 100.0)
    }

    /// Requests and bytes per second up.
    fn per_second(&self, up: u64) -> Option<(f64, f64)> {
        (up > 0).then(|| {
            let up = up as f64;
            (self.requests as f64 / up, self.bytes() / up)
        })
    }

    /// Bytes and milliseconds per request.
    fn per_request(&self) -> Option<(f64, f64)> {
        (self.requests > 0).then(|| {
            let count = self.requests as f64;
            (self.bytes() / count, self.duration_ms as f64 / count)
        })
    }

    fn bytes(&self) -> f64 {
        1024.0 * self.kbytes as f64
    }

    fn idle(&self) -> usize {
        self.max_connections
            .map_or(0, |m| m.saturating_sub(self.connections))
    }
}

/// `?auto`: mod_status's short report, field for field.
pub fn auto(s: &Snapshot) -> String {
    let mut o = String::with_capacity(1024);
    let up = s.uptime();
    let _ = writeln!(o, "{}", s.host);
    let _ = writeln!(o, "ServerVersion: {}", s.version);
    let _ = writeln!(o, "ServerMPM: event");
    let _ = writeln!(o, "Server Built: {}", built(s));
    let _ = writeln!(o, "CurrentTime: {}", apache_time(s.now));
    let _ = writeln!(o, "RestartTime: {}", apache_time(s.restarted));
    let _ = writeln!(o, "ParentServerConfigGeneration: {}", s.reloads + 1);
    let _ = writeln!(o, "ParentServerMPMGeneration: {}", s.reloads);
    let _ = writeln!(o, "ServerUptimeSeconds: {up}");
    let _ = writeln!(o, "ServerUptime:{}", show_time(up));
    let _ = writeln!(
        o,
        "Load1: {:.2}\nLoad5: {:.2}\nLoad15: {:.2}",
        s.load[0], s.load[1], s.load[2]
    );
    if s.extended {
        let _ = writeln!(o, "Total Accesses: {}", s.requests);
        let _ = writeln!(o, "Total kBytes: {}", s.kbytes);
        let _ = writeln!(o, "Total Duration: {}", s.duration_ms);
        let [u, sy, cu, cs] = s.cpu;
        let _ = writeln!(
            o,
            "CPUUser: {}\nCPUSystem: {}\nCPUChildrenUser: {}\nCPUChildrenSystem: {}",
            g(u, 6),
            g(sy, 6),
            g(cu, 6),
            g(cs, 6)
        );
        if let Some(load) = s.cpu_load(up) {
            let _ = writeln!(o, "CPULoad: {}", g(load, 6));
        }
        let _ = writeln!(o, "Uptime: {up}");
        if let Some((requests, bytes)) = s.per_second(up) {
            let _ = writeln!(o, "ReqPerSec: {}", g(requests, 6));
            let _ = writeln!(o, "BytesPerSec: {}", g(bytes, 6));
        }
        if let Some((bytes, ms)) = s.per_request() {
            let _ = writeln!(o, "BytesPerReq: {}", g(bytes, 6));
            let _ = writeln!(o, "DurationPerReq: {}", g(ms, 6));
        }
    }
    let _ = writeln!(
        o,
        "BusyWorkers: {}\nGracefulWorkers: 0\nIdleWorkers: {}",
        s.connections,
        s.idle()
    );
    let _ = writeln!(o, "Processes: 1\nStopping: 0");
    let _ = writeln!(o, "ConnsTotal: {}", s.connections);
    let _ = writeln!(
        o,
        "ConnsAsyncWaitIO: 0\nConnsAsyncWriting: 0\nConnsAsyncKeepAlive: 0\nConnsAsyncClosing: 0"
    );
    let _ = writeln!(
        o,
        "Scoreboard: {}{}",
        "W".repeat(s.connections),
        "_".repeat(s.idle())
    );
    super::proxy_status::auto(&mut o, &s.balancers);
    o
}

/// The HTML page: Apache's header and totals, then the open tunnels.
pub fn html(s: &Snapshot) -> String {
    let mut o = String::with_capacity(4096 + 256 * s.tunnels.len());
    let up = s.uptime();
    o.push_str("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\" \"http://www.w3.org/TR/html4/strict.dtd\">\n<html><head>\n<title>wsgate Status</title>\n<style>table.tunnels td, table.tunnels th { padding: 0 0.6em; text-align: left } table.tunnels td.n { text-align: right }</style>\n</head><body>\n");
    let _ = write!(
        o,
        "<h1>wsgate Server Status for {} (via {})</h1>\n\n",
        escape(&s.host),
        escape(&s.local_ip)
    );
    let _ = writeln!(o, "<dl><dt>Server Version: {}</dt>", escape(&s.version));
    let _ = writeln!(o, "<dt>Server MPM: event</dt>");
    let _ = writeln!(o, "<dt>Server Built: {}\n</dt></dl><hr /><dl>", built(s));
    let _ = writeln!(o, "<dt>Current Time: {}</dt>", apache_time(s.now));
    let _ = writeln!(o, "<dt>Restart Time: {}</dt>", apache_time(s.restarted));
    let _ = writeln!(
        o,
        "<dt>Parent Server Config. Generation: {}</dt>",
        s.reloads + 1
    );
    let _ = writeln!(o, "<dt>Parent Server MPM Generation: {}</dt>", s.reloads);
    let _ = writeln!(o, "<dt>Server uptime: {}</dt>", show_time(up));
    let _ = writeln!(
        o,
        "<dt>Server load: {:.2} {:.2} {:.2}</dt>",
        s.load[0], s.load[1], s.load[2]
    );
    if s.extended {
        let _ = writeln!(
            o,
            "<dt>Total accesses: {} - Total Traffic: {} - Total Duration: {}</dt>",
            s.requests,
            kbyte_out(s.kbytes),
            s.duration_ms
        );
        let [u, sy, cu, cs] = s.cpu;
        let _ = write!(
            o,
            "<dt>CPU Usage: u{} s{} cu{} cs{}",
            g(u, 6),
            g(sy, 6),
            g(cu, 6),
            g(cs, 6)
        );
        match s.cpu_load(up) {
            Some(load) => {
                let _ = writeln!(o, " - {}% CPU load</dt>", g(load, 3));
            }
            None => o.push_str("</dt>\n"),
        }
        o.push_str("<dt>");
        let per_second = s.per_second(up);
        if let Some((requests, bytes)) = per_second {
            let _ = write!(
                o,
                "{} requests/sec - {}/second",
                g(requests, 3),
                byte_out(bytes)
            );
        }
        if let Some((bytes, ms)) = s.per_request() {
            if per_second.is_some() {
                o.push_str(" - ");
            }
            let _ = write!(o, "{}/request - {} ms/request", byte_out(bytes), g(ms, 6));
        }
        o.push_str("</dt>\n");
    }
    let _ = writeln!(
        o,
        "<dt>{} requests currently being processed, 0 workers gracefully restarting, {} idle workers</dt>",
        s.connections,
        s.idle()
    );
    let _ = writeln!(o, "<dt>{} tunnels open</dt>\n</dl>", s.tunnels_open);
    tunnel_table(&mut o, s);
    super::proxy_status::html(&mut o, &s.balancers);
    o.push_str(&s.signature);
    o.push_str("</body></html>\n");
    o
}

/// wsgate's own part: one row per open tunnel.
fn tunnel_table(o: &mut String, s: &Snapshot) {
    let _ = writeln!(o, "<hr /><h2>Open tunnels ({})</h2>", s.tunnels.len());
    o.push_str("<table class=\"tunnels\" border=\"0\">\n<tr><th>Client</th><th>VHost</th><th>Route</th><th>Backend</th><th>Age</th><th>Bytes in</th><th>Bytes out</th></tr>\n");
    let now = std::time::Instant::now();
    for t in &s.tunnels {
        let age = now.saturating_duration_since(t.opened);
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            t.client,
            escape(&t.vhost),
            escape(&t.route),
            escape(&t.backend),
            age_text(age),
            t.bytes_up,
            t.bytes_down
        );
    }
    o.push_str("</table>\n<p>Bytes in: from the client to the backend; bytes out: from the backend to the client; both as of the tunnel's last rest (a tunnel quiet for a few seconds is set aside and its counts noted).</p>\n");
}

fn age_text(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [
        ("d", s / 86400),
        ("h", s / 3600 % 24),
        ("m", s / 60 % 60),
        ("s", s % 60),
    ] {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

fn built(s: &Snapshot) -> String {
    s.built.map_or_else(
        || "unknown".to_string(),
        |t| {
            let c = civil(t);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            )
        },
    )
}

/// mod_status's uptime text: ` 1 day 2 hours 3 seconds` (leading space,
/// zero parts left out).
pub fn show_time(secs: u64) -> String {
    let mut o = String::new();
    let parts = [
        (secs / 86400, "day"),
        (secs / 3600 % 24, "hour"),
        (secs / 60 % 60, "minute"),
        (secs % 60, "second"),
    ];
    for (n, unit) in parts {
        if n > 0 {
            let _ = write!(o, " {n} {unit}{}", if n == 1 { "" } else { "s" });
        }
    }
    o
}

fn byte_out(bytes: f64) -> String {
    const K: f64 = 1024.0;
    if bytes < 5.0 * K {
        format!("{} B", bytes as i64)
    } else if bytes < K * K / 2.0 {
        format!("{:.1} kB", bytes / K)
    } else if bytes < K * K * K / 2.0 {
        format!("{:.1} MB", bytes / K / K)
    } else {
        format!("{:.1} GB", bytes / K / K / K)
    }
}

fn kbyte_out(kbytes: u64) -> String {
    let k = kbytes as f64;
    if kbytes < 1024 {
        format!("{kbytes} kB")
    } else if kbytes < 1024 * 1024 {
        format!("{:.1} MB", k / 1024.0)
    } else {
        format!("{:.1} GB", k / 1024.0 / 1024.0)
    }
}

/// C's `%.{p}g` as APR prints it: `p` significant digits, trailing zeros
/// dropped, and no `0` before the point (`.125`).
pub fn g(x: f64, p: usize) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".into();
    }
    let sci = format!("{:.*e}", p.saturating_sub(1), x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= p as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim(mantissa), exp.abs());
    }
    let decimals = (p as i32 - 1 - exp).max(0) as usize;
    let fixed = trim(&format!("{x:.decimals$}"));
    match fixed.strip_prefix("0.") {
        Some(rest) => format!(".{rest}"),
        None => fixed,
    }
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday.
    weekday: u32,
}

/// A time's UTC calendar date (H. Hinnant's days-to-civil).
fn civil(t: SystemTime) -> Civil {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem / 60 % 60) as u32,
        second: (rem % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

/// Apache's `DEFAULT_TIME_FORMAT` (`%A, %d-%b-%Y %H:%M:%S %Z`), in UTC.
pub fn apache_time(t: SystemTime) -> String {
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(t);
    format!(
        "{}, {:02}-{}-{} {:02}:{:02}:{:02} UTC",
        DAYS[c.weekday as usize],
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// Text made safe inside HTML (and its attributes).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_printed_as_apr_prints_percent_g() {
        assert_eq!(g(0.125, 6), ".125");
        assert_eq!(g(1.0 / 7.0, 6), ".142857");
        assert_eq!(g(8.0, 6), "8");
        assert_eq!(g(9216.0, 6), "9216");
        assert_eq!(g(1170.2857142, 6), "1170.29");
        assert_eq!(g(1234567.0, 6), "1.23457e+06");
        assert_eq!(g(9.0, 3), "9");
        assert_eq!(g(0.0, 6), "0");
    }

    fn snapshot(extended: bool) -> Snapshot {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_622_209);
        Snapshot {
            host: "proxy.test".into(),
            local_ip: "127.0.0.1".into(),
            version: "wsgate/0".into(),
            built: None,
            now: t + Duration::from_secs(8),
            restarted: t,
            reloads: 0,
            load: [0.4, 1.0, 1.22],
            cpu: [0.0; 4],
            extended,
            requests: 8,
            kbytes: 9,
            duration_ms: 1,
            connections: 1,
            tunnels_open: 0,
            max_connections: Some(40),
            tunnels: Vec::new(),
            signature: String::new(),
            balancers: Vec::new(),
        }
    }

    /// The field names of Apache 2.4.71's `?auto` (ExtendedStatus On, no
    /// CPU time used), in its order.
    const APACHE_AUTO: &[&str] = &[
        "ServerVersion",
        "ServerMPM",
        "Server Built",
        "CurrentTime",
        "RestartTime",
        "ParentServerConfigGeneration",
        "ParentServerMPMGeneration",
        "ServerUptimeSeconds",
        "ServerUptime",
        "Load1",
        "Load5",
        "Load15",
        "Total Accesses",
        "Total kBytes",
        "Total Duration",
        "CPUUser",
        "CPUSystem",
        "CPUChildrenUser",
        "CPUChildrenSystem",
        "Uptime",
        "ReqPerSec",
        "BytesPerSec",
        "BytesPerReq",
        "DurationPerReq",
        "BusyWorkers",
        "GracefulWorkers",
        "IdleWorkers",
        "Processes",
        "Stopping",
        "ConnsTotal",
        "ConnsAsyncWaitIO",
        "ConnsAsyncWriting",
        "ConnsAsyncKeepAlive",
        "ConnsAsyncClosing",
        "Scoreboard",
    ];

    fn names(auto: &str) -> Vec<&str> {
        auto.lines()
            .skip(1)
            .map(|l| l.split(':').next().unwrap())
            .collect()
    }

    #[test]
    fn auto_has_apaches_fields_in_apaches_order() {
        let auto = super::auto(&snapshot(true));
        assert_eq!(names(&auto), APACHE_AUTO, "{auto}");
        assert!(auto.starts_with("proxy.test\n"));
        assert!(
            auto.contains(
                "\nReqPerSec: 1\nBytesPerSec: 1152\nBytesPerReq: 1152\nDurationPerReq: .125\n"
            ),
            "{auto}"
        );
        assert!(
            auto.contains("\nBusyWorkers: 1\nGracefulWorkers: 0\nIdleWorkers: 39\n"),
            "{auto}"
        );
    }

    #[test]
    fn extended_status_off_leaves_out_the_totals_as_apache() {
        let auto = super::auto(&snapshot(false));
        let totals = [
            "Total Accesses",
            "Total kBytes",
            "Total Duration",
            "CPUUser",
            "CPUSystem",
            "CPUChildrenUser",
            "CPUChildrenSystem",
            "Uptime",
            "ReqPerSec",
            "BytesPerSec",
            "BytesPerReq",
            "DurationPerReq",
        ];
        let want: Vec<&str> = APACHE_AUTO
            .iter()
            .copied()
            .filter(|n| !totals.contains(n))
            .collect();
        assert_eq!(names(&auto), want, "{auto}");
        let html = super::html(&snapshot(false));
        assert!(!html.contains("Total accesses"), "{html}");
        assert!(super::html(&snapshot(true))
            .contains("<dt>Total accesses: 8 - Total Traffic: 9 kB - Total Duration: 1</dt>"));
    }

    #[test]
    fn times_read_as_apaches() {
        // Monday, 07-Dec-2026 05:43:29 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_796_622_209);
        assert_eq!(apache_time(t), "Monday, 07-Dec-2026 05:43:29 UTC");
        assert_eq!(show_time(0), "");
        assert_eq!(show_time(1), " 1 second");
        assert_eq!(show_time(90061), " 1 day 1 hour 1 minute 1 second");
        assert_eq!(show_time(7322), " 2 hours 2 minutes 2 seconds");
    }
}
