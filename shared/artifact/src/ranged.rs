//! `Read + Seek` over an object read one range at a time.

use crate::ArtifactError;
use std::io::{self, Read, Seek, SeekFrom};

/// Where a [`RangedReader`]'s bytes come from: one ranged read of the object.
pub trait Source {
    /// Bytes `start..start + len` of the object (`len > 0`, within its size).
    fn fetch(&mut self, start: u64, len: u64) -> Result<Vec<u8>, ArtifactError>;
}

/// The first range read after a seek: the zip's end records and central directory are read
/// in small pieces near the object's end.
pub const FIRST_BLOCK: u64 = 64 * 1024;
/// Reads that go on where the last range ended (an entry streamed) double the range up to this.
pub const MAX_BLOCK: u64 = 8 * 1024 * 1024;

/// An object read through [`Source::fetch`], holding one range at a time (at most
/// [`MAX_BLOCK`] bytes): memory does not grow with the object's size. A failed fetch comes back
/// as an `io::Error` carrying the [`ArtifactError`].
pub struct RangedReader<S> {
    source: S,
    size: u64,
    pos: u64,
    block: Vec<u8>,
    block_start: u64,
    next_len: u64,
    fetched: u64,
    /// At most this many bytes are fetched in all, and what is refused when more would be.
    budget: Option<(u64, String)>,
}

impl<S: Source> RangedReader<S> {
    pub fn new(size: u64, source: S) -> Self {
        Self {
            source,
            size,
            pos: 0,
            block: Vec::new(),
            block_start: 0,
            next_len: FIRST_BLOCK,
            fetched: 0,
            budget: None,
        }
    }

    /// Fetches at most `budget` bytes in all; a read that would fetch more fails with
    /// [`ArtifactError::TooLarge`] naming `limit_text`. Bounds what an entry's reading costs
    /// beyond the entry itself: mostly the zip's central directory, whose entries the zip crate
    /// keeps in memory (about 230 bytes each).
    pub fn with_budget(mut self, budget: u64, limit_text: String) -> Self {
        self.budget = Some((budget, limit_text));
        self
    }

    /// Starts with the object's last `tail.len()` bytes at hand (read when the object was
    /// opened): reads of them fetch nothing.
    pub fn with_tail(mut self, tail: Vec<u8>) -> Self {
        self.fetched += tail.len() as u64;
        self.block_start = self.size.saturating_sub(tail.len() as u64);
        self.block = tail;
        self
    }

    /// The object's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes fetched from the source so far.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    fn holds(&self, pos: u64) -> bool {
        pos >= self.block_start && pos < self.block_start + self.block.len() as u64
    }
}

impl<S: Source> Read for RangedReader<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        if !self.holds(self.pos) {
            let block_end = self.block_start + self.block.len() as u64;
            let sequential = !self.block.is_empty() && self.pos == block_end;
            self.next_len = if sequential { (self.next_len * 2).min(MAX_BLOCK) } else { FIRST_BLOCK };
            let len = self.next_len.min(self.size - self.pos);
            if let Some((budget, limit_text)) = &self.budget {
                if self.fetched + len > *budget {
                    return Err(io::Error::other(ArtifactError::TooLarge {
                        what: "what must be read of the input artifact to find the file".to_owned(),
                        size: self.fetched + len,
                        limit_text: limit_text.clone(),
                    }));
                }
            }
            // The old range is let go before the next arrives: one range held at a time.
            self.block = Vec::new();
            let bytes = self.source.fetch(self.pos, len).map_err(io::Error::other)?;
            if bytes.len() as u64 != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("a ranged read of {len} bytes at {} returned {}", self.pos, bytes.len()),
                ));
            }
            self.fetched += len;
            self.block = bytes;
            self.block_start = self.pos;
        }
        let offset = (self.pos - self.block_start) as usize;
        let n = out.len().min(self.block.len() - offset);
        out[..n].copy_from_slice(&self.block[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<S: Source> Seek for RangedReader<S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a seek before the object's start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdeploy_protocol::ArtifactLocation;

    /// An object in memory that counts what was fetched and can fail a fetch.
    pub(crate) struct Memory {
        pub bytes: Vec<u8>,
        pub fail_at: Option<u64>,
    }

    impl Source for Memory {
        fn fetch(&mut self, start: u64, len: u64) -> Result<Vec<u8>, ArtifactError> {
            if self.fail_at.is_some_and(|f| f >= start && f < start + len) {
                return Err(ArtifactError::Read {
                    location: ArtifactLocation { bucket: "b".into(), key: "k".into() },
                    error: crossdeploy_aws::ErrorInfo { code: Some("SlowDown".into()), message: "slow".into() },
                });
            }
            Ok(self.bytes[start as usize..(start + len) as usize].to_vec())
        }
    }

    #[test]
    fn reads_and_seeks_give_the_objects_bytes() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = RangedReader::new(bytes.len() as u64, Memory { bytes: bytes.clone(), fail_at: None });
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, bytes);
        r.seek(SeekFrom::End(-10)).unwrap();
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, bytes[bytes.len() - 10..]);
        r.seek(SeekFrom::Start(5)).unwrap();
        let mut five = [0u8; 5];
        r.read_exact(&mut five).unwrap();
        assert_eq!(five, bytes[5..10]);
        assert!(r.seek(SeekFrom::Current(-100)).is_err());
    }

    #[test]
    fn a_sequential_read_grows_its_ranges_and_holds_at_most_one() {
        let bytes = vec![7u8; 40 * 1024 * 1024];
        let mut r = RangedReader::new(bytes.len() as u64, Memory { bytes, fail_at: None });
        let mut sink = io::sink();
        io::copy(&mut r, &mut sink).unwrap();
        // 64 KiB, 128 KiB, ... 8 MiB, then 8 MiB ranges: far fewer than 40 MiB / 64 KiB.
        assert_eq!(r.fetched(), 40 * 1024 * 1024);
        assert!(r.block.len() as u64 <= MAX_BLOCK);
    }

    #[test]
    fn reads_past_the_budget_are_refused() {
        let mut r = RangedReader::new(10 * 1024 * 1024, Memory { bytes: vec![0; 10 * 1024 * 1024], fail_at: None })
            .with_budget(1024 * 1024, "at most 1 MiB".into());
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        let inner = e.into_inner().unwrap().downcast::<ArtifactError>().unwrap();
        assert!(inner.to_string().contains("at most 1 MiB"), "{inner}");
        assert!(r.fetched() <= 1024 * 1024);
    }

    #[test]
    fn a_failed_fetch_carries_its_error() {
        let mut r = RangedReader::new(1000, Memory { bytes: vec![0; 1000], fail_at: Some(10) });
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        let inner = e.into_inner().unwrap().downcast::<ArtifactError>().unwrap();
        assert!(inner.to_string().contains("SlowDown"), "{inner}");
    }
}
