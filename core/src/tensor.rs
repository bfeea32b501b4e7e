//! Tensor identities, dtypes and the shapes a config implies.
//!
//! Every tensor in a `.spark` file is named by a [`TensorId`] (a [`TensorKind`] plus a
//! layer index for per-layer kinds). `format::expected` says, for a config, which
//! tensors must be present and with which dtype and shape; the loader checks the file's
//! table against it. Quantized matrices are two tensors: the int8 rows and one f32 scale
//! per row. In a version 2 file the Spark FFN's `K2` and `V` rows are one bundled tensor,
//! `ffn.k2v` (see `format::FfnBundle`), with the two scale tensors unchanged. New kinds
//! are only ever appended: the table stores a kind as its index.

use serde::{Deserialize, Serialize};

/// Element type of a stored tensor.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// Signed 8-bit integers (quantized weights).
    I8,
    /// Little-endian IEEE-754 single precision (scales, norm weights).
    F32,
    /// Raw bytes (tokenizer strings).
    U8,
    /// Little-endian unsigned 32-bit integers (tokenizer offsets and merges).
    U32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::F32 | DType::U32 => 4,
        }
    }
    /// Lower-case name used in messages.
    pub const fn name(self) -> &'static str {
        match self {
            DType::I8 => "i8",
            DType::F32 => "f32",
            DType::U8 => "u8",
            DType::U32 => "u32",
        }
    }
}

macro_rules! tensor_kinds {
    (global { $($g:ident => $gname:literal),* $(,)? } layer { $($l:ident => $lname:literal),* $(,)? }) => {
        /// What a tensor is. Global kinds have `layer == 0`; per-layer kinds carry a layer index.
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum TensorKind { $($g,)* $($l,)* }

        /// Global tensor kinds, in table order.
        pub const GLOBAL_KINDS: &[TensorKind] = &[$(TensorKind::$g),*];
        /// Per-layer tensor kinds, in table order.
        pub const LAYER_KINDS: &[TensorKind] = &[$(TensorKind::$l),*];

        impl TensorKind {
            /// Dotted name suffix (`"ffn.k2"`, `"embed.scale"`).
            pub const fn name(self) -> &'static str {
                match self { $(TensorKind::$g => $gname,)* $(TensorKind::$l => $lname,)* }
            }
            /// The per-row scale kind paired with a quantized matrix kind (`Wq` -> `WqScale`);
            /// `None` for kinds that are not int8 matrices.
            pub const fn scale(self) -> Option<TensorKind> {
                use TensorKind::*;
                Some(match self {
                    Embed => EmbedScale, LmHead => LmHeadScale, Wq => WqScale, Wk => WkScale,
                    Wv => WvScale, Wo => WoScale, K1 => K1Scale, K2 => K2Scale, V => VScale,
                    Wg => WgScale, Wu => WuScale, WdT => WdTScale,
                    _ => return None,
                })
            }
            /// True for kinds that exist once per layer.
            pub const fn is_layer(self) -> bool {
                match self { $(TensorKind::$g => false,)* _ => true }
            }
            /// Position of this kind in [`GLOBAL_KINDS`] or [`LAYER_KINDS`].
            pub fn slot(self) -> usize {
                let list = if self.is_layer() { LAYER_KINDS } else { GLOBAL_KINDS };
                let mut i = 0;
                while list[i] != self { i += 1; }
                i
            }
        }
    };
}

tensor_kinds! {
    global {
        Embed => "embed", EmbedScale => "embed.scale",
        FinalNorm => "final_norm",
        LmHead => "lm_head", LmHeadScale => "lm_head.scale",
        TokBytes => "tokenizer.bytes", TokOffsets => "tokenizer.offsets", TokMerges => "tokenizer.merges",
    }
    layer {
        AttnNorm => "attn_norm", PostAttnNorm => "post_attn_norm",
        FfnNorm => "ffn_norm", PostFfnNorm => "post_ffn_norm",
        Wq => "attn.wq", WqScale => "attn.wq.scale",
        Wk => "attn.wk", WkScale => "attn.wk.scale",
        Wv => "attn.wv", WvScale => "attn.wv.scale",
        Wo => "attn.wo", WoScale => "attn.wo.scale",
        K1 => "ffn.k1", K1Scale => "ffn.k1.scale",
        K2 => "ffn.k2", K2Scale => "ffn.k2.scale",
        V => "ffn.v", VScale => "ffn.v.scale",
        Wg => "ffn.wg", WgScale => "ffn.wg.scale",
        Wu => "ffn.wu", WuScale => "ffn.wu.scale",
        WdT => "ffn.wd_t", WdTScale => "ffn.wd_t.scale",
        K2V => "ffn.k2v",
    }
}

/// Number of per-layer tensor kinds.
pub const N_LAYER_KINDS: usize = 25;
/// Number of global tensor kinds.
pub const N_GLOBAL_KINDS: usize = 8;
const _: () = assert!(N_LAYER_KINDS == LAYER_KINDS.len() && N_GLOBAL_KINDS == GLOBAL_KINDS.len());

/// A tensor's identity: its kind and (for per-layer kinds) its layer.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorId {
    /// What it is.
    pub kind: TensorKind,
    /// Layer index (0 for global kinds).
    pub layer: u16,
}

impl TensorId {
    /// A global tensor.
    pub const fn global(kind: TensorKind) -> Self {
        TensorId { kind, layer: 0 }
    }
    /// A per-layer tensor.
    pub const fn layer(layer: usize, kind: TensorKind) -> Self {
        TensorId { kind, layer: layer as u16 }
    }
}

impl core::fmt::Display for TensorId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.kind.is_layer() {
            write!(f, "layers.{}.{}", self.layer, self.kind.name())
        } else {
            f.write_str(self.kind.name())
        }
    }
}

/// One row of the file's tensor table.
///
/// Public for `spark-sim`'s model writer; an embedder reads tensors through
/// [`crate::Model`].
#[doc(hidden)]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// Which tensor.
    pub id: TensorId,
    /// Element type.
    pub dtype: DType,
    /// `[rows, cols]`; vectors use `[n, 1]`.
    pub shape: [u32; 2],
    /// Byte offset from the start of the file (64-byte aligned, inside the data section).
    pub offset: u32,
    /// Length in bytes (`rows * cols * dtype.size()`).
    pub len: u32,
}
