//! The learning algorithms, on dense numeric matrices. Implemented here rather
//! than taken from a library so that every model serializes to a format we
//! own and version, gives class probabilities, and is bit-for-bit
//! reproducible from its seed.

pub(crate) mod boosting;
pub(crate) mod forest;
pub(crate) mod linear;
pub(crate) mod matrix;
pub(crate) mod tree;
