//! Page-block compression of the program stream: the host encodes, the stub
//! decodes. This is an ABI between the two, byte by byte:
//!
//! Every page (the unit of programming, [`PAGE`] bytes; the last page of a
//! range may be shorter, its length `n` is known from context) travels as
//! one self-contained block:
//!
//! ```text
//! byte 0        header H
//!   H == 0        stored: bytes 1..=n are the page verbatim (block: 1 + n bytes)
//!   H in 1..=255  compressed: bytes 1..=H are the payload  (block: 1 + H bytes)
//!
//! payload = a sequence of tokens, each:
//!   T             1 byte: L = T >> 4 (literal count), M = T & 15 (match code)
//!   [L ext]       only if L == 15: 1 byte, added to L
//!   literals      L bytes, appended to the output
//!                 -- if the payload ends here, the block ends --
//!   D             1 byte, 1..=255: the match starts D bytes back in the output
//!   [M ext]       only if M == 15: 1 byte, added to M
//!                 then M + 3 bytes are copied one at a time from D bytes back
//!                 (a match may overlap its own output: D = 1 repeats a byte)
//! ```
//!
//! A compressed block is valid only if its payload is consumed exactly and
//! produces exactly `n` bytes. Matches reach only into the same block's
//! output, so the decoder needs no history beyond the page buffer. The
//! encoder emits a compressed block only when it is shorter than the stored
//! one, so no block exceeds [`MAX_BLOCK`].

/// Bytes per page (SPI NOR page program unit); the longest page a block holds.
pub const PAGE: usize = 256;
/// Worst-case block size: a stored full page.
pub const MAX_BLOCK: usize = 1 + PAGE;
/// Header byte of a stored (uncompressed) block.
pub const STORED: u8 = 0;
/// Shortest match; match code `M` stands for `M + MIN_MATCH` bytes.
pub const MIN_MATCH: usize = 3;

/// Why a block does not decode. `at` is the offset in the block of the byte
/// (token, extension or offset) at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LzError {
    /// The page length is over [`PAGE`].
    PageTooLong { len: usize },
    /// The payload ends inside a token (before its extension or offset).
    Truncated { at: usize },
    /// A literal run or match would go past the page or payload end.
    Overflow { at: usize },
    /// A match offset is 0 or reaches before the start of the page.
    BadOffset { at: usize, offset: u8 },
    /// The payload is consumed but only `decoded` of the page's bytes exist.
    ShortPage { decoded: usize },
}

/// Random access to a block's bytes, index 0 = the header. The decoder only
/// asks for indices below [`block_len`], so an implementation backed by a
/// ring maps an index to the wrapped address and needs no checks of its own.
pub trait Input {
    fn byte(&self, i: usize) -> u8;

    /// Bytes `i..i + dst.len()` into `dst`: literal runs and stored pages
    /// go through here, so a slice-backed input copies them in one go.
    fn copy(&self, i: usize, dst: &mut [u8]) {
        let mut k = 0;
        while let Some(d) = dst.get_mut(k) {
            *d = self.byte(i + k);
            k += 1;
        }
    }
}

impl Input for [u8] {
    #[inline(always)]
    fn byte(&self, i: usize) -> u8 {
        self.get(i).copied().unwrap_or(0)
    }

    fn copy(&self, i: usize, dst: &mut [u8]) {
        if let Some(src) = self.get(i..i + dst.len()) {
            copy(dst, src);
        }
    }
}

/// A block split by the end of a ring: `first` then `second`.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    pub first: &'a [u8],
    pub second: &'a [u8],
}

impl<'a> Split<'a> {
    /// The block starting at offset `at` of a ring buffer `ring` (wrapping
    /// at its end).
    pub fn ring(ring: &'a [u8], at: usize) -> Self {
        let (second, first) = ring.split_at(at.min(ring.len()));
        Split { first, second }
    }
}

impl Input for Split<'_> {
    #[inline(always)]
    fn byte(&self, i: usize) -> u8 {
        match self.first.get(i) {
            Some(&b) => b,
            None => self.second.byte(i - self.first.len()),
        }
    }

    fn copy(&self, i: usize, dst: &mut [u8]) {
        // The part of the run before the ring's end, then the rest.
        let head = self.first.len().saturating_sub(i).min(dst.len());
        let (a, b) = dst.split_at_mut(head);
        self.first.copy(i, a);
        self.second
            .copy((i + head).saturating_sub(self.first.len()), b);
    }
}

/// Total length of a block from its header byte and its page's length: how
/// many bytes must be readable before [`decode_block`] runs.
pub fn block_len(header: u8, page_len: usize) -> usize {
    1 + if header == STORED {
        page_len
    } else {
        header as usize
    }
}

/// Decodes one block into `out[..len]` and returns the block's length.
/// Reads only the block's bytes (indices below [`block_len`]) and writes
/// only `out[..len]`; every token consumes input, so garbage ends in an
/// error after at most 255 tokens. Built for thumbv7m at opt-level "z" it
/// has no panic path and costs 5 instructions per literal, stored or
/// non-overlapping match byte, 8 per byte of an overlapping match.
pub fn decode_block<I: Input + ?Sized>(
    input: &I,
    out: &mut [u8; PAGE],
    len: usize,
) -> Result<usize, LzError> {
    if len > PAGE {
        return Err(LzError::PageTooLong { len });
    }
    let header = input.byte(0);
    let end = block_len(header, len);
    if header == STORED {
        if let Some(dst) = out.get_mut(..len) {
            input.copy(1, dst);
        }
        return Ok(end);
    }
    let (mut ip, mut op) = (1, 0);
    while ip < end {
        let at = ip;
        let token = input.byte(ip);
        ip += 1;
        let mut lit = (token >> 4) as usize;
        if lit == 15 {
            if ip >= end {
                return Err(LzError::Truncated { at });
            }
            lit += input.byte(ip) as usize;
            ip += 1;
        }
        if lit > end - ip || lit > len - op {
            return Err(LzError::Overflow { at });
        }
        // `op + lit <= len <= PAGE`: the range is in bounds.
        if let Some(dst) = out.get_mut(op..op + lit) {
            input.copy(ip, dst);
        }
        ip += lit;
        op += lit;
        if ip == end {
            break;
        }
        let offset = input.byte(ip);
        ip += 1;
        let mut m = (token & 15) as usize;
        if m == 15 {
            if ip >= end {
                return Err(LzError::Truncated { at });
            }
            m += input.byte(ip) as usize;
            ip += 1;
        }
        m += MIN_MATCH;
        let d = offset as usize;
        if d == 0 || d > op {
            return Err(LzError::BadOffset { at, offset });
        }
        if m > len - op {
            return Err(LzError::Overflow { at });
        }
        copy_match(out, op, d, m);
        op += m;
    }
    if op != len {
        return Err(LzError::ShortPage { decoded: op });
    }
    Ok(end)
}

/// Appends `m` bytes from `d` back at `out[op..]`; the caller checked
/// `0 < d <= op` and `op + m <= PAGE`.
#[inline(always)]
fn copy_match(out: &mut [u8; PAGE], op: usize, d: usize, m: usize) {
    if d >= m {
        if let Some((done, rest)) = out.split_at_mut_checked(op) {
            if let (Some(src), Some(dst)) = (done.get(op - d..op - d + m), rest.get_mut(..m)) {
                copy(dst, src);
            }
        }
    } else {
        // Overlapping: byte by byte, so the pattern repeats. The u8 casts
        // cannot wrap and keep the indexing panic-free.
        for i in op..op + m {
            out[i as u8 as usize] = out[(i - d) as u8 as usize];
        }
    }
}

/// `dst.copy_from_slice(src)` without its length-mismatch panic path.
#[inline(always)]
fn copy(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// Encodes `page` as one block into `out` and returns the block's length:
/// compressed when that is shorter, stored otherwise. Greedy parsing over a
/// hash chain of 3-byte prefixes.
pub fn encode_block(page: &[u8], out: &mut [u8; MAX_BLOCK]) -> Result<usize, LzError> {
    let n = page.len();
    if n > PAGE {
        return Err(LzError::PageTooLong { len: n });
    }
    if let Some(len) = compress(page, out) {
        return Ok(len);
    }
    out[0] = STORED;
    if let Some(dst) = out.get_mut(1..1 + n) {
        dst.copy_from_slice(page);
    }
    Ok(1 + n)
}

/// How many earlier positions with the same hash a match search tries.
const MAX_CHAIN: usize = 32;
const NONE: u16 = u16::MAX;

/// The compressed block, or `None` if it would not be shorter than stored.
fn compress(page: &[u8], out: &mut [u8; MAX_BLOCK]) -> Option<usize> {
    let n = page.len();
    // The payload must stay below n bytes (and fit the header byte).
    let mut w = Writer {
        buf: out,
        at: 1,
        limit: 1 + n.checked_sub(1)?.min(255),
    };
    let mut head = [NONE; 256];
    let mut prev = [NONE; PAGE];
    let (mut pos, mut lit_start) = (0, 0);
    while pos + MIN_MATCH <= n {
        let (len, dist) = longest_match(page, pos, &head, &prev);
        if len < MIN_MATCH {
            insert(page, pos, &mut head, &mut prev);
            pos += 1;
            continue;
        }
        w.sequence(page.get(lit_start..pos)?, Some((dist, len)))?;
        for p in pos..pos + len {
            insert(page, p, &mut head, &mut prev);
        }
        pos += len;
        lit_start = pos;
    }
    if lit_start < n {
        w.sequence(page.get(lit_start..)?, None)?;
    }
    w.buf[0] = (w.at - 1) as u8;
    Some(w.at)
}

fn hash(page: &[u8], pos: usize) -> Option<usize> {
    let b = page.get(pos..pos + MIN_MATCH)?;
    let v = u32::from_le_bytes([b[0], b[1], b[2], 0]);
    Some((v.wrapping_mul(0x9E37_79B1) >> 24) as usize)
}

fn insert(page: &[u8], pos: usize, head: &mut [u16; 256], prev: &mut [u16; PAGE]) {
    if let (Some(h), Some(p)) = (hash(page, pos), prev.get_mut(pos)) {
        *p = head[h];
        head[h] = pos as u16;
    }
}

/// Longest earlier match for `pos` as (length, distance); length 0 if none.
fn longest_match(page: &[u8], pos: usize, head: &[u16; 256], prev: &[u16; PAGE]) -> (usize, usize) {
    let Some(h) = hash(page, pos) else {
        return (0, 0);
    };
    let tail = &page[pos..];
    let (mut best, mut dist) = (0, 0);
    let mut cand = head[h];
    for _ in 0..MAX_CHAIN {
        let c = cand as usize;
        if cand == NONE || c >= pos {
            break;
        }
        let len = page[c..]
            .iter()
            .zip(tail)
            .take_while(|(a, b)| a == b)
            .count();
        if len > best {
            (best, dist) = (len, pos - c);
            if len == tail.len() {
                break;
            }
        }
        cand = prev[c];
    }
    (best, dist)
}

/// Appends tokens to a block while it stays below `limit` bytes.
struct Writer<'a> {
    buf: &'a mut [u8; MAX_BLOCK],
    at: usize,
    limit: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: u8) -> Option<()> {
        if self.at >= self.limit {
            return None;
        }
        *self.buf.get_mut(self.at)? = b;
        self.at += 1;
        Some(())
    }

    /// One token: `lits`, then the match (distance, length) if any.
    fn sequence(&mut self, lits: &[u8], m: Option<(usize, usize)>) -> Option<()> {
        let code = m.map_or(0, |(_, len)| len - MIN_MATCH);
        self.put(((lits.len().min(15) as u8) << 4) | code.min(15) as u8)?;
        if lits.len() >= 15 {
            self.put((lits.len() - 15) as u8)?;
        }
        for &b in lits {
            self.put(b)?;
        }
        if let Some((dist, _)) = m {
            self.put(dist as u8)?;
            if code >= 15 {
                self.put((code - 15) as u8)?;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::cell::Cell;
    use std::vec::Vec;

    /// xorshift64*: deterministic test data.
    struct Prng(u64);

    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A slice input that records the highest index asked for.
    struct Tracked<'a> {
        data: &'a [u8],
        max: Cell<Option<usize>>,
    }

    impl Input for Tracked<'_> {
        fn byte(&self, i: usize) -> u8 {
            self.max.set(Some(self.max.get().map_or(i, |m| m.max(i))));
            self.data.byte(i)
        }
    }

    fn encode(page: &[u8]) -> Vec<u8> {
        let mut out = [0xA5; MAX_BLOCK];
        let n = encode_block(page, &mut out).unwrap();
        assert_eq!(n, block_len(out[0], page.len()), "block_len of the header");
        out[..n].to_vec()
    }

    fn decode(block: &[u8], len: usize) -> Result<Vec<u8>, LzError> {
        let mut out = [0x5A; PAGE];
        let used = decode_block(block, &mut out, len)?;
        assert_eq!(used, block.len(), "decoder consumed the whole block");
        Ok(out[..len].to_vec())
    }

    /// Records of `rec` bytes, the first `rec` bytes random, repeated.
    fn records(rng: &mut Prng, rec: usize, n: usize) -> Vec<u8> {
        let r = rng.bytes(rec);
        r.iter().copied().cycle().take(n).collect()
    }

    /// The bench's table: 16-byte records (unit, index, 1.0f32, 0).
    fn table_page(unit: u32, first: u32) -> Vec<u8> {
        (first..first + 16)
            .flat_map(|j| {
                [unit, j, 0x3F80_0000, 0]
                    .into_iter()
                    .flat_map(u32::to_le_bytes)
            })
            .collect()
    }

    fn sample_pages(rng: &mut Prng, n: usize) -> Vec<Vec<u8>> {
        let mut pages = std::vec![
            rng.bytes(n),
            std::vec![0xFF; n],
            std::vec![0; n],
            table_page(7, 300)[..n].to_vec(),
        ];
        for rec in [1, 2, 3, 5, 8, 16, 31, 64, 100] {
            pages.push(records(rng, rec, n));
        }
        // Half random, half 0xFF: literal runs and matches mixed.
        let mut mixed = rng.bytes(n);
        mixed[n / 2..].fill(0xFF);
        pages.push(mixed);
        pages
    }

    #[test]
    fn every_page_length_and_content_round_trips() {
        let mut rng = Prng(0x1234_5678);
        for n in 0..=PAGE {
            for page in sample_pages(&mut rng, n) {
                let block = encode(&page);
                assert!(block.len() <= 1 + n, "never longer than stored");
                assert_eq!(decode(&block, n).unwrap(), page, "len {n}");
            }
        }
    }

    #[test]
    fn random_page_is_stored_with_one_header_byte() {
        let mut rng = Prng(99);
        for _ in 0..100 {
            let page = rng.bytes(PAGE);
            let block = encode(&page);
            assert_eq!(block.len(), MAX_BLOCK);
            assert_eq!(block[0], STORED);
            assert_eq!(&block[1..], &page[..]);
        }
    }

    #[test]
    fn all_ff_page_takes_five_bytes() {
        let block = encode(&[0xFF; PAGE]);
        assert_eq!(block.len(), 5, "{block:x?}");
        assert_eq!(decode(&block, PAGE).unwrap(), [0xFF; PAGE]);
    }

    #[test]
    fn repeated_records_cost_one_record_plus_five_bytes() {
        // Random record contents, so the first copy cannot shrink: the page
        // costs the record, a token with its extension, an offset and a
        // length extension, and the header. Up to 26-byte records that is 8x.
        let mut rng = Prng(7);
        for rec in 1..=64 {
            let page = records(&mut rng, rec, PAGE);
            let block = encode(&page);
            assert!(block.len() <= rec + 5, "rec {rec}: {} bytes", block.len());
            if rec <= 26 {
                assert!(block.len() * 8 <= PAGE, "rec {rec}: {} bytes", block.len());
            }
            assert_eq!(decode(&block, PAGE).unwrap(), page);
        }
    }

    #[test]
    fn bench_table_records_with_a_counter_compress_4x() {
        // One byte per record changes: 3 bytes per record for a token, that
        // literal and the offset of a 15-byte match.
        let page = table_page(3, 512);
        let block = encode(&page);
        assert!(block.len() * 4 <= PAGE, "{} bytes", block.len());
        assert_eq!(decode(&block, PAGE).unwrap(), page);
    }

    #[test]
    fn block_wrapping_the_ring_end_decodes() {
        let mut rng = Prng(5);
        let page = table_page(1, 0);
        let block = encode(&page);
        let mut ring = std::vec![0u8; 1000];
        for at in [1000 - block.len(), 1000 - 1, 1000 - 10, 0, 17] {
            ring.iter_mut().for_each(|b| *b = rng.next() as u8);
            for (i, &b) in block.iter().enumerate() {
                ring[(at + i) % 1000] = b;
            }
            let mut out = [0; PAGE];
            let used = decode_block(&Split::ring(&ring, at), &mut out, PAGE).unwrap();
            assert_eq!((used, &out[..]), (block.len(), &page[..]), "at {at}");
        }
        // A stored block wraps as well.
        let page = rng.bytes(100);
        let block = encode(&page);
        for (i, &b) in block.iter().enumerate() {
            ring[(995 + i) % 1000] = b;
        }
        let mut out = [0; PAGE];
        decode_block(&Split::ring(&ring, 995), &mut out, 100).unwrap();
        assert_eq!(&out[..100], &page[..]);
    }

    #[test]
    fn malformed_blocks_are_rejected_with_the_faulty_byte() {
        use LzError::*;
        let cases: &[(&[u8], usize, LzError)] = &[
            // Match offset 0, and one reaching before the page start.
            (&[3, 0x10, 0xAA, 0], 4, BadOffset { at: 1, offset: 0 }),
            (&[3, 0x10, 0xAA, 2], 4, BadOffset { at: 1, offset: 2 }),
            // 4 literals declared, the payload holds 2.
            (&[3, 0x40, 1, 2], 4, Overflow { at: 1 }),
            // 3 literals into a 2-byte page.
            (&[4, 0x30, 1, 2, 3], 2, Overflow { at: 1 }),
            // A match of 3 past a 3-byte page.
            (&[3, 0x10, 0xAA, 1], 3, Overflow { at: 1 }),
            // Literal extension missing; match extension missing.
            (&[1, 0xF0], 20, Truncated { at: 1 }),
            (&[3, 0x1F, 0xAA, 1], 20, Truncated { at: 1 }),
            // Payload consumed with the page half full.
            (&[3, 0x20, 1, 2], 4, ShortPage { decoded: 2 }),
            (&[0], PAGE + 1, PageTooLong { len: PAGE + 1 }),
        ];
        for &(block, len, want) in cases {
            assert_eq!(decode(block, len), Err(want), "{block:x?}");
        }
        let mut out = [0; PAGE];
        assert_eq!(
            encode_block(&[0; PAGE + 1], &mut [0; MAX_BLOCK]),
            Err(PageTooLong { len: PAGE + 1 })
        );
        // The shortest valid forms of the same pages decode.
        assert_eq!(decode_block(&[3u8, 0x10, 0xAA, 1][..], &mut out, 4), Ok(4));
        assert_eq!(&out[..4], &[0xAA; 4]);
    }

    #[test]
    fn garbage_and_mutated_blocks_never_read_or_write_outside_the_block() {
        let mut rng = Prng(0xF00D);
        let mut valid = Vec::new();
        for n in [1, 16, 100, 255, 256] {
            valid.extend(
                sample_pages(&mut rng, n)
                    .into_iter()
                    .map(|p| (encode(&p), n)),
            );
        }
        let (mut ok, mut err) = (0, 0);
        for round in 0..20_000 {
            let (mut block, len) = if round % 4 == 0 {
                // Pure garbage with a random header.
                let n = 1 + rng.below(300);
                (rng.bytes(n), rng.below(PAGE + 1))
            } else {
                let (b, n) = &valid[rng.below(valid.len())];
                let mut b = b.clone();
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                (b, *n)
            };
            // Padding the block must never reach.
            block.extend(std::iter::repeat_n(0xEE, 300));
            let input = Tracked {
                data: &block,
                max: Cell::new(None),
            };
            let mut out = [0xC3; PAGE];
            let res = decode_block(&input, &mut out, len);
            let declared = block_len(block[0], len);
            assert!(input.max.get().unwrap() < declared, "read past the block");
            assert!(out[len..].iter().all(|&b| b == 0xC3), "wrote past the page");
            // The same bytes wrapped around a ring decode the same way.
            let at = rng.below(block.len());
            let mut ring = block.clone();
            ring.rotate_right(at);
            let mut wrapped = [0xC3; PAGE];
            let res_ring = decode_block(&Split::ring(&ring, at), &mut wrapped, len);
            assert_eq!((res_ring, wrapped), (res, out), "through the ring at {at}");
            match res {
                Ok(used) => {
                    assert_eq!(used, declared);
                    ok += 1;
                }
                Err(_) => err += 1,
            }
        }
        // Both outcomes were exercised.
        assert!(ok > 1000 && err > 1000, "ok {ok}, err {err}");
    }
}
