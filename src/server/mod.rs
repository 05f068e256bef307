//! The TCP side: accepts GDB connections and shuttles bytes between each
//! socket and the probe worker (`worker.rs`), which runs gdbstub and owns
//! the probe.
//!
//! One controlling client at a time: while a GDB is connected, further
//! connections are logged ("already has a controlling client") and closed at
//! once. A connection that sends garbage, an oversized packet, or drops
//! mid-packet ends alone; the server keeps serving the next one. Sockets are
//! awaited, never polled.

pub mod framer;
pub mod vet;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use worker::ToWorker;
pub use worker::{OpenedSession, ProbeWorker, SessionSource};

/// Read size for socket reads.
const READ_CHUNK: usize = 8192;

/// Serve GDB on `listener` until `shutdown` completes or the probe is lost
/// (then the worker's error is returned).
pub async fn run(
    listener: TcpListener,
    worker: ProbeWorker,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    let to_worker = worker.sender();
    let controller: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
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
                let current = *controller.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(current) = current {
                    tracing::warn!(
                        "refusing GDB connection from {peer}: {current} is already the controlling \
                         client (one at a time); closing it"
                    );
                    drop(stream);
                    continue;
                }
                *controller.lock().unwrap_or_else(|p| p.into_inner()) = Some(peer);
                next_id += 1;
                tracing::info!(id = next_id, "GDB connection from {peer}");
                let guard = ControllerGuard(controller.clone());
                tasks.spawn(connection(stream, next_id, to_worker.clone(), stop_rx.clone(), guard));
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

/// Clears the controlling-client slot when a connection ends.
struct ControllerGuard(Arc<Mutex<Option<SocketAddr>>>);

impl Drop for ControllerGuard {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

async fn connection(
    stream: TcpStream,
    id: u64,
    to_worker: std::sync::mpsc::Sender<ToWorker>,
    mut stop: watch::Receiver<bool>,
    _guard: ControllerGuard,
) {
    // RSP is request/response with small packets: don't let Nagle delay them.
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    if to_worker
        .send(ToWorker::Connect { id, out: out_tx })
        .is_err()
    {
        tracing::error!(id, "probe worker is gone; closing connection");
        return;
    }
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    if to_worker.send(ToWorker::Data { id, bytes: buf[..n].to_vec() }).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::info!(id, "read from GDB failed: {e}");
                    break;
                }
            },
            out = out_rx.recv() => match out {
                Some(bytes) => {
                    if let Err(e) = wr.write_all(&bytes).await {
                        tracing::info!(id, "write to GDB failed: {e}");
                        break;
                    }
                }
                // The worker ended this session (detach, kill, error): the
                // channel yields everything queued before reporting closed.
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
    let _ = to_worker.send(ToWorker::Disconnected { id });
    let _ = wr.shutdown().await;
    tracing::info!(id, "connection closed");
}
