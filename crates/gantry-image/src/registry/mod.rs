//! Registries: pull and push images and signatures over the OCI distribution API.
//!
//! - [`RegistryRef`] splits a reference into registry, repository, tag and digest;
//! - [`CredentialStore`] finds credentials (`gantry login`'s `auth.json`, Docker's config);
//! - [`RegistryClient`] speaks the API: TLS by default (plain HTTP only for loopback or
//!   `--insecure-registry`), anonymous, basic and bearer-token auth, bounded reads, every
//!   manifest and blob verified against its digest, resumable parallel layer downloads.

mod auth;
mod client;
mod pull;
mod push;
mod reference;
mod signatures;

pub use auth::{CredentialStore, Credentials};
pub use client::{RegistryClient, RegistryOptions, default_http_client, http_builder};
pub(crate) use pull::OCI_MANIFEST;
pub use pull::{FetchedManifest, NoProgress, PullProgress, Pulled, host_architecture};
pub use push::{NoPushProgress, PushProgress, Pushed};
pub use reference::RegistryRef;
pub use signatures::{SignatureArtifacts, signature_tag};
