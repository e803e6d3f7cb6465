//! Squashfs data blocks compressed on every thread before backhand's sequential writer runs.
//!
//! backhand writes file data in path order (compared component by component): a file of at
//! least one block becomes blocks of `block_size` (the last one shorter; an all-zero block is a
//! hole, stored as nothing), a smaller one is appended to the fragment block, which is
//! compressed whenever the next small file would not fit, and once at the end. [`Layout`]
//! lays out the same blocks. A block laid out otherwise is only a miss, compressed during the
//! write: the image depends on the bytes, never on this guess or on which thread compressed.

use super::codec::SquashfsCodec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The blocks backhand will compress, from file contents given in its write order.
pub struct Layout {
    block_size: usize,
    blocks: Vec<Vec<u8>>,
    fragment: Vec<u8>,
}

impl Layout {
    pub fn new(block_size: usize) -> Self {
        Layout {
            block_size,
            blocks: Vec::new(),
            fragment: Vec::with_capacity(block_size),
        }
    }

    /// The next file's contents.
    pub fn add(&mut self, data: &[u8]) {
        let block_size = self.block_size;
        if data.is_empty() {
            return;
        }
        if data.len() < block_size {
            if self.fragment.len() + data.len() > block_size {
                let full = std::mem::replace(&mut self.fragment, Vec::with_capacity(block_size));
                self.blocks.push(full);
            }
            self.fragment.extend_from_slice(data);
            return;
        }
        self.blocks.extend(
            data.chunks(block_size)
                .filter(|b| b.iter().any(|&x| x != 0))
                .map(<[u8]>::to_vec),
        );
    }

    /// Every block, the last fragment block included.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.blocks.push(self.fragment);
        self.blocks
    }
}

/// Compresses `blocks` on `threads` threads, each block once: its bytes → its compressed bytes.
pub fn compress(
    blocks: Vec<Vec<u8>>,
    codec: SquashfsCodec,
    threads: usize,
) -> std::io::Result<HashMap<Vec<u8>, Vec<u8>>> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(blocks.len()));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.clamp(1, blocks.len().max(1)))
            .map(|_| {
                s.spawn(|| -> std::io::Result<()> {
                    let mut c = codec.compressor()?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(block) = blocks.get(i) else {
                            return Ok(());
                        };
                        let out = c.compress(block)?;
                        done.lock().unwrap().push((i, out));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("compression thread panicked"))
    })?;
    let mut out: Vec<Option<Vec<u8>>> = vec![None; blocks.len()];
    for (i, c) in done.into_inner().unwrap() {
        out[i] = Some(c);
    }
    Ok(blocks
        .into_iter()
        .zip(out)
        .map(|(b, c)| (b, c.expect("every block compressed")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_share_fragment_blocks_and_holes_are_skipped() {
        let big: Vec<u8> = (0..10u8).cycle().take(9).collect();
        let zeros = vec![0u8; 8];
        let foresee = |files: &[&[u8]]| {
            let mut l = Layout::new(4);
            files.iter().for_each(|f| l.add(f));
            l.finish()
        };
        let blocks = foresee(&[b"abc", b"", &big, b"de", &zeros, b"fgh"]);
        let expected: [&[u8]; 6] = [&big[..4], &big[4..8], &big[8..], b"abc", b"de", b"fgh"];
        assert_eq!(blocks, expected.map(<[u8]>::to_vec));
        assert_eq!(foresee(&[b"ab", b"cd"]), [b"abcd".to_vec()]);
    }

    #[test]
    fn output_does_not_depend_on_threads() {
        let blocks: Vec<Vec<u8>> = (0..40u32)
            .map(|i| (0..70_000u32).map(|j| ((j * i) % 251) as u8).collect())
            .collect();
        for codec in [
            SquashfsCodec {
                algorithm: crate::plan::SquashfsAlgorithm::Lz4hc,
                level: 9,
            },
            SquashfsCodec {
                algorithm: crate::plan::SquashfsAlgorithm::Zstd,
                level: 3,
            },
        ] {
            let one = compress(blocks.clone(), codec, 1).unwrap();
            let four = compress(blocks.clone(), codec, 4).unwrap();
            assert_eq!(one, four);
            assert_eq!(one.len(), 40);
        }
    }
}
