//! CPU time, resident memory, threads and file descriptors of a process and
//! all its descendants, from `/proc`.

use std::collections::HashMap;
use std::fs;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// utime + stime of every live process of the tree, plus cutime + cstime
    /// (children already reaped), in seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
    pub procs: u64,
}

struct Stat {
    ppid: i32,
    ticks: u64,
    threads: u64,
    rss_pages: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    let num = |n: usize| -> u64 { f.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        ticks: num(14) + num(15) + num(16) + num(17),
        threads: num(20),
        rss_pages: num(24),
    })
}

fn clk_tck() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_kib() -> u64 {
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64 / 1024
    } else {
        4
    }
}

/// The process `root` and all its descendants.
pub fn tree(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(st) = read_stat(pid) {
                children.entry(st.ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// Samples the tree rooted at `root`; `None` if `root` is gone.
pub fn sample(root: i32) -> Option<Sample> {
    read_stat(root)?;
    let mut s = Sample::default();
    let mut ticks = 0;
    let pk = page_kib();
    for pid in tree(root) {
        let Some(st) = read_stat(pid) else { continue };
        ticks += st.ticks;
        s.threads += st.threads;
        s.rss_kib += st.rss_pages * pk;
        s.fds += fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        s.procs += 1;
    }
    s.cpu_s = ticks as f64 / clk_tck();
    Some(s)
}

/// CPU seconds of this process only (the load generator itself).
pub fn self_cpu_s() -> f64 {
    read_stat(std::process::id() as i32)
        .map(|s| s.ticks as f64 / clk_tck())
        .unwrap_or(0.0)
}
