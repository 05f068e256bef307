//! The TCP side: accepts GDB connections and shuttles bytes between each
//! socket and the probe worker (`worker.rs`), which runs gdbstub and owns
//! the probe.
//!
//! One controlling client at a time. While a GDB controls the board, up to
//! [`MAX_OBSERVERS`] further connections become observers (`observer.rs`,
//! `gdb::observer`): read-only, served beside the controller while the
//! core runs (cortex-debug Live Watch); one more is logged and closed.
//! Roles are fixed at accept: when the controller disconnects, observers
//! stay observers and the next new connection becomes the controller; a
//! disconnecting observer changes nothing on the target. A connection
//! that sends garbage, an oversized packet, or drops mid-packet ends alone;
//! the server keeps serving the next one. Sockets are awaited, never
//! polled.
//!
//! A client cannot wedge the server: input waits in a bounded queue (the
//! socket is not read while it is full), a reply that cannot be written
//! within [`Limits::write_timeout`] drops the client and frees its slot,
//! TCP keepalive finds peers that vanished, and shutdown ends every
//! connection without waiting on its socket.

pub mod framer;
mod observer;
pub(crate) mod readonly;
pub(crate) mod vet;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::gdb::observer::{ObserverTarget, Owner, SendRequest};
use worker::ToWorker;
pub use worker::{OpenedSession, ProbeWorker, SessionSource};

/// Read size for socket reads.
const READ_CHUNK: usize = 8192;

/// Observer connections served at once beside the controller; one more is
/// refused (closed).
pub const MAX_OBSERVERS: usize = 4;

/// Bounds on what one client can make the server hold or wait for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A reply chunk not taken by the client within this time drops it.
    pub write_timeout: Duration,
    /// Socket reads handed to the worker and not yet handled.
    pub inbound_chunks: usize,
    /// Replies queued for the socket (each up to a packet).
    pub outbound_chunks: usize,
    /// Idle time before TCP keepalive probes start.
    pub keepalive_idle: Duration,
    /// Time between keepalive probes.
    pub keepalive_interval: Duration,
    /// How long an observer's read waits for the probe worker before an
    /// `E` reply; under GDB's default `remotetimeout` (2 s).
    pub observer_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // GDB reads every reply it asked for at once; a chunk is at most
            // one packet (16 KiB), so this only trips on a dead client.
            write_timeout: Duration::from_secs(15),
            inbound_chunks: 8,
            outbound_chunks: 16,
            keepalive_idle: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            observer_wait: Duration::from_millis(1500),
        }
    }
}

/// Serve GDB on `listener` until `shutdown` completes or the probe is lost
/// (then the worker's error is returned).
pub async fn run(
    listener: TcpListener,
    worker: ProbeWorker,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    run_with(listener, worker, shutdown, Limits::default()).await
}

/// [`run`] with explicit [`Limits`].
pub async fn run_with(
    listener: TcpListener,
    worker: ProbeWorker,
    shutdown: impl Future,
    limits: Limits,
) -> anyhow::Result<()> {
    let to_worker = worker.sender();
    let roles: Arc<Mutex<Roles>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Transient (e.g. out of file descriptors): log, go on.
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                let role = lock(&roles).admit(peer);
                let Some(role) = role else {
                    let current = lock(&roles).controller;
                    tracing::warn!(
                        "refusing GDB connection from {peer}: {} already controls the board \
                         and {MAX_OBSERVERS} observers are connected; closing it",
                        current.map_or("a client".into(), |c| c.to_string())
                    );
                    drop(stream);
                    continue;
                };
                next_id += 1;
                let id = next_id;
                let guard = RoleGuard {
                    roles: roles.clone(),
                    role,
                };
                let to_worker = to_worker.clone();
                let (stop, limits) = (stop_rx.clone(), limits.clone());
                match role {
                    Role::Controller => {
                        tracing::info!(id, "GDB connection from {peer}: controlling the board");
                        tasks.spawn(async move {
                            connection(stream, id, to_worker, stop, limits).await;
                            drop(guard);
                        });
                    }
                    Role::Observer => {
                        tracing::info!(
                            id,
                            "GDB connection from {peer}: observer (read-only; another GDB \
                             controls the board)"
                        );
                        tasks.spawn(observer_connection(
                            stream, id, to_worker, stop, limits, guard,
                        ));
                    }
                }
            }
            Some(_) = tasks.join_next() => {
                if worker.is_finished() {
                    break;
                }
            }
        }
    }

    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    drop(to_worker);
    tokio::task::spawn_blocking(move || worker.shutdown()).await?
}

/// What an accepted connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Controller,
    Observer,
}

/// Who is connected: the controller's address and the observer count.
#[derive(Debug, Default)]
struct Roles {
    controller: Option<SocketAddr>,
    observers: usize,
}

impl Roles {
    /// The role of a new connection, fixed for its lifetime: the
    /// controller if there is none, else an observer while fewer than
    /// [`MAX_OBSERVERS`] are connected, else none (refused).
    fn admit(&mut self, peer: SocketAddr) -> Option<Role> {
        if self.controller.is_none() {
            self.controller = Some(peer);
            Some(Role::Controller)
        } else if self.observers < MAX_OBSERVERS {
            self.observers += 1;
            Some(Role::Observer)
        } else {
            None
        }
    }

    fn release(&mut self, role: Role) {
        match role {
            Role::Controller => self.controller = None,
            Role::Observer => self.observers = self.observers.saturating_sub(1),
        }
    }
}

fn lock(roles: &Mutex<Roles>) -> std::sync::MutexGuard<'_, Roles> {
    roles.lock().unwrap_or_else(|p| p.into_inner())
}

/// Frees a connection's role when it ends.
struct RoleGuard {
    roles: Arc<Mutex<Roles>>,
    role: Role,
}

impl Drop for RoleGuard {
    fn drop(&mut self) {
        lock(&self.roles).release(self.role);
    }
}

/// An observer: the socket task as for a controller, feeding a thread that
/// runs gdbstub over an [`ObserverTarget`] whose reads go to the worker.
/// The role is freed once that thread has ended.
async fn observer_connection(
    stream: TcpStream,
    id: u64,
    to_worker: std::sync::mpsc::Sender<ToWorker>,
    stop: watch::Receiver<bool>,
    limits: Limits,
    guard: RoleGuard,
) {
    let send: SendRequest =
        Box::new(move |request| to_worker.send(ToWorker::Observe(request)).is_ok());
    let target = ObserverTarget::new(Owner::new(id, send, limits.observer_wait));
    let (tx, rx) = std::sync::mpsc::channel();
    let session = tokio::task::spawn_blocking(move || observer::serve(rx, target));
    connection(stream, id, tx, stop, limits).await;
    if let Err(e) = session.await {
        tracing::error!(id, "observer session failed: {e}");
    }
    drop(guard);
}

/// Keepalive on, Nagle off. Failures only cost robustness: logged.
pub fn configure_socket(stream: &TcpStream, limits: &Limits) {
    // RSP is request/response with small packets: don't let Nagle delay them.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(limits.keepalive_idle);
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    let keepalive = keepalive.with_interval(limits.keepalive_interval);
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let keepalive = keepalive.with_retries(3);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::warn!("cannot enable TCP keepalive: {e}");
    }
}

/// Why a connection task ended.
#[derive(Debug)]
enum End {
    Eof,
    ReadFailed(std::io::Error),
    WriteFailed(std::io::Error),
    WriteTimeout(Duration),
    /// The worker ended the session (detach, kill, error) or is gone.
    SessionEnded,
    Shutdown,
}

async fn connection(
    stream: TcpStream,
    id: u64,
    to_worker: std::sync::mpsc::Sender<ToWorker>,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    configure_socket(&stream, &limits);
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(limits.outbound_chunks.max(1));
    if to_worker
        .send(ToWorker::Connect { id, out: out_tx })
        .is_err()
    {
        tracing::error!(id, "probe worker is gone; closing connection");
        return;
    }
    let credits = Arc::new(Semaphore::new(limits.inbound_chunks.max(1)));
    let reader = async {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            // The socket is not read while the worker has this many chunks.
            let Ok(credit) = credits.clone().acquire_owned().await else {
                return End::SessionEnded;
            };
            match rd.read(&mut buf).await {
                Ok(0) => return End::Eof,
                Ok(n) => {
                    let data = ToWorker::Data {
                        id,
                        bytes: buf[..n].to_vec(),
                        credit,
                    };
                    if to_worker.send(data).is_err() {
                        return End::SessionEnded;
                    }
                }
                Err(e) => return End::ReadFailed(e),
            }
        }
    };
    let writer = async {
        // The channel yields everything queued before reporting closed.
        while let Some(bytes) = out_rx.recv().await {
            match tokio::time::timeout(limits.write_timeout, wr.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return End::WriteFailed(e),
                Err(_) => return End::WriteTimeout(limits.write_timeout),
            }
        }
        End::SessionEnded
    };
    let end = tokio::select! {
        end = reader => end,
        end = writer => end,
        _ = stop.changed() => End::Shutdown,
    };
    match &end {
        End::WriteTimeout(t) => tracing::warn!(
            id,
            "GDB took no data for {t:?}: dropping the connection and freeing the slot"
        ),
        End::ReadFailed(e) => tracing::info!(id, "read from GDB failed: {e}"),
        End::WriteFailed(e) => tracing::info!(id, "write to GDB failed: {e}"),
        End::Eof | End::SessionEnded | End::Shutdown => {}
    }
    // Dropping the receiver first unblocks a worker waiting to queue a reply.
    drop(out_rx);
    let _ = to_worker.send(ToWorker::Disconnected { id });
    // shutdown(2) does not wait for the peer; bounded all the same.
    let _ = tokio::time::timeout(Duration::from_millis(100), wr.shutdown()).await;
    tracing::info!(id, ?end, "connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_first_controls_four_observe_a_fifth_is_refused_and_a_freed_slot_is_reused() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut roles = Roles::default();
        assert_eq!(roles.admit(peer), Some(Role::Controller));
        for _ in 0..MAX_OBSERVERS {
            assert_eq!(roles.admit(peer), Some(Role::Observer));
        }
        assert_eq!(roles.admit(peer), None, "a fifth observer");
        roles.release(Role::Observer);
        assert_eq!(roles.admit(peer), Some(Role::Observer));
        // The controller leaves: observers stay, the next new one controls.
        roles.release(Role::Controller);
        assert_eq!(roles.observers, MAX_OBSERVERS);
        assert_eq!(roles.admit(peer), Some(Role::Controller));
        assert_eq!(roles.admit(peer), None);
    }

    #[tokio::test]
    async fn accepted_socket_gets_keepalive_with_our_idle_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let limits = Limits {
            keepalive_idle: Duration::from_secs(42),
            ..Limits::default()
        };
        configure_socket(&stream, &limits);
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap(), "SO_KEEPALIVE set");
        #[cfg(target_os = "linux")]
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(42));
        assert!(stream.nodelay().unwrap());
    }
}
