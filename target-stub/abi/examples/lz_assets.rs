//! Compressed size of the `bench` job `assets` image, page by page.
//!
//! `cargo run --release -p extflash-stub-abi --example lz_assets [SIZE]`
//!
//! The image is built exactly as `assets_image` in `src/cli/bench.rs` (same
//! PRNG, seed and layout; the binary crate's module is not reachable from
//! here, so it is repeated). Prints the block bytes per part of the image,
//! with and without the all-0xFF pages the streaming load skips.

use extflash_stub_abi::lz::{decode_block, encode_block, MAX_BLOCK, PAGE};

/// `SEED_ASSETS` of the bench.
const SEED_ASSETS: u64 = 0xD1B5_4A32_D192_ED03;

struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

fn assets_image(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Prng(seed | 1);
    let mut out = vec![0u8; size];
    for (i, unit) in out.chunks_mut(16 * 1024).enumerate() {
        let (random, rest) = unit.split_at_mut(unit.len().min(8 * 1024));
        rng.fill(random);
        let (ff, table) = rest.split_at_mut(rest.len().min(4 * 1024));
        ff.fill(0xFF);
        for (j, rec) in table.chunks_mut(16).enumerate() {
            let record = [
                (i as u32).to_le_bytes(),
                (j as u32).to_le_bytes(),
                0x3F80_0000u32.to_le_bytes(),
                0u32.to_le_bytes(),
            ]
            .concat();
            rec.copy_from_slice(&record[..rec.len()]);
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    pages: usize,
    raw: usize,
    blocks: usize,
}

impl Tally {
    fn line(&self, name: &str) {
        println!(
            "{name:<22} {:>6} pages {:>9} B -> {:>9} B  ratio {:.3}  ({:.1} % of raw)",
            self.pages,
            self.raw,
            self.blocks,
            self.raw as f64 / self.blocks.max(1) as f64,
            100.0 * self.blocks as f64 / self.raw.max(1) as f64
        );
    }
}

fn main() {
    let size = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SIZE in bytes"))
        .unwrap_or(8 << 20);
    let image = assets_image(size, SEED_ASSETS);
    // Parts by position in each 16 KiB unit, as the generator lays them out.
    let mut parts: [Tally; 3] = Default::default();
    let mut block = [0; MAX_BLOCK];
    let mut out = [0; PAGE];
    for (k, page) in image.chunks(PAGE).enumerate() {
        let n = encode_block(page, &mut block).expect("page <= PAGE");
        let used = decode_block(&block[..], &mut out, page.len()).expect("own block decodes");
        assert_eq!(
            (used, &out[..page.len()]),
            (n, page),
            "round trip of page {k}"
        );
        let part = match (k * PAGE) % (16 * 1024) {
            o if o < 8 * 1024 => 0,
            o if o < 12 * 1024 => 1,
            _ => 2,
        };
        let t = &mut parts[part];
        t.pages += 1;
        t.raw += page.len();
        t.blocks += n;
    }
    println!("assets image, {size} bytes, {PAGE}-byte pages");
    for (t, name) in parts.iter().zip(["random", "0xFF runs", "tables"]) {
        t.line(name);
    }
    let sum = |ts: &[&Tally]| Tally {
        pages: ts.iter().map(|t| t.pages).sum(),
        raw: ts.iter().map(|t| t.raw).sum(),
        blocks: ts.iter().map(|t| t.blocks).sum(),
    };
    sum(&[&parts[0], &parts[1], &parts[2]]).line("whole image");
    sum(&[&parts[0], &parts[2]]).line("sent (0xFF skipped)");
}
