//! Writer for `.spark` v1 files (the reader, and the layout, are in `spark_core::format`).
//!
//! Tensors are written in the order they are added, each at a 64-byte aligned offset;
//! the header's varint-encoded offsets are solved by iterating until the header length is
//! stable. Tested by round trips through `spark_core::Model::load` in `tests/format.rs`.

use crate::quant::{quant_error, quantize_rows, QuantError};
use spark_core::format::{crc32, Header, ALIGN, MAGIC, PREAMBLE_BYTES, VERSION};
use spark_core::tensor::TensorEntry;
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
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl ModelWriter {
    /// A writer with no tensors yet.
    pub fn new(config: Config, tokenizer: TokenizerMeta) -> Self {
        ModelWriter { config, tokenizer, tensors: Vec::new() }
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

    /// Serialize to the file bytes: tensors in insertion order, each 64-byte aligned.
    pub fn finish(&self) -> Vec<u8> {
        let mut entries = Vec::with_capacity(self.tensors.len());
        let mut data = Vec::new();
        for t in &self.tensors {
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
        assemble(&self.config, &self.tokenizer, &entries, &data)
    }
}

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN as usize) * ALIGN as usize
}

/// Lay out a complete file from a config, tokenizer metadata, a tensor table whose offsets
/// are relative to the start of `data`, and the data section. Computes the data offset
/// (solving for the varint-encoded header length), both CRCs and the padding. The table
/// is written as given, so tests can build deliberately broken files with valid CRCs.
pub fn assemble(config: &Config, tokenizer: &TokenizerMeta, rel_entries: &[TensorEntry], data: &[u8]) -> Vec<u8> {
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
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(hbytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(&hbytes).to_le_bytes());
        out.extend_from_slice(&hbytes);
        out.resize(data_offset, 0);
        out.extend_from_slice(data);
        return out;
    }
    unreachable!("header length did not converge")
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
