//! The open tunnels, for the status page's table.
//!
//! Kept only when some `<Location>` serves `server-status`: a tunnel then
//! holds the index of its entry here (a `u32` in its `Life`), and nothing
//! otherwise. An entry is a slot of one table — the client's address, an
//! interned name for the vhost, the route and the backend, when it opened,
//! and its byte counts as of its last park or its end (the tunnel's own
//! counters are not shared while it runs, so that moving bytes costs no
//! atomic operation).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// What a tunnel is, as the status page shows it.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    pub client: SocketAddr,
    /// The virtual host's `ServerName`.
    pub vhost: String,
    /// The ProxyPass target: the worker's url or `balancer://name`.
    pub route: String,
    /// The worker the tunnel goes to (a balancer's member).
    pub backend: String,
}

/// One open tunnel.
#[derive(Debug, Clone)]
pub struct Entry {
    pub client: SocketAddr,
    pub vhost: Arc<str>,
    pub route: Arc<str>,
    pub backend: Arc<str>,
    pub opened: Instant,
    /// Client to backend, as of the last park.
    pub bytes_up: u64,
    /// Backend to client, as of the last park.
    pub bytes_down: u64,
}

#[derive(Default)]
struct Table {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Names shared by the entries (a handful per configuration).
    names: HashSet<Arc<str>>,
}

impl Table {
    fn intern(&mut self, name: String) -> Arc<str> {
        if let Some(n) = self.names.get(name.as_str()) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        self.names.insert(n.clone());
        n
    }
}

/// The open tunnels of one server.
#[derive(Default)]
pub struct Tunnels {
    table: Mutex<Table>,
}

impl Tunnels {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters a tunnel that just opened; the index names it from now on.
    pub fn open(&self, info: TunnelInfo) -> u32 {
        let mut t = self.table();
        let entry = Entry {
            client: info.client,
            vhost: t.intern(info.vhost),
            route: t.intern(info.route),
            backend: t.intern(info.backend),
            opened: Instant::now(),
            bytes_up: 0,
            bytes_down: 0,
        };
        match t.free.pop() {
            Some(i) => {
                t.slots[i as usize] = Some(entry);
                i
            }
            None => {
                t.slots.push(Some(entry));
                (t.slots.len() - 1) as u32
            }
        }
    }

    /// The tunnel's byte counts so far.
    pub fn note_bytes(&self, index: u32, up: u64, down: u64) {
        if let Some(Some(e)) = self.table().slots.get_mut(index as usize) {
            e.bytes_up = up;
            e.bytes_down = down;
        }
    }

    pub fn close(&self, index: u32) {
        let mut t = self.table();
        if let Some(slot) = t.slots.get_mut(index as usize) {
            if slot.take().is_some() {
                t.free.push(index);
            }
        }
    }

    /// The open tunnels, oldest first.
    pub fn snapshot(&self) -> Vec<Entry> {
        let mut all: Vec<Entry> = self.table().slots.iter().flatten().cloned().collect();
        all.sort_by_key(|e| e.opened);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(port: u16) -> TunnelInfo {
        TunnelInfo {
            client: SocketAddr::from(([127, 0, 0, 1], port)),
            vhost: "v".into(),
            route: "ws://b/".into(),
            backend: "ws://b/".into(),
        }
    }

    #[test]
    fn closed_entries_leave_the_table_and_their_slot_is_reused() {
        let t = Tunnels::default();
        let a = t.open(info(1));
        let b = t.open(info(2));
        t.note_bytes(b, 5, 7);
        t.close(a);
        let s = t.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].client.port(), s[0].bytes_up, s[0].bytes_down),
            (2, 5, 7)
        );
        assert!(
            Arc::ptr_eq(&s[0].route, &s[0].backend),
            "names are interned"
        );
        assert_eq!(t.open(info(3)), a);
    }
}
