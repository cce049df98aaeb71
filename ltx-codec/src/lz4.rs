//! LZ4 for LTX pages.
//!
//! Compression reproduces the pierrec/lz4 v4 "fast" block compressor that Litestream 0.5.17 uses
//! (§1.6), so our files are byte-identical to Litestream's for the same pages. Decompression
//! accepts any valid block (via `lz4_flex`) and the legacy LZ4 *frame* pages of ltx v0.5.0/v0.5.1.

const MIN_MATCH: usize = 4;
const WIN_SIZE: isize = 65536;
const HASH_LOG: u32 = 16;
const MF_LIMIT: usize = 14;
const ADAPT_SKIP_LOG: usize = 7;

/// Worst-case compressed size for `n` input bytes (`CompressBlockBound`).
pub fn compress_bound(n: usize) -> usize {
    n + n / 255 + 16
}

/// A reusable compressor: the 128 KiB hash table is kept between pages and cleared per page.
pub struct Compressor {
    table: Vec<u16>,
}

impl Default for Compressor {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn hash6(x: u64) -> usize {
    ((x << 16).wrapping_mul(227_718_039_650_203) >> (64 - HASH_LOG)) as usize
}

#[inline(always)]
fn le64(src: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&src[at..at + 8]);
    u64::from_le_bytes(b)
}

#[inline(always)]
fn le32(src: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&src[at..at + 4]);
    u32::from_le_bytes(b)
}

impl Compressor {
    pub fn new() -> Self {
        Compressor {
            table: vec![0; 1 << HASH_LOG],
        }
    }

    #[inline(always)]
    fn get(&self, h: usize, si: usize) -> isize {
        // An empty slot reads as 0, exactly as the Go table does; 0 >= si only at si == 0,
        // which the window test then rejects.
        let mut i = self.table[h] as isize;
        if i >= si as isize {
            i -= WIN_SIZE;
        }
        i
    }

    #[inline(always)]
    fn put(&mut self, h: usize, si: usize) {
        self.table[h] = si as u16;
    }

    /// Compresses `src` (at most 64 KiB, one page) and appends the block to `dst`.
    /// Returns the compressed length.
    pub fn compress(&mut self, src: &[u8], dst: &mut Vec<u8>) -> usize {
        debug_assert!(src.len() <= 65536);
        self.table.fill(0);
        let start = dst.len();
        dst.reserve(compress_bound(src.len()));
        let mut si = 0usize;
        let mut anchor = 0usize;
        let n = src.len();
        let sn = n.saturating_sub(MF_LIMIT);
        let accept = |p: usize, r: isize, want: u32| -> bool {
            let off = p as isize - r;
            off > 0 && off < WIN_SIZE && r >= 0 && le32(src, r as usize) == want
        };

        while si < sn {
            let m = le64(src, si);
            let h1 = hash6(m);
            let h2 = hash6(m >> 8);
            let r1 = self.get(h1, si);
            let r2 = self.get(h2, si + 1);
            self.put(h1, si);
            self.put(h2, si + 1);

            let r = if accept(si, r1, m as u32) {
                r1
            } else {
                let h3 = hash6(m >> 16);
                let r3 = self.get(h3, si + 2);
                si += 1;
                if accept(si, r2, (m >> 8) as u32) {
                    r2
                } else {
                    si += 1;
                    self.put(h3, si);
                    if accept(si, r3, (m >> 16) as u32) {
                        r3
                    } else {
                        si += 2 + ((si - anchor) >> ADAPT_SKIP_LOG);
                        continue;
                    }
                }
            };
            let offset = si - r as usize;

            let mut lit = si - anchor;
            let mut mlen = MIN_MATCH;
            while lit > 0 && si > offset && src[si - 1] == src[si - 1 - offset] {
                si -= 1;
                lit -= 1;
                mlen += 1;
            }
            let base = si + MIN_MATCH;
            si += mlen;
            while si + 8 <= sn {
                let x = le64(src, si) ^ le64(src, si - offset);
                if x == 0 {
                    si += 8;
                } else {
                    si += (x.trailing_zeros() >> 3) as usize;
                    break;
                }
            }
            let mfield = si - base;

            let token = ((lit.min(15) as u8) << 4) | mfield.min(15) as u8;
            dst.push(token);
            if lit >= 15 {
                push_length(dst, lit - 15);
            }
            dst.extend_from_slice(&src[anchor..anchor + lit]);
            dst.extend_from_slice(&(offset as u16).to_le_bytes());
            if mfield >= 15 {
                push_length(dst, mfield - 15);
            }
            anchor = si;

            if si >= sn {
                break;
            }
            let h = hash6(le64(src, si - 2));
            self.put(h, si - 2);
        }

        let lit = n - anchor;
        dst.push((lit.min(15) as u8) << 4);
        if lit >= 15 {
            push_length(dst, lit - 15);
        }
        dst.extend_from_slice(&src[anchor..]);
        dst.len() - start
    }
}

fn push_length(dst: &mut Vec<u8>, mut l: usize) {
    while l >= 255 {
        dst.push(255);
        l -= 255;
    }
    dst.push(l as u8);
}

/// Decompresses one LZ4 block into `out`, which must be filled exactly.
pub fn decompress_block(src: &[u8], out: &mut [u8]) -> Result<(), String> {
    let n = lz4_flex::block::decompress_into(src, out).map_err(|e| e.to_string())?;
    if n != out.len() {
        return Err(format!("decompressed {n} bytes, want {}", out.len()));
    }
    Ok(())
}

const FRAME_MAGIC: u32 = 0x184D_2204;

/// Where a legacy LZ4 frame's parts lie, found by walking it.
struct FrameLayout {
    block_checksums: bool,
    content_checksum: bool,
    header_len: usize,
}

fn parse_frame_header(src: &[u8]) -> Result<FrameLayout, String> {
    if src.len() < 7 {
        return Err("LZ4 frame header truncated".into());
    }
    if le32(src, 0) != FRAME_MAGIC {
        return Err(format!("bad LZ4 frame magic {:#010x}", le32(src, 0)));
    }
    let flg = src[4];
    if flg >> 6 != 1 {
        return Err(format!("unsupported LZ4 frame version in FLG {flg:#04x}"));
    }
    let mut header_len = 4 + 2 + 1;
    if flg & 0x08 != 0 {
        header_len += 8;
    }
    if flg & 0x01 != 0 {
        header_len += 4;
    }
    if src.len() < header_len {
        return Err("LZ4 frame header truncated".into());
    }
    Ok(FrameLayout {
        block_checksums: flg & 0x10 != 0,
        content_checksum: flg & 0x04 != 0,
        header_len,
    })
}

/// Decodes one legacy LZ4 frame from the start of `src` into `out` (exactly one page).
/// Returns the frame's length in bytes. The xxh32 content checksum is skipped, not checked:
/// the LTX file CRC covers the uncompressed page anyway.
pub fn decompress_frame(src: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let layout = parse_frame_header(src)?;
    let mut at = layout.header_len;
    let mut filled = 0usize;
    loop {
        if at + 4 > src.len() {
            return Err(format!("LZ4 frame block size truncated at +{at}"));
        }
        let word = le32(src, at);
        at += 4;
        if word == 0 {
            break;
        }
        let stored = word & 0x8000_0000 != 0;
        let len = (word & 0x7FFF_FFFF) as usize;
        if at + len > src.len() {
            return Err(format!("LZ4 frame block of {len} bytes truncated at +{at}"));
        }
        let block = &src[at..at + len];
        at += len;
        if layout.block_checksums {
            at += 4;
        }
        if stored {
            let end = filled + len;
            if end > out.len() {
                return Err("LZ4 frame holds more than one page".into());
            }
            out[filled..end].copy_from_slice(block);
            filled = end;
        } else {
            let (done, rest) = out.split_at_mut(filled);
            let n = lz4_flex::block::decompress_into_with_dict(block, rest, done)
                .map_err(|e| format!("LZ4 frame block: {e}"))?;
            filled += n;
        }
    }
    if layout.content_checksum {
        at += 4;
    }
    if at > src.len() {
        return Err("LZ4 frame checksum truncated".into());
    }
    if filled != out.len() {
        return Err(format!(
            "LZ4 frame holds {filled} bytes, want {}",
            out.len()
        ));
    }
    Ok(at)
}

/// The length of the LZ4 frame at the start of a stream, read piece by piece from `next`,
/// which must append exactly the requested number of bytes to the buffer (or fail).
pub fn read_frame_bytes<F>(mut next: F, buf: &mut Vec<u8>) -> Result<(), String>
where
    F: FnMut(&mut Vec<u8>, usize) -> Result<(), String>,
{
    next(buf, 7)?;
    let flg = buf[4];
    let extra = if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 };
    next(buf, extra)?;
    let layout = parse_frame_header(buf)?;
    loop {
        next(buf, 4)?;
        let word = le32(buf, buf.len() - 4);
        if word == 0 {
            break;
        }
        let len = (word & 0x7FFF_FFFF) as usize;
        if len > 4 << 20 {
            return Err(format!(
                "LZ4 frame block of {len} bytes is too large for a page"
            ));
        }
        next(buf, len + if layout.block_checksums { 4 } else { 0 })?;
    }
    if layout.content_checksum {
        next(buf, 4)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(page: &[u8]) {
        let mut c = Compressor::new();
        let mut out = Vec::new();
        let n = c.compress(page, &mut out);
        assert_eq!(n, out.len());
        assert!(n <= compress_bound(page.len()));
        let mut back = vec![0u8; page.len()];
        decompress_block(&out, &mut back).expect("decompress");
        assert_eq!(back, page);
    }

    #[test]
    fn round_trips() {
        round_trip(&[0u8; 4096]);
        round_trip(&[7u8; 512]);
        round_trip(
            &(0..65536u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect::<Vec<_>>(),
        );
        round_trip(&(0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        round_trip(b"short");
        round_trip(b"");
    }
}
