//! Cutting a byte stream into records: one record a line, LF or CRLF, without copying.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// What the decoder found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// One record, without its line terminator. It shares memory with the read buffer.
    Record(Bytes),
    /// A record longer than the limit, dropped whole; `bytes` is its length.
    Oversize { bytes: u64 },
}

/// A `Decoder` of newline-terminated records into [`Decoded`] items.
///
/// Records are bytes: invalid UTF-8 and NUL pass through untouched. A trailing `\r` is
/// removed, empty lines are skipped, and a record longer than `max_record_bytes` is
/// dropped up to its newline while the stream goes on. The buffer never holds more than
/// `max_record_bytes` plus one read of an oversize record.
#[derive(Debug)]
pub struct RecordDecoder {
    max_record_bytes: usize,
    /// How much of the buffer is known to hold no newline, so each byte is searched once.
    searched: usize,
    /// While skipping an oversize record: how many of its bytes were dropped so far.
    discarding: Option<u64>,
}

impl RecordDecoder {
    /// A decoder that drops records longer than `max_record_bytes`.
    pub fn new(max_record_bytes: usize) -> RecordDecoder {
        RecordDecoder {
            max_record_bytes: max_record_bytes.max(1),
            searched: 0,
            discarding: None,
        }
    }

    /// Changes the limit (a reload): records from now on are held to it.
    pub fn set_max_record_bytes(&mut self, max_record_bytes: usize) {
        self.max_record_bytes = max_record_bytes.max(1);
    }

    /// Turns a complete line (terminator removed from `len`) into a frame.
    fn frame(&self, mut line: BytesMut, len: usize) -> Option<Decoded> {
        let len = if len > 0 && line[len - 1] == b'\r' {
            len - 1
        } else {
            len
        };
        if len == 0 {
            return None;
        }
        if len > self.max_record_bytes {
            return Some(Decoded::Oversize { bytes: len as u64 });
        }
        line.truncate(len);
        Some(Decoded::Record(line.freeze()))
    }
}

impl Decoder for RecordDecoder {
    type Item = Decoded;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        loop {
            let Some(offset) = memchr::memchr(b'\n', &buf[self.searched..]) else {
                if let Some(dropped) = self.discarding.as_mut() {
                    *dropped += buf.len() as u64;
                    buf.clear();
                    self.searched = 0;
                } else if buf.len() > self.max_record_bytes + 1 {
                    // Longer than any record plus its `\r`: drop what is here and skip to
                    // the newline, so an endless line cannot grow the buffer.
                    self.discarding = Some(buf.len() as u64);
                    buf.clear();
                    self.searched = 0;
                } else {
                    self.searched = buf.len();
                }
                return Ok(None);
            };
            let newline = self.searched + offset;
            self.searched = 0;
            if let Some(dropped) = self.discarding.take() {
                buf.advance(newline + 1);
                let dropped = dropped + newline as u64;
                return Ok(Some(Decoded::Oversize { bytes: dropped }));
            }
            let line = buf.split_to(newline + 1);
            if let Some(frame) = self.frame(line, newline) {
                return Ok(Some(frame));
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        self.searched = 0;
        if let Some(dropped) = self.discarding.take() {
            let dropped = dropped + buf.len() as u64;
            buf.clear();
            return Ok(Some(Decoded::Oversize { bytes: dropped }));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        // The stream ended without a final newline: the rest is still a record.
        let len = buf.len();
        let line = buf.split();
        Ok(self.frame(line, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[&[u8]], max: usize) -> Vec<Decoded> {
        let mut decoder = RecordDecoder::new(max);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for piece in input {
            buf.extend_from_slice(piece);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        while let Some(frame) = decoder.decode_eof(&mut buf).unwrap() {
            frames.push(frame);
        }
        frames
    }

    fn record(bytes: &[u8]) -> Decoded {
        Decoded::Record(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn lf_crlf_and_empty_lines() {
        let frames = decode_all(&[b"a\nb\r\n\n\r\nc\n"], 100);
        assert_eq!(frames, vec![record(b"a"), record(b"b"), record(b"c")]);
    }

    #[test]
    fn bytes_pass_through_untouched() {
        let frames = decode_all(&[b"\xff\xfe\x00LEEF\x00\xc3\x28\n"], 100);
        assert_eq!(frames, vec![record(b"\xff\xfe\x00LEEF\x00\xc3\x28")]);
    }

    #[test]
    fn unterminated_last_record() {
        let frames = decode_all(&[b"one\ntwo"], 100);
        assert_eq!(frames, vec![record(b"one"), record(b"two")]);
        let frames = decode_all(&[b"one\ntwo\r"], 100);
        assert_eq!(frames, vec![record(b"one"), record(b"two")]);
    }

    #[test]
    fn records_split_across_reads() {
        let frames = decode_all(&[b"ab", b"c\r", b"\nde", b"f\n"], 100);
        assert_eq!(frames, vec![record(b"abc"), record(b"def")]);
    }

    #[test]
    fn oversize_record_is_dropped_and_the_stream_goes_on() {
        let long = [b'x'; 50];
        let frames = decode_all(&[b"ok\n", &long[..20], &long[20..], b"\nnext\n"], 10);
        assert_eq!(
            frames,
            vec![
                record(b"ok"),
                Decoded::Oversize { bytes: 50 },
                record(b"next")
            ]
        );
    }

    #[test]
    fn oversize_within_one_read() {
        let frames = decode_all(&[b"0123456789A\nshort\n"], 10);
        assert_eq!(
            frames,
            vec![Decoded::Oversize { bytes: 11 }, record(b"short")]
        );
    }

    #[test]
    fn limit_is_inclusive_and_ignores_the_terminator() {
        let frames = decode_all(&[b"0123456789\r\n0123456789\n"], 10);
        assert_eq!(frames, vec![record(b"0123456789"), record(b"0123456789")]);
    }

    #[test]
    fn oversize_unterminated_at_eof() {
        let frames = decode_all(&[b"a\n", &[b'y'; 30]], 10);
        assert_eq!(frames, vec![record(b"a"), Decoded::Oversize { bytes: 30 }]);
    }

    #[test]
    fn records_share_the_read_buffer() {
        let mut decoder = RecordDecoder::new(100);
        let mut buf = BytesMut::from(&b"first\nsecond\n"[..]);
        let start = buf.as_ptr() as usize;
        let Some(Decoded::Record(first)) = decoder.decode(&mut buf).unwrap() else {
            panic!("no record")
        };
        let Some(Decoded::Record(second)) = decoder.decode(&mut buf).unwrap() else {
            panic!("no record")
        };
        assert_eq!(first.as_ptr() as usize, start);
        assert_eq!(second.as_ptr() as usize, start + 6);
    }
}
