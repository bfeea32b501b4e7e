//! Large host buffers backed by transparent huge pages where the OS offers them.
//!
//! The row gathers of the sparse paths (Spark FFN K2/V rows, Spark attention K2/V rows of
//! the selected keys) touch one cache line group per 4 KiB page, so with 4 KiB pages each
//! gathered row costs a TLB miss and a page walk (a nested one in a VM). An anonymous
//! mapping advised `MADV_HUGEPAGE` gets 2 MiB pages on Linux when
//! `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`; elsewhere, or
//! when the advice is refused, the buffer works the same with normal pages.
//! [`HugeBytes::huge_pages_kib`] says how much it got (from `/proc/self/smaps`). Setting
//! the environment variable `SPARK_SIM_NO_HUGE_PAGES` skips the advice (to measure what it
//! brings).
//!
//! Used for model files (`inputs::read_model_file`: every subcommand that loads a `.spark`
//! file), the session arenas of `generate`/`eval`/`bench model`, and the weight and
//! KV-cache copies of `bench ffn`/`bench attn` (both the Spark and the dense variant, and
//! the read-bandwidth bound, so ratios compare like with like). Tested in this module and
//! through the CLI tests.

use memmap2::{MmapMut, MmapOptions};
use std::io;
use std::ops::{Deref, DerefMut};

/// A zero-initialised, page-aligned byte buffer (an anonymous memory mapping).
pub struct HugeBytes {
    map: MmapMut,
    len: usize,
}

impl HugeBytes {
    /// `len` zero bytes, advised for huge pages on Linux (best effort; not when
    /// `SPARK_SIM_NO_HUGE_PAGES` is set).
    pub fn zeroed(len: usize) -> io::Result<Self> {
        let map = MmapOptions::new().len(len.max(1)).map_anon()?;
        #[cfg(target_os = "linux")]
        {
            // Refused (old kernel, THP disabled): normal pages, same behaviour.
            if std::env::var_os("SPARK_SIM_NO_HUGE_PAGES").is_none() {
                let _ = map.advise(memmap2::Advice::HugePage);
            }
        }
        Ok(HugeBytes { map, len })
    }

    /// A copy of `bytes` in a huge-page-advised buffer.
    pub fn copy_of(bytes: &[u8]) -> io::Result<Self> {
        let mut b = Self::zeroed(bytes.len())?;
        b.copy_from_slice(bytes);
        Ok(b)
    }

    /// The bytes as signed int8 weights.
    pub fn as_i8(&self) -> &[i8] {
        bytemuck::cast_slice(&self.map[..self.len])
    }

    /// The bytes as signed int8 weights, mutable.
    pub fn as_i8_mut(&mut self) -> &mut [i8] {
        bytemuck::cast_slice_mut(&mut self.map[..self.len])
    }

    /// Kibibytes backed by huge pages in the kernel mapping (VMA) that holds this buffer
    /// (`AnonHugePages` in `/proc/self/smaps`; the kernel may have merged the buffer with
    /// adjacent anonymous mappings, whose huge pages then count too). `None` where that
    /// file does not exist or does not list the mapping.
    pub fn huge_pages_kib(&self) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let start = self.map.as_ptr() as usize;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                        inside = a <= start && start < b;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("AnonHugePages:") {
                    return v.trim().trim_end_matches("kB").trim().parse().ok();
                }
            }
        }
        None
    }
}

impl Deref for HugeBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl DerefMut for HugeBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_read_and_write_at_every_size() {
        for len in [0usize, 1, 4095, 4096, 3 << 20] {
            let mut b = HugeBytes::zeroed(len).unwrap();
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            if len > 0 {
                b[len - 1] = 0x80;
                assert_eq!(b.as_i8()[len - 1], -128);
                b.as_i8_mut()[0] = -1;
                assert_eq!(b[0], 0xff);
                let c = HugeBytes::copy_of(&b).unwrap();
                assert_eq!(&c[..], &b[..]);
            }
            assert_eq!(b.as_ptr() as usize % 4096, 0, "page aligned");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_mapping_is_found_in_smaps() {
        let mut b = HugeBytes::zeroed(8 << 20).unwrap();
        // Fault the pages in. Whether huge pages were granted depends on the machine (and
        // the mapping may have been merged with others, e.g. another test's): the mapping
        // must be found.
        b.fill(1);
        let kib = b.huge_pages_kib().expect("mapping listed in /proc/self/smaps");
        eprintln!("huge pages in the mapping holding the 8 MiB buffer: {kib} KiB");
    }
}
