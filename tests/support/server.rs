//! `extflash-gdb serve --sim --port 0` as a child process for tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::rsp::RspClient;

/// A running server; killed on drop.
pub struct SimServer {
    child: Child,
    pub addr: String,
}

impl SimServer {
    pub fn start(extra: &[&str]) -> SimServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .args(["serve", "--sim", "--port", "0"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn extflash-gdb");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("expected `listening on HOST:PORT`, got {line:?}"))
            .to_string();
        SimServer { child, addr }
    }

    pub fn client(&self) -> RspClient {
        RspClient::connect(&self.addr).expect("connect")
    }

    /// Connect, retrying while the previous connection is being torn down
    /// (the server refuses a second controller until then).
    pub fn client_after_close(&self) -> RspClient {
        for _ in 0..50 {
            let mut c = self.client();
            if c.ask("?").is_ok() {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("server stopped accepting connections");
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
