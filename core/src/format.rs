//! The `.spark` model file, versions 1 and 2 (SPEC section 8): a zero-copy reader over
//! `&[u8]`.
//!
//! ```text
//! offset 0   "SPRK"            magic
//!        4   u32 LE            format version (2; 1 is still read)
//!        8   u32 LE            header length H
//!       12   u32 LE            CRC32 of the header bytes
//!       16   H bytes           postcard: Header, then Header::n_tensors TensorEntry
//!      ...   zero padding      up to data_offset (64-byte aligned)
//! data_offset data_len bytes   tensors, each at a 64-byte aligned offset, ascending
//! ```
//!
//! The file ends exactly at `data_offset + data_len`; the header holds the CRC32 of the
//! data section. [`Model::load`] validates everything before any use (magic, version,
//! sizes, both CRCs, the config, every tensor present exactly once with the dtype and
//! shape the config implies, inside the data section, aligned, disjoint, finite scales and
//! norm weights, tokenizer consistency) and returns a typed [`ModelError`], never
//! panicking. Weights are then read in place: int8 rows as `&[i8]`, f32 values with
//! `from_le_bytes`, so the blob needs no particular alignment in memory.
//!
//! # Version 2: bundled Spark FFN rows
//! Version 2 stores each Spark FFN neuron's `K2` row and `V` row as one record of the
//! `ffn.k2v` tensor, `[d_ff, stride]` int8 ([`FfnBundle`]: `K2` at 0, `V` at an aligned
//! offset, the record padded with zeros to a multiple of the alignment), so the two
//! gathers of an active neuron read one contiguous run; `ffn.k2.scale` and `ffn.v.scale`
//! are unchanged. Every other tensor is as in version 1. A version 1 file (separate
//! `ffn.k2` and `ffn.v`) is still read, through the same kernels with `stride == cols`, and
//! gives the same bits: [`Model::layer_matrix`] hides the layout from the model code.
//!
//! The writer lives in `spark-sim` (`spark_sim::format::ModelWriter`); round trips and one
//! test per error variant are in `tests/format.rs`.

use crate::config::{Config, FfnKind, MAX_LAYERS};
use crate::error::ModelError;
use crate::tensor::{
    DType, TensorEntry, TensorId, TensorKind, GLOBAL_KINDS, LAYER_KINDS, N_GLOBAL_KINDS, N_LAYER_KINDS,
};
use serde::{Deserialize, Serialize};

/// File magic.
pub const MAGIC: [u8; 4] = *b"SPRK";
/// The format version this runtime writes, and the newest it reads (it reads 1 too).
pub const VERSION: u32 = 2;
/// The oldest format version this runtime reads (separate `ffn.k2` and `ffn.v`).
pub const OLDEST_VERSION: u32 = 1;

/// Where the two parts of a bundled Spark FFN record lie (format version 2): neuron `i`'s
/// `K2` row is `k2v[i * stride..i * stride + k2_cols]` and its `V` row is
/// `k2v[i * stride + v_offset..i * stride + v_offset + v_cols]`. Both parts start on a
/// boundary of [`FfnBundle::align`] bytes of the 64-byte aligned tensor: 64 (a cache line,
/// AVX-512's widest load) for `d_model >= 1024`, 16 (the Arm vector units' widest load)
/// below, where 64 would pad a microcontroller model's flash by up to a fifth. The padding
/// is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfnBundle {
    /// `K2` part: `d_model - ffn_r` bytes at offset 0.
    pub k2_cols: usize,
    /// Offset of the `V` part: `k2_cols` rounded up to [`FfnBundle::align`].
    pub v_offset: usize,
    /// `V` part: `d_model` bytes.
    pub v_cols: usize,
    /// Bytes per record: `v_offset + v_cols` rounded up to [`FfnBundle::align`].
    pub stride: usize,
}

impl FfnBundle {
    /// Alignment of the parts of a record for model width `d`: 64 bytes when
    /// `d >= 1024`, else 16.
    pub const fn align(d: usize) -> usize {
        if d >= 1024 {
            64
        } else {
            16
        }
    }

    /// The record layout of a Spark FFN configuration.
    pub fn of(cfg: &Config) -> FfnBundle {
        FfnBundle::of_dims(cfg.d_model as usize, cfg.ffn_r as usize)
    }

    /// The record layout for model width `d` and predictor rank `r`. A valid config has
    /// `r < d <= 65536`; for writers handed unvalidated configs nothing here panics (a
    /// larger `r` gives an empty `K2` part, sizes past `usize` saturate).
    pub fn of_dims(d: usize, r: usize) -> FfnBundle {
        let a = FfnBundle::align(d);
        let k2_cols = d.saturating_sub(r);
        let v_offset = k2_cols.div_ceil(a).saturating_mul(a);
        FfnBundle { k2_cols, v_offset, v_cols: d, stride: v_offset.saturating_add(d).div_ceil(a).saturating_mul(a) }
    }
}
/// Size of the fixed preamble.
pub const PREAMBLE_BYTES: usize = 16;
/// Largest header accepted.
pub const MAX_HEADER_BYTES: u32 = 256 * 1024;
/// Alignment of the data section and of every tensor.
pub const ALIGN: u32 = 64;
/// Largest tensor table accepted (every kind of every layer, plus the globals).
pub const MAX_TENSORS: u32 = (N_GLOBAL_KINDS + N_LAYER_KINDS * MAX_LAYERS) as u32;

/// Largest per-row weight scale accepted (a scale is `max |w| / 127` of its row, so int8
/// weights up to about 8.3e6 in magnitude). Scales are also never negative. Together with
/// the config limits ([`crate::config`]) this keeps every intermediate of a forward pass
/// far from the f32 range for any model trained in floating point (DESIGN.md, "Model value
/// limits").
pub const MAX_WEIGHT_SCALE: f32 = 65_536.0;
/// Largest magnitude of an RMSNorm weight.
pub const MAX_NORM_WEIGHT: f32 = 65_536.0;

/// Tokenizer flavour stored in the file.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// No tokenizer: the model runs on token ids.
    None,
    /// Byte-level BPE: token byte strings plus ranked merges.
    ByteBpe,
}

/// Tokenizer metadata (the strings and merges are tensors).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenizerMeta {
    /// Flavour.
    pub kind: TokenizerKind,
    /// Total bytes of all token strings (`tokenizer.bytes` is `[bytes_len, 1]` u8).
    pub bytes_len: u32,
    /// Number of merges (`tokenizer.merges` is `[n_merges, 3]` u32: left, right, result;
    /// rank = row index).
    pub n_merges: u32,
    /// Beginning-of-sequence token, if any.
    pub bos_id: Option<u32>,
    /// End-of-sequence token, if any.
    pub eos_id: Option<u32>,
}

impl TokenizerMeta {
    /// No tokenizer.
    pub const NONE: TokenizerMeta =
        TokenizerMeta { kind: TokenizerKind::None, bytes_len: 0, n_merges: 0, bos_id: None, eos_id: None };
}

/// The postcard-encoded header (followed by `n_tensors` [`TensorEntry`] records).
///
/// Public for `spark-sim`'s model writer and its format tests, which build files byte
/// by byte; an embedder reads the validated values through [`Model`] instead.
#[doc(hidden)]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Header {
    /// Model configuration.
    pub config: Config,
    /// Tokenizer metadata.
    pub tokenizer: TokenizerMeta,
    /// Start of the data section (64-byte aligned).
    pub data_offset: u32,
    /// Length of the data section; the file ends at `data_offset + data_len`.
    pub data_len: u32,
    /// CRC32 (IEEE) of the data section.
    pub data_crc: u32,
    /// Number of tensor table entries that follow.
    pub n_tensors: u32,
}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC32 (IEEE 802.3, reflected, as zlib's `crc32`).
///
/// Public for `spark-sim`'s model writer and the corruption tests; not part of the
/// embedding API.
#[doc(hidden)]
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

const ABSENT: u32 = u32::MAX;

/// A loaded model: the validated header plus tensor offsets into the borrowed blob.
///
/// The configuration is read-only once loaded ([`Model::config`]): what `load` validated
/// cannot be changed afterwards, so every session over the model stays in bounds.
///
/// ```compile_fail
/// fn shrink(model: &mut spark_core::Model<'_>) {
///     model.config.vocab_size = 2; // error: the field is private
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Model<'a> {
    blob: &'a [u8],
    /// The file's format version (validated: 1 or 2).
    version: u32,
    /// The validated configuration: private, so no caller can undo the validation.
    config: Config,
    /// The validated tokenizer metadata.
    tokenizer: TokenizerMeta,
    global: [(u32, u32); N_GLOBAL_KINDS],       // [kind] -> (offset, len)
    layers: [[u32; N_LAYER_KINDS]; MAX_LAYERS], // [layer, kind] -> offset (length from config)
}

/// An int8 row-major matrix with one f32 scale per row, read in place.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    /// `[rows, cols]` int8 values.
    pub data: &'a [i8],
    /// `[rows]` little-endian f32 scales.
    pub scales: F32Slice<'a>,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Elements from one row's start to the next: `cols` for a plain matrix, the record
    /// size for one part of bundled rows ([`FfnBundle`]), where `data` starts at the part.
    pub stride: usize,
}

impl<'a> QMatrix<'a> {
    /// Row `i` as int8.
    #[inline]
    pub fn row(&self, i: usize) -> &'a [i8] {
        &self.data[i * self.stride..i * self.stride + self.cols]
    }

    /// Whether the rows are contiguous (`stride == cols`): what the dense `gemv` needs.
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.stride == self.cols
    }
}

/// A little-endian f32 array read in place (no alignment needed).
#[derive(Clone, Copy, Debug)]
pub struct F32Slice<'a>(pub &'a [u8]);

impl F32Slice<'_> {
    /// Element count.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }
    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Element `i`.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        let b = &self.0[4 * i..4 * i + 4];
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN as u64) * ALIGN as u64
}

impl<'a> Model<'a> {
    /// Validate `blob` completely and return the model that reads it in place.
    pub fn load(blob: &'a [u8]) -> Result<Model<'a>, ModelError> {
        let avail = blob.len() as u64;
        if blob.len() < PREAMBLE_BYTES {
            return Err(ModelError::Truncated { what: "preamble", needed: PREAMBLE_BYTES as u64, available: avail });
        }
        let magic = [blob[0], blob[1], blob[2], blob[3]];
        if magic != MAGIC {
            return Err(ModelError::BadMagic { found: magic });
        }
        let version = read_u32(blob, 4);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(ModelError::UnsupportedVersion { found: version, supported: VERSION });
        }
        let header_len = read_u32(blob, 8);
        if header_len > MAX_HEADER_BYTES {
            return Err(ModelError::HeaderTooLarge { len: header_len, limit: MAX_HEADER_BYTES });
        }
        let header_end = PREAMBLE_BYTES as u64 + header_len as u64;
        if avail < header_end {
            return Err(ModelError::Truncated { what: "header", needed: header_end, available: avail });
        }
        let header_bytes = &blob[PREAMBLE_BYTES..header_end as usize];
        let stored = read_u32(blob, 12);
        let computed = crc32(header_bytes);
        if stored != computed {
            return Err(ModelError::HeaderCrc { stored, computed });
        }
        let (header, mut rest): (Header, &[u8]) =
            postcard::take_from_bytes(header_bytes).map_err(|_| ModelError::HeaderDecode { what: "header record" })?;
        let cfg = header.config;
        cfg.validate()?;
        if header.n_tensors > MAX_TENSORS {
            return Err(ModelError::TooManyTensors { count: header.n_tensors });
        }
        let data_start = header.data_offset as u64;
        if data_start % ALIGN as u64 != 0 || data_start < align_up(header_end) {
            return Err(ModelError::BadDataOffset { offset: header.data_offset });
        }
        let data_end = data_start + header.data_len as u64;
        if avail < data_end {
            return Err(ModelError::Truncated { what: "data section", needed: data_end, available: avail });
        }
        if avail > data_end {
            return Err(ModelError::TrailingBytes { expected: data_end, found: avail });
        }
        let data = &blob[data_start as usize..data_end as usize];
        let computed = crc32(data);
        if computed != header.data_crc {
            return Err(ModelError::DataCrc { stored: header.data_crc, computed });
        }

        let mut model = Model {
            blob,
            version,
            config: cfg,
            tokenizer: header.tokenizer,
            global: [(ABSENT, 0); N_GLOBAL_KINDS],
            layers: [[ABSENT; N_LAYER_KINDS]; MAX_LAYERS],
        };
        let mut prev: Option<(TensorId, u64)> = None; // (id, end) of the previous entry
        for _ in 0..header.n_tensors {
            let (e, r): (TensorEntry, &[u8]) =
                postcard::take_from_bytes(rest).map_err(|_| ModelError::HeaderDecode { what: "tensor table" })?;
            rest = r;
            model.check_entry(&e, data_start, data_end)?;
            if let Some((first, end)) = prev {
                if (e.offset as u64) < end {
                    return Err(ModelError::TensorOverlap { first, second: e.id });
                }
            }
            prev = Some((e.id, e.offset as u64 + e.len as u64));
        }
        if !rest.is_empty() {
            return Err(ModelError::HeaderDecode { what: "trailing header bytes" });
        }
        model.check_complete()?;
        model.check_values()?;
        Ok(model)
    }

    /// Dtype and shape this file's version requires for `kind` ([`expected_in`]).
    fn expected(&self, kind: TensorKind) -> Option<(DType, [u32; 2])> {
        expected_in(&self.config, self.version, kind)
    }

    fn tok_expected(&self, kind: TensorKind) -> Option<(DType, [u32; 2])> {
        let t = &self.tokenizer;
        if t.kind == TokenizerKind::None {
            return None;
        }
        match kind {
            TensorKind::TokBytes => Some((DType::U8, [t.bytes_len, 1])),
            TensorKind::TokOffsets => Some((DType::U32, [self.config.vocab_size + 1, 1])),
            TensorKind::TokMerges => Some((DType::U32, [t.n_merges, 3])),
            _ => None,
        }
    }

    fn check_entry(&mut self, e: &TensorEntry, data_start: u64, data_end: u64) -> Result<(), ModelError> {
        let id = e.id;
        let is_layer = id.kind.is_layer();
        if (is_layer && id.layer as u32 >= self.config.n_layers) || (!is_layer && id.layer != 0) {
            return Err(ModelError::UnexpectedTensor { id });
        }
        let want =
            if is_layer || !matches!(id.kind, TensorKind::TokBytes | TensorKind::TokOffsets | TensorKind::TokMerges) {
                self.expected(id.kind)
            } else {
                self.tok_expected(id.kind)
            };
        let Some((dtype, shape)) = want else {
            return Err(ModelError::UnexpectedTensor { id });
        };
        if e.dtype != dtype {
            return Err(ModelError::TensorDType { id, expected: dtype, found: e.dtype });
        }
        if e.shape != shape {
            return Err(ModelError::TensorShape { id, expected: shape, found: e.shape });
        }
        let bytes = shape[0] as u64 * shape[1] as u64 * dtype.size() as u64;
        if bytes != e.len as u64 {
            return Err(ModelError::TensorLength { id, expected: bytes, found: e.len });
        }
        if e.offset % ALIGN != 0 {
            return Err(ModelError::TensorMisaligned { id, offset: e.offset });
        }
        let start = e.offset as u64;
        if start < data_start || start + e.len as u64 > data_end {
            return Err(ModelError::TensorOutOfBounds { id, offset: e.offset, len: e.len });
        }
        let slot = id.kind.slot();
        if is_layer {
            let s = &mut self.layers[id.layer as usize][slot];
            if *s != ABSENT {
                return Err(ModelError::DuplicateTensor { id });
            }
            *s = e.offset;
        } else {
            let s = &mut self.global[slot];
            if s.0 != ABSENT {
                return Err(ModelError::DuplicateTensor { id });
            }
            *s = (e.offset, e.len);
        }
        Ok(())
    }

    fn check_complete(&self) -> Result<(), ModelError> {
        for &kind in GLOBAL_KINDS {
            let need = self.expected(kind).is_some() || self.tok_expected(kind).is_some();
            if need && self.global[kind.slot()].0 == ABSENT {
                return Err(ModelError::MissingTensor { id: TensorId::global(kind) });
            }
        }
        for l in 0..self.config.n_layers as usize {
            for &kind in LAYER_KINDS {
                if self.expected(kind).is_some() && self.layers[l][kind.slot()] == ABSENT {
                    return Err(ModelError::MissingTensor { id: TensorId::layer(l, kind) });
                }
            }
        }
        Ok(())
    }

    /// Every f32 tensor (scales, norm weights) must be finite and inside its range
    /// ([`MAX_WEIGHT_SCALE`], [`MAX_NORM_WEIGHT`]); tokenizer tables consistent.
    fn check_values(&self) -> Result<(), ModelError> {
        let check = |id: TensorId, v: F32Slice<'_>| -> Result<(), ModelError> {
            let is_scale = id.kind.name().ends_with(".scale");
            let limit = if is_scale { MAX_WEIGHT_SCALE } else { MAX_NORM_WEIGHT };
            for i in 0..v.len() {
                let x = v.get(i);
                if !x.is_finite() {
                    return Err(ModelError::NonFiniteValue { id, index: i as u32 });
                }
                if (is_scale && x < 0.0) || x.abs() > limit {
                    return Err(ModelError::ValueOutOfRange { id, index: i as u32, limit });
                }
            }
            Ok(())
        };
        for &kind in GLOBAL_KINDS {
            if let Some((DType::F32, _)) = self.expected(kind) {
                check(TensorId::global(kind), self.global_f32(kind))?;
            }
        }
        for l in 0..self.config.n_layers as usize {
            for &kind in LAYER_KINDS {
                if let Some((DType::F32, _)) = self.expected(kind) {
                    check(TensorId::layer(l, kind), self.layer_f32(l, kind))?;
                }
            }
        }
        if self.tokenizer.kind == TokenizerKind::ByteBpe {
            self.check_tokenizer()?;
        }
        Ok(())
    }

    fn check_tokenizer(&self) -> Result<(), ModelError> {
        let t = &self.tokenizer;
        let vocab = self.config.vocab_size;
        let offs = self.global_bytes(TensorKind::TokOffsets);
        let mut prev = 0u32;
        for i in 0..=vocab as usize {
            let o = read_u32(offs, 4 * i);
            if (i == 0 && o != 0) || o < prev || o > t.bytes_len {
                return Err(ModelError::BadTokenizer {
                    reason: "token offsets must start at 0, be non-decreasing and end at bytes_len",
                });
            }
            prev = o;
        }
        if prev != t.bytes_len {
            return Err(ModelError::BadTokenizer { reason: "last token offset must equal bytes_len" });
        }
        let merges = self.global_bytes(TensorKind::TokMerges);
        let bytes = self.global_bytes(TensorKind::TokBytes);
        for m in 0..t.n_merges as usize {
            for j in 0..3 {
                if read_u32(merges, 12 * m + 4 * j) >= vocab {
                    return Err(ModelError::BadTokenizer { reason: "merge refers to a token id >= vocab_size" });
                }
            }
            // bytes(result) == bytes(left) ++ bytes(right): what makes decode(encode(x)) == x.
            let tok = |j: usize| {
                let id = read_u32(merges, 12 * m + 4 * j) as usize;
                &bytes[read_u32(offs, 4 * id) as usize..read_u32(offs, 4 * id + 4) as usize]
            };
            let (a, b, c) = (tok(0), tok(1), tok(2));
            if c.len() != a.len() + b.len() || !c.starts_with(a) || !c.ends_with(b) {
                return Err(ModelError::BadTokenizer { reason: "merge result bytes differ from left ++ right bytes" });
            }
        }
        for id in [t.bos_id, t.eos_id].into_iter().flatten() {
            if id >= vocab {
                return Err(ModelError::BadTokenizer { reason: "bos/eos id >= vocab_size" });
            }
        }
        Ok(())
    }

    /// The model's configuration (validated at load; read-only).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The tokenizer metadata (validated at load; read-only).
    pub fn tokenizer_meta(&self) -> &TokenizerMeta {
        &self.tokenizer
    }

    /// The file's format version (1: separate `ffn.k2` and `ffn.v`; 2: bundled).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The whole file.
    pub fn blob(&self) -> &'a [u8] {
        self.blob
    }

    /// Bytes of a global tensor (empty when absent).
    pub fn global_bytes(&self, kind: TensorKind) -> &'a [u8] {
        let (o, n) = self.global[kind.slot()];
        if o == ABSENT {
            return &[];
        }
        &self.blob[o as usize..(o + n) as usize]
    }

    /// Bytes of a per-layer tensor (empty when absent).
    pub fn layer_bytes(&self, layer: usize, kind: TensorKind) -> &'a [u8] {
        let o = self.layers[layer][kind.slot()];
        match self.expected(kind) {
            Some((dt, [r, c])) if o != ABSENT => {
                let n = r as usize * c as usize * dt.size();
                &self.blob[o as usize..o as usize + n]
            }
            _ => &[],
        }
    }

    /// A global f32 vector.
    pub fn global_f32(&self, kind: TensorKind) -> F32Slice<'a> {
        F32Slice(self.global_bytes(kind))
    }

    /// A per-layer f32 vector (norm weights).
    pub fn layer_f32(&self, layer: usize, kind: TensorKind) -> F32Slice<'a> {
        F32Slice(self.layer_bytes(layer, kind))
    }

    fn matrix(&self, data: &'a [u8], scales: &'a [u8], kind: TensorKind) -> QMatrix<'a> {
        let (rows, cols) = match self.expected(kind) {
            Some((_, [r, c])) => (r as usize, c as usize),
            None => (0, 0),
        };
        QMatrix { data: spark_hal::bytes_as_i8(data), scales: F32Slice(scales), rows, cols, stride: cols }
    }

    /// A global quantized matrix (`Embed` or `LmHead`).
    pub fn global_matrix(&self, kind: TensorKind) -> QMatrix<'a> {
        self.matrix(self.global_bytes(kind), kind.scale().map_or(&[][..], |k| self.global_bytes(k)), kind)
    }

    /// A per-layer quantized matrix (`Wq`, `K1`, `V`, ...). In a version 2 Spark model,
    /// `K2` and `V` are views of the bundled `ffn.k2v` records ([`FfnBundle`]: `stride` is
    /// the record size, `data` starts at the part), in a version 1 file plain matrices.
    pub fn layer_matrix(&self, layer: usize, kind: TensorKind) -> QMatrix<'a> {
        if matches!(kind, TensorKind::K2 | TensorKind::V) && self.expected(TensorKind::K2V).is_some() {
            let b = FfnBundle::of(&self.config);
            let all = spark_hal::bytes_as_i8(self.layer_bytes(layer, TensorKind::K2V));
            let scales = F32Slice(self.layer_bytes(layer, kind.scale().unwrap_or(kind)));
            let rows = self.config.d_ff as usize;
            let (data, cols) = if kind == TensorKind::K2 { (all, b.k2_cols) } else { (&all[b.v_offset..], b.v_cols) };
            return QMatrix { data, scales, rows, cols, stride: b.stride };
        }
        self.matrix(self.layer_bytes(layer, kind), kind.scale().map_or(&[][..], |k| self.layer_bytes(layer, k)), kind)
    }

    /// The logits matrix: `lm_head` when present, else the tied embedding.
    pub fn head_matrix(&self) -> QMatrix<'a> {
        if self.config.tie_embeddings {
            self.global_matrix(TensorKind::Embed)
        } else {
            self.global_matrix(TensorKind::LmHead)
        }
    }
}

/// Dtype and shape a file of format `version` with configuration `cfg` stores for `kind`,
/// or `None` when it has no such tensor: [`expected`], except that a version 2 Spark FFN
/// stores `ffn.k2v` (`[d_ff, FfnBundle::stride]`) instead of `ffn.k2` and `ffn.v`.
#[doc(hidden)]
pub fn expected_in(cfg: &Config, version: u32, kind: TensorKind) -> Option<(DType, [u32; 2])> {
    let bundled = version >= 2 && cfg.ffn_kind == FfnKind::Spark;
    match kind {
        TensorKind::K2 | TensorKind::V if bundled => None,
        TensorKind::K2V if bundled => Some((DType::I8, [cfg.d_ff, FfnBundle::of(cfg).stride as u32])),
        _ => expected(cfg, kind),
    }
}

/// Dtype and shape of each *logical* tensor a config has (the version 1 layout: `ffn.k2`
/// and `ffn.v` separate, never `ffn.k2v`), or `None` when the config has no such tensor
/// (for example `ffn.k1` in a GeGLU model). Tokenizer tensors are checked separately
/// (their shapes come from the tokenizer metadata).
///
/// Public for `spark-sim`'s model writer, which takes logical tensors and bundles them
/// ([`expected_in`]); not part of the embedding API.
#[doc(hidden)]
pub fn expected(cfg: &Config, kind: TensorKind) -> Option<(DType, [u32; 2])> {
    use TensorKind::*;
    let d = cfg.d_model;
    let f = cfg.d_ff;
    let r = cfg.ffn_r;
    let q = cfg.n_heads * cfg.head_dim;
    let kv = cfg.n_kv_heads * cfg.head_dim;
    let spark = cfg.ffn_kind == FfnKind::Spark;
    let m = |rows: u32, cols: u32| Some((DType::I8, [rows, cols]));
    let s = |rows: u32| Some((DType::F32, [rows, 1]));
    match kind {
        Embed => m(cfg.vocab_size, d),
        EmbedScale => s(cfg.vocab_size),
        FinalNorm => s(d),
        LmHead if !cfg.tie_embeddings => m(cfg.vocab_size, d),
        LmHeadScale if !cfg.tie_embeddings => s(cfg.vocab_size),
        LmHead | LmHeadScale => None,
        TokBytes | TokOffsets | TokMerges => None,
        AttnNorm | FfnNorm => s(d),
        PostAttnNorm | PostFfnNorm if cfg.post_norms => s(d),
        PostAttnNorm | PostFfnNorm => None,
        Wq => m(q, d),
        WqScale => s(q),
        Wk | Wv => m(kv, d),
        WkScale | WvScale => s(kv),
        Wo => m(d, q),
        WoScale => s(d),
        K1 if spark => m(f, r),
        K2 if spark => m(f, d - r),
        V if spark => m(f, d),
        K1Scale | K2Scale | VScale if spark => s(f),
        Wg | Wu if !spark => m(f, d),
        WdT if !spark => m(f, d),
        WgScale | WuScale | WdTScale if !spark => s(f),
        K1 | K2 | V | K1Scale | K2Scale | VScale | Wg | Wu | WdT | WgScale | WuScale | WdTScale => None,
        K2V => None,
    }
}
