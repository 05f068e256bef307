//! How a connection ended: one description for the socket task, the
//! probe worker (a controller's session) and an observer's thread.

use std::time::Duration;

use super::framer::FrameError;
use crate::gdb::SessionFault;

#[derive(Debug, thiserror::Error)]
pub enum End {
    /// GDB detached (`D`): a controller's core runs on.
    #[error("GDB detached")]
    Detached,
    /// GDB killed the target in non-extended mode: the core stays halted.
    #[error("GDB killed the target")]
    Killed,
    /// The client closed the socket.
    #[error("connection closed")]
    Closed,
    #[error("read from GDB failed: {0}")]
    ReadFailed(std::io::Error),
    #[error("write to GDB failed: {0}")]
    WriteFailed(std::io::Error),
    #[error("GDB took no data for {0:?}")]
    WriteTimeout(Duration),
    /// No complete valid packet within the limit after connecting.
    #[error("no complete packet within {0:?} of connecting")]
    Silent(Duration),
    /// Input that ends the connection (not RSP, a packet too long).
    #[error("bad input: {0}")]
    BadInput(FrameError),
    /// gdbstub gave up on the packet stream.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The other side of the connection (the worker or the observer
    /// thread, or the socket task) ended it.
    #[error("session ended")]
    SessionEnded,
    #[error("server shutting down")]
    Shutdown,
    /// The probe is lost: the whole session ends.
    #[error("probe fault: {0}")]
    Fault(SessionFault),
}
