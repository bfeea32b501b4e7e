//! Writer for `.spark` files (the reader, and the layout, are in `spark_core::format`).
//!
//! Producers add *logical* tensors (a Spark FFN's `ffn.k2` and `ffn.v` separately); for
//! format version 2 (the default, [`VERSION`]) [`ModelWriter::finish`] bundles each layer's
//! `K2` and `V` rows into one `ffn.k2v` tensor of [`FfnBundle`] records. Setting
//! [`ModelWriter::version`] to 1 writes the old layout (still read).
//!
//! Tensors are written in the order they are added, each at a 64-byte aligned offset;
//! the header's varint-encoded offsets are solved by iterating until the header length is
//! stable. Tested by round trips through `spark_core::Model::load` in `tests/format.rs`.

use crate::quant::{quant_error, quantize_rows, QuantError};
use spark_core::format::{crc32, FfnBundle, Header, ALIGN, MAGIC, PREAMBLE_BYTES, VERSION};
use spark_core::tensor::TensorEntry;
use spark_core::tensor::TensorKind;
use spark_core::FfnKind;
use spark_core::{Config, DType, TensorId, TokenizerMeta};

/// One tensor waiting to be written.
#[derive(Clone, Debug)]
pub struct PendingTensor {
    /// Identity.
    pub id: TensorId,
    /// Element type.
    pub dtype: DType,
    /// `[rows, cols]`.
    pub shape: [u32; 2],
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

/// Builds a `.spark` file in memory.
#[derive(Clone, Debug)]
pub struct ModelWriter {
    /// Model configuration.
    pub config: Config,
    /// Tokenizer metadata.
    pub tokenizer: TokenizerMeta,
    /// Tensors in file order.
    pub tensors: Vec<PendingTensor>,
    /// Format version to write: [`VERSION`] (2, bundled Spark FFN rows) or 1.
    pub version: u32,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl ModelWriter {
    /// A writer with no tensors yet.
    pub fn new(config: Config, tokenizer: TokenizerMeta) -> Self {
        ModelWriter { config, tokenizer, tensors: Vec::new(), version: VERSION }
    }

    /// Add raw bytes.
    pub fn add_raw(&mut self, id: TensorId, dtype: DType, shape: [u32; 2], bytes: Vec<u8>) {
        self.tensors.push(PendingTensor { id, dtype, shape, bytes });
    }

    /// Add an f32 vector `[n, 1]`.
    pub fn add_f32(&mut self, id: TensorId, v: &[f32]) {
        self.add_raw(id, DType::F32, [v.len() as u32, 1], f32_bytes(v));
    }

    /// Add a u32 table `[rows, cols]`.
    pub fn add_u32(&mut self, id: TensorId, v: &[u32], cols: usize) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add_raw(id, DType::U32, [(v.len() / cols.max(1)) as u32, cols as u32], bytes);
    }

    /// Quantize a row-major f32 matrix to int8 rows + f32 scales and add both tensors.
    pub fn add_quantized(&mut self, id: TensorId, w: &[f32], rows: usize, cols: usize) -> QuantError {
        let (q, scales) = quantize_rows(w, rows, cols);
        let err = quant_error(w, &q, &scales, cols);
        self.add_raw(id, DType::I8, [rows as u32, cols as u32], q.iter().map(|&v| v as u8).collect());
        self.add_f32(
            TensorId { kind: id.kind.scale().expect("add_quantized takes a matrix kind"), layer: id.layer },
            &scales,
        );
        err
    }

    /// Serialize to the file bytes: tensors in insertion order, each 64-byte aligned; in
    /// version 2, each layer's `ffn.k2` and `ffn.v` become one `ffn.k2v` tensor at the
    /// place of `ffn.k2` (see [`bundle_ffn_rows`]).
    pub fn finish(&self) -> Vec<u8> {
        let bundled;
        let tensors = if self.version >= 2 && self.config.ffn_kind == FfnKind::Spark {
            bundled = bundle_ffn_rows(&self.config, &self.tensors);
            &bundled
        } else {
            &self.tensors
        };
        let mut entries = Vec::with_capacity(tensors.len());
        let mut data = Vec::new();
        for t in tensors {
            data.resize(align(data.len()), 0);
            // Offsets are relative to the data section here; `assemble` rebases them.
            entries.push(TensorEntry {
                id: t.id,
                dtype: t.dtype,
                shape: t.shape,
                offset: data.len() as u32,
                len: t.bytes.len() as u32,
            });
            data.extend_from_slice(&t.bytes);
        }
        assemble_version(self.version, &self.config, &self.tokenizer, &entries, &data)
    }
}

/// The tensor list with each layer's `ffn.k2` and `ffn.v` (both present, with the shapes
/// the config implies) replaced by one `ffn.k2v` tensor of [`FfnBundle`] records, placed
/// where `ffn.k2` was; zero padding between and after the parts. Tensors of other kinds,
/// and a `K2` or `V` without its partner or with an unexpected shape or length, pass
/// through unchanged (so the loader reports them).
pub fn bundle_ffn_rows(cfg: &spark_core::Config, tensors: &[PendingTensor]) -> Vec<PendingTensor> {
    let b = FfnBundle::of(cfg);
    let f = cfg.d_ff as usize;
    let find = |layer: u16, kind: TensorKind, cols: usize| {
        tensors.iter().position(|t| {
            t.id.layer == layer
                && t.id.kind == kind
                && t.dtype == DType::I8
                && t.shape == [f as u32, cols as u32]
                && t.bytes.len() as u64 == f as u64 * cols as u64
        })
    };
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let pair = |t: &PendingTensor| {
            Some((find(t.id.layer, TensorKind::K2, b.k2_cols)?, find(t.id.layer, TensorKind::V, b.v_cols)?))
        };
        match (t.id.kind, pair(t)) {
            // (an empty record or one past `usize`: only an invalid config gets there; the
            // tensors pass through and the loader reports them)
            (TensorKind::K2, Some((k2, v))) if b.stride > 0 && f.checked_mul(b.stride).is_some() => {
                let (k2, v) = (&tensors[k2].bytes, &tensors[v].bytes);
                let mut rec = vec![0u8; f * b.stride];
                for (i, r) in rec.chunks_exact_mut(b.stride).enumerate() {
                    r[..b.k2_cols].copy_from_slice(&k2[i * b.k2_cols..(i + 1) * b.k2_cols]);
                    r[b.v_offset..b.v_offset + b.v_cols].copy_from_slice(&v[i * b.v_cols..(i + 1) * b.v_cols]);
                }
                let id = TensorId { kind: TensorKind::K2V, layer: t.id.layer };
                out.push(PendingTensor { id, dtype: DType::I8, shape: [f as u32, b.stride as u32], bytes: rec });
            }
            (TensorKind::V, Some(_)) if b.stride > 0 && f.checked_mul(b.stride).is_some() => {} // in ffn.k2v
            _ => out.push(t.clone()),
        }
    }
    out
}

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN as usize) * ALIGN as usize
}

/// Lay out a complete file from a config, tokenizer metadata, a tensor table whose offsets
/// are relative to the start of `data`, and the data section. Computes the data offset
/// (solving for the varint-encoded header length), both CRCs and the padding. The table
/// is written as given, so tests can build deliberately broken files with valid CRCs.
/// Writes format [`VERSION`]; [`assemble_version`] writes another.
pub fn assemble(config: &Config, tokenizer: &TokenizerMeta, rel_entries: &[TensorEntry], data: &[u8]) -> Vec<u8> {
    assemble_version(VERSION, config, tokenizer, rel_entries, data)
}

/// [`assemble`] with the version number written in the preamble.
pub fn assemble_version(
    version: u32,
    config: &Config,
    tokenizer: &TokenizerMeta,
    rel_entries: &[TensorEntry],
    data: &[u8],
) -> Vec<u8> {
    let mut header_len_guess = 0usize;
    for _ in 0..16 {
        let data_offset = align(PREAMBLE_BYTES + header_len_guess);
        let header = Header {
            config: *config,
            tokenizer: *tokenizer,
            data_offset: data_offset as u32,
            data_len: data.len() as u32,
            data_crc: crc32(data),
            n_tensors: rel_entries.len() as u32,
        };
        let mut hbytes = postcard::to_allocvec(&header).expect("header encodes");
        for e in rel_entries {
            let abs = TensorEntry { offset: e.offset.wrapping_add(data_offset as u32), ..*e };
            hbytes.extend(postcard::to_allocvec(&abs).expect("entry encodes"));
        }
        if align(PREAMBLE_BYTES + hbytes.len()) != data_offset {
            header_len_guess = hbytes.len();
            continue;
        }
        let mut out = Vec::with_capacity(data_offset + data.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(hbytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(&hbytes).to_le_bytes());
        out.extend_from_slice(&hbytes);
        out.resize(data_offset, 0);
        out.extend_from_slice(data);
        return out;
    }
    unreachable!("header length did not converge")
}

/// A `.spark` file laid out before its tensor bytes exist, so that a large file (the
/// synthetic models of `bench model`, 2.6 GB each) is written straight into its final
/// buffer: [`FileLayout::new`] places the tensors, the caller writes tensor `i` into
/// `file[layout.range(i)]` of a zeroed buffer of [`FileLayout::file_len`] bytes, and
/// [`FileLayout::seal`] writes the preamble and the header (with the data CRC) in front.
///
/// The data section starts where a header with the longest CRC encoding would end, so the
/// header written once the CRC is known always fits (zero padding fills the rest, which
/// `Model::load` accepts). Tested in this module and through `bench model`.
#[derive(Clone, Debug)]
pub struct FileLayout {
    config: Config,
    tokenizer: TokenizerMeta,
    /// Offsets relative to the data section.
    entries: Vec<TensorEntry>,
    data_offset: usize,
    data_len: usize,
}

impl FileLayout {
    /// Place `tensors` (id, dtype, `[rows, cols]`) in order, each 64-byte aligned. `None`
    /// when the file would not fit the format's 32-bit offsets.
    pub fn new(config: &Config, tokenizer: &TokenizerMeta, tensors: &[(TensorId, DType, [u32; 2])]) -> Option<Self> {
        let mut entries = Vec::with_capacity(tensors.len());
        let mut at = 0u64;
        for &(id, dtype, shape) in tensors {
            let len = shape[0] as u64 * shape[1] as u64 * dtype.size() as u64;
            at = at.div_ceil(ALIGN as u64) * ALIGN as u64;
            entries.push(TensorEntry {
                id,
                dtype,
                shape,
                offset: u32::try_from(at).ok()?,
                len: u32::try_from(len).ok()?,
            });
            at += len;
        }
        let data_len = u32::try_from(at).ok()? as usize;
        let mut l = FileLayout { config: *config, tokenizer: *tokenizer, entries, data_offset: 0, data_len };
        for _ in 0..16 {
            let want = align(PREAMBLE_BYTES + l.header(u32::MAX).len());
            if want == l.data_offset {
                u32::try_from(l.data_offset + l.data_len).ok()?;
                return Some(l);
            }
            l.data_offset = want;
        }
        None
    }

    /// The header bytes (header record and absolute tensor table) for data CRC `crc`.
    fn header(&self, crc: u32) -> Vec<u8> {
        let header = Header {
            config: self.config,
            tokenizer: self.tokenizer,
            data_offset: self.data_offset as u32,
            data_len: self.data_len as u32,
            data_crc: crc,
            n_tensors: self.entries.len() as u32,
        };
        let mut h = postcard::to_allocvec(&header).expect("header encodes");
        for e in &self.entries {
            let abs = TensorEntry { offset: e.offset + self.data_offset as u32, ..*e };
            h.extend(postcard::to_allocvec(&abs).expect("entry encodes"));
        }
        h
    }

    /// Bytes of the whole file.
    pub fn file_len(&self) -> usize {
        self.data_offset + self.data_len
    }

    /// Where tensor `i` (in the order given to [`FileLayout::new`]) lies in the file.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        let e = &self.entries[i];
        let start = self.data_offset + e.offset as usize;
        start..start + e.len as usize
    }

    /// Write the preamble, the header with the CRC of `file`'s data section and zero
    /// padding up to the data section. `file` is [`FileLayout::file_len`] bytes with
    /// every tensor written.
    pub fn seal(&self, file: &mut [u8]) {
        let h = self.header(crc32(&file[self.data_offset..]));
        file[..4].copy_from_slice(&MAGIC);
        file[4..8].copy_from_slice(&VERSION.to_le_bytes());
        file[8..12].copy_from_slice(&(h.len() as u32).to_le_bytes());
        file[12..16].copy_from_slice(&crc32(&h).to_le_bytes());
        file[PREAMBLE_BYTES..PREAMBLE_BYTES + h.len()].copy_from_slice(&h);
        file[PREAMBLE_BYTES + h.len()..self.data_offset].fill(0);
    }
}

/// Decode a file's header and tensor table (offsets relative to the data section) without
/// validating anything else: for `inspect` and for tests that edit files.
pub fn parse_table(blob: &[u8]) -> Option<(Header, Vec<TensorEntry>, Vec<u8>)> {
    let hlen = u32::from_le_bytes(blob.get(8..12)?.try_into().ok()?) as usize;
    let hbytes = blob.get(PREAMBLE_BYTES..PREAMBLE_BYTES + hlen)?;
    let (header, mut rest): (Header, &[u8]) = postcard::take_from_bytes(hbytes).ok()?;
    let mut entries = Vec::new();
    for _ in 0..header.n_tensors {
        let (mut e, r): (TensorEntry, &[u8]) = postcard::take_from_bytes(rest).ok()?;
        e.offset = e.offset.wrapping_sub(header.data_offset);
        entries.push(e);
        rest = r;
    }
    let data = blob.get(header.data_offset as usize..)?.to_vec();
    Some((header, entries, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmodel::{random_writer, small_spark_config};
    use spark_core::{Model, TensorKind};

    #[test]
    fn a_sealed_layout_loads_with_the_tensors_written_in_place() {
        let cfg = small_spark_config();
        let mut w = random_writer(&cfg, 3);
        // The layout takes tensors as stored: the bundled ffn.k2v records of version 2.
        w.tensors = bundle_ffn_rows(&cfg, &w.tensors);
        let specs: Vec<_> = w.tensors.iter().map(|t| (t.id, t.dtype, t.shape)).collect();
        let l = FileLayout::new(&cfg, &w.tokenizer, &specs).unwrap();
        let mut file = vec![0u8; l.file_len()];
        file[..l.data_offset].fill(0xAA); // seal overwrites the preamble, header and padding
        for (i, t) in w.tensors.iter().enumerate() {
            assert_eq!(l.range(i).start % ALIGN as usize, 0);
            file[l.range(i)].copy_from_slice(&t.bytes);
        }
        l.seal(&mut file);
        let m = Model::load(&file).expect("a sealed layout is a valid file");
        let reference = w.finish();
        let r = Model::load(&reference).unwrap();
        assert_eq!(m.layer_matrix(1, TensorKind::K2).data, r.layer_matrix(1, TensorKind::K2).data);
        assert_eq!(m.global_matrix(TensorKind::Embed).data, r.global_matrix(TensorKind::Embed).data);
        // The data section of the writer's file and of the layout are the same bytes.
        assert_eq!(&file[l.data_offset..], &reference[reference.len() - l.data_len..]);
    }

    #[test]
    fn a_layout_beyond_32_bit_offsets_is_refused() {
        let cfg = small_spark_config();
        let id = TensorId::global(TensorKind::Embed);
        let big = [(id, DType::I8, [1 << 16, 1 << 15]), (id, DType::I8, [1 << 16, 1 << 15])];
        assert!(FileLayout::new(&cfg, &TokenizerMeta::NONE, &big[..1]).is_some());
        assert!(FileLayout::new(&cfg, &TokenizerMeta::NONE, &big).is_none());
        assert!(FileLayout::new(&cfg, &TokenizerMeta::NONE, &[(id, DType::F32, [1 << 16, 1 << 14])]).is_none());
    }
}
