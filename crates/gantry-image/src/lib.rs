//! gantry-image: the OCI image store.
//!
//! Images live in an OCI image layout on disk and are imported from `docker save` archives, OCI
//! layouts (directory or tar) or plain rootfs tars. Every import is staged inside the store and
//! only committed once each blob matches its digest and each layer has unpacked under the safe
//! rules of [`unpack_layer`]: no path escapes, no writes through symlinks, whiteouts honoured,
//! sizes and entry counts bounded. A rejected image leaves nothing behind.

mod blob;
mod compression;
mod confine;
mod docker_archive;
mod error;
mod image_config;
mod import;
mod oci_layout;
mod prune;
mod reference;
pub mod registry;
mod staging;
mod store;
mod unpack;
mod user;

pub use error::ImageError;
pub use image_config::ImageRuntimeConfig;
pub use prune::ImageUsage;
pub use reference::{looks_like_domain, normalize_reference, validate_domain};
pub use store::{ImageInfo, ImageParts, ImageStore};
pub use unpack::{UnpackLimits, unpack_layer};
