//! LZ4 for LTX pages.
//!
//! Compression reproduces the pierrec/lz4 v4 "fast" block compressor that Litestream 0.5.17 uses
//! (docs/ltx.md#lz4-block-compression), so our files are byte-identical to Litestream's for the same pages. Decompression
//! accepts any valid block, and the legacy LZ4 *frame* pages of ltx v0.5.0/v0.5.1 (via `lz4_flex`).

const MIN_MATCH: usize = 4;
const HASH_LOG: u32 = 16;
const MF_LIMIT: usize = 14;
const ADAPT_SKIP_LOG: usize = 7;
/// The longest input the match search takes: every position fits in a 16-bit slot, and every
/// offset in the 64 KiB window. SQLite pages are at most this long.
const MAX_INPUT: usize = 1 << 16;

/// Worst-case compressed size for `n` input bytes (`CompressBlockBound`).
pub fn compress_bound(n: usize) -> usize {
    n + n / 255 + 16
}

const TABLE_SIZE: usize = 1 << HASH_LOG;

/// A reusable compressor whose hash table is kept between pages.
///
/// Each 16-bit slot holds a position in its low `shift` bits and, above them, the number of the
/// input that wrote it (its epoch). A slot from an earlier input reads as empty, so a new page
/// costs nothing to set up instead of clearing the table. The table is cleared only when the
/// epoch wraps (every 16 pages of 4 KiB, every page of 64 KiB) or a longer input needs more
/// position bits. 16-bit slots keep the table at 128 KiB, as in Go, which measured 5% faster
/// than 32-bit slots: the table does not fit in L1, and most lookups miss it.
pub struct Compressor {
    table: Box<[u16; TABLE_SIZE]>,
    /// How many low bits of a slot hold the position; 0 before the first input.
    shift: u32,
    /// The current input's number, below `1 << (16 - shift)`.
    epoch: u32,
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

/// The little-endian `u64` at `src[at..at + 8]`, without a bounds check.
///
/// # Safety
/// `at + 8 <= src.len()`.
#[inline(always)]
unsafe fn load64(src: &[u8], at: usize) -> u64 {
    debug_assert!(at + 8 <= src.len());
    // SAFETY: the caller guarantees that the 8 bytes lie inside `src`; the read is unaligned.
    u64::from_le(unsafe { src.as_ptr().add(at).cast::<u64>().read_unaligned() })
}

/// The little-endian `u32` at `src[at..at + 4]`, without a bounds check.
///
/// # Safety
/// `at + 4 <= src.len()`.
#[inline(always)]
unsafe fn load32(src: &[u8], at: usize) -> u32 {
    debug_assert!(at + 4 <= src.len());
    // SAFETY: the caller guarantees that the 4 bytes lie inside `src`; the read is unaligned.
    u32::from_le(unsafe { src.as_ptr().add(at).cast::<u32>().read_unaligned() })
}

fn le32(src: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&src[at..at + 4]);
    u32::from_le_bytes(b)
}

impl Compressor {
    /// A compressor with an empty hash table.
    pub fn new() -> Self {
        Compressor {
            table: vec![0; TABLE_SIZE]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!()),
            shift: 0,
            epoch: 0,
        }
    }

    /// Starts an input of `n` bytes (`MF_LIMIT < n <= MAX_INPUT`): moves to the next epoch,
    /// clearing the table when the epochs wrap or `n` needs more position bits. Returns the
    /// epoch shifted into place.
    fn next_epoch(&mut self, n: usize) -> u32 {
        let need = usize::BITS - (n - 1).leading_zeros();
        if need > self.shift {
            // A zeroed table is empty in epoch 0: an empty slot reads as position 0, just as
            // a slot of an earlier epoch does. A new compressor's table is already zeroed.
            if self.shift != 0 {
                self.table.fill(0);
            }
            self.shift = need;
            self.epoch = 0;
        } else {
            self.epoch += 1;
            if self.epoch == 1 << (16 - self.shift) {
                self.table.fill(0);
                self.epoch = 0;
            }
        }
        self.epoch << self.shift
    }

    /// Compresses `src` (at most 64 KiB, one page) and appends the block to `dst`.
    /// Returns the compressed length.
    pub fn compress(&mut self, src: &[u8], dst: &mut Vec<u8>) -> usize {
        let start = dst.len();
        dst.resize(start + compress_buffer_len(src.len()), 0);
        let n = self.compress_into(src, &mut dst[start..]);
        dst.truncate(start + n);
        n
    }

    /// Compresses `src` into the front of `out` and returns the compressed length. `out` must
    /// hold at least [`compress_buffer_len`]`(src.len())` bytes; a caller that keeps one such
    /// buffer for every page avoids clearing it each time. Bytes of `out` past the returned
    /// length may be overwritten.
    ///
    /// The block is pierrec/lz4's for any `src` of at most 64 KiB (any SQLite page). A longer
    /// `src`, which Go would compress with offsets across 64 KiB windows, is stored as one run
    /// of literals: still a valid block, just not compressed.
    ///
    /// # Panics
    /// If `out` is shorter than that.
    pub fn compress_into(&mut self, src: &[u8], out: &mut [u8]) -> usize {
        assert!(
            out.len() >= compress_buffer_len(src.len()),
            "LZ4 output buffer of {} bytes for {} input bytes",
            out.len(),
            src.len()
        );
        let (mut o, anchor) = if src.len() > MF_LIMIT && src.len() <= MAX_INPUT {
            self.compress_sequences(src, out)
        } else {
            (0, 0)
        };
        let lit = src.len() - anchor;
        out[o] = (lit.min(15) as u8) << 4;
        o += 1;
        if lit >= 15 {
            o = put_length(out, o, lit - 15);
        }
        out[o..o + lit].copy_from_slice(&src[anchor..]);
        o + lit
    }

    /// The match search: writes every sequence that ends in a match and returns the output
    /// length and the start of the last literals. `MF_LIMIT < src.len() <= MAX_INPUT`.
    ///
    /// This is pierrec/lz4's `CompressBlock` step for step, so the output is byte-identical;
    /// `tests::matches_reference` checks it against a plain transcription. What differs is
    /// how: loads without bounds checks where the bounds are proven below, the three
    /// candidates of a step tested in turn on values loaded up front, the backward extension
    /// compared 8 bytes at a time, and no branch on lengths below 270.
    #[inline(always)]
    fn compress_sequences(&mut self, src: &[u8], out: &mut [u8]) -> (usize, usize) {
        let n = src.len();
        let tag = self.next_epoch(n);
        let lim = 1u32 << self.shift;
        let table = &mut *self.table;
        // The last match must start before sn (Go's `sn := len(src) - mfLimit`).
        let sn = n - MF_LIMIT;
        // The position in a slot, or 0 (Go's empty slot) for a slot of an earlier input.
        let pos = |slot: u16| -> usize {
            let d = u32::from(slot).wrapping_sub(tag);
            if d < lim {
                d as usize
            } else {
                0
            }
        };
        let slot = |p: usize| (tag | p as u32) as u16;
        // Whether the candidate `r` is a match for position `p` (`p <= si + 2`). With
        // `n <= 64 KiB`, Go's `get` moves a candidate at or after `p` a window back, which its
        // `offset <= 0 || offset >= winSize` test then rejects, and accepts every other one:
        // `r < p` is the same test.
        let accept = |p: usize, r: usize, want: u32| -> bool {
            // SAFETY: with `r < p`, `r + 4 <= p + 4 <= si + 6 <= sn + 5 < n`.
            r < p && unsafe { load32(src, r) } == want
        };

        let mut o = 0usize;
        let mut anchor = 0usize;
        let mut si = 0usize;
        while si < sn {
            // SAFETY: si < sn = n - 14, so si + 8 <= n.
            let m = unsafe { load64(src, si) };
            let h1 = hash6(m);
            let h2 = hash6(m >> 8);
            let h3 = hash6(m >> 16);
            let r1 = pos(table[h1]);
            let r2 = pos(table[h2]);
            table[h1] = slot(si);
            table[h2] = slot(si + 1);
            let r3 = pos(table[h3]);
            // (p, r): the match position and its earlier occurrence.
            let (p, r) = if accept(si, r1, m as u32) {
                (si, r1)
            } else if accept(si + 1, r2, (m >> 8) as u32) {
                (si + 1, r2)
            } else {
                table[h3] = slot(si + 2);
                if !accept(si + 2, r3, (m >> 16) as u32) {
                    si += 4 + ((si + 2 - anchor) >> ADAPT_SKIP_LOG);
                    continue;
                }
                (si + 2, r3)
            };
            // 1 <= offset: accept checked r < p.
            let offset = p - r;

            // Extend backwards over the literals, at most to the start of the input.
            let max_back = (p - anchor).min(r);
            let mut back = 0;
            if max_back > 0 {
                if r >= 8 {
                    // SAFETY: 8 <= r < p, and p + 4 <= n (see accept).
                    let x = unsafe { load64(src, p - 8) ^ load64(src, r - 8) };
                    back = ((x.leading_zeros() >> 3) as usize).min(max_back);
                }
                if back == 8 || r < 8 {
                    while back < max_back && src[p - back - 1] == src[r - back - 1] {
                        back += 1;
                    }
                }
            }
            let start = p - back;
            let lit = start - anchor;

            // Extend forwards 8 bytes at a time, only while a whole word fits before sn.
            si = p + MIN_MATCH;
            while si + 8 <= sn {
                // SAFETY: si + 8 <= sn < n, and si - offset = r + (si - p) >= 0.
                let x = unsafe { load64(src, si) ^ load64(src, si - offset) };
                if x != 0 {
                    si += (x.trailing_zeros() >> 3) as usize;
                    break;
                }
                si += 8;
            }
            let mlen = si - start - MIN_MATCH;

            out[o] = ((lit.min(15) as u8) << 4) | mlen.min(15) as u8;
            o = put_short_length(out, o + 1, lit);
            o = put_literals(out, o, src, anchor, lit);
            out[o..o + 2].copy_from_slice(&(offset as u16).to_le_bytes());
            o = put_short_length(out, o + 2, mlen);
            anchor = si;

            if si >= sn {
                break;
            }
            // SAFETY: 4 <= si < sn, so si - 2 + 8 <= n.
            let h = hash6(unsafe { load64(src, si - 2) });
            table[h] = slot(si - 2);
        }
        (o, anchor)
    }
}

/// Room past the compress bound for a 16-byte chunk overrunning the last literal run.
const LITERAL_SLACK: usize = 16;

/// The output room [`Compressor::compress_into`] needs for `n` input bytes.
pub fn compress_buffer_len(n: usize) -> usize {
    compress_bound(n) + LITERAL_SLACK
}

/// Copies `src[from..from + len]` to `out[o..]` and returns the new output position. Short runs,
/// the common case between matches, go as one 32-byte copy, which may write bytes past the run
/// that the next sequence then overwrites.
#[inline(always)]
fn put_literals(out: &mut [u8], o: usize, src: &[u8], from: usize, len: usize) -> usize {
    if len <= 32 && from + 32 <= src.len() && o + 32 <= out.len() {
        out[o..o + 32].copy_from_slice(&src[from..from + 32]);
    } else {
        out[o..o + len].copy_from_slice(&src[from..from + len]);
    }
    o + len
}

/// Writes the length bytes that follow a token nibble for `len` (none below 15) at `o` and
/// returns the new output position. Below 270 there is at most one: it is written either way
/// (where the next bytes will overwrite it if not needed), so there is no branch on `len`.
#[inline(always)]
fn put_short_length(out: &mut [u8], o: usize, len: usize) -> usize {
    if len < 15 + 255 {
        out[o] = len.wrapping_sub(15) as u8;
        o + usize::from(len >= 15)
    } else {
        put_length(out, o, len - 15)
    }
}

#[inline(always)]
fn put_length(out: &mut [u8], mut o: usize, mut l: usize) -> usize {
    while l >= 255 {
        out[o] = 255;
        o += 1;
        l -= 255;
    }
    out[o] = l as u8;
    o + 1
}

/// Reads the extra length bytes that follow a 15 in a token nibble.
#[inline(always)]
fn read_length(src: &[u8], i: &mut usize) -> Result<usize, String> {
    let mut len = 0usize;
    loop {
        let b = *src
            .get(*i)
            .ok_or_else(|| format!("LZ4 length truncated at +{i}"))?;
        *i += 1;
        len += b as usize;
        if b != 255 {
            return Ok(len);
        }
    }
}

/// Copies the `len` bytes that start `offset` back from `o` to `o` (`offset <= o` and
/// `o + len <= out.len()` are checked by the caller). Matches are where the time goes on
/// database pages: the zeroed middle of every page is a match with offset 1 or 2 thousands of
/// bytes long, and rows give many short ones. So: a fill for runs of one byte, doubling copies
/// for other short periods, and whole 16-byte chunks (which may write past the match, into bytes
/// the next sequence overwrites) for short matches far enough back.
#[inline(always)]
fn copy_match(out: &mut [u8], o: usize, offset: usize, len: usize) {
    let from = o - offset;
    if offset >= 16 && o + len + 16 <= out.len() {
        let mut d = 0;
        while d < len {
            out.copy_within(from + d..from + d + 16, o + d);
            d += 16;
        }
    } else if offset == 1 {
        let b = out[from];
        out[o..o + len].fill(b);
    } else if offset >= len {
        out.copy_within(from..from + len, o);
    } else {
        // The bytes from `from` repeat with period `offset`; each copy doubles the repeated
        // prefix, whose length stays a multiple of the period.
        let end = o + len;
        let mut d = o;
        while d < end {
            let n = (d - from).min(end - d);
            out.copy_within(from..from + n, d);
            d += n;
        }
    }
}

/// Decompresses one LZ4 block into `out`, which must be filled exactly.
///
/// Written here rather than taken from `lz4_flex` (which still decodes legacy frames): its
/// overlapping-match copy goes byte by byte, which on pages with a zeroed middle made up most of
/// the decode time. Every index is checked; malformed input is an error, never a panic.
pub fn decompress_block(src: &[u8], out: &mut [u8]) -> Result<(), String> {
    let (mut i, mut o) = (0usize, 0usize);
    loop {
        let token = *src
            .get(i)
            .ok_or_else(|| format!("LZ4 block truncated at +{i}: expected a token"))?;
        i += 1;
        let mut lit = (token >> 4) as usize;
        if lit == 15 {
            lit += read_length(src, &mut i)?;
        }
        if lit > src.len() - i || lit > out.len() - o {
            return Err(format!(
                "LZ4 literal run of {lit} bytes at +{i} overruns the input or the page"
            ));
        }
        if lit <= 16 && i + 16 <= src.len() && o + 16 <= out.len() {
            out[o..o + 16].copy_from_slice(&src[i..i + 16]);
        } else {
            out[o..o + lit].copy_from_slice(&src[i..i + lit]);
        }
        i += lit;
        o += lit;
        if i == src.len() {
            break;
        }
        let off = src
            .get(i..i + 2)
            .ok_or_else(|| format!("LZ4 match offset truncated at +{i}"))?;
        let offset = u16::from_le_bytes([off[0], off[1]]) as usize;
        if offset == 0 || offset > o {
            return Err(format!(
                "LZ4 match offset {offset} at +{i} points before the page"
            ));
        }
        i += 2;
        let mut len = (token & 0xf) as usize + MIN_MATCH;
        if token & 0xf == 0xf {
            len += read_length(src, &mut i)?;
        }
        if len > out.len() - o {
            return Err(format!(
                "LZ4 match of {len} bytes at +{i} overruns the page"
            ));
        }
        copy_match(out, o, offset, len);
        o += len;
    }
    if o != out.len() {
        return Err(format!("decompressed {o} bytes, want {}", out.len()));
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
mod reference_tests;

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
