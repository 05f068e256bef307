//! The subcommands beyond `serve` (`flash`, `read`, `erase`, `verify`,
//! `info`, `list`, `selftest`, `bench`, `bitbang`), one file each.
//!
//! Each drives the same code path as a GDB: it starts the server's probe
//! worker and `server::run` on a loopback port inside this process and
//! speaks RSP to it ([`session`]), so planning, stub runs and CRCs are the
//! server's own. Files are parsed and checked ([`image`], [`ihex`], [`srec`],
//! [`mmap`]) before anything is sent to the target. Owns printing for
//! people; the library never prints.

pub mod bench;
pub mod bitbang;
pub mod demo;
pub mod erase;
pub mod flash;
pub mod ihex;
pub mod image;
pub mod info;
pub mod list;
pub mod loader;
pub mod mmap;
pub mod options;
pub mod progress;
pub mod read;
pub mod rsp;
pub mod selftest;
pub mod session;
pub mod source;
pub mod srec;
pub mod verify;

/// `cannot listen on BIND:PORT`, with what to do for the usual causes (a
/// port in use, an address not on this machine, a privileged port).
pub fn listen_error(bind: &str, port: u16, e: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::AddrInUse => {
            " (another server already uses that port: stop it, or pick another with --port; \
             --port 0 picks a free one)"
        }
        ErrorKind::AddrNotAvailable => {
            " (not an address of this machine: --bind 127.0.0.1 for this machine only)"
        }
        ErrorKind::PermissionDenied if port < 1024 => {
            " (ports below 1024 need privileges: use --port 3333, or 0 for a free one)"
        }
        _ => "",
    };
    anyhow::Error::new(e).context(format!("cannot listen on {bind}:{port}{hint}"))
}
