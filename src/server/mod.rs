//! The TCP side: accepts GDB connections and shuttles bytes between each
//! socket and the probe worker (`worker.rs`), which runs gdbstub and owns
//! the probe.
//!
//! One controlling client at a time. A connection gets its role at its
//! first complete packet with a valid checksum, not at accept: the
//! controller if none controls the board, else an observer (`observer.rs`,
//! `gdb::observer`: read-only, served beside the controller while the core
//! runs, cortex-debug Live Watch) while fewer than [`MAX_OBSERVERS`] are
//! connected, else it is logged and closed. A connection without such a
//! packet within [`Limits::first_packet`] (a port scanner, a forgotten
//! `nc`, a slow-loris client) is closed having held no role; a session
//! that has spoken may then idle for hours (GDB sends nothing while its
//! user reads code: TCP keepalive, not a timeout, finds dead peers). Roles
//! are kept for a connection's lifetime: when the controller leaves,
//! observers stay observers and the next connection to speak controls; a
//! disconnecting observer changes nothing on the target. A connection
//! that speaks while the controller's client has already gone (its
//! socket hung up, seen with `poll` even before the controller's task has
//! read the EOF, or that task is ending) waits, at most
//! [`Limits::controller_release`], for the slot to be freed and then
//! controls: a GDB that reconnects at once (`disconnect` then `target
//! extended-remote`, an IDE restart, a killed GDB and a new one) gets
//! control, not an observer session. A connection
//! that sends garbage, an oversized packet, or drops mid-packet ends alone;
//! the server keeps serving the next one. Sockets are awaited, never
//! polled in a loop (the one `poll`, in `roles.rs`, is a zero-timeout look
//! at the controller's socket when another connection speaks). Warnings a client can provoke at will are rate-limited
//! (`crate::ratelimit`).
//!
//! A client cannot wedge the server: input waits in a bounded queue (the
//! socket is not read while it is full), a reply that cannot be written
//! within [`Limits::write_timeout`] drops the client and frees its slot,
//! TCP keepalive finds peers that vanished, and shutdown ends every
//! connection without waiting on its socket.

mod channel;
pub mod end;
mod error_text;
pub mod framer;
mod front;
mod intercept;
mod observer;
mod roles;
use roles::{lock, Admit, Presence, Role, RoleGuard, Roles};
pub(crate) mod readonly;
mod serve;
pub(crate) mod vet;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The most an observer's `qCRC` covers (larger ones are refused with `E1b`).
pub use crate::gdb::observer::OBSERVER_CRC_MAX;
use crate::gdb::observer::{ObserverTarget, Owner, SendRequest};
use crate::ratelimit::RateLimit;
pub use end::End;
use framer::{Frame, Framer};
pub use worker::{OpenedSession, ProbeWorker, SessionSource};
use worker::{ToWorker, MAX_FRAME, PACKET_BUFFER};

/// Read size for socket reads.
const READ_CHUNK: usize = 8192;

/// Observer connections served at once beside the controller; one more is
/// refused (closed).
pub const MAX_OBSERVERS: usize = 4;

/// Connections that have not sent a complete packet yet; one more is
/// closed at accept. Each is closed at [`Limits::first_packet`] at the
/// latest, so these can delay a GDB by that much, never lock it out.
pub const MAX_SILENT: usize = 32;

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
    /// A connection without a complete packet with a valid checksum this
    /// long after connecting is closed; until then it holds no role.
    pub first_packet: Duration,
    /// How long a connection that speaks after the controller's client
    /// has gone waits for that session to free the controller role; past
    /// it, it observes (the old session is still busy on the probe).
    pub controller_release: Duration,
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
            // GDB sends `+$qSupported…` as soon as it has connected.
            first_packet: Duration::from_secs(5),
            // The old session's last command and cleanup; under the 30 s
            // `remotetimeout` serve suggests.
            controller_release: Duration::from_secs(10),
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

/// What every connection task shares.
#[derive(Clone)]
struct Shared {
    roles: Arc<Mutex<Roles>>,
    to_worker: std::sync::mpsc::Sender<ToWorker>,
    stop: watch::Receiver<bool>,
    limits: Limits,
    /// Warnings about connections as a whole (silent, refused).
    log: Arc<Mutex<RateLimit>>,
}

impl Shared {
    fn warn(&self, kind: &'static str, warn: impl FnOnce()) {
        lock(&self.log).warn(kind, || "the listener".into(), warn);
    }
}

/// [`run`] with explicit [`Limits`].
pub async fn run_with(
    listener: TcpListener,
    worker: ProbeWorker,
    shutdown: impl Future,
    limits: Limits,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Shared {
        roles: Arc::default(),
        to_worker: worker.sender(),
        stop: stop_rx,
        limits,
        log: Arc::default(),
    };
    let silent = Arc::new(Semaphore::new(MAX_SILENT));
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
                        shared.warn("failed accepts", || tracing::warn!("accept failed: {e}"));
                        continue;
                    }
                };
                let Ok(permit) = silent.clone().try_acquire_owned() else {
                    shared.warn("connections closed at accept", || {
                        tracing::warn!(
                            "closing the connection from {peer}: {MAX_SILENT} connections \
                             have not sent a packet yet"
                        )
                    });
                    drop(stream);
                    continue;
                };
                next_id += 1;
                tasks.spawn(open(stream, peer, next_id, permit, shared.clone()));
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
    let Shared { to_worker, log, .. } = shared;
    lock(&log).flush("the listener");
    drop(to_worker);
    tokio::task::spawn_blocking(move || worker.shutdown()).await?
}

/// A new connection: wait (bounded) for its first valid packet, then give
/// it a role and serve it. It holds no role, and counts against no cap
/// but [`MAX_SILENT`], until then.
async fn open(
    mut stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    permit: OwnedSemaphorePermit,
    shared: Shared,
) {
    configure_socket(&stream, &shared.limits);
    let mut stop = shared.stop.clone();
    let first = tokio::select! {
        first = first_packet(&mut stream, shared.limits.first_packet) => first,
        _ = stop.changed() => Err(End::Shutdown),
    };
    drop(permit);
    let first = match first {
        Ok(first) => first,
        Err(end) => {
            match &end {
                End::Silent(_) => shared.warn("silent connections", || {
                    tracing::warn!(id, "closing the connection from {peer}: {end}")
                }),
                End::BadInput(_) => shared.warn("connections that are not GDB", || {
                    tracing::warn!(id, "closing the connection from {peer}: {end}")
                }),
                _ => tracing::debug!(id, "connection from {peer} ended before a packet: {end}"),
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), stream.shutdown()).await;
            return;
        }
    };
    let presence = Arc::new(Presence::new(&stream));
    let role = tokio::select! {
        role = decide(&shared, peer, &presence, id) => role,
        _ = stop.changed() => {
            let _ = tokio::time::timeout(Duration::from_millis(100), stream.shutdown()).await;
            return;
        }
    };
    let Some(role) = role else {
        let current = lock(&shared.roles).controller.as_ref().map(|c| c.peer);
        shared.warn("connections refused (all roles taken)", || {
            tracing::warn!(
                id,
                "refusing GDB connection from {peer}: {} controls the board and \
                 {MAX_OBSERVERS} observers are connected; closing it",
                current.map_or("a client".into(), |c| c.to_string())
            )
        });
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.shutdown()).await;
        return;
    };
    let guard = RoleGuard {
        roles: shared.roles.clone(),
        role: Arc::new(Mutex::new(role)),
    };
    match role {
        Role::Controller => {
            tracing::info!(id, "GDB connection from {peer}: controlling the board");
            let to_worker = shared.to_worker.clone();
            connection(stream, id, first, to_worker, shared, &presence, None).await;
        }
        Role::Observer => {
            tracing::info!(
                id,
                "GDB connection from {peer}: observer (read-only; another GDB controls the \
                 board)"
            );
            let claim = guard.claim(peer, presence.clone());
            observer_connection(stream, id, first, shared, &presence, claim).await;
        }
    }
    drop(guard);
}

/// The role of a connection that has spoken. If the controller's client
/// has gone but its session has not freed the role yet, wait for that
/// (at most [`Limits::controller_release`]) and take control; past the
/// limit the old session counts as alive.
async fn decide(
    shared: &Shared,
    peer: SocketAddr,
    presence: &Arc<Presence>,
    id: u64,
) -> Option<Role> {
    // Subscribed before the first look: a release after it is a change.
    let mut released = lock(&shared.roles).released.subscribe();
    let deadline = tokio::time::Instant::now() + shared.limits.controller_release;
    loop {
        let old = match lock(&shared.roles).admit(peer, presence, true) {
            Admit::Now(role) => return Some(role),
            Admit::Refused => return None,
            Admit::AfterRelease(old) => old,
        };
        tracing::info!(
            id,
            "GDB from {peer}: the controlling GDB from {old} has gone; waiting for its \
             session to end to give this one control"
        );
        match tokio::time::timeout_at(deadline, released.changed()).await {
            Ok(Ok(())) => continue,
            // The sender lives in `Roles` as long as this task holds it.
            Ok(Err(_)) => return lock(&shared.roles).admit(peer, presence, false).role(),
            Err(_) => {
                tracing::warn!(
                    id,
                    "GDB from {peer}: the session of the controlling GDB from {old}, which \
                     has gone, did not end within {:?}; serving this one as an observer \
                     (`monitor control` takes control once it has)",
                    shared.limits.controller_release
                );
                return lock(&shared.roles).admit(peer, presence, false).role();
            }
        }
    }
}

/// Read until the first complete packet with a valid checksum (NAKing bad
/// ones, as GDB expects in ack mode) within `within` of connecting. Returns
/// that packet and whatever followed it in the same read; what came before
/// (acks, a Ctrl-C) means nothing before any reply and is dropped. Input
/// that is not RSP, a packet over [`MAX_FRAME`] or one that never completes
/// (a slow-loris client) ends the connection.
async fn first_packet(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, End> {
    let deadline = tokio::time::Instant::now() + within;
    let mut framer = Framer::new(MAX_FRAME);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut frames = Vec::new();
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Err(End::Silent(within)),
            Ok(Ok(0)) => return Err(End::Closed),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(End::ReadFailed(e)),
        };
        for i in 0..n {
            framer
                .push(&buf[i..i + 1], &mut frames)
                .map_err(End::BadInput)?;
            let Some(Frame::Packet(packet)) = frames.pop() else {
                frames.clear();
                continue;
            };
            if vet::vet(&packet, PACKET_BUFFER) != vet::Verdict::BadChecksum {
                let mut first = packet;
                first.extend_from_slice(&buf[i + 1..n]);
                return Ok(first);
            }
            match tokio::time::timeout_at(deadline, stream.write_all(b"-")).await {
                Err(_) => return Err(End::Silent(within)),
                Ok(Err(e)) => return Err(End::WriteFailed(e)),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// An observer: the socket task as for a controller, feeding a thread that
/// runs gdbstub over an [`ObserverTarget`] whose reads go to the worker.
/// The role is freed once that thread has ended.
async fn observer_connection(
    stream: TcpStream,
    id: u64,
    first: Vec<u8>,
    shared: Shared,
    presence: &Presence,
    claim: observer::Claim,
) {
    let to_worker = shared.to_worker.clone();
    let send: SendRequest =
        Box::new(move |request| to_worker.send(ToWorker::Observe(request)).is_ok());
    let target = ObserverTarget::new(Owner::new(id, send, shared.limits.observer_wait));
    let (tx, rx) = std::sync::mpsc::channel();
    let (handover_tx, handover) = tokio::sync::oneshot::channel();
    let session = tokio::task::spawn_blocking(move || {
        observer::serve(rx, target, claim, handover_tx);
    });
    connection(stream, id, first, tx, shared, presence, Some(handover)).await;
    if let Err(e) = session.await {
        tracing::error!(id, "observer session failed: {e}");
    }
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

/// The socket task of a connection that has spoken: `first` (its first
/// packet and what followed) goes to `to_worker` first, then every read.
/// An observer's task gets `handover`: when its thread hands the connection
/// over (`monitor control`), the reads go to the probe worker from then on.
async fn connection(
    stream: TcpStream,
    id: u64,
    first: Vec<u8>,
    to_worker: std::sync::mpsc::Sender<ToWorker>,
    shared: Shared,
    presence: &Presence,
    mut handover: Option<tokio::sync::oneshot::Receiver<observer::Handover>>,
) {
    let (limits, mut stop, worker) = (shared.limits, shared.stop, shared.to_worker);
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(limits.outbound_chunks.max(1));
    // Kept for the worker while the observer thread may hand over; the
    // writer ends once every sender is gone.
    let mut out_keep = handover.as_ref().map(|_| out_tx.clone());
    let route = Mutex::new(to_worker);
    if lock(&route)
        .send(ToWorker::Connect {
            id,
            out: out_tx,
            no_ack: false,
        })
        .is_err()
    {
        tracing::error!(id, "probe worker is gone; closing connection");
        presence.end();
        return;
    }
    let credits = Arc::new(Semaphore::new(limits.inbound_chunks.max(1)));
    let reader = async {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut first = Some(first);
        loop {
            // The socket is not read while the worker has this many chunks.
            let Ok(credit) = credits.clone().acquire_owned().await else {
                return End::SessionEnded;
            };
            if let Some(bytes) = first.take() {
                let sent = lock(&route).send(ToWorker::Data { id, bytes, credit });
                if sent.is_err() {
                    return End::SessionEnded;
                }
                continue;
            }
            match rd.read(&mut buf).await {
                Ok(0) => return End::Closed,
                Ok(n) => {
                    let data = ToWorker::Data {
                        id,
                        bytes: buf[..n].to_vec(),
                        credit,
                    };
                    if lock(&route).send(data).is_err() {
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
    let end = {
        // Dropped with the block: the socket halves are free again after.
        tokio::pin!(reader, writer);
        loop {
            tokio::select! {
                end = &mut reader => break end,
                end = &mut writer => break end,
                _ = stop.changed() => break End::Shutdown,
                given = async { handover.as_mut().expect("checked").await }, if handover.is_some() => {
                    handover = None;
                    let out = out_keep.take();
                    let Ok(given) = given else {
                        // The observer session ended without handing over.
                        continue;
                    };
                    tracing::info!(id, "observer took control of the board (monitor control)");
                    let out = out.expect("kept for the handover");
                    let connect = ToWorker::Connect {
                        id,
                        out: out.clone(),
                        no_ack: given.no_ack,
                    };
                    if worker.send(connect).is_err() {
                        break End::SessionEnded;
                    }
                    // Reads go to the worker before GDB sees the reply, so its
                    // next packet cannot reach the ended observer thread.
                    *lock(&route) = worker.clone();
                    // The writer is not polled meanwhile: bounded.
                    match tokio::time::timeout(limits.write_timeout, out.send(given.reply)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break End::SessionEnded,
                        Err(_) => break End::WriteTimeout(limits.write_timeout),
                    }
                    drop(out);
                    if !given.pending.is_empty() {
                        let Ok(credit) = credits.clone().acquire_owned().await else {
                            break End::SessionEnded;
                        };
                        let data = ToWorker::Data { id, bytes: given.pending, credit };
                        if worker.send(data).is_err() {
                            break End::SessionEnded;
                        }
                    }
                }
            }
        }
    };
    // A connection speaking from now on waits for this role, not observes.
    presence.end();
    match &end {
        End::WriteTimeout(_) => {
            tracing::warn!(id, "{end}: dropping the connection and freeing the slot")
        }
        End::ReadFailed(_) | End::WriteFailed(_) => tracing::info!(id, "{end}"),
        _ => {}
    }
    // Dropping the receiver first unblocks a worker waiting to queue a reply.
    drop(out_rx);
    let _ = lock(&route).send(ToWorker::Disconnected { id });
    // shutdown(2) does not wait for the peer; bounded all the same.
    let _ = tokio::time::timeout(Duration::from_millis(100), wr.shutdown()).await;
    tracing::info!(id, "connection closed ({end})");
}

#[cfg(test)]
mod tests {
    use super::*;

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
