//! A bounded reader of TIFF structure (byte order, IFDs, tag values), for what RAW containers
//! say about themselves: which maker wrote them, where the sensor data lies, the orientation.
//! No pixels are read. RAW files are untrusted input: every count and offset is checked
//! against the bytes actually there before it is used, nothing is allocated from a count the
//! file states, and the IFDs a walk visits are capped, so a 1 KB file claiming a billion
//! entries costs nothing (a general RAW library allocated such counts and aborted the process).

/// Tag numbers this module's users read.
pub(crate) mod tag {
    pub const MAKE: u16 = 0x010F;
    pub const PHOTOMETRIC: u16 = 0x0106;
    pub const ORIENTATION: u16 = 0x0112;
    pub const STRIP_OFFSETS: u16 = 0x0111;
    pub const STRIP_BYTE_COUNTS: u16 = 0x0117;
    pub const TILE_OFFSETS: u16 = 0x0144;
    pub const TILE_BYTE_COUNTS: u16 = 0x0145;
    pub const SUB_IFDS: u16 = 0x014A;
    pub const DNG_VERSION: u16 = 0xC612;
}

/// More entries than any camera writes in one IFD: a count beyond it is a broken file.
const MAX_ENTRIES: u16 = 1024;
/// IFDs one walk visits at most (cameras write fewer than 20).
pub(crate) const MAX_IFDS: usize = 64;

/// A TIFF structure inside `bytes`, its offsets counted from `base` (0 for a TIFF file, the
/// start of the TIFF header for EXIF inside a JPEG or a CR3 box).
#[derive(Clone, Copy)]
pub(crate) struct Tiff<'a> {
    bytes: &'a [u8],
    base: usize,
    big_endian: bool,
    /// Offset of IFD0.
    pub first_ifd: u32,
}

/// One IFD: where its entries are and the offset of the next IFD in the chain (0 = none).
#[derive(Clone, Copy)]
pub(crate) struct Ifd {
    /// File position of this IFD (identifies it in a walk).
    pub at: usize,
    entries_at: usize,
    count: u16,
    pub next: u32,
}

/// One IFD entry; `value_at` is the file position of its value (inline or pointed to).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub tag: u16,
    typ: u16,
    count: u32,
    value_at: usize,
}

/// Why a structure could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broken(pub String);

impl<'a> Tiff<'a> {
    /// Reads the header at `bytes[base..]`: `II` or `MM`, any 2-byte magic (ORF and RW2 use
    /// their own instead of 42), the offset of IFD0.
    pub fn new(bytes: &'a [u8], base: usize) -> Option<Tiff<'a>> {
        let big_endian = match bytes.get(base..base + 2)? {
            b"II" => false,
            b"MM" => true,
            _ => return None,
        };
        let mut tiff = Tiff { bytes, base, big_endian, first_ifd: 0 };
        tiff.first_ifd = tiff.u32_at(base + 4)?;
        Some(tiff)
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    fn u16_at(&self, pos: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(pos..pos.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }

    fn u32_at(&self, pos: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(pos..pos.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    /// File position of a TIFF offset.
    fn position(&self, offset: u32) -> Option<usize> {
        self.base.checked_add(usize::try_from(offset).ok()?)
    }

    /// The IFD at `offset`, whole within the file.
    pub fn ifd(&self, offset: u32) -> Result<Ifd, Broken> {
        // An IFD cannot start inside the 8-byte header.
        let at = self.position(offset).filter(|_| offset >= 8);
        let at = at.ok_or_else(|| Broken(format!("IFD offset {offset} is not a place in the file")))?;
        let count = self.u16_at(at).ok_or_else(|| Broken(format!("the IFD at byte {at} lies past the file's end")))?;
        if count == 0 || count > MAX_ENTRIES {
            return Err(Broken(format!("the IFD at byte {at} claims {count} entries")));
        }
        let entries_at = at + 2;
        let next_at = entries_at + 12 * usize::from(count);
        let next = self.u32_at(next_at).ok_or_else(|| Broken(format!("the IFD at byte {at} is cut off")))?;
        Ok(Ifd { at, entries_at, count, next })
    }

    /// The entries of an IFD (those whose value lies outside the file are skipped when read).
    pub fn entries(&self, ifd: &Ifd) -> impl Iterator<Item = Entry> + '_ {
        let ifd = *ifd;
        (0..usize::from(ifd.count)).filter_map(move |i| self.entry_at(ifd.entries_at + 12 * i))
    }

    fn entry_at(&self, pos: usize) -> Option<Entry> {
        let tag = self.u16_at(pos)?;
        let typ = self.u16_at(pos + 2)?;
        let count = self.u32_at(pos + 4)?;
        let size = u64::from(type_size(typ)?) * u64::from(count);
        let value_at = if size <= 4 { pos + 8 } else { self.position(self.u32_at(pos + 8)?)? };
        Some(Entry { tag, typ, count, value_at })
    }

    pub fn find(&self, ifd: &Ifd, tag: u16) -> Option<Entry> {
        self.entries(ifd).find(|e| e.tag == tag)
    }

    /// The integer values of a BYTE/SHORT/LONG (or IFD) entry; `None` when they do not lie
    /// whole within the file.
    pub fn numbers(&self, entry: &Entry) -> Option<impl Iterator<Item = u64> + '_> {
        let size = type_size(entry.typ)?;
        let len = usize::try_from(u64::from(size) * u64::from(entry.count)).ok()?;
        self.bytes.get(entry.value_at..entry.value_at.checked_add(len)?)?;
        let (typ, at) = (entry.typ, entry.value_at);
        Some((0..entry.count as usize).map_while(move |i| match typ {
            1 | 7 => self.bytes.get(at + i).map(|&b| u64::from(b)),
            3 => self.u16_at(at + 2 * i).map(u64::from),
            4 | 13 => self.u32_at(at + 4 * i).map(u64::from),
            _ => None,
        }))
    }

    pub fn first_number(&self, entry: &Entry) -> Option<u64> {
        self.numbers(entry)?.next()
    }

    /// An ASCII entry's text up to its first NUL, when within the file.
    pub fn text(&self, entry: &Entry) -> Option<&'a [u8]> {
        if entry.typ != 2 {
            return None;
        }
        let raw = self.bytes.get(entry.value_at..entry.value_at.checked_add(entry.count as usize)?)?;
        Some(raw.split(|&b| b == 0).next().unwrap_or_default())
    }

    /// IFD0, its chain (IFD1, IFD2, ...) and every SubIFD below them, breadth first, each once,
    /// at most [`MAX_IFDS`]. An IFD that cannot be read is reported and not followed.
    pub fn walk(&self) -> (Vec<Ifd>, Vec<Broken>) {
        let mut found: Vec<Ifd> = Vec::new();
        let mut broken = Vec::new();
        let mut queue = std::collections::VecDeque::from([self.first_ifd]);
        let mut seen = std::collections::HashSet::new();
        while let Some(offset) = queue.pop_front() {
            if found.len() >= MAX_IFDS || !seen.insert(offset) {
                continue;
            }
            match self.ifd(offset) {
                Ok(ifd) => {
                    if ifd.next != 0 {
                        queue.push_back(ifd.next);
                    }
                    if let Some(subs) = self.find(&ifd, tag::SUB_IFDS) {
                        match self.numbers(&subs) {
                            Some(values) => queue.extend(values.take(MAX_IFDS).filter_map(|v| u32::try_from(v).ok())),
                            None => broken.push(Broken(format!("the SubIFD list of the IFD at byte {} lies past the file's end", ifd.at))),
                        }
                    }
                    found.push(ifd);
                }
                Err(e) => broken.push(e),
            }
        }
        (found, broken)
    }

    /// Where the IFD's image data (strips or tiles) runs past the end of the file, if it does.
    pub fn data_past_end(&self, ifd: &Ifd) -> Option<String> {
        for (offsets_tag, counts_tag) in [(tag::STRIP_OFFSETS, tag::STRIP_BYTE_COUNTS), (tag::TILE_OFFSETS, tag::TILE_BYTE_COUNTS)] {
            let Some(offsets) = self.find(ifd, offsets_tag) else { continue };
            let Some(offsets) = self.numbers(&offsets) else {
                return Some(format!("the data offsets of the IFD at byte {} lie past the file's end", ifd.at));
            };
            let counts: Vec<u64> = match self.find(ifd, counts_tag).map(|c| self.numbers(&c)) {
                Some(Some(counts)) => counts.take(1 << 16).collect(),
                Some(None) => return Some(format!("the data sizes of the IFD at byte {} lie past the file's end", ifd.at)),
                None => Vec::new(),
            };
            for (i, offset) in offsets.take(1 << 16).enumerate() {
                let start = (self.base as u64).saturating_add(offset);
                let end = start.saturating_add(counts.get(i).copied().unwrap_or(0));
                if end > self.len() as u64 || start > self.len() as u64 {
                    return Some(format!(
                        "image data of the IFD at byte {} ends at byte {end}, past the file's end ({})",
                        ifd.at,
                        self.len()
                    ));
                }
            }
        }
        None
    }
}

/// Bytes per value of a TIFF field type (`None` for types TIFF does not define).
fn type_size(typ: u16) -> Option<u32> {
    Some(match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 => 8,
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A little-endian TIFF with IFD0 holding `entries` (tag, type, count, value or offset).
    pub(crate) fn little_tiff(entries: &[(u16, u16, u32, u32)], tail: &[u8]) -> Vec<u8> {
        let mut b = b"II*\0\x08\0\0\0".to_vec();
        b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for &(tag, typ, count, value) in entries {
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&typ.to_le_bytes());
            b.extend_from_slice(&count.to_le_bytes());
            b.extend_from_slice(&value.to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn counts_the_file_cannot_hold_are_never_believed() {
        // A RATIONAL entry claiming 4 billion values (32 GB), pointing into the file.
        let bytes = little_tiff(&[(0x0112, 3, 1, 6), (0x9999, 5, u32::MAX, 8)], &[0; 16]);
        let tiff = Tiff::new(&bytes, 0).unwrap();
        let ifd = tiff.ifd(tiff.first_ifd).unwrap();
        let huge = tiff.find(&ifd, 0x9999).unwrap();
        assert!(tiff.numbers(&huge).is_none());
        assert_eq!(tiff.find(&ifd, tag::ORIENTATION).and_then(|e| tiff.first_number(&e)), Some(6));
    }

    #[test]
    fn an_ifd_claiming_more_entries_than_bytes_is_broken() {
        let mut bytes = little_tiff(&[(0x0112, 3, 1, 1)], &[]);
        bytes[8] = 0xFF;
        bytes[9] = 0x03;
        let tiff = Tiff::new(&bytes, 0).unwrap();
        assert!(tiff.ifd(tiff.first_ifd).is_err());
        assert!(Tiff::new(b"XX*\0\x08\0\0\0", 0).is_none());
    }

    #[test]
    fn a_walk_follows_chains_and_subifds_once_and_stops_at_loops() {
        // IFD0 at 8 points to itself as next and as its SubIFD: visited once.
        let bytes = little_tiff(&[(tag::SUB_IFDS, 4, 1, 8)], &[]);
        let mut looped = bytes.clone();
        let next_at = 8 + 2 + 12;
        looped[next_at..next_at + 4].copy_from_slice(&8u32.to_le_bytes());
        let tiff = Tiff::new(&looped, 0).unwrap();
        let (ifds, broken) = tiff.walk();
        assert_eq!(ifds.len(), 1);
        assert!(broken.is_empty());
    }

    #[test]
    fn strips_past_the_end_are_found() {
        let whole = little_tiff(&[(tag::STRIP_OFFSETS, 4, 1, 38), (tag::STRIP_BYTE_COUNTS, 4, 1, 14)], &[0; 14]);
        let tiff = Tiff::new(&whole, 0).unwrap();
        assert_eq!(tiff.data_past_end(&tiff.ifd(8).unwrap()), None);
        let cut = &whole[..whole.len() - 2];
        let tiff = Tiff::new(cut, 0).unwrap();
        assert!(tiff.data_past_end(&tiff.ifd(8).unwrap()).is_some());
    }
}
