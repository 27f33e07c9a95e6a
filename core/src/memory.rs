//! A torrent's bytes held in memory for a download, allocated only as pieces arrive.
//!
//! A torrent's length is what its metadata declares, and for a magnet link that is whatever a
//! peer's info dictionary says: nothing is allocated from it. [`MemoryBuffer`] keeps the bytes
//! in [`CHUNK_LEN`] chunks made on the first write to each; unwritten bytes read as zeros.
//! Drivers check a torrent's length against their memory limit before choosing memory, and
//! the chunks bound what a lying length can cost to what was really received.

use std::collections::BTreeMap;
use std::ops::Range;

/// Bytes a chunk holds (the last one of a torrent may be shorter).
pub const CHUNK_LEN: usize = 1 << 20;

/// An access outside the torrent's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bytes {start}..{end} are outside the torrent's {len} bytes")]
pub struct OutOfRange {
    /// First byte asked for.
    pub start: u64,
    /// One past the last byte asked for.
    pub end: u64,
    /// The torrent's length.
    pub len: u64,
}

/// A torrent's bytes in memory, chunk by chunk as they are written.
#[derive(Debug, Clone, Default)]
pub struct MemoryBuffer {
    len: u64,
    chunks: BTreeMap<u64, Box<[u8]>>,
}

impl MemoryBuffer {
    /// An empty buffer for `len` bytes (nothing is allocated yet).
    pub fn new(len: u64) -> Self {
        MemoryBuffer {
            len,
            chunks: BTreeMap::new(),
        }
    }

    /// The torrent's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the torrent is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated so far.
    pub fn allocated(&self) -> u64 {
        self.chunks.values().map(|c| c.len() as u64).sum()
    }

    fn check(&self, offset: u64, len: usize) -> Result<Range<u64>, OutOfRange> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.len => Ok(offset..end),
            _ => Err(OutOfRange {
                start: offset,
                end: end.unwrap_or(u64::MAX),
                len: self.len,
            }),
        }
    }

    /// The pieces of `range` as `(chunk index, offset in chunk, length)`.
    fn spans(range: Range<u64>) -> impl Iterator<Item = (u64, usize, usize)> {
        let chunk = CHUNK_LEN as u64;
        let mut pos = range.start;
        std::iter::from_fn(move || {
            if pos >= range.end {
                return None;
            }
            let index = pos / chunk;
            let within = (pos % chunk) as usize;
            let n = (range.end - pos).min(chunk - within as u64) as usize;
            pos += n as u64;
            Some((index, within, n))
        })
    }

    /// Writes `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let range = self.check(offset, data.len())?;
        let mut done = 0;
        for (index, within, n) in Self::spans(range) {
            let chunk_len = (self.len - index * CHUNK_LEN as u64).min(CHUNK_LEN as u64) as usize;
            let chunk = self
                .chunks
                .entry(index)
                .or_insert_with(|| vec![0; chunk_len].into_boxed_slice());
            chunk[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Fills `out` from `offset` (unwritten bytes are zeros).
    pub fn read_into(&self, offset: u64, out: &mut [u8]) -> Result<(), OutOfRange> {
        let range = self.check(offset, out.len())?;
        let mut done = 0;
        for (index, within, n) in Self::spans(range) {
            let dst = &mut out[done..done + n];
            match self.chunks.get(&index) {
                Some(c) => dst.copy_from_slice(&c[within..within + n]),
                None => dst.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// `len` bytes from `offset`.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, OutOfRange> {
        self.check(offset, len)?;
        let mut out = vec![0; len];
        self.read_into(offset, &mut out)?;
        Ok(out)
    }

    /// The bytes of `range` as slices in order, without copying (`None` for a stretch never
    /// written, which reads as zeros), e.g. to build a browser `Blob` from parts.
    pub fn slices(
        &self,
        range: Range<u64>,
    ) -> Result<impl Iterator<Item = (usize, Option<&[u8]>)> + '_, OutOfRange> {
        let len = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(usize::MAX);
        let range = self.check(range.start, len)?;
        Ok(Self::spans(range).map(move |(index, within, n)| {
            let part = self.chunks.get(&index).map(|c| &c[within..within + n]);
            (n, part)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_huge_declared_length_allocates_nothing_until_written() {
        let mut m = MemoryBuffer::new(1 << 40);
        assert_eq!(m.allocated(), 0);
        m.write((1 << 40) - 3, b"end").unwrap();
        assert_eq!(m.allocated(), CHUNK_LEN as u64);
        assert_eq!(m.read((1 << 40) - 4, 4).unwrap(), b"\0end");
        assert_eq!(
            m.write((1 << 40) - 2, b"end"),
            Err(OutOfRange {
                start: (1 << 40) - 2,
                end: (1 << 40) + 1,
                len: 1 << 40
            })
        );
        assert!(m.read(u64::MAX, 2).is_err());
        assert!(m.slices(0..(1 << 41)).is_err());
    }

    #[test]
    fn the_last_chunk_is_only_as_long_as_the_torrent() {
        let mut m = MemoryBuffer::new(CHUNK_LEN as u64 + 10);
        m.write(CHUNK_LEN as u64, &[7; 10]).unwrap();
        assert_eq!(m.allocated(), 10);
        let parts: Vec<(usize, bool)> = m
            .slices(CHUNK_LEN as u64 - 5..CHUNK_LEN as u64 + 10)
            .unwrap()
            .map(|(n, s)| (n, s.is_some()))
            .collect();
        assert_eq!(parts, [(5, false), (10, true)]);
    }

    proptest! {
        /// Writes and reads anywhere agree with a plain vector of the same length.
        #[test]
        fn matches_a_flat_vector(
            len in 1u64..(3 * CHUNK_LEN as u64),
            ops in proptest::collection::vec((any::<u64>(), 0usize..70_000, any::<u8>()), 1..20),
        ) {
            let mut m = MemoryBuffer::new(len);
            let mut flat = vec![0u8; len as usize];
            for (at, n, byte) in ops {
                let at = at % len;
                let n = n.min((len - at) as usize);
                let data = vec![byte; n];
                m.write(at, &data).unwrap();
                flat[at as usize..at as usize + n].copy_from_slice(&data);
            }
            prop_assert_eq!(m.read(0, len as usize).unwrap(), flat.clone());
            let mut joined = Vec::new();
            for (n, part) in m.slices(0..len).unwrap() {
                match part {
                    Some(p) => joined.extend_from_slice(p),
                    None => joined.extend(std::iter::repeat_n(0, n)),
                }
            }
            prop_assert_eq!(joined, flat);
        }
    }
}
