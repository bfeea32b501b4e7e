//! The determinism contract's fingerprint (SPEC section 7): the logits digest is
//! FNV-1a-64 over the little-endian bytes of every logit's `f32` bit pattern, step after
//! step. Two runs with the same digest produced the same logits bit for bit; the
//! simulator's `generate --json`, the firmware and the cross-target tests all print or
//! compare this one digest.
//!
//! Tested against the published FNV-1a-64 test vectors below, and through every
//! cross-target test that compares digests.

use core::fmt;

/// FNV-1a, 64-bit (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`).
///
/// ```
/// use spark_core::digest::Fnv1a64;
/// let mut d = Fnv1a64::new();
/// d.update_f32(&[1.0, -0.5]);
/// assert_eq!(format!("{d}").len(), 16); // 16 lower-case hex digits
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv1a64 {
    /// The empty-input state (the offset basis).
    pub const fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    /// Absorb bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Absorb logits: the little-endian bytes of each value's `f32` bit pattern.
    pub fn update_f32(&mut self, xs: &[f32]) {
        for x in xs {
            self.update(&x.to_bits().to_le_bytes());
        }
    }

    /// The digest so far.
    pub const fn value(&self) -> u64 {
        self.0
    }
}

/// Formats as 16 lower-case hex digits, the form `generate --json` prints.
impl fmt::Display for Fnv1a64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// FNV-1a-64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a64::new();
    h.update(bytes);
    h.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_vectors() {
        // FNV-1a 64-bit reference values (Fowler/Noll/Vo test suite).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn logits_are_hashed_as_little_endian_bit_patterns() {
        let mut d = Fnv1a64::new();
        d.update_f32(&[1.0]); // 0x3f800000
        assert_eq!(d.value(), fnv1a64(&[0x00, 0x00, 0x80, 0x3f]));
        let mut z = Fnv1a64::new();
        z.update_f32(&[-0.0]); // the sign bit counts: -0.0 and 0.0 differ
        let mut p = Fnv1a64::new();
        p.update_f32(&[0.0]);
        assert_ne!(z, p);
    }
}
