//! Where an artifact store lives: a local directory (the default, under GANTRY_HOME) or an
//! S3-compatible bucket, `s3://bucket/prefix` (AWS, MinIO, Ceph, moto).
//!
//! S3 settings come from the usual AWS places, first match wins: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for MinIO/Ceph/moto, `AWS_ALLOW_HTTP`), then the
//! shared files of `AWS_PROFILE` (default `default`): `~/.aws/credentials`
//! (`AWS_SHARED_CREDENTIALS_FILE`) and `~/.aws/config` (`AWS_CONFIG_FILE`), then the
//! instance's own role (web identity, ECS task role, EC2 instance metadata). An endpoint given
//! as `http://…` is allowed to be plain HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::prefix::PrefixStore;

use crate::error::ArtifactError;
use crate::store::ArtifactStore;

/// A parsed artifact store location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `s3://bucket[/prefix]`, `file:///dir` or a directory path.
    pub fn parse(text: &str) -> Result<Location, ArtifactError> {
        let bad = |why: &str| ArtifactError::Location {
            location: text.to_owned(),
            detail: why.to_owned(),
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !valid_bucket {
                return Err(bad(
                    "the bucket name must be 3–63 characters of lowercase letters, digits, '-' and '.'",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix
                .split('/')
                .any(|s| s == "." || s == ".." || (s.is_empty() && !prefix.is_empty()))
            {
                return Err(bad("the prefix must be plain path segments"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if text.contains("://") {
            return Err(bad(
                "expected s3://bucket/prefix, file:///dir or a directory",
            ));
        }
        Ok(Location::Local(PathBuf::from(text)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl ArtifactStore {
    /// The store at `location`; `cache_dir` keeps materialized copies of a remote store's
    /// artifacts (a local store keeps its own beside its objects).
    pub fn open(location: &Location, cache_dir: &Path) -> Result<ArtifactStore, ArtifactError> {
        ArtifactStore::open_with_env(location, cache_dir, &|k| std::env::var(k).ok())
    }

    /// [`ArtifactStore::open`] with the AWS settings read through `env` instead of the
    /// process environment (the shared AWS files are still read from `$HOME/.aws`).
    pub fn open_with_env(
        location: &Location,
        cache_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ArtifactStore, ArtifactError> {
        match location {
            Location::Local(root) => ArtifactStore::open_local(root),
            Location::S3 { bucket, prefix } => {
                let settings = AwsSettings::gather(env, home_dir());
                let s3 = settings
                    .builder()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(ArtifactError::object_store(format!("opening {location}")))?;
                let objects: Arc<dyn object_store::ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                };
                Ok(ArtifactStore::from_object_store(objects, cache_dir))
            }
        }
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The S3 settings from the environment and the shared AWS files.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AwsSettings {
    /// object_store configuration keys → values.
    pub(crate) values: BTreeMap<String, String>,
}

impl AwsSettings {
    pub(crate) fn gather(env: &dyn Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Self {
        let mut values = BTreeMap::new();
        let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
        for (var, key) in [
            ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
            ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
            ("AWS_SESSION_TOKEN", "aws_session_token"),
            ("AWS_DEFAULT_REGION", "aws_region"),
            ("AWS_REGION", "aws_region"),
            ("AWS_ENDPOINT_URL_S3", "aws_endpoint"),
            ("AWS_ENDPOINT_URL", "aws_endpoint"),
            ("AWS_ENDPOINT", "aws_endpoint"),
            ("AWS_ALLOW_HTTP", "aws_allow_http"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "aws_web_identity_token_file"),
            ("AWS_ROLE_ARN", "aws_role_arn"),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "aws_container_credentials_relative_uri",
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "aws_container_credentials_full_uri",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "aws_container_authorization_token_file",
            ),
        ] {
            if let Some(v) = nonempty(var) {
                // The first of several spellings wins.
                values.entry(key.to_owned()).or_insert(v);
            }
        }
        let profile = nonempty("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let file = |var: &str, name: &str| {
            nonempty(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
                .and_then(|p| std::fs::read_to_string(p).ok())
        };
        if !values.contains_key("aws_access_key_id")
            && let Some(text) = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        {
            let section = ini_section(&text, &profile);
            if let (Some(id), Some(secret)) = (
                section.get("aws_access_key_id"),
                section.get("aws_secret_access_key"),
            ) {
                values.insert("aws_access_key_id".into(), id.clone());
                values.insert("aws_secret_access_key".into(), secret.clone());
                if let Some(t) = section.get("aws_session_token") {
                    values.insert("aws_session_token".into(), t.clone());
                }
            }
        }
        if let Some(text) = file("AWS_CONFIG_FILE", "config") {
            // ~/.aws/config names profiles `[profile NAME]`, except `[default]`.
            let name = if profile == "default" {
                "default".to_owned()
            } else {
                format!("profile {profile}")
            };
            let section = ini_section(&text, &name);
            for (from, key) in [("region", "aws_region"), ("endpoint_url", "aws_endpoint")] {
                if let Some(v) = section.get(from) {
                    values.entry(key.to_owned()).or_insert_with(|| v.clone());
                }
            }
        }
        if values
            .get("aws_endpoint")
            .is_some_and(|e| e.starts_with("http://"))
        {
            values
                .entry("aws_allow_http".into())
                .or_insert_with(|| "true".into());
        }
        AwsSettings { values }
    }

    fn builder(&self) -> AmazonS3Builder {
        let mut b = AmazonS3Builder::new();
        for (k, v) in &self.values {
            if let Ok(key) = k.parse::<AmazonS3ConfigKey>() {
                b = b.with_config(key, v);
            }
        }
        if !self.values.contains_key("aws_region") {
            b = b.with_region("us-east-1");
        }
        b
    }
}

/// The `key = value` lines of `[name]` in an INI file (AWS's shared files).
fn ini_section(text: &str, name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_print() {
        assert_eq!(
            Location::parse("s3://my-bucket/team/a/").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "team/a".into()
            }
        );
        assert_eq!(
            Location::parse("s3://my-bucket").unwrap().to_string(),
            "s3://my-bucket"
        );
        assert_eq!(
            Location::parse("file:///var/lib/a").unwrap(),
            Location::Local("/var/lib/a".into())
        );
        assert_eq!(
            Location::parse("/srv/artifacts").unwrap(),
            Location::Local("/srv/artifacts".into())
        );
        for bad in [
            "s3://Bad_Bucket/x",
            "s3://ab",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "gs://bucket",
        ] {
            let err = Location::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn settings_come_from_the_environment_then_the_profile_files() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s1\n\n[team]\n# comment\naws_access_key_id=AKIATEAM\naws_secret_access_key = s2\naws_session_token = tok\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile team]\nregion = eu-central-1\nendpoint_url = http://127.0.0.1:9000\n",
        )
        .unwrap();
        let home = Some(dir.path().to_owned());

        let none = |_: &str| None;
        let s = AwsSettings::gather(&none, home.clone());
        assert_eq!(s.values["aws_access_key_id"], "AKIADEFAULT");
        assert_eq!(s.values["aws_region"], "eu-west-1");
        assert!(!s.values.contains_key("aws_endpoint"));

        let team = |k: &str| (k == "AWS_PROFILE").then(|| "team".to_string());
        let s = AwsSettings::gather(&team, home.clone());
        assert_eq!(s.values["aws_access_key_id"], "AKIATEAM");
        assert_eq!(s.values["aws_session_token"], "tok");
        assert_eq!(s.values["aws_region"], "eu-central-1");
        assert_eq!(s.values["aws_endpoint"], "http://127.0.0.1:9000");
        assert_eq!(
            s.values["aws_allow_http"], "true",
            "an http endpoint is allowed"
        );

        // The environment wins over the files, key by key.
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIAENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("senv".to_string()),
            "AWS_REGION" => Some("us-west-2".to_string()),
            _ => None,
        };
        let s = AwsSettings::gather(&env, home);
        assert_eq!(s.values["aws_access_key_id"], "AKIAENV");
        assert_eq!(s.values["aws_secret_access_key"], "senv");
        assert_eq!(s.values["aws_region"], "us-west-2");
        assert!(!s.values.contains_key("aws_session_token"));
    }
}
