//! A `load`'s erases and programs as one record stream for `stub_stream`
//! (`extflash_stub_abi::stream`), cut into chunks of one slot. Pure: the
//! runner writes the chunks, [`pack`] only decides what goes in them.
//!
//! Relies on the stream ABI: records are word-aligned and never cross a
//! chunk, a chunk holds at most `slot - 4` bytes (the trailer takes the
//! last word), and `PROGRAM_LZ` carries one `lz` block per page, the first
//! and last page cut at the record's ends.

use extflash_stub_abi::lz;
use extflash_stub_abi::stream::{self as abi, HEADER};
use extflash_stub_abi::{EraseKind, Timeouts};

use crate::flash::plan::Step;

/// A page goes compressed only when its block saves at least an eighth:
/// below that the decoding and an extra record header cost more than the
/// link time saved.
const WORTH_COMPRESSING: usize = 8;

/// What a chunk did once the stub has consumed it (chip addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Erase { addr: u32, size: u32 },
    Program { addr: u32, bytes: u32 },
}

/// One chunk: the bytes of its records, and what they do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub done: Vec<Done>,
}

/// The packed stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    pub chunks: Vec<Chunk>,
    /// Bytes to program (decoded).
    pub program_bytes: u64,
    /// Bytes of records that cross the link (headers and payloads).
    pub sent_bytes: u64,
    /// Of `program_bytes`, those sent as `lz` blocks.
    pub compressed_bytes: u64,
    /// Sum of the datasheet maxima of every operation, for the timeout.
    pub busy_max_ms: u64,
    /// The longest erase's and a page program's maximum, for stall
    /// detection and messages.
    pub erase_max_ms: u32,
    pub page_ms: u32,
}

impl Stream {
    /// The chip range the chunks from `k` on erase or program: what a
    /// stream that stopped before consuming chunk `k` may have left
    /// differing from the image. `None` when nothing is left.
    pub fn span_from(&self, k: usize) -> Option<std::ops::Range<u32>> {
        let ends = self
            .chunks
            .get(k..)?
            .iter()
            .flat_map(|c| &c.done)
            .map(|d| match *d {
                Done::Erase { addr, size } => addr..addr + size,
                Done::Program { addr, bytes } => addr..addr + bytes,
            });
        ends.reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
    }

    /// The chip address chunk `k` starts at (its first operation's), 0
    /// past the end.
    pub fn chunk_address(&self, k: usize) -> u32 {
        let first = self.chunks.get(k).and_then(|c| c.done.first());
        match first {
            Some(Done::Erase { addr, .. } | Done::Program { addr, .. }) => *addr,
            None => 0,
        }
    }

    /// The longest single operation's maximum.
    pub fn op_max_ms(&self) -> u32 {
        self.erase_max_ms.max(self.page_ms)
    }
}

/// How [`pack`] cuts a stream.
#[derive(Debug, Clone, Copy)]
pub struct Packing<'a> {
    /// Bytes of records per chunk: a slot less its trailer.
    pub capacity: u32,
    /// The chip's page size (at most `lz::PAGE`).
    pub page: u32,
    /// The chip's erase instructions.
    pub kinds: &'a [EraseKind],
    /// Datasheet maxima, for the timeouts.
    pub timeouts: &'a Timeouts,
    /// Whether `PROGRAM_LZ` records may be used.
    pub compress: bool,
    /// Whether erases carry `ERASE_UNLESS_BLANK` (the stub skips a blank
    /// sector/block; for ranges the host did not read first).
    pub unless_blank: bool,
    /// Chip ranges (address, length) no program writes that must read
    /// 0xFF: each goes as `VERIFY_BLANK` records once every step that
    /// starts below its end is in the stream (its erases have run then).
    pub blank: &'a [(u32, u32)],
}

/// Bytes per `VERIFY_BLANK` record: a long 0xFF run is read in pieces, so
/// no record keeps the stub from its chunks for long (13 ms at 42 MHz).
const BLANK_PIECE: u32 = 0x1_0000;

/// Packs `steps` (chip addresses) into chunks of records.
pub fn pack(steps: &[Step], how: &Packing<'_>) -> Result<Stream, PackError> {
    let (capacity, page) = (how.capacity, how.page);
    let page_ms = how.timeouts.page_program_ms;
    let capacity = capacity as usize & !3;
    // The smallest useful chunk: a header and a whole page.
    if capacity < (HEADER + page) as usize || page == 0 || page as usize > lz::PAGE {
        return Err(PackError::SlotTooSmall {
            capacity: capacity as u32,
        });
    }
    let mut p = Packer {
        capacity,
        out: Stream::default(),
        cur: Chunk::default(),
        rec: None,
    };
    let mut blank = how.blank.to_vec();
    blank.sort_unstable();
    let mut blank = blank.into_iter().peekable();
    for step in steps {
        let (erase, program) = match step {
            Step::Erase(e, first) => (Some(e), first.as_ref()),
            Step::Program(prog) => (None, Some(prog)),
        };
        let start = erase.map_or_else(|| program.map_or(0, |p| p.address), |e| e.address);
        while let Some((addr, len)) = blank.next_if(|&(a, n)| a.saturating_add(n) <= start) {
            p.verify_blank(addr, len);
        }
        if let Some(e) = erase {
            let kind = how
                .kinds
                .iter()
                .copied()
                .find(|k| k.size() == e.size)
                .ok_or(PackError::NoEraseKind { size: e.size })?;
            p.close_record();
            p.room(HEADER as usize);
            let flag = if how.unless_blank {
                abi::ERASE_UNLESS_BLANK
            } else {
                0
            };
            p.cur.bytes.extend(words(&[
                abi::head(abi::OP_ERASE, 0),
                e.address,
                kind as u32 | flag,
            ]));
            p.cur.done.push(Done::Erase {
                addr: e.address,
                size: e.size,
            });
            p.out.sent_bytes += u64::from(HEADER);
            let ms = how.timeouts.erase_ms(kind);
            p.out.busy_max_ms += u64::from(ms);
            p.out.erase_max_ms = p.out.erase_max_ms.max(ms);
            // Close the chunk: the stub releases it as the erase starts,
            // and every slot is free for the data while the chip erases.
            p.flush();
        }
        let Some(prog) = program else { continue };
        p.close_record();
        let mut at = prog.address;
        let mut rest = &prog.data[..];
        while !rest.is_empty() {
            let n = ((page - at % page) as usize).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            let mut block = [0u8; lz::MAX_BLOCK];
            let lz_len = if how.compress {
                lz::encode_block(piece, &mut block).unwrap_or(usize::MAX)
            } else {
                usize::MAX
            };
            let packed = lz_len <= n - n / WORTH_COMPRESSING && lz_len < n;
            let payload = if packed { &block[..lz_len] } else { piece };
            p.add(at, n as u32, payload, packed);
            p.out.busy_max_ms += u64::from(page_ms);
            if packed {
                p.out.compressed_bytes += n as u64;
            }
            at += n as u32;
            rest = tail;
        }
        p.out.program_bytes += prog.data.len() as u64;
    }
    for (addr, len) in blank {
        p.verify_blank(addr, len);
    }
    p.out.page_ms = page_ms;
    p.close_record();
    p.flush();
    Ok(p.out)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("a stream slot of {capacity} bytes cannot hold a record")]
    SlotTooSmall { capacity: u32 },
    #[error("the chip has no erase instruction for {size:#x} bytes")]
    NoEraseKind { size: u32 },
    #[error(
        "a chunk of {len} bytes was packed for slots that hold {capacity} (a host bug: \
         the stream was packed for another work area)"
    )]
    ChunkTooLarge { len: u32, capacity: u32 },
}

/// The program record being filled.
struct Record {
    addr: u32,
    /// Decoded bytes.
    len: u32,
    lz: bool,
    payload: Vec<u8>,
}

struct Packer {
    capacity: usize,
    out: Stream,
    cur: Chunk,
    rec: Option<Record>,
}

impl Packer {
    /// Starts a new chunk unless `n` more bytes fit the current one.
    fn room(&mut self, n: usize) {
        if self.cur.bytes.len() + n > self.capacity {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.cur.bytes.is_empty() {
            self.out.chunks.push(std::mem::take(&mut self.cur));
        }
    }

    /// Bytes the open record would take in its chunk with `more` payload.
    fn record_size(&self, more: usize) -> usize {
        let len = self.rec.as_ref().map_or(0, |r| r.payload.len());
        HEADER as usize + (len + more).div_ceil(4) * 4
    }

    /// Appends one page piece at `addr`: to the open record when it is of
    /// the same kind, continues it and still fits; otherwise to a new one.
    fn add(&mut self, addr: u32, len: u32, payload: &[u8], lz: bool) {
        let continues = self
            .rec
            .as_ref()
            .is_some_and(|r| r.lz == lz && r.addr + r.len == addr);
        let fits = self.cur.bytes.len() + self.record_size(payload.len()) <= self.capacity;
        if !(continues && fits) {
            self.close_record();
            self.room(HEADER as usize + payload.len().div_ceil(4) * 4);
            self.rec = Some(Record {
                addr,
                len: 0,
                lz,
                payload: Vec::new(),
            });
        }
        let r = self.rec.as_mut().expect("opened above");
        r.len += len;
        r.payload.extend_from_slice(payload);
    }

    /// `VERIFY_BLANK` records for `len` bytes at `addr`.
    fn verify_blank(&mut self, addr: u32, len: u32) {
        self.close_record();
        let mut at = addr;
        let end = addr.saturating_add(len);
        while at < end {
            let n = (end - at).min(BLANK_PIECE);
            self.room(HEADER as usize);
            self.cur
                .bytes
                .extend(words(&[abi::head(abi::OP_VERIFY_BLANK, 0), at, n]));
            self.out.sent_bytes += u64::from(HEADER);
            // Reading at 8 MHz (the SPI before the clock is raised): 1 ms
            // a KiB.
            self.out.busy_max_ms += u64::from(n.div_ceil(1024));
            at += n;
        }
    }

    fn close_record(&mut self) {
        let Some(r) = self.rec.take() else { return };
        let op = if r.lz {
            abi::OP_PROGRAM_LZ
        } else {
            abi::OP_PROGRAM
        };
        let n = r.payload.len() as u32;
        self.cur
            .bytes
            .extend(words(&[abi::head(op, n), r.addr, r.len]));
        self.cur.bytes.extend_from_slice(&r.payload);
        self.cur
            .bytes
            .resize(self.cur.bytes.len().div_ceil(4) * 4, 0xFF);
        self.cur.done.push(Done::Program {
            addr: r.addr,
            bytes: r.len,
        });
        self.out.sent_bytes += u64::from(HEADER) + u64::from(abi::padded(n));
    }
}

fn words(w: &[u32]) -> impl Iterator<Item = u8> + '_ {
    w.iter().flat_map(|w| w.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::plan::{EraseOp, ProgramOp};

    const KINDS: [EraseKind; 3] = [
        EraseKind::Sector4K,
        EraseKind::Block32K,
        EraseKind::Block64K,
    ];

    /// `steps` in chunks of `capacity`, as the W25Q64JV's stream.
    fn pk(steps: &[Step], capacity: u32, compress: bool) -> Result<Stream, PackError> {
        let how = Packing {
            capacity,
            page: 256,
            kinds: &KINDS,
            timeouts: &Timeouts::W25Q64JV,
            compress,
            unless_blank: false,
            blank: &[],
        };
        pack(steps, &how)
    }

    fn word(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Walks the records of every chunk as the stub does and rebuilds what
    /// the chip would hold: the image back, and the erases in order.
    /// (address, byte) programmed, and (address, size) erased.
    type Replayed = (Vec<(u32, u8)>, Vec<(u32, u32)>);

    fn replay(s: &Stream, capacity: usize) -> Replayed {
        let mut programmed = Vec::new();
        let mut erases = Vec::new();
        for c in &s.chunks {
            assert!(c.bytes.len() <= capacity, "a chunk overflows its slot");
            assert_eq!(c.bytes.len() % 4, 0);
            let mut off = 0;
            while off < c.bytes.len() {
                let (head, addr, arg) = (
                    word(&c.bytes, off),
                    word(&c.bytes, off + 4),
                    word(&c.bytes, off + 8),
                );
                let (op, len) = (head >> 24, (head & abi::MAX_PAYLOAD) as usize);
                let payload = &c.bytes[off + 12..off + 12 + len];
                match op {
                    abi::OP_ERASE => erases.push((addr, EraseKind::from_u32(arg).unwrap().size())),
                    abi::OP_PROGRAM => {
                        assert_eq!(arg as usize, len);
                        programmed.extend(
                            payload
                                .iter()
                                .enumerate()
                                .map(|(i, &b)| (addr + i as u32, b)),
                        );
                    }
                    abi::OP_PROGRAM_LZ => {
                        let (mut ip, mut done) = (0usize, 0u32);
                        while done < arg {
                            let at = addr + done;
                            let m = (256 - at % 256).min(arg - done);
                            let mut page = [0u8; lz::PAGE];
                            ip += lz::decode_block(&payload[ip..], &mut page, m as usize).unwrap();
                            programmed.extend((0..m).map(|i| (at + i, page[i as usize])));
                            done += m;
                        }
                        assert_eq!(ip, len, "the payload is consumed exactly");
                    }
                    abi::OP_VERIFY_BLANK => assert_eq!(len, 0, "no payload"),
                    _ => panic!("op {op}"),
                }
                off += 12 + len.div_ceil(4) * 4;
            }
        }
        (programmed, erases)
    }

    fn table(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| [(i / 16) as u8, 0, 0x80, 0x3F])
            .take(n)
            .collect()
    }

    /// Bytes without repeats an `lz` block could use.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        crate::prng::Prng::new(seed).bytes(n)
    }

    #[test]
    fn erases_and_programs_come_back_in_order_through_small_slots() {
        // Unaligned start, a compressible half and a random half, a chunk
        // size that is not a page multiple.
        let mut data = table(3000);
        data.extend(noise(3000, 7));
        let steps = vec![
            Step::Erase(
                EraseOp {
                    address: 0x1_0000,
                    size: 0x1_0000,
                },
                Some(ProgramOp {
                    address: 0x1_0010,
                    data: data.clone(),
                }),
            ),
            Step::Program(ProgramOp {
                address: 0x3_0000,
                data: vec![0xA5; 10],
            }),
        ];
        let cap = 700;
        let s = pk(&steps, cap, true).unwrap();
        let (programmed, erases) = replay(&s, cap as usize);
        assert_eq!(erases, vec![(0x1_0000, 0x1_0000)]);
        let want: Vec<(u32, u8)> = data
            .iter()
            .enumerate()
            .map(|(i, &b)| (0x1_0010 + i as u32, b))
            .chain((0..10).map(|i| (0x3_0000 + i, 0xA5)))
            .collect();
        assert_eq!(programmed, want);
        assert_eq!(
            s.chunks[0].done,
            vec![Done::Erase {
                addr: 0x1_0000,
                size: 0x1_0000
            }],
            "an erase closes its chunk"
        );
        assert_eq!(s.program_bytes, 6010);
        assert!(
            s.compressed_bytes >= 2900 && s.compressed_bytes < 3100,
            "{}",
            s.compressed_bytes
        );
        assert!(s.sent_bytes < 3000 + 3100 + 40 * 12, "{}", s.sent_bytes);
        assert_eq!((s.erase_max_ms, s.page_ms, s.op_max_ms()), (2000, 3, 2000));
        // 240 bytes to the first page end, 23 more pages, one for the 10 bytes.
        assert_eq!(s.busy_max_ms, 2000 + 3 * (1 + 23 + 1));
        // Program events add up to the bytes.
        let events: u32 = s
            .chunks
            .iter()
            .flat_map(|c| &c.done)
            .map(|d| match d {
                Done::Program { bytes, .. } => *bytes,
                Done::Erase { .. } => 0,
            })
            .sum();
        assert_eq!(events, 6010);
    }

    #[test]
    fn span_from_covers_what_the_unconsumed_chunks_would_change() {
        let steps = vec![
            Step::Erase(
                EraseOp {
                    address: 0x1_0000,
                    size: 0x1_0000,
                },
                Some(ProgramOp {
                    address: 0x1_0000,
                    data: noise(0x800, 1),
                }),
            ),
            Step::Program(ProgramOp {
                address: 0x4_0000,
                data: noise(0x100, 2),
            }),
        ];
        let s = pk(&steps, 0x400, true).unwrap();
        assert_eq!(s.span_from(0), Some(0x1_0000..0x4_0100));
        assert_eq!(s.chunk_address(0), 0x1_0000, "the erase");
        assert_eq!(s.chunk_address(1), 0x1_0000, "its first data");
        assert_eq!(s.chunk_address(s.chunks.len()), 0, "past the end");
        assert_eq!(
            s.span_from(1),
            Some(0x1_0000..0x4_0100),
            "the erased block's data"
        );
        // The last chunk holds the first run's tail and the second run.
        let last = s.chunks.len() - 1;
        let tail = s.span_from(last).unwrap();
        assert!(
            tail.start > 0x1_0000 && tail.start < 0x1_0800 && tail.end == 0x4_0100,
            "{tail:x?}"
        );
        assert_eq!(s.span_from(last + 1), None);
    }

    #[test]
    fn random_data_goes_raw_and_compressible_data_shrinks() {
        let steps = |data: Vec<u8>| vec![Step::Program(ProgramOp { address: 0, data })];
        let raw = pk(&steps(noise(64 * 1024, 3)), 8192, true).unwrap();
        assert_eq!(raw.compressed_bytes, 0);
        assert!(
            raw.sent_bytes < 64 * 1024 + 12 * 9 + 8192,
            "{}",
            raw.sent_bytes
        );
        let packed = pk(&steps(table(64 * 1024)), 8192, true).unwrap();
        assert_eq!(packed.compressed_bytes, 64 * 1024);
        assert!(packed.sent_bytes < 64 * 1024 / 4, "{}", packed.sent_bytes);
        let off = pk(&steps(table(64 * 1024)), 8192, false).unwrap();
        assert_eq!(off.compressed_bytes, 0, "compression off");
        let (a, _) = replay(&packed, 8192);
        let (b, _) = replay(&off, 8192);
        assert_eq!(a, b);
    }

    /// Every record in stream order: (op, address, word 2).
    fn records(s: &Stream) -> Vec<(u32, u32, u32)> {
        let mut out = Vec::new();
        for c in &s.chunks {
            let mut off = 0;
            while off < c.bytes.len() {
                let head = word(&c.bytes, off);
                out.push((head >> 24, word(&c.bytes, off + 4), word(&c.bytes, off + 8)));
                off += 12 + ((head & abi::MAX_PAYLOAD) as usize).div_ceil(4) * 4;
            }
        }
        out
    }

    #[test]
    fn blank_ranges_are_verified_once_every_erase_below_their_end_has_run() {
        let block = |b: u32, data: Vec<u8>| {
            Step::Erase(
                EraseOp {
                    address: b * 0x1_0000,
                    size: 0x1_0000,
                },
                Some(ProgramOp {
                    address: b * 0x1_0000,
                    data,
                }),
            )
        };
        let steps = vec![
            block(0, noise(0x1000, 1)),
            block(1, noise(0x100, 2)),
            Step::Program(ProgramOp {
                address: 0x3_0000,
                data: noise(0x100, 3),
            }),
        ];
        // One run inside block 0, one from block 0 into block 1, one past
        // the last step, long enough to go in pieces.
        let blank = [(0x1000, 0x800), (0xF000, 0x1100), (0x4_0000, 0x1_8000)];
        let how = Packing {
            capacity: 4096,
            page: 256,
            kinds: &KINDS,
            timeouts: &Timeouts::W25Q64JV,
            compress: false,
            unless_blank: false,
            blank: &blank,
        };
        let s = pack(&steps, &how).unwrap();
        let recs = records(&s);
        let at = |op: u32, addr: u32| recs.iter().position(|r| r.0 == op && r.1 == addr).unwrap();
        let (erase1, prog3) = (at(abi::OP_ERASE, 0x1_0000), at(abi::OP_PROGRAM, 0x3_0000));
        let inside = at(abi::OP_VERIFY_BLANK, 0x1000);
        assert!(inside < erase1, "before the next block's erase: {recs:x?}");
        assert!(
            inside > at(abi::OP_PROGRAM, 0),
            "after its block's erase and data"
        );
        let across = at(abi::OP_VERIFY_BLANK, 0xF000);
        assert!(
            across > erase1 && across < prog3,
            "after block 1's erase: {recs:x?}"
        );
        let verify: Vec<_> = recs
            .iter()
            .filter(|r| r.0 == abi::OP_VERIFY_BLANK)
            .collect();
        assert_eq!(
            verify.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(),
            vec![
                (0x1000, 0x800),
                (0xF000, 0x1100),
                (0x4_0000, 0x1_0000),
                (0x5_0000, 0x8000)
            ],
            "in address order, long runs cut at 64 KiB"
        );
        assert!(at(abi::OP_VERIFY_BLANK, 0x4_0000) > prog3);
        let plain = pack(&steps, &Packing { blank: &[], ..how }).unwrap();
        assert_eq!(s.sent_bytes - plain.sent_bytes, 4 * 12, "a header each");
        assert!(
            s.busy_max_ms > plain.busy_max_ms,
            "reading them counts in the timeout"
        );
    }

    #[test]
    fn a_slot_too_small_for_a_record_or_an_unknown_erase_size_is_an_error() {
        assert_eq!(
            pk(&[], 15, true),
            Err(PackError::SlotTooSmall { capacity: 12 })
        );
        let steps = [Step::Erase(
            EraseOp {
                address: 0,
                size: 0x2000,
            },
            None,
        )];
        assert_eq!(
            pk(&steps, 4096, true),
            Err(PackError::NoEraseKind { size: 0x2000 })
        );
    }
}
