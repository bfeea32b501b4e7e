//! Statistical top-k (SPEC section 6).
