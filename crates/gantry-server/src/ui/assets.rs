//! The stylesheet and the script, compiled into the binary and served with a version in
//! their URLs (a hash of their content), so browsers may cache them for a long time.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

/// Changes whenever an asset changes (FNV-1a of both, as hex).
pub const VERSION: &str = {
    const fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        h
    }
    const H: u64 = fnv(fnv(0xcbf2_9ce4_8422_2325, CSS.as_bytes()), JS.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const OUT: [u8; 16] = {
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = HEX[((H >> (60 - 4 * i)) & 0xf) as usize];
            i += 1;
        }
        out
    };
    match std::str::from_utf8(&OUT) {
        Ok(s) => s,
        Err(_) => "0",
    }
};

/// `GET /static/{file}`
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp
}
