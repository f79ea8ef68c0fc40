//! The registry of connected clients: CLIENT LIST / INFO, INFO clients, the maxclients limit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

/// What CLIENT LIST shows of one connection. Fields that change per command are atomics so the
/// hot path never takes a lock.
pub struct ClientInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    /// Milliseconds since `created` at the last command.
    pub last_active_ms: AtomicU64,
    pub meta: Mutex<ClientMeta>,
    /// Queued MULTI commands, -1 outside MULTI.
    pub multi: AtomicI64,
    /// Pub/Sub channels and patterns subscribed to.
    pub sub: AtomicU64,
    pub psub: AtomicU64,
}

#[derive(Default, Clone)]
pub struct ClientMeta {
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
    pub resp: u8,
}

#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

impl Registry {
    /// Registers a connection, or None when `max` clients are already connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        max: usize,
    ) -> Option<Arc<ClientInfo>> {
        let mut clients = self.clients.lock();
        if clients.len() >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            meta: Mutex::new(ClientMeta {
                resp: 2,
                ..Default::default()
            }),
            multi: AtomicI64::new(-1),
            sub: AtomicU64::new(0),
            psub: AtomicU64::new(0),
        });
        clients.insert(id, info.clone());
        Some(info)
    }

    pub fn unregister(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.clients.lock().values().cloned().collect()
    }
}

impl ClientInfo {
    pub fn touch(&self) {
        self.last_active_ms
            .store(self.created.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// One line of CLIENT LIST / the reply of CLIENT INFO, in Redis's format.
    pub fn line(&self) -> String {
        let meta = self.meta.lock().clone();
        let age = self.created.elapsed().as_secs();
        let idle = self
            .created
            .elapsed()
            .as_millis()
            .saturating_sub(self.last_active_ms.load(Ordering::Relaxed) as u128)
            / 1000;
        let multi = self.multi.load(Ordering::Relaxed);
        let (sub, psub) = (
            self.sub.load(Ordering::Relaxed),
            self.psub.load(Ordering::Relaxed),
        );
        let flags = match (multi >= 0, sub + psub > 0) {
            (true, true) => "xP",
            (true, false) => "x",
            (false, true) => "P",
            (false, false) => "N",
        };
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={age} idle={idle} flags={flags} db=0 sub={sub} psub={psub} ssub=0 \
             multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 \
             events=r cmd=NULL user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id, self.addr, self.laddr, meta.name, meta.resp, meta.lib_name, meta.lib_ver
        )
    }
}
