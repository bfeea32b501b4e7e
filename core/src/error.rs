//! The typed errors of `spark-core`: model loading ([`ModelError`]) and running
//! ([`RunError`]). Every failure a user can cause is one of these, never a panic.

use crate::tensor::{DType, TensorId};
use core::fmt;

/// Why a `.spark` file was rejected. The `Display` text says what is wrong and where.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ModelError {
    /// The file ends before a section it declares.
    Truncated {
        /// Which section was cut short.
        what: &'static str,
        /// Bytes that section needs (from the start of the file).
        needed: u64,
        /// Bytes actually present.
        available: u64,
    },
    /// Bytes after the end of the data section.
    TrailingBytes {
        /// Expected file length.
        expected: u64,
        /// Actual file length.
        found: u64,
    },
    /// The first four bytes are not `SPRK`.
    BadMagic {
        /// What was found.
        found: [u8; 4],
    },
    /// A format version this runtime does not read.
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// The newest version this runtime reads (it reads every version from 1 up).
        supported: u32,
    },
    /// The header is larger than the loader accepts.
    HeaderTooLarge {
        /// Declared header length.
        len: u32,
        /// The largest header accepted, in bytes.
        limit: u32,
    },
    /// Header CRC32 mismatch.
    HeaderCrc {
        /// CRC stored in the preamble.
        stored: u32,
        /// CRC of the bytes present.
        computed: u32,
    },
    /// The header bytes do not decode.
    HeaderDecode {
        /// The part that failed.
        what: &'static str,
    },
    /// Data section CRC32 mismatch.
    DataCrc {
        /// CRC stored in the header.
        stored: u32,
        /// CRC of the bytes present.
        computed: u32,
    },
    /// The data section does not start on a 64-byte boundary after the header.
    BadDataOffset {
        /// Declared data offset.
        offset: u32,
    },
    /// A config field is out of range or inconsistent.
    BadConfig {
        /// Field name.
        field: &'static str,
        /// What is required of it.
        reason: &'static str,
    },
    /// More table entries than any valid model has.
    TooManyTensors {
        /// Declared count.
        count: u32,
    },
    /// A tensor this config has no use for (wrong kind or layer out of range).
    UnexpectedTensor {
        /// The tensor.
        id: TensorId,
    },
    /// A tensor listed twice.
    DuplicateTensor {
        /// The tensor.
        id: TensorId,
    },
    /// A tensor the config requires is absent.
    MissingTensor {
        /// The tensor.
        id: TensorId,
    },
    /// A tensor has the wrong shape.
    TensorShape {
        /// The tensor.
        id: TensorId,
        /// Shape the config implies.
        expected: [u32; 2],
        /// Shape in the file.
        found: [u32; 2],
    },
    /// A tensor has the wrong element type.
    TensorDType {
        /// The tensor.
        id: TensorId,
        /// Required dtype.
        expected: DType,
        /// Dtype in the file.
        found: DType,
    },
    /// A tensor's byte length disagrees with its shape.
    TensorLength {
        /// The tensor.
        id: TensorId,
        /// `rows * cols * dtype size`.
        expected: u64,
        /// Length in the table.
        found: u32,
    },
    /// A tensor lies (partly) outside the data section.
    TensorOutOfBounds {
        /// The tensor.
        id: TensorId,
        /// Its offset.
        offset: u32,
        /// Its length.
        len: u32,
    },
    /// A tensor offset is not 64-byte aligned.
    TensorMisaligned {
        /// The tensor.
        id: TensorId,
        /// Its offset.
        offset: u32,
    },
    /// Two tensors overlap, or the table is not in ascending offset order.
    TensorOverlap {
        /// The earlier table entry.
        first: TensorId,
        /// The entry that starts before `first` ends.
        second: TensorId,
    },
    /// A scale or norm weight is NaN or infinite.
    NonFiniteValue {
        /// The tensor.
        id: TensorId,
        /// Element index.
        index: u32,
    },
    /// A finite scale or norm weight outside the range a model may have
    /// ([`crate::format::MAX_WEIGHT_SCALE`], [`crate::format::MAX_NORM_WEIGHT`]).
    ValueOutOfRange {
        /// The tensor.
        id: TensorId,
        /// Element index.
        index: u32,
        /// The largest magnitude allowed for this tensor.
        limit: f32,
    },
    /// The tokenizer tensors are inconsistent.
    BadTokenizer {
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ModelError::*;
        match *self {
            Truncated { what, needed, available } => {
                write!(f, "file truncated in the {what}: needs {needed} bytes, has {available}")
            }
            TrailingBytes { expected, found } => {
                write!(
                    f,
                    "file has {} unexpected bytes after the data section (expected {expected} bytes, found {found})",
                    found - expected
                )
            }
            BadMagic { found } => write!(f, "not a .spark model: magic is {found:02x?}, expected \"SPRK\""),
            UnsupportedVersion { found, supported } => {
                write!(
                    f,
                    "unsupported .spark format version {found} (this runtime reads versions 1 to {supported}; \
                     convert the checkpoint again with this release's `spark-sim convert`)"
                )
            }
            HeaderTooLarge { len, limit } => write!(f, "header of {len} bytes exceeds the limit of {limit} bytes"),
            HeaderCrc { stored, computed } => {
                write!(f, "header CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x} (file corrupted)")
            }
            HeaderDecode { what } => write!(f, "header does not decode: bad {what}"),
            DataCrc { stored, computed } => {
                write!(f, "data CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x} (file corrupted)")
            }
            BadDataOffset { offset } => {
                write!(f, "data section offset {offset} is not 64-byte aligned or overlaps the header")
            }
            BadConfig { field, reason } => write!(f, "config field {field}: {reason}"),
            TooManyTensors { count } => write!(f, "tensor table declares {count} tensors, more than any valid model"),
            UnexpectedTensor { id } => write!(f, "tensor {id}: not part of a model with this config"),
            DuplicateTensor { id } => write!(f, "tensor {id}: listed more than once"),
            MissingTensor { id } => write!(f, "tensor {id}: missing"),
            TensorShape { id, expected, found } => write!(
                f,
                "tensor {id}: expected shape [{}, {}], found [{}, {}]",
                expected[0], expected[1], found[0], found[1]
            ),
            TensorDType { id, expected, found } => {
                write!(f, "tensor {id}: expected dtype {}, found {}", expected.name(), found.name())
            }
            TensorLength { id, expected, found } => {
                write!(f, "tensor {id}: byte length {found} does not match its shape ({expected} bytes)")
            }
            TensorOutOfBounds { id, offset, len } => {
                write!(f, "tensor {id}: bytes {offset}..{} lie outside the data section", offset as u64 + len as u64)
            }
            TensorMisaligned { id, offset } => write!(f, "tensor {id}: offset {offset} is not 64-byte aligned"),
            TensorOverlap { first, second } => {
                write!(f, "tensor {second}: overlaps or precedes tensor {first} (tensors must be in ascending, disjoint byte ranges)")
            }
            NonFiniteValue { id, index } => write!(f, "tensor {id}: element {index} is NaN or infinite"),
            ValueOutOfRange { id, index, limit } => {
                write!(f, "tensor {id}: element {index} is outside the allowed range (magnitude <= {limit:e})")
            }
            BadTokenizer { reason } => write!(f, "tokenizer: {reason}"),
        }
    }
}

impl core::error::Error for ModelError {}

/// Why a session could not be created or could not run a token.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunError {
    /// The caller's arena is smaller than [`crate::Model::arena_bytes`].
    ArenaTooSmall {
        /// Bytes the session needs.
        needed: usize,
        /// Bytes provided.
        available: usize,
    },
    /// The requested context is 0 or longer than the model's `max_seq_len`.
    BadMaxSeq {
        /// Requested context.
        requested: usize,
        /// The model's limit.
        max_seq_len: u32,
    },
    /// The session already holds `max_seq` tokens.
    ContextFull {
        /// The session's context length.
        max_seq: usize,
    },
    /// A token id outside the vocabulary.
    InvalidToken {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: u32,
    },
    /// `prefill` was called with no tokens.
    EmptyInput,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RunError::ArenaTooSmall { needed, available } => {
                write!(f, "arena too small: the session needs {needed} bytes, {available} provided")
            }
            RunError::BadMaxSeq { requested, max_seq_len } => {
                write!(f, "context length {requested} is not in 1..={max_seq_len} (the model's max_seq_len)")
            }
            RunError::ContextFull { max_seq } => {
                write!(f, "context full: the session holds its maximum of {max_seq} tokens (reset it or use a longer context)")
            }
            RunError::InvalidToken { id, vocab_size } => {
                write!(f, "token id {id} is out of range (vocabulary size {vocab_size})")
            }
            RunError::EmptyInput => f.write_str("no input tokens"),
        }
    }
}

impl core::error::Error for RunError {}
