//! The block stream that carries a delta: tagged blocks, zstd-compressed or raw, ending
//! with a zero tag. Reading inflates under a total budget.

use super::DecodeError;

const END: u8 = 0;
const ZSTD: u8 = 1;
const RAW: u8 = 2;
/// Largest block content, before or after inflating (the length field is a `u16`, and
/// chitchat inflates each block into a buffer of this size).
const MAX_BLOCK: usize = u16::MAX as usize;

/// How [`super::encode`] cuts a delta into blocks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Blocks {
    /// Raw blocks of up to 65,535 bytes.
    Raw,
    /// zstd blocks of `block` bytes of content each (1 to 65,535); a block that does not
    /// shrink is written raw.
    Zstd { block: usize },
}

/// Reads the blocks at the start of `buf` (advancing it past the end tag) and returns
/// their content; fails with [`DecodeError::OverCompressed`] as soon as the content
/// passes `budget` bytes.
pub(super) fn read(buf: &mut &[u8], budget: usize) -> Result<Vec<u8>, DecodeError> {
    let mut content = Vec::new();
    let mut scratch = vec![0u8; MAX_BLOCK];
    loop {
        let (&tag, rest) = buf
            .split_first()
            .ok_or(DecodeError::Invalid("delta without an end tag"))?;
        *buf = rest;
        if tag == END {
            return Ok(content);
        }
        if buf.len() < 2 {
            return Err(DecodeError::Invalid("truncated block length"));
        }
        let len = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
        let block = buf
            .get(2..2 + len)
            .ok_or(DecodeError::Invalid("block longer than the message"))?;
        *buf = &buf[2 + len..];
        let inflated = match tag {
            ZSTD => {
                let n = zstd::bulk::decompress_to_buffer(block, &mut scratch[..])
                    .map_err(|_| DecodeError::Invalid("zstd block"))?;
                &scratch[..n]
            }
            RAW => block,
            _ => return Err(DecodeError::Invalid("block tag")),
        };
        if content.len() + inflated.len() > budget {
            return Err(DecodeError::OverCompressed);
        }
        content.extend_from_slice(inflated);
    }
}

/// Appends `content` as blocks, then the end tag.
pub(super) fn write(w: &mut Vec<u8>, content: &[u8], blocks: Blocks) {
    let size = match blocks {
        Blocks::Raw => MAX_BLOCK,
        Blocks::Zstd { block } => block.clamp(1, MAX_BLOCK),
    };
    for chunk in content.chunks(size) {
        let packed = matches!(blocks, Blocks::Zstd { .. })
            .then(|| zstd::bulk::compress(chunk, 3).ok())
            .flatten()
            .filter(|z| z.len() < chunk.len());
        let (tag, body) = match &packed {
            Some(z) => (ZSTD, z.as_slice()),
            None => (RAW, chunk),
        };
        w.push(tag);
        // Invariant: chunks and their (smaller) compressed forms are at most MAX_BLOCK.
        w.extend_from_slice(&(body.len() as u16).to_le_bytes());
        w.extend_from_slice(body);
    }
    w.push(END);
}
