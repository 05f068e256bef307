//! Who holds which role: the controller slot, the observer count, and
//! whether a connection's client is still there ([`Presence`]), which
//! decides whether a newcomer waits for a gone controller's slot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio::sync::watch;

use super::observer;
use super::MAX_OBSERVERS;

/// What an accepted connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Controller,
    Observer,
}

/// Who is connected: the controller and the observer count.
#[derive(Debug)]
pub(super) struct Roles {
    pub(super) controller: Option<Holder>,
    observers: usize,
    /// Changes each time the controller role is freed.
    pub(super) released: watch::Sender<u64>,
}

impl Default for Roles {
    fn default() -> Self {
        Roles {
            controller: None,
            observers: 0,
            released: watch::Sender::new(0),
        }
    }
}

/// The connection holding the controller role.
#[derive(Debug)]
pub(super) struct Holder {
    pub(super) peer: SocketAddr,
    presence: Arc<Presence>,
}

/// What [`Roles::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// This role, taken.
    Now(Role),
    /// The controller's client (at this address) has gone: the role is
    /// this connection's once that session frees it.
    AfterRelease(SocketAddr),
    /// All roles taken.
    Refused,
}

impl Admit {
    pub(super) fn role(self) -> Option<Role> {
        match self {
            Admit::Now(role) => Some(role),
            Admit::AfterRelease(_) | Admit::Refused => None,
        }
    }
}

impl Roles {
    /// The role of a new connection, fixed for its lifetime: the
    /// controller if there is none, else (with `wait_for_gone`) the
    /// controller after the current one if its client has gone, else an
    /// observer while fewer than [`MAX_OBSERVERS`] are connected, else
    /// none (refused).
    pub(super) fn admit(
        &mut self,
        peer: SocketAddr,
        presence: &Arc<Presence>,
        wait_for_gone: bool,
    ) -> Admit {
        match &self.controller {
            None => {
                self.controller = Some(Holder {
                    peer,
                    presence: presence.clone(),
                });
                Admit::Now(Role::Controller)
            }
            Some(c) if wait_for_gone && c.presence.gone() => Admit::AfterRelease(c.peer),
            Some(_) if self.observers < MAX_OBSERVERS => {
                self.observers += 1;
                Admit::Now(Role::Observer)
            }
            Some(_) => Admit::Refused,
        }
    }

    /// An observer becomes the controller if there is none; else the
    /// controller's address is the error.
    pub(super) fn promote(
        &mut self,
        peer: SocketAddr,
        presence: &Arc<Presence>,
    ) -> Result<(), Option<SocketAddr>> {
        if let Some(c) = &self.controller {
            return Err(Some(c.peer));
        }
        self.controller = Some(Holder {
            peer,
            presence: presence.clone(),
        });
        self.observers = self.observers.saturating_sub(1);
        Ok(())
    }

    pub(super) fn release(&mut self, role: Role) {
        match role {
            Role::Controller => {
                self.controller = None;
                self.released.send_modify(|n| *n = n.wrapping_add(1));
            }
            Role::Observer => self.observers = self.observers.saturating_sub(1),
        }
    }
}

/// Whether a connection's client is still there, as the role table asks
/// when another connection speaks.
#[derive(Debug)]
pub(super) struct Presence {
    /// The socket under its own descriptor: `poll` shows the client's
    /// hang-up as soon as the kernel has it, before the connection's task
    /// has read the EOF. Dropped when that task ends.
    socket: Mutex<Option<socket2::Socket>>,
    /// The connection's socket task has ended; its role is freed next.
    ended: AtomicBool,
}

impl Presence {
    pub(super) fn new(stream: &TcpStream) -> Self {
        let socket = socket2::SockRef::from(stream)
            .try_clone()
            .map_err(|e| tracing::debug!("cannot watch the socket for a hang-up: {e}"))
            .ok();
        Presence {
            socket: Mutex::new(socket),
            ended: AtomicBool::new(false),
        }
    }

    /// A presence with no socket to look at (tests).
    #[cfg(test)]
    pub(super) fn detached() -> Self {
        Presence {
            socket: Mutex::new(None),
            ended: AtomicBool::new(false),
        }
    }

    /// The client hung up, or the connection is ending.
    pub(super) fn gone(&self) -> bool {
        self.ended.load(Ordering::Acquire) || lock(&self.socket).as_ref().is_some_and(hung_up)
    }

    /// The connection's task ends: stop looking at (and holding) its socket.
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::Release);
        drop(lock(&self.socket).take());
    }
}

/// Whether the peer has closed its side (FIN or reset), without waiting:
/// `poll` with a zero timeout, a look at the socket, not a wait on it.
#[cfg(unix)]
pub(super) fn hung_up(socket: &socket2::Socket) -> bool {
    use std::os::fd::AsRawFd;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let closed = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let closed = libc::POLLHUP | libc::POLLERR;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: closed,
        revents: 0,
    };
    // SAFETY: one valid pollfd, owned by this frame; the descriptor is
    // open for as long as `socket` is borrowed.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & closed != 0
}

/// Without `poll`, only a connection whose task has ended counts as gone.
#[cfg(not(unix))]
pub(super) fn hung_up(_: &socket2::Socket) -> bool {
    false
}

/// A poisoned lock still holds consistent counts: use them.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Frees a connection's role when it ends.
pub(super) struct RoleGuard {
    pub(super) roles: Arc<Mutex<Roles>>,
    /// Changes once, when an observer takes control (`monitor control`).
    pub(super) role: Arc<Mutex<Role>>,
}

impl RoleGuard {
    /// For an observer: take the controller role if it is free, else say
    /// who holds it.
    pub(super) fn claim(&self, peer: SocketAddr, presence: Arc<Presence>) -> observer::Claim {
        let (roles, role) = (self.roles.clone(), self.role.clone());
        Box::new(move || {
            let mut r = lock(&roles);
            r.promote(peer, &presence)?;
            *lock(&role) = Role::Controller;
            Ok(())
        })
    }
}

impl Drop for RoleGuard {
    fn drop(&mut self) {
        let role = *lock(&self.role);
        lock(&self.roles).release(role);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn alive() -> Arc<Presence> {
        Arc::new(Presence::detached())
    }

    #[test]
    fn roles_first_controls_four_observe_a_fifth_is_refused_and_a_freed_slot_is_reused() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut roles = Roles::default();
        let p = alive();
        assert_eq!(roles.admit(peer, &p, true), Admit::Now(Role::Controller));
        for _ in 0..MAX_OBSERVERS {
            assert_eq!(
                roles.admit(peer, &alive(), true),
                Admit::Now(Role::Observer)
            );
        }
        assert_eq!(roles.admit(peer, &alive(), true), Admit::Refused, "a fifth");
        roles.release(Role::Observer);
        assert_eq!(
            roles.admit(peer, &alive(), true),
            Admit::Now(Role::Observer)
        );
        // The controller leaves: observers stay, the next to speak controls.
        roles.release(Role::Controller);
        assert_eq!(roles.observers, MAX_OBSERVERS);
        assert_eq!(
            roles.admit(peer, &alive(), true),
            Admit::Now(Role::Controller)
        );
        assert_eq!(roles.admit(peer, &alive(), true), Admit::Refused);
    }

    #[test]
    fn roles_a_gone_controller_is_waited_for_a_live_one_keeps_control() {
        let (c, n): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut roles = Roles::default();
        let old = alive();
        assert_eq!(roles.admit(c, &old, true), Admit::Now(Role::Controller));
        assert_eq!(roles.admit(n, &alive(), true), Admit::Now(Role::Observer));
        old.end();
        let released = roles.released.subscribe();
        let new = alive();
        assert_eq!(roles.admit(n, &new, true), Admit::AfterRelease(c));
        assert_eq!(roles.observers, 1, "waiting takes no role");
        roles.release(Role::Controller);
        assert!(released.has_changed().unwrap(), "the release is announced");
        assert_eq!(roles.admit(n, &new, true), Admit::Now(Role::Controller));
        // Past the wait, a gone controller counts as alive.
        new.end();
        assert_eq!(roles.admit(c, &alive(), false), Admit::Now(Role::Observer));
    }

    #[tokio::test]
    async fn presence_sees_the_clients_hang_up_before_any_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let presence = Presence::new(&stream);
        assert!(!presence.gone(), "the client is connected");
        drop(client);
        // The FIN is in the kernel once the client's close has been
        // processed; wait for it on the socket itself (bounded), no read.
        let ready = tokio::time::timeout(
            Duration::from_secs(10),
            stream.ready(tokio::io::Interest::READABLE),
        )
        .await;
        assert!(ready.is_ok(), "no hang-up within 10 s");
        assert!(
            presence.gone(),
            "the hang-up is seen without reading the EOF"
        );
        let mut buf = [0u8; 1];
        assert_eq!(
            stream.try_read(&mut buf).unwrap(),
            0,
            "only the EOF was there"
        );
    }

    /// The watched descriptor is a second one for the same socket: once
    /// the connection has ended it must be closed, or the client would
    /// never see the server close the connection.
    #[tokio::test]
    async fn an_ended_presence_is_gone_and_holds_the_socket_open_no_longer() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let presence = Presence::new(&stream);
        assert!(!presence.gone(), "the client is connected");
        presence.end();
        assert!(presence.gone(), "an ended connection is gone");
        drop(stream);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "the client sees the close: {read:?}"
        );
    }

    #[test]
    fn roles_an_observer_is_promoted_only_while_no_controller_is_connected() {
        let (c, o): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut roles = Roles::default();
        assert_eq!(roles.admit(c, &alive(), true), Admit::Now(Role::Controller));
        let p = alive();
        assert_eq!(roles.admit(o, &p, true), Admit::Now(Role::Observer));
        assert_eq!(roles.promote(o, &p), Err(Some(c)), "the holder is named");
        roles.release(Role::Controller);
        assert_eq!(roles.promote(o, &p), Ok(()));
        assert_eq!(
            (roles.controller.as_ref().map(|h| h.peer), roles.observers),
            (Some(o), 0)
        );
        assert_eq!(roles.admit(c, &alive(), true), Admit::Now(Role::Observer));
    }
}
