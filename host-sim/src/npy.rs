//! Minimal NPY (NumPy array file) writer and header reader: float32, C order, format v1.0.
//!
//! Layout: the magic `\x93NUMPY`, version bytes `1 0`, a little-endian u16 header length
//! `HLEN`, then `HLEN` bytes of an ASCII Python dict literal
//! (`{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }`) padded with spaces and
//! ending in `\n` so that the data starts at a multiple of 64 bytes, then the raw
//! little-endian values.

use std::io::Write;

/// Magic bytes of every NPY file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The complete v1.0 header (magic through the padded dict) for a float32 C-order array.
pub fn header_f32(shape: &[usize]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + length (2) + dict + '\n' is padded to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Write `data` (row-major, `shape`'s product long) as a float32 `.npy` to `w`.
pub fn write_f32<W: Write>(w: &mut W, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy: shape does not match the data");
    w.write_all(&header_f32(shape))?;
    let mut buf = Vec::with_capacity(data.len() * 4);
    for x in data {
        buf.extend_from_slice(&x.to_le_bytes());
    }
    w.write_all(&buf)
}

/// A parsed v1.x header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The dtype descriptor (`<f4`).
    pub descr: String,
    /// Fortran (column-major) order.
    pub fortran_order: bool,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Offset of the first data byte.
    pub data_offset: usize,
}

/// Parse the header of an NPY v1.x file (enough for the arrays [`write_f32`] writes).
pub fn parse_header(b: &[u8]) -> Result<NpyHeader, String> {
    if b.len() < 10 || &b[..6] != MAGIC {
        return Err("not an NPY file (bad magic)".into());
    }
    if b[6] != 1 {
        return Err(format!("unsupported NPY version {}.{}", b[6], b[7]));
    }
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let dict = std::str::from_utf8(b.get(10..10 + hlen).ok_or("NPY header truncated")?)
        .map_err(|_| "NPY header is not ASCII")?;
    let field = |key: &str| -> Result<&str, String> {
        let k = format!("'{key}':");
        let at = dict.find(&k).ok_or(format!("NPY header has no {key}"))? + k.len();
        Ok(dict[at..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr.strip_prefix('\'').and_then(|s| s.split('\'').next()).ok_or("bad descr")?.to_string();
    let fortran_order = field("fortran_order")?.starts_with("True");
    let shape_s = field("shape")?;
    let shape_s = shape_s.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("bad shape")?;
    let shape = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape entry {s:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader { descr, fortran_order, shape, data_offset: 10 + hlen })
}
