//! Executing a window `load` at `vFlashDone`: the probe I/O around the pure
//! [`LoadPlan`](super::load_plan::LoadPlan): the protection check, the
//! clock, reading which blocks already hold the image, then streaming the
//! plan and checking what no program wrote.

use std::time::Instant;

use extflash_stub_abi as abi;
use probe_rs::Core;

use super::call::{timeout_for, Call};
use super::chip_ops::refuse_if_protected;
use super::error::ExtFlashError;
use super::load_plan::{self, BlockState, LoadInput, LoadPlan, PROBE};
use super::runner::StubSession;
use super::{at_window, ExtFlash};
use crate::flash::plan::Unit;
use crate::flash::{FlashEvent, FlashKind};

impl ExtFlash {
    /// Execute the accumulated `load` (at `vFlashDone`): erase, then
    /// program, in one stub session. Refuses up front, before erasing
    /// anything, when the status registers configure any protection.
    pub fn commit(
        &mut self,
        core: &mut Core<'_>,
        events: &mut dyn FnMut(FlashEvent),
    ) -> Result<(), ExtFlashError> {
        let request = std::mem::take(&mut self.request);
        if request.is_empty() {
            return Ok(());
        }
        self.ensure_identified(core)?;
        self.cache.clear();
        let chip = self.chip.clone().expect("identified above");
        let kinds = chip.geometry.stub_erase_kinds();
        let page = self.page_size();
        let buf_words = self.buffer_len()? / 4;
        let started = Instant::now();
        let window = self.ext.window;
        let wiring = self.wiring();
        let units = request.units();
        let first = units.first().map(|u| u.address).unwrap_or(window);
        let requested: u64 = units.iter().map(|u| u.data.len() as u64).sum();
        let compress = self.compress;
        let done = self.session(core, first, requested as u32, |s, _| {
            refuse_if_protected(s, first, wiring)?;
            s.raise_clock()?;
            // Skip unchanged: the first `PROBE` bytes are read first; when
            // none of them holds the image already, the rest is not read
            // before the stream (the link would wait for it): the stub
            // then reads each sector/block before erasing it and skips the
            // erase of a blank one, while the link sends.
            let (probe, rest) = load_plan::probe_units(&units, PROBE);
            let mut blocks = block_state(s, &probe, window, buf_words)?;
            if !blocks.unchanged.is_empty() && !rest.is_empty() {
                blocks.extend(block_state(s, &rest, window, buf_words)?);
                blocks.merge();
            }
            let (_, slot) = s.layout().stream_slots();
            let load = LoadPlan::new(&LoadInput {
                units: &units,
                blocks: &blocks,
                kinds: &kinds,
                page,
                timeouts: &chip.timeouts,
                window,
                capacity: slot - 4,
                compress,
                unless_blank: blocks.unchanged.is_empty() && !rest.is_empty(),
            })?;
            load.start_events().into_iter().for_each(&mut *events);
            run(s, &load, events)
        })?;
        events(FlashEvent::Done {
            flash: FlashKind::External,
            erased: done.0,
            programmed: done.1,
            skipped: done.2,
            elapsed: started.elapsed(),
            board: None,
        });
        Ok(())
    }
}

/// Stream `load`, then check by CRC what it left unprogrammed, so
/// `vFlashDone` never says OK over a wrong byte. Returns (erased,
/// programmed, skipped) bytes.
fn run(
    s: &mut StubSession<'_, '_>,
    load: &LoadPlan,
    events: &mut dyn FnMut(FlashEvent),
) -> Result<(u64, u64, u64), ExtFlashError> {
    let window = load.window;
    let packed = &load.stream;
    tracing::debug!(
        chunks = packed.chunks.len(),
        program = packed.program_bytes,
        sent = packed.sent_bytes,
        compressed = packed.compressed_bytes,
        "load stream"
    );
    let mut next = 0usize;
    let streamed = s.stream(packed, &mut |k| {
        next = k + 1;
        load.chunk_events(k).for_each(&mut *events);
    });
    let blank_sectors = match streamed {
        Ok(n) => u64::from(n),
        Err(err) => {
            let err = at_window(err, window);
            return Err(match load.incomplete_span(next) {
                Some(span) => ExtFlashError::LoadIncomplete {
                    from: span.start,
                    to: span.end,
                    source: Box::new(err),
                },
                _ => err,
            });
        }
    };
    for v in &load.verify {
        let found = s
            .call(
                Call::Crc32 {
                    addr: v.address - window,
                    len: v.len,
                },
                0,
                timeout_for(0, u64::from(v.len) * 2),
            )
            .map_err(|err| at_window(err, window))?;
        if found != v.crc {
            return Err(ExtFlashError::VerifyFailed {
                address: v.address,
                len: v.len,
                expected: v.crc,
                found,
            });
        }
    }
    if packed.compressed_bytes > 0 {
        events(FlashEvent::Compressed {
            flash: FlashKind::External,
            bytes: packed.compressed_bytes,
            sent: packed.sent_bytes,
        });
    }
    Ok((load.erased(blank_sectors), load.program_bytes, load.skipped))
}

/// What the chip holds of the block-aligned `units` (window addresses), by
/// the stub's block CRCs, as many blocks per call as its buffer holds.
fn block_state(
    s: &mut StubSession<'_, '_>,
    units: &[Unit],
    window: u32,
    buf_words: u32,
) -> Result<BlockState, ExtFlashError> {
    let block = abi::CRC_BLOCK;
    let pair = abi::CRC_BLOCK_WORDS;
    let per_call = (buf_words.saturating_sub(abi::CRC_SCRATCH / 4) / pair).max(1);
    let mut state = BlockState::default();
    for u in units.iter().filter(|u| load_plan::block_aligned(u)) {
        let blocks = u.data.len() as u32 / block;
        let mut i = 0;
        while i < blocks {
            let count = (blocks - i).min(per_call);
            let addr = u.address + i * block;
            s.call(
                Call::CrcBlocks {
                    addr: addr - window,
                    count,
                },
                0,
                timeout_for(0, u64::from(count) * u64::from(block) * 2),
            )
            .map_err(|err| at_window(err, window))?;
            let words = s.read_buffer(count * 4 * pair)?;
            let image = &u.data[(i * block) as usize..((i + count) * block) as usize];
            state.judge(addr, image, &words);
            i += count;
        }
    }
    state.merge();
    Ok(state)
}
