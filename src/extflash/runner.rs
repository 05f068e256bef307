//! The resident stub session's state and its mailbox protocol: posting a
//! command and polling `done`, calls, buffer reads and the record stream.
//! Starting and ending the session is in `resident.rs`, what it saves in
//! `save.rs`.
//!
//! [`Resident::start`] saves what the stub disturbs (pc, xPSR, MSP and
//! CONTROL/PRIMASK; the work-area bytes it uses; DEMCR, DWT CTRL/CYCCNT and
//! comparator functions, DFSR, DBGMCU_APB1_FZ; the RCC/GPIO/SPI registers of
//! the wiring), loads the stub and its config block, checks them by word
//! readback, and starts `stub_serve`, which pushes r0-r12/lr and then waits
//! for commands in its mailbox. Each [`StubSession::call`] is one mailbox
//! post and a poll of `done` — a few round trips, no register traffic. The
//! session stays while the core is (to GDB) halted; [`Resident::end`] sends
//! `Exit` (the stub pops r0-r12/lr and parks), halts the core by request and
//! restores everything, continuing past errors so that as much as possible
//! is put back.
//!
//! Relies on the stub ABI (`extflash_stub_abi`): `stub_serve` finds its
//! config at its initial sp and the mailbox right after it, only touches
//! the work area, DWT CYCCNT and the peripherals the config names, never
//! executes FPU instructions, and while idle only reads memory.

use std::ops::Range;
use std::time::{Duration, Instant};

use extflash_stub_abi::{self as abi, mailbox_offset, slots_offset, Command, Slots, Words};
use probe_rs::{Core, CoreStatus, MemoryInterface};

use super::call::{timeout_for, Call};
use super::error::{ExtFlashError, ProbeOp, SpiWiring, StubOp, StubStatusError};
use super::probe_io::{rd, rd_block, read_work_area, reg_rd, to_words, wr};
use super::save::Saved;
use super::stream::{PackError, Stream};
use super::stub::Entries;
use crate::cortex_m::{dwt, regsel as sel, HALT_TIMEOUT};
use abi::layout::{Layout, STREAM_PAGE_BUF};
use abi::Config;

/// A gap before a chunk's trailer that goes out as padding in the chunk's
/// memory call rather than as a call of its own (about what one round trip
/// of a full-speed probe could otherwise carry).
const SMALL_GAP: usize = 64;

/// A loaded, running stub with the application's state saved.
#[derive(Debug)]
pub struct Resident {
    pub layout: Layout,
    pub(super) entries: Entries,
    pub(super) wiring: SpiWiring,
    pub(super) saved: Saved,
    /// Bytes of the data buffer saved so far (from `layout.buf`).
    pub(super) buf_saved: u32,
    pub(super) seq: u32,
    /// The JEDEC ID `stub_init` returned when the session started.
    pub jedec_id: u32,
    /// Set when a call failed in a way that leaves the stub's state
    /// unknown: the session must end.
    pub(super) broken: bool,
    /// `stub_serve` was started (so ending the session must stop it).
    pub(super) running: bool,
    /// The config block as the stub has it.
    pub(super) config: Config,
    /// CR1.BR for the board file's SPI clock at the session clock.
    pub(super) fast_br: u32,
    /// `Call::Clock` was tried (once per session).
    pub(super) clock_tried: bool,
    /// A `Read` posted ahead of need (`read_runs`), not yet waited for.
    pub(super) ahead: Option<Ahead>,
    /// A `Read` of this session ended with the stack canary intact.
    pub(super) read_stack_ok: bool,
}

/// A `Read` the host posted before anyone asked for its bytes (the range
/// after a sequential reader's): the stub fills `dst` while the host is
/// busy elsewhere. Any other command waits for it first (`post_begin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ahead {
    /// Chip offsets.
    pub run: Range<u32>,
    pub dst: u32,
    pub seq: u32,
    /// Cleared when the chip may have changed since it was posted: the
    /// stub must still be waited for, but its bytes are not used.
    pub fresh: bool,
}

impl Resident {
    /// The range of the read posted ahead whose bytes are still good.
    pub(super) fn ahead(&self) -> Option<Range<u32>> {
        self.ahead
            .as_ref()
            .filter(|a| a.fresh)
            .map(|a| a.run.clone())
    }

    /// The chip may have changed: a read posted ahead is not to be used.
    pub(super) fn forget_ahead(&mut self) {
        if let Some(a) = self.ahead.as_mut() {
            a.fresh = false;
        }
    }
}

/// What a poll of a running command saw.
pub struct Polled {
    /// The slots header's `rp`: for `Stream`, the chunks consumed.
    pub rp: u32,
    /// Target cycles (CYCCNT) since the command was posted, sampled every
    /// 16 polls.
    pub target_cycles: u64,
}

/// A session borrowed for a few calls.
pub struct StubSession<'a, 'p> {
    pub(super) core: &'a mut Core<'p>,
    pub(super) res: &'a mut Resident,
}

impl StubSession<'_, '_> {
    /// Where the session's blocks are.
    pub fn layout(&self) -> Layout {
        self.res.layout
    }

    /// Save the application's bytes of the data buffer up to `len` before
    /// the stub first writes them.
    fn save_buffer(&mut self, len: u32) -> Result<(), ExtFlashError> {
        let l = self.res.layout;
        let want = len.min(l.buf_len).div_ceil(4) * 4;
        if want <= self.res.buf_saved {
            return Ok(());
        }
        let from = l.buf + self.res.buf_saved;
        let to = l.buf + want;
        let words = read_work_area(self.core, from, to)?;
        self.res.saved.ram.push((from, words));
        self.res.buf_saved = want;
        Ok(())
    }

    /// Post `command` and wait for `done`; returns (status, value).
    pub(super) fn post(
        &mut self,
        command: Command,
        args: [u32; 3],
        timeout: Duration,
    ) -> Result<(u32, u32), ExtFlashError> {
        self.post_with(command, args, StubOp::Exit, timeout, &mut |_, _| Ok(()))
    }

    /// Like [`post`](Self::post), running `poll` after each poll of `done`
    /// that finds the command still running (the stream's slots are fed
    /// from there), with what that poll read. Any error leaves the stub in
    /// an unknown state (the command may still run, or the post may never
    /// have landed): the session is marked broken, so it ends before the
    /// next use.
    fn post_with(
        &mut self,
        command: Command,
        args: [u32; 3],
        op: StubOp,
        timeout: Duration,
        poll: &mut dyn FnMut(&mut Core<'_>, &Polled) -> Result<(), ExtFlashError>,
    ) -> Result<(u32, u32), ExtFlashError> {
        let r = self.post_inner(command, args, op, timeout, poll);
        if r.is_err() {
            self.res.broken = true;
        }
        r
    }

    fn post_inner(
        &mut self,
        command: Command,
        args: [u32; 3],
        op: StubOp,
        timeout: Duration,
        poll: &mut dyn FnMut(&mut Core<'_>, &Polled) -> Result<(), ExtFlashError>,
    ) -> Result<(u32, u32), ExtFlashError> {
        let seq = self.post_begin(command, args)?;
        self.post_wait(seq, args[0], op, timeout, true, poll)
    }

    /// Write the mailbox: the stub starts `command` at once. Returns the
    /// sequence number its `done` will carry. A read posted ahead is
    /// waited for first (its bytes are dropped): the stub takes one
    /// command at a time.
    fn post_begin(&mut self, command: Command, args: [u32; 3]) -> Result<u32, ExtFlashError> {
        if let Some(a) = self.res.ahead.take() {
            let len = a.run.end - a.run.start;
            let check = !self.res.read_stack_ok;
            self.post_wait(
                a.seq,
                a.run.start,
                StubOp::Read,
                timeout_for(0, u64::from(len)),
                check,
                &mut |_, _| Ok(()),
            )?;
        }
        let res = &mut *self.res;
        let mb = res.layout.mailbox;
        res.seq = res.seq.wrapping_add(1).max(1);
        let seq = res.seq;
        let post = [command as u32, args[0], args[1], args[2], seq];
        let core = &mut *self.core;
        core.write_32(mb.into(), &post)
            .and_then(|()| core.flush())
            .map_err(ExtFlashError::probe(ProbeOp::WriteWord(mb)))?;
        Ok(seq)
    }

    /// Wait for `done == seq` of the command [`post_begin`](Self::post_begin)
    /// started (`address`: its first argument, for messages), then check
    /// the stack canary when `canary` is set.
    fn post_wait(
        &mut self,
        seq: u32,
        address: u32,
        op: StubOp,
        timeout: Duration,
        canary: bool,
        poll: &mut dyn FnMut(&mut Core<'_>, &Polled) -> Result<(), ExtFlashError>,
    ) -> Result<(u32, u32), ExtFlashError> {
        let res = &mut *self.res;
        let mb = res.layout.mailbox;
        let core = &mut *self.core;
        // The timeout counts target time (DWT CYCCNT, which the session
        // keeps running): a slow link or an emulated core on a busy host
        // then cannot fail a call that the target is still doing. A
        // wall-clock backstop catches a core that does not advance at all.
        let limit_cycles = timeout.as_millis() as u64 * u64::from(res.cycles_per_ms());
        let backstop = timeout * 20 + Duration::from_secs(60);
        let started = Instant::now();
        // The first CYCCNT sample comes with the 16th poll: a short command
        // (most of them) costs no extra round trip, and a long one only
        // gets a slightly longer timeout.
        let mut last_cycles: Option<u32> = None;
        let mut cycles = 0u64;
        let mut polls = 0u32;
        loop {
            // done, status, value and the slots header's count, rp: adjacent
            // (see `layout`), so one read.
            let r = rd_block(core, mb + mailbox_offset::DONE, 5)?;
            if r[0] == seq {
                // The stub's deepest stack use must have stayed above its
                // lowest word: otherwise it wrote into the data buffer,
                // and what the call returned cannot be trusted.
                if canary {
                    let canary = res.layout.canary;
                    let found = rd(core, canary)?;
                    if found != abi::STACK_CANARY {
                        res.broken = true;
                        return Err(ExtFlashError::StackOverflow { op, canary, found });
                    }
                }
                return Ok((r[1], r[2]));
            }
            poll(
                core,
                &Polled {
                    rp: r[4],
                    target_cycles: cycles,
                },
            )?;
            polls += 1;
            if polls % 16 == 0 {
                let now = rd(core, dwt::CYCCNT)?;
                if let Some(last) = last_cycles {
                    cycles += u64::from(now.wrapping_sub(last));
                }
                last_cycles = Some(now);
            }
            // Now and then: is the stub still running at all?
            if polls % 64 == 0 {
                match core
                    .status()
                    .map_err(ExtFlashError::probe(ProbeOp::PollStub))?
                {
                    CoreStatus::Halted(_) | CoreStatus::LockedUp => {
                        res.broken = true;
                        if !core
                            .core_halted()
                            .map_err(ExtFlashError::probe(ProbeOp::CoreStatus))?
                        {
                            core.halt(HALT_TIMEOUT)
                                .map_err(ExtFlashError::probe(ProbeOp::HaltStub("locked up")))?;
                        }
                        return Err(ExtFlashError::WrongHalt {
                            op,
                            address,
                            pc: reg_rd(core, sel::PC)?,
                        });
                    }
                    _ => {}
                }
            }
            if cycles > limit_cycles || started.elapsed() > backstop {
                res.broken = true;
                return Err(ExtFlashError::Timeout {
                    op,
                    address,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            // Back-to-back polls at first (short calls; an emulated core
            // advances with debug traffic), then every millisecond.
            if started.elapsed() > Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Run one command; returns its value. `limit_ms` is the chip-side
    /// maximum reported in a busy-timeout message.
    pub fn call(
        &mut self,
        call: Call,
        limit_ms: u32,
        timeout: Duration,
    ) -> Result<u32, ExtFlashError> {
        self.call_with(call, limit_ms, timeout, &mut |_, _| Ok(()))
    }

    /// Like [`call`](Self::call), calling `tick` between polls (for
    /// progress output during long operations).
    pub fn call_progress(
        &mut self,
        call: Call,
        limit_ms: u32,
        timeout: Duration,
        tick: &mut dyn FnMut(),
    ) -> Result<u32, ExtFlashError> {
        self.call_with(call, limit_ms, timeout, &mut |_, _| {
            tick();
            Ok(())
        })
    }

    fn call_with(
        &mut self,
        call: Call,
        limit_ms: u32,
        timeout: Duration,
        poll: &mut dyn FnMut(&mut Core<'_>, &Polled) -> Result<(), ExtFlashError>,
    ) -> Result<u32, ExtFlashError> {
        let l = self.res.layout;
        if call.buffer_use() > l.buf_len {
            return Err(ExtFlashError::Stub {
                op: call.op(),
                address: call.address(),
                wiring: self.res.wiring,
                source: StubStatusError::BadArgument,
            });
        }
        self.save_buffer(call.buffer_use())?;
        let (status, value) =
            self.post_with(call.command(), call.args(&l), call.op(), timeout, poll)?;
        StubStatusError::check(status, limit_ms).map_err(|source| ExtFlashError::Stub {
            op: call.op(),
            address: call.address(),
            wiring: self.res.wiring,
            source,
        })?;
        Ok(value)
    }

    /// Read `len` (≤ `layout.buf_len`) bytes of the data buffer.
    pub fn read_buffer(&mut self, len: u32) -> Result<Vec<u8>, ExtFlashError> {
        let at = self.res.layout.buf;
        let mut words = vec![0u32; len.div_ceil(4) as usize];
        self.core
            .read_32(at.into(), &mut words)
            .map_err(ExtFlashError::probe(ProbeOp::ReadBuffer(at)))?;
        let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.truncate(len as usize);
        Ok(out)
    }

    /// Read the chip ranges `runs` in order (each at most the buffer), then
    /// post a read of `next` and leave it running ([`Ahead`]): a
    /// sequential reader's next request finds it done and pays only for
    /// moving its bytes. When every range fits `unit` and the buffer holds
    /// two units, the stub reads range `k + 1` over SPI into one unit while
    /// the host reads range `k` out of the other, so the SPI's time hides
    /// behind the link's (relies on `stub_read` writing only
    /// `dst..dst + len`); without that room `next` is not read. The stack
    /// canary is checked until a `Read` of at least one byte has left it
    /// intact: the stub's stack use does not depend on a `Read`'s address
    /// or length (no recursion, no variable-size frames; a longer one
    /// repeats the same 1 KiB receive calls), so every later one stays
    /// within it. Every other command is checked each time.
    pub fn read_runs(
        &mut self,
        runs: &[Range<u32>],
        unit: u32,
        next: Option<Range<u32>>,
    ) -> Result<Vec<Vec<u8>>, ExtFlashError> {
        let l = self.res.layout;
        let len = |r: &Range<u32>| r.end.saturating_sub(r.start);
        if let Some(r) = runs
            .iter()
            .chain(next.as_ref())
            .find(|r| len(r) > l.buf_len)
        {
            return Err(ExtFlashError::Stub {
                op: StubOp::Read,
                address: r.start,
                wiring: self.res.wiring,
                source: StubStatusError::BadArgument,
            });
        }
        let pipelined = unit > 0
            && 2 * unit <= l.buf_len
            && runs.iter().chain(next.as_ref()).all(|r| len(r) <= unit);
        let next = next.filter(|_| pipelined && !runs.is_empty());
        let used = if pipelined && (runs.len() > 1 || next.is_some() || self.res.ahead.is_some()) {
            2 * unit
        } else {
            runs.iter().map(len).max().unwrap_or(0)
        };
        self.save_buffer(used)?;
        let r = self.read_runs_inner(runs, next, pipelined.then_some(unit));
        if r.is_err() {
            self.res.ahead = None;
            self.res.broken = true;
        }
        r
    }

    fn read_runs_inner(
        &mut self,
        runs: &[Range<u32>],
        next: Option<Range<u32>>,
        unit: Option<u32>,
    ) -> Result<Vec<Vec<u8>>, ExtFlashError> {
        let op = StubOp::Read;
        let buf = self.res.layout.buf;
        // With two units, each run goes to the one the last did not use.
        let other = |dst: u32| match unit {
            Some(u) if dst == buf => buf + u,
            _ => buf,
        };
        let mut out = Vec::with_capacity(runs.len());
        let Some(first) = runs.first() else {
            return Ok(out);
        };
        let mut cur = match self.res.ahead.take() {
            Some(a) if a.fresh && a.run == *first => a,
            stale => {
                // Not what is asked for: `post_begin` waits for it.
                self.res.ahead = stale;
                self.post_read(first.clone(), buf)?
            }
        };
        for k in 0..runs.len() {
            let n = cur.run.end - cur.run.start;
            let check = !self.res.read_stack_ok;
            let (status, _) = self.post_wait(
                cur.seq,
                cur.run.start,
                op,
                timeout_for(0, u64::from(n)),
                check,
                &mut |_, _| Ok(()),
            )?;
            StubStatusError::check(status, 0).map_err(|source| ExtFlashError::Stub {
                op,
                address: cur.run.start,
                wiring: self.res.wiring,
                source,
            })?;
            // A `Read` of no bytes skips the SPI receive path: it says
            // nothing about the deepest stack a `Read` uses.
            self.res.read_stack_ok |= n > 0;
            // The next range starts before this one's bytes cross the link.
            let follow = runs.get(k + 1).cloned().or_else(|| next.clone());
            let posted = match (unit, follow) {
                (Some(_), Some(r)) => Some(self.post_read(r, other(cur.dst))?),
                _ => None,
            };
            let mut words = vec![0u32; n.div_ceil(4) as usize];
            self.core
                .read_32(cur.dst.into(), &mut words)
                .map_err(ExtFlashError::probe(ProbeOp::ReadBuffer(cur.dst)))?;
            let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            bytes.truncate(n as usize);
            out.push(bytes);
            cur = match (posted, runs.get(k + 1)) {
                (Some(p), Some(_)) => p,
                (Some(p), None) => {
                    self.res.ahead = Some(p);
                    break;
                }
                (None, Some(r)) => self.post_read(r.clone(), buf)?,
                (None, None) => break,
            };
        }
        Ok(out)
    }

    /// Post `Read` of chip `run` into `dst`.
    fn post_read(&mut self, run: Range<u32>, dst: u32) -> Result<Ahead, ExtFlashError> {
        let seq = self.post_begin(Command::Read, [run.start, dst, run.end - run.start])?;
        Ok(Ahead {
            run,
            dst,
            seq,
            fresh: true,
        })
    }

    /// Run `stream` (chunks packed for [`Layout::stream_slots`]) through
    /// `Command::Stream`: the host writes chunk `k` into slot `k % count`
    /// once the stub has consumed chunk `k - count`, data and trailer in
    /// one memory call, and several chunks per poll when the stub is
    /// ahead, so the link keeps sending while the chip erases.
    /// `consumed(k)` reports each chunk the stub is done with. A failing
    /// record is reported with its operation and chip address. Returns the
    /// 4 KiB sectors whose `ERASE_UNLESS_BLANK` erase the stub skipped.
    pub fn stream(
        &mut self,
        stream: &Stream,
        consumed: &mut dyn FnMut(usize),
    ) -> Result<u32, ExtFlashError> {
        let l = self.res.layout;
        let (count, slot) = l.stream_slots();
        let chunks = &stream.chunks;
        let n = chunks.len();
        if n == 0 {
            return Ok(0);
        }
        if let Some(c) = chunks.iter().find(|c| c.bytes.len() as u32 > slot - 4) {
            return Err(ExtFlashError::Stream(PackError::ChunkTooLarge {
                len: c.bytes.len() as u32,
                capacity: slot - 4,
            }));
        }
        let start = l.buf + STREAM_PAGE_BUF;
        let used = (n as u32).min(count);
        self.save_buffer(STREAM_PAGE_BUF + used * slot)?;
        let header = Slots {
            count,
            rp: 0,
            start,
            end: start + count * slot,
            abort: 0,
        };
        let mut block = [0u8; Slots::SIZE];
        header.write_le(&mut block);
        self.core
            .write_32(l.slots.into(), &to_words(&block))
            .map_err(ExtFlashError::probe(ProbeOp::SlotsHeader(l.slots)))?;
        // Chunks `k..end` into their slots, with their trailers: in one
        // call when each nearly fills its slot (the gap before a trailer
        // then costs less wire time than another call) and the slots are
        // adjacent. The stub starts on a chunk as soon as its trailer lands,
        // before the call ends.
        let full = |k: usize| slot as usize - 4 - chunks[k].bytes.len() <= SMALL_GAP;
        let put_run = |core: &mut Core<'_>, k: usize, end: usize| -> Result<(), ExtFlashError> {
            let base = start + (k as u32 % count) * slot;
            let mut words = Vec::with_capacity((end - k) * slot as usize / 4);
            for (j, c) in chunks.iter().enumerate().take(end).skip(k) {
                let at = words.len();
                words.extend(to_words(&c.bytes));
                words.resize(at + (slot as usize - 4) / 4, u32::MAX);
                words.push(abi::stream::trailer(j as u32, c.bytes.len() as u32));
            }
            core.write_32(base.into(), &words)
                .map_err(ExtFlashError::probe(ProbeOp::FillSlot(base)))
        };
        let put = |core: &mut Core<'_>, k: usize| -> Result<(), ExtFlashError> {
            let c = &chunks[k].bytes[..];
            let base = start + (k as u32 % count) * slot;
            let trailer = abi::stream::trailer(k as u32, c.len() as u32);
            let words = to_words(c);
            if full(k) {
                put_run(core, k, k + 1)
            } else {
                if !words.is_empty() {
                    core.write_32(base.into(), &words)
                        .map_err(ExtFlashError::probe(ProbeOp::FillSlot(base)))?;
                }
                wr(core, base + slot - 4, trailer)
            }
        };
        // Chunk 0, then every other slot that will be used gets a stale
        // trailer (the application's bytes could pass for a chunk's).
        put(&mut *self.core, 0)?;
        for j in 1..used {
            wr(self.core, start + j * slot + slot - 4, 0)?;
        }
        let mut written = 1usize;
        let timeout = timeout_for(stream.busy_max_ms, stream.sent_bytes * 4);
        // Target time without progress before the host gives up: the
        // longest single operation and a chunk's worth of pages after it.
        let cycles_per_ms = self.res.cycles_per_ms();
        let stall_cycles = (u64::from(stream.op_max_ms()) * 2 + 2_000) * u64::from(cycles_per_ms);
        let mut done = 0usize;
        let mut moved_at = 0u64;
        let mut aborted = false;
        let posted = self.post_with(
            Command::Stream,
            [l.slots, n as u32, l.buf],
            StubOp::StreamProgram,
            timeout,
            &mut |core, p| {
                let now = (p.rp as usize).min(n);
                // The stall clock runs only while the stub has a chunk to
                // work on: a host that fell behind is no stall.
                if now > done || written == done {
                    (done..now).for_each(&mut *consumed);
                    done = now;
                    moved_at = p.target_cycles;
                } else if p.target_cycles.saturating_sub(moved_at) > stall_cycles {
                    if !aborted {
                        aborted = true;
                        wr(core, l.slots + slots_offset::ABORT, 1)?;
                    } else if p.target_cycles.saturating_sub(moved_at) > 2 * stall_cycles {
                        // The stub sees `abort` only between chunks: one
                        // stuck inside an operation (a DMA transfer that
                        // never ends) is halted when the session ends.
                        return Err(ExtFlashError::Timeout {
                            op: StubOp::StreamProgram,
                            address: stream.chunk_address(done),
                            timeout_ms: stall_cycles / u64::from(cycles_per_ms.max(1)),
                        });
                    }
                }
                // Chunk k goes where chunk k - count was: free once consumed.
                let free = (done + count as usize).min(n);
                while written < free {
                    let mut end = written + 1;
                    while full(end - 1) && end < free && end % count as usize != 0 && full(end) {
                        end += 1;
                    }
                    if end - written > 1 {
                        put_run(core, written, end)?;
                    } else {
                        put(core, written)?;
                    }
                    written = end;
                }
                Ok(())
            },
        );
        // Errors name the chunk the stub was on, not the slots header.
        let at = stream.chunk_address(done);
        let (status, value) = posted.map_err(|e| match e {
            ExtFlashError::Timeout { op, timeout_ms, .. } => ExtFlashError::Timeout {
                op,
                address: at,
                timeout_ms,
            },
            ExtFlashError::WrongHalt { op, pc, .. } => ExtFlashError::WrongHalt {
                op,
                address: at,
                pc,
            },
            other => other,
        })?;
        // The failing record's op and chip address (`fail_value`).
        let (op, limit_ms) = match value >> 24 {
            abi::stream::OP_ERASE => (StubOp::StreamErase, stream.erase_max_ms),
            abi::stream::OP_VERIFY_BLANK => (StubOp::StreamVerifyBlank, stream.page_ms),
            _ => (StubOp::StreamProgram, stream.page_ms),
        };
        StubStatusError::check(status, limit_ms).map_err(|source| ExtFlashError::Stub {
            op,
            address: value & 0xFF_FFFF,
            wiring: self.res.wiring,
            source,
        })?;
        (done..n).for_each(consumed);
        Ok(value)
    }
}
