//! Synthetic inputs shared by the property tests and the benchmarks: SQLite-like pages and valid SQLite WAL bytes.

/// splitmix64: deterministic, so a failing property case or a benchmark input is reproducible
/// from its seed alone.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant for test data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    // SQLite varints are big-endian base-128; records here stay well under 2^14.
    if v >= 0x80 {
        out.push(0x80 | (v >> 7) as u8);
    }
    out.push((v & 0x7f) as u8);
}

const FIRST: [&str; 24] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "xena", "yusuf",
    "zoe", "amara", "bjorn",
];
const LAST: [&str; 16] = [
    "smith", "garcia", "nguyen", "muller", "rossi", "kowalski", "tanaka", "okafor", "silva",
    "dubois", "jensen", "haddad", "ivanova", "patel", "obrien", "larsen",
];
const DOMAINS: [&str; 6] = [
    "example.com",
    "mail.test",
    "corp.example",
    "post.invalid",
    "inbox.example.org",
    "web.test",
];
const CITIES: [&str; 12] = [
    "paris", "lagos", "osaka", "lima", "oslo", "pune", "denver", "porto", "quito", "hanoi",
    "tunis", "perth",
];
const STATUS: [&str; 5] = ["pending", "paid", "shipped", "delivered", "refunded"];
const NOTES: [&str; 16] = [
    "gift wrap",
    "leave at door",
    "fragile",
    "express",
    "call first",
    "second attempt",
    "back order",
    "partial refund",
    "priority",
    "bulk",
    "repeat customer",
    "new address",
    "signature required",
    "weekend",
    "discount applied",
    "",
];

fn pick<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list[rng.below(list.len() as u64) as usize]
}

/// One table b-tree leaf cell of an `orders` row: (id INTEGER PRIMARY KEY, customer TEXT,
/// email TEXT, city TEXT, status TEXT, created TEXT, amount INTEGER, token TEXT, note TEXT).
/// Names, places and statuses repeat as they do in application data; timestamps, amounts and
/// tokens mostly do not.
fn leaf_cell(rng: &mut Rng, rowid: u64) -> Vec<u8> {
    let (first, last) = (pick(rng, &FIRST), pick(rng, &LAST));
    let customer = format!("{first} {last}");
    let email = format!("{first}.{last}{}@{}", rng.below(100), pick(rng, &DOMAINS));
    let city = pick(rng, &CITIES).to_owned();
    let status = pick(rng, &STATUS).to_owned();
    let created = format!(
        "2024-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60)
    );
    let amount = (rng.below(1 << 24) as u32).to_be_bytes();
    let token = format!("{:016x}", rng.next_u64());
    let note = pick(rng, &NOTES).to_owned();
    let texts = [customer, email, city, status, created];
    let tail = [token, note];

    let mut header = Vec::new();
    put_varint(&mut header, 0); // the id aliases the rowid and is stored as NULL
    for t in &texts {
        put_varint(&mut header, 13 + 2 * t.len() as u64);
    }
    put_varint(&mut header, 4);
    for t in &tail {
        put_varint(&mut header, 13 + 2 * t.len() as u64);
    }
    let mut record = Vec::new();
    put_varint(&mut record, header.len() as u64 + 1);
    record.extend_from_slice(&header);
    for t in &texts {
        record.extend_from_slice(t.as_bytes());
    }
    record.extend_from_slice(&amount);
    for t in &tail {
        record.extend_from_slice(t.as_bytes());
    }
    let mut cell = Vec::new();
    put_varint(&mut cell, record.len() as u64);
    put_varint(&mut cell, rowid);
    cell.extend_from_slice(&record);
    cell
}

/// A table b-tree leaf page: 8-byte header, cell pointer array, zero-filled free space, cells
/// packed at the end. `fill` is the fraction (0..=100) of the page the cells may use.
pub fn sqlite_leaf_page(rng: &mut Rng, page_size: usize, fill: u64) -> Vec<u8> {
    let mut page = vec![0u8; page_size];
    let budget = page_size * fill.min(100) as usize / 100;
    let mut content_start = page_size;
    let mut pointers = Vec::new();
    let mut rowid = rng.below(1 << 20) + 1;
    loop {
        let cell = leaf_cell(rng, rowid);
        let used = page_size - content_start + cell.len() + 2 * (pointers.len() + 1);
        if used > budget || 8 + 2 * (pointers.len() + 1) + cell.len() > content_start {
            break;
        }
        content_start -= cell.len();
        page[content_start..content_start + cell.len()].copy_from_slice(&cell);
        pointers.push(content_start as u16);
        rowid += 1;
    }
    page[0] = 0x0d;
    page[3..5].copy_from_slice(&(pointers.len() as u16).to_be_bytes());
    page[5..7].copy_from_slice(&(content_start as u16).to_be_bytes());
    for (i, p) in pointers.iter().enumerate() {
        page[8 + 2 * i..10 + 2 * i].copy_from_slice(&p.to_be_bytes());
    }
    page
}

/// The kinds of page content the properties mix: what compresses well, what does not, and
/// what sits in between.
#[derive(Clone, Copy, Debug)]
pub enum PageKind {
    /// All zeros.
    Zero,
    /// Every byte the given value.
    Byte(u8),
    /// Random bytes throughout.
    Random,
    /// A table b-tree leaf page of `orders` rows ([`sqlite_leaf_page`]).
    Leaf {
        /// The percentage (0..=100) of the page the cells may use.
        fill: u8,
    },
    /// Random bytes in the first half, zeros after (a half-written overflow page).
    HalfRandom,
}

/// A page of `page_size` bytes of the given kind, generated from `seed`.
pub fn make_page(kind: PageKind, seed: u64, page_size: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    match kind {
        PageKind::Zero => vec![0; page_size],
        PageKind::Byte(b) => vec![b; page_size],
        PageKind::Random => {
            let mut p = vec![0; page_size];
            rng.fill(&mut p);
            p
        }
        PageKind::Leaf { fill } => sqlite_leaf_page(&mut rng, page_size, u64::from(fill)),
        PageKind::HalfRandom => {
            let mut p = vec![0; page_size];
            rng.fill(&mut p[..page_size / 2]);
            p
        }
    }
}

/// SQLite's WAL checksum, written independently of `ltx_codec::wal::checksum` so the two check
/// each other.
fn wal_sum(big_endian: bool, mut s: (u32, u32), data: &[u8]) -> (u32, u32) {
    let word = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let mut i = 0;
    while i < data.len() {
        s.0 = s.0.wrapping_add(word(&data[i..])).wrapping_add(s.1);
        s.1 = s.1.wrapping_add(word(&data[i + 4..])).wrapping_add(s.0);
        i += 8;
    }
    s
}

/// Writes valid SQLite WAL bytes frame by frame.
pub struct WalBuilder {
    /// The WAL so far: the 32-byte header, then every frame appended.
    pub bytes: Vec<u8>,
    /// The page size in bytes; every frame's page must be this long.
    pub page_size: usize,
    /// Whether checksums read big-endian words (WAL magic `0x377f0683`).
    pub big_endian: bool,
    /// Salt-1 and salt-2 of the header, repeated in every frame header.
    pub salts: (u32, u32),
    sum: (u32, u32),
}

impl WalBuilder {
    /// Starts a WAL with its header (format 3007000, `checkpoint_seq`, `salts`, checksum).
    pub fn new(page_size: u32, big_endian: bool, salts: (u32, u32), checkpoint_seq: u32) -> Self {
        let mut h = Vec::with_capacity(32);
        h.extend_from_slice(&(0x377f_0682u32 | u32::from(big_endian)).to_be_bytes());
        h.extend_from_slice(&3_007_000u32.to_be_bytes());
        // A 64 KiB page size is stored as 1: the field is only 16 bits wide in the db header.
        let stored = if page_size == 65536 { 1 } else { page_size };
        h.extend_from_slice(&stored.to_be_bytes());
        h.extend_from_slice(&checkpoint_seq.to_be_bytes());
        h.extend_from_slice(&salts.0.to_be_bytes());
        h.extend_from_slice(&salts.1.to_be_bytes());
        let sum = wal_sum(big_endian, (0, 0), &h);
        h.extend_from_slice(&sum.0.to_be_bytes());
        h.extend_from_slice(&sum.1.to_be_bytes());
        WalBuilder {
            bytes: h,
            page_size: page_size as usize,
            big_endian,
            salts,
            sum,
        }
    }

    /// Appends a frame; `commit` is the database size in pages on a commit frame, else 0.
    /// Returns the frame's offset.
    pub fn frame(&mut self, pgno: u32, commit: u32, page: &[u8]) -> u64 {
        assert_eq!(page.len(), self.page_size);
        let offset = self.bytes.len() as u64;
        let mut fh = [0u8; 24];
        fh[0..4].copy_from_slice(&pgno.to_be_bytes());
        fh[4..8].copy_from_slice(&commit.to_be_bytes());
        fh[8..12].copy_from_slice(&self.salts.0.to_be_bytes());
        fh[12..16].copy_from_slice(&self.salts.1.to_be_bytes());
        let s = wal_sum(self.big_endian, self.sum, &fh[..8]);
        let s = wal_sum(self.big_endian, s, page);
        fh[16..20].copy_from_slice(&s.0.to_be_bytes());
        fh[20..24].copy_from_slice(&s.1.to_be_bytes());
        self.sum = s;
        self.bytes.extend_from_slice(&fh);
        self.bytes.extend_from_slice(page);
        offset
    }
}
