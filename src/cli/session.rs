//! A subcommand's connection to the board: the same [`ProbeWorker`] and
//! [`server::run`] that `serve` uses, on a 127.0.0.1 port-0 listener inside
//! this process, driven through [`RspClient`] with the packets GDB sends.
//! So planning, erases, stub runs and CRCs are exactly the server's.

use extflash_gdb::stm32f4;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use extflash_gdb::board::Board;
use extflash_gdb::extflash::info::FlashInfo;
use extflash_gdb::extflash::wiring;
use extflash_gdb::flash::EventSink;
use extflash_gdb::server::worker::PACKET_BUFFER;
use extflash_gdb::server::{self, ProbeWorker, SessionSource};
use extflash_gdb::MONITOR_ERROR_LINE;
use tokio::sync::oneshot;

use super::image::Segment;
use super::mmap::{self, LoadPlan, MapEntry};
use super::options::TargetArgs;
use super::progress::Progress;
use super::rsp::{self, RspClient, LONG_TIMEOUT, REPLY_TIMEOUT};

/// Bytes per `m` request: the hex reply (twice this) stays well inside the
/// server's packet buffer.
pub const READ_CHUNK: u32 = 0x1000;
/// Run/halt cycles `settle` tries before giving up, and how long the core
/// runs in the first (each next one runs that much longer: 10 s in all).
const SETTLE_TRIES: usize = 13;
const SETTLE_RUN: std::time::Duration = std::time::Duration::from_millis(100);
/// Room for `vFlashWrite:addr:`/`Xaddr,len:` and framing in one packet.
const HEADER_ROOM: usize = 64;

pub struct BoardSession {
    client: Option<RspClient>,
    pub board: Arc<Board>,
    /// The server this session started, if it did (not when it connects to
    /// a running `serve`, as `serve --demo` does).
    server: Option<InProcessServer>,
    /// Reply timeout of the packets that erase, program or CRC.
    long_timeout: std::time::Duration,
}

struct InProcessServer {
    runtime: tokio::runtime::Runtime,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    shutdown: oneshot::Sender<()>,
}

impl BoardSession {
    /// Open the probe (or the virtual board), start the server on a
    /// loopback port, connect to it.
    pub fn open(args: &TargetArgs, events: EventSink) -> anyhow::Result<BoardSession> {
        let board = Arc::new(args.load_board()?);
        let source = args.source(&board)?;
        Self::open_source(board, source, events)
    }

    /// [`Self::open`] with a session source the caller built.
    pub fn open_source(
        board: Arc<Board>,
        source: SessionSource,
        events: EventSink,
    ) -> anyhow::Result<BoardSession> {
        let worker = ProbeWorker::start_with_events(source, board.clone(), events)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .context("cannot open a loopback port for the in-process GDB server")?;
        let addr: SocketAddr = listener.local_addr()?;
        let server = runtime.spawn(server::run(listener, worker, async move {
            let _ = shutdown_rx.await;
        }));
        let mut session = BoardSession {
            client: None,
            board,
            server: Some(InProcessServer {
                runtime,
                handle: server,
                shutdown: shutdown_tx,
            }),
            long_timeout: LONG_TIMEOUT,
        };
        session.client = Some(RspClient::connect(addr)?);
        Ok(session)
    }

    /// Connect to a server already running at `addr`.
    pub fn connect(addr: SocketAddr, board: Arc<Board>) -> anyhow::Result<BoardSession> {
        Ok(BoardSession {
            client: Some(RspClient::connect(addr)?),
            board,
            server: None,
            long_timeout: LONG_TIMEOUT,
        })
    }

    /// Wait up to `timeout` for the replies to `vFlashDone`, `qCRC` and
    /// `monitor` (default [`LONG_TIMEOUT`]): the virtual board emulates the
    /// stub's every instruction, so megabytes take minutes of host time.
    pub fn set_long_timeout(&mut self, timeout: std::time::Duration) {
        self.long_timeout = timeout;
    }

    fn client(&mut self) -> &mut RspClient {
        self.client.as_mut().expect("connected until close")
    }

    /// Disconnect, stop the server and the worker (which drops the probe),
    /// and report the worker's error, if any.
    pub fn close(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        drop(self.client.take());
        match self.server.take() {
            Some(server) => {
                let _ = server.shutdown.send(());
                server
                    .runtime
                    .block_on(server.handle)
                    .context("in-process GDB server task")?
            }
            None => Ok(()),
        }
    }

    /// Let the core run and end the session (`D`: the server resumes the
    /// core on detach).
    pub fn detach_running(mut self) -> anyhow::Result<()> {
        let reply = self.client().request(b"D", REPLY_TIMEOUT)?;
        rsp::check_ok(b"D", reply)?;
        self.stop()
    }

    /// The memory map as GDB reads it (`qXfer:memory-map:read`).
    pub fn memory_map(&mut self) -> Result<Vec<MapEntry>, anyhow::Error> {
        let mut xml = Vec::new();
        loop {
            let packet = format!("qXfer:memory-map:read::{:x},{:x}", xml.len(), 0x1000);
            let reply = self.client().request(packet.as_bytes(), REPLY_TIMEOUT)?;
            match reply.split_first() {
                Some((b'm', data)) => xml.extend_from_slice(data),
                Some((b'l', data)) => {
                    xml.extend_from_slice(data);
                    break;
                }
                _ => return Err(rsp::reply_error(packet.as_bytes(), reply).into()),
            }
        }
        Ok(mmap::parse(&String::from_utf8_lossy(&xml))?)
    }

    /// The board's RAM regions (the memory map lists every gap as RAM too;
    /// a file is only loaded into real RAM).
    pub fn ram_ranges(&self) -> Vec<std::ops::Range<u64>> {
        self.board
            .regions
            .iter()
            .filter(|r| !r.is_flash())
            .map(|r| r.range())
            .collect()
    }

    /// Read `len` bytes with `m`, any address (the window goes through the
    /// stub, as for GDB).
    pub fn read(
        &mut self,
        address: u32,
        len: u32,
        progress: Option<&Progress>,
    ) -> anyhow::Result<Vec<u8>> {
        self.read_in(address, len, READ_CHUNK, progress)
    }

    /// [`Self::read`] with `m` requests of at most `chunk` bytes.
    pub fn read_in(
        &mut self,
        address: u32,
        len: u32,
        chunk: u32,
        progress: Option<&Progress>,
    ) -> anyhow::Result<Vec<u8>> {
        let chunk = chunk.max(1);
        let mut out = Vec::with_capacity(len as usize);
        let end = u64::from(address) + u64::from(len);
        while (out.len() as u64) < u64::from(len) {
            let at = u64::from(address) + out.len() as u64;
            let n = (end - at).min(u64::from(chunk));
            let packet = format!("m{at:x},{n:x}");
            let reply = self.client().request(packet.as_bytes(), REPLY_TIMEOUT)?;
            let data = match rsp::unhex(&reply) {
                Some(d) if !d.is_empty() && !reply.starts_with(b"E") => d,
                _ => {
                    return Err(anyhow::Error::new(rsp::reply_error(
                        packet.as_bytes(),
                        reply,
                    )))
                    .with_context(|| format!("cannot read {n:#x} bytes at {at:#010x}"))
                }
            };
            if let Some(p) = progress {
                p.advance(data.len() as u64);
            }
            out.extend_from_slice(&data[..data.len().min(n as usize)]);
        }
        Ok(out)
    }

    /// Write RAM with binary `X` packets.
    pub fn write_ram(&mut self, seg: &Segment) -> anyhow::Result<()> {
        self.send_binary(seg, |addr, n| format!("X{addr:x},{n:x}:"), REPLY_TIMEOUT)
    }

    /// Send `seg` in packets of `header(addr, len)` + escaped data, each
    /// answered `OK`.
    fn send_binary(
        &mut self,
        seg: &Segment,
        header: impl Fn(u32, usize) -> String,
        timeout: std::time::Duration,
    ) -> anyhow::Result<()> {
        let mut done = 0;
        while done < seg.data.len() {
            let at = seg.address + done as u32;
            let rest = &seg.data[done..];
            let n = rsp::fits_escaped(rest, PACKET_BUFFER - HEADER_ROOM);
            let mut packet = header(at, n).into_bytes();
            rsp::escape_into(&mut packet, &rest[..n]);
            self.client()
                .expect_ok_bytes(&packet, timeout)
                .with_context(|| format!("writing {n:#x} bytes at {at:#010x}"))?;
            done += n;
        }
        Ok(())
    }

    /// GDB's `load` of a plan: RAM pieces, every erase, the flash writes in
    /// address order, one `vFlashDone` (which erases and programs).
    pub fn load(&mut self, plan: &LoadPlan) -> anyhow::Result<()> {
        for seg in &plan.ram {
            self.write_ram(seg)?;
        }
        if plan.flash.is_empty() {
            return Ok(());
        }
        for r in &plan.erases {
            let packet = format!("vFlashErase:{:x},{:x}", r.start, r.end - r.start);
            self.client()
                .expect_ok_bytes(packet.as_bytes(), REPLY_TIMEOUT)
                .with_context(|| {
                    format!(
                        "erase request for {:#x} bytes at {:#010x}",
                        r.end - r.start,
                        r.start
                    )
                })?;
        }
        for seg in &plan.flash {
            self.send_binary(
                seg,
                |addr, _| format!("vFlashWrite:{addr:x}:"),
                REPLY_TIMEOUT,
            )?;
        }
        let timeout = self.long_timeout;
        self.client()
            .expect_ok_bytes(b"vFlashDone", timeout)
            .context("programming (vFlashDone)")?;
        Ok(())
    }

    /// Erase `ranges` (on block boundaries) with one `vFlashErase` each and
    /// one `vFlashDone`, as GDB sends them for a load.
    pub fn erase(&mut self, ranges: &[std::ops::Range<u64>]) -> anyhow::Result<()> {
        for r in ranges {
            let (start, len) = (r.start, r.end - r.start);
            let packet = format!("vFlashErase:{start:x},{len:x}");
            self.client()
                .expect_ok_bytes(packet.as_bytes(), REPLY_TIMEOUT)
                .with_context(|| format!("erase request for {len:#x} bytes at {start:#010x}"))?;
        }
        let timeout = self.long_timeout;
        self.client()
            .expect_ok_bytes(b"vFlashDone", timeout)
            .context("erasing (vFlashDone)")?;
        Ok(())
    }

    /// The server's `PacketSize` from `qSupported`, as GDB reads it; GDB
    /// asks for at most half of it per `m` (two hex digits a byte).
    pub fn packet_size(&mut self) -> anyhow::Result<usize> {
        let packet = b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=arm";
        let reply = self.client().request(packet, REPLY_TIMEOUT)?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        text.split(';')
            .find_map(|f| f.strip_prefix("PacketSize="))
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .with_context(|| format!("qSupported reply without PacketSize: `{text}`"))
    }

    /// On-target CRC (`qCRC`, GDB's `compare-sections`).
    pub fn crc(&mut self, address: u32, len: u32) -> anyhow::Result<u32> {
        let packet = format!("qCRC:{address:x},{len:x}");
        let timeout = self.long_timeout;
        let reply = self.client().request(packet.as_bytes(), timeout)?;
        reply
            .strip_prefix(b"C")
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| anyhow::Error::new(rsp::reply_error(packet.as_bytes(), reply)))
            .with_context(|| format!("CRC of {len:#x} bytes at {address:#010x}"))
    }

    /// `monitor CMD`: console text as it arrives goes to `console`; the
    /// whole text is returned. A line starting with the server's error
    /// marker ([`MONITOR_ERROR_LINE`]) fails.
    pub fn monitor(&mut self, cmd: &str, console: &mut dyn FnMut(&str)) -> anyhow::Result<String> {
        let packet = format!("qRcmd,{}", rsp::hex(cmd.as_bytes()));
        let mut text = String::new();
        let timeout = self.long_timeout;
        let reply = self
            .client()
            .request_with(packet.as_bytes(), timeout, &mut |t| {
                console(t);
                text.push_str(t);
            })
            .with_context(|| format!("monitor {cmd}"))?;
        if reply != b"OK" {
            return Err(anyhow::Error::new(rsp::reply_error(
                packet.as_bytes(),
                reply,
            )))
            .with_context(|| format!("monitor {cmd}"));
        }
        if let Some(line) = text
            .lines()
            .find_map(|l| l.strip_prefix(MONITOR_ERROR_LINE))
        {
            anyhow::bail!("monitor {cmd}: {}", line.trim());
        }
        Ok(text)
    }

    /// The external flash as the server identifies it (`monitor flash info
    /// --record`), as data.
    pub fn flash_info(&mut self) -> anyhow::Result<FlashInfo> {
        let text = self.monitor("flash info --record", &mut |_| {})?;
        Ok(FlashInfo::from_record(&text)?)
    }

    /// Get the board into a state where the window can be used: reset and
    /// halt at the reset vector when `reset` (the application has not
    /// touched the SPI bus yet, as after cortex-debug's `monitor reset
    /// halt`); otherwise, if the application holds the external flash's
    /// chip select (the stub refuses to interleave with its transaction),
    /// let it run briefly and halt again, a bounded number of times.
    pub fn settle(&mut self, reset: bool) -> anyhow::Result<()> {
        let Some(ext) = self.board.external_flash.clone() else {
            if reset {
                self.monitor("reset halt", &mut |_| {})?;
            }
            return Ok(());
        };
        if reset {
            self.monitor("reset halt", &mut |_| {})?;
            self.identify();
            return Ok(());
        }
        let base = wiring::gpio_base(ext.cs.port);
        for i in 0..SETTLE_TRIES {
            // The server's own test before it starts the stub.
            let moder = self.read_u32(base + stm32f4::GPIO_MODER)?;
            let odr = self.read_u32(base + stm32f4::GPIO_ODR)?;
            if !wiring::cs_held(moder, odr, ext.cs.number) {
                self.identify();
                return Ok(());
            }
            // GDB's way: continue, then Ctrl-C.
            self.client().run_for(SETTLE_RUN * (i as u32 + 1))?;
        }
        anyhow::bail!(
            "the application keeps the external flash selected (CS {} low) whenever the core \
             halts; use --reset-halt to stop it at the reset vector instead",
            ext.cs
        )
    }

    /// Identify the external chip so the memory map has its size and
    /// erase size (the server identifies at connect, which fails while the
    /// application holds the chip). A failure here shows again, with its
    /// reason, in the first operation that needs the chip.
    fn identify(&mut self) {
        if let Err(e) = self.flash_info() {
            tracing::debug!("identifying the external flash: {e:#}");
        }
    }

    /// A 32-bit register read as four bytes (the server never issues
    /// 16-bit probe accesses; a word read is one).
    pub fn read_u32(&mut self, address: u32) -> anyhow::Result<u32> {
        let b = self.read(address, 4, None)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Drop for BoardSession {
    fn drop(&mut self) {
        if self.server.is_some() || self.client.is_some() {
            if let Err(e) = self.stop() {
                tracing::warn!("closing the board session: {e:#}");
            }
        }
    }
}
