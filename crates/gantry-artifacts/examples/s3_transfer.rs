//! A plain S3 transfer with object_store, the baseline of `bench/kube_wrapper.py`: what
//! `aws s3 cp` does, with none of Gantry's work (no hashing, no verification, no metadata
//! object, no existence check).
//!
//! - up: the file goes as a multipart upload, `--part-mb` (8) MiB parts with `--parts` (4) in
//!   flight (the part size and concurrency `ArtifactStore` uses), or as one PUT when it is no
//!   larger than a part;
//! - down: one streamed GET written to `--out`.
//!
//! ```sh
//! cargo run --release -p gantry-artifacts --example s3_transfer -- \
//!     --endpoint http://127.0.0.1:5000 --bucket b --file data.bin [--key k] [--op up|down|both]
//! ```
//!
//! Credentials, region and endpoint otherwise come from the environment as object_store reads
//! it (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ALLOW_HTTP`). Prints `{"upload_s":…,"download_s":…,"bytes":…}` (the transfers only,
//! not the process start), null for a half not done.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    endpoint: Option<String>,
    bucket: String,
    file: PathBuf,
    key: String,
    out: Option<PathBuf>,
    op: String,
    part: usize,
    parts: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: s3_transfer [--endpoint URL] --bucket B --file PATH [--key KEY] [--out PATH] \
         [--op up|down|both] [--part-mb 8] [--parts 4]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
        bucket: std::env::var("S3_BUCKET").unwrap_or_default(),
        file: PathBuf::new(),
        key: String::new(),
        out: None,
        op: "both".into(),
        part: 8 << 20,
        parts: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { usage() };
        match flag.as_str() {
            "--endpoint" => args.endpoint = Some(value),
            "--bucket" => args.bucket = value,
            "--file" => args.file = value.into(),
            "--key" => args.key = value,
            "--out" => args.out = Some(value.into()),
            "--op" if ["up", "down", "both"].contains(&value.as_str()) => args.op = value,
            "--part-mb" => args.part = value.parse::<usize>().unwrap_or_else(|_| usage()) << 20,
            "--parts" => args.parts = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if args.bucket.is_empty() || args.file.as_os_str().is_empty() || args.part == 0 {
        usage()
    }
    if args.key.is_empty() {
        args.key = args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| usage());
    }
    args
}

async fn upload(
    store: &Arc<dyn ObjectStore>,
    args: &Args,
    key: &ObjectPath,
) -> std::io::Result<u64> {
    let mut file = tokio::fs::File::open(&args.file).await?;
    let size = file.metadata().await?.len();
    let failed = |e: object_store::Error| std::io::Error::other(e.to_string());
    if size <= args.part as u64 {
        let mut buf = Vec::with_capacity(size as usize);
        file.read_to_end(&mut buf).await?;
        store
            .put(key, PutPayload::from(buf))
            .await
            .map_err(failed)?;
        return Ok(size);
    }
    let upload = store.put_multipart(key).await.map_err(failed)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, args.part);
    loop {
        let mut part = BytesMut::with_capacity(args.part);
        while part.len() < args.part {
            if file.read_buf(&mut part).await? == 0 {
                break;
            }
        }
        if part.is_empty() {
            break;
        }
        writer.wait_for_capacity(args.parts).await.map_err(failed)?;
        writer.put(part.freeze());
    }
    writer.finish().await.map_err(failed)?;
    Ok(size)
}

async fn download(
    store: &Arc<dyn ObjectStore>,
    key: &ObjectPath,
    out: &PathBuf,
) -> std::io::Result<u64> {
    let failed = |e: object_store::Error| std::io::Error::other(e.to_string());
    let mut stream = store.get(key).await.map_err(failed)?.into_stream();
    let mut file = tokio::fs::File::create(out).await?;
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(failed)?;
        n += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(n)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&args.bucket);
    if let Some(endpoint) = &args.endpoint {
        builder = builder.with_endpoint(endpoint);
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        builder = builder.with_region("us-east-1");
    }
    let store: Arc<dyn ObjectStore> = Arc::new(builder.build().expect("an S3 client"));
    let key = ObjectPath::from(args.key.as_str());

    let (mut upload_s, mut download_s, mut bytes) = (None, None, 0);
    if args.op != "down" {
        let t = Instant::now();
        bytes = upload(&store, &args, &key)
            .await
            .unwrap_or_else(|e| panic!("uploading {}: {e}", args.file.display()));
        upload_s = Some(t.elapsed().as_secs_f64());
    }
    if args.op != "up" {
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| args.file.with_extension("download"));
        let t = Instant::now();
        bytes = download(&store, &key, &out)
            .await
            .unwrap_or_else(|e| panic!("downloading {} to {}: {e}", args.key, out.display()));
        download_s = Some(t.elapsed().as_secs_f64());
    }
    let json = |v: Option<f64>| v.map_or("null".to_string(), |s| format!("{s:.4}"));
    println!(
        "{{\"upload_s\":{},\"download_s\":{},\"bytes\":{bytes}}}",
        json(upload_s),
        json(download_s)
    );
}
