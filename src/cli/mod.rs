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
