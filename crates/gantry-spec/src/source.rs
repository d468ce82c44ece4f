//! Where data comes from outside the pipeline: `with: { source: … }` of a built-in
//! step and `{ url: … }` inputs. Only the shape is checked here; the engine fetches.

/// A data source as written, before the engine fetches or reads it.
#[derive(Debug, PartialEq)]
pub(crate) enum DataSource {
    /// An `http://` or `https://` URL, kept as written.
    Url(String),
    /// A path as written (with a `file://` prefix removed); relative to the pipeline file.
    Path(String),
}

/// Why a source was rejected, and what to write instead.
#[derive(Debug, PartialEq)]
pub(crate) struct SourceError {
    pub reason: String,
    pub hint: &'static str,
}

const SOURCE_HINT: &str = "write an http(s) URL such as `https://example.com/iris.csv`, or a path relative to the pipeline file such as `data/iris.csv`";
const URL_HINT: &str = "write an http(s) URL such as `https://example.com/iris.csv`; to read a local file use `{ path: … }`";

/// Classifies the `source` of a built-in step: http(s) URLs are fetched, `file://`
/// and anything without a scheme is a path.
pub(crate) fn classify_source(text: &str) -> Result<DataSource, SourceError> {
    if text.trim().is_empty() {
        return Err(SourceError {
            reason: "it is empty".into(),
            hint: SOURCE_HINT,
        });
    }
    match scheme(text).as_ref().map(|(s, rest)| (s.as_str(), *rest)) {
        None => Ok(DataSource::Path(text.to_owned())),
        Some(("file", rest)) => {
            if rest.trim().is_empty() {
                Err(SourceError {
                    reason: format!("'{text}' names no file"),
                    hint: SOURCE_HINT,
                })
            } else {
                Ok(DataSource::Path(rest.to_owned()))
            }
        }
        Some(("http" | "https", _)) => check_http_url(text)
            .map(|()| DataSource::Url(text.to_owned()))
            .map_err(|reason| SourceError {
                reason,
                hint: SOURCE_HINT,
            }),
        Some((other, _)) => Err(SourceError {
            reason: format!("unsupported scheme '{other}' in '{text}'"),
            hint: "gantry fetches http:// and https:// URLs; download other sources first and point `source` at the file",
        }),
    }
}

/// Checks the URL of a `{ url: … }` input, which must be http(s).
pub(crate) fn check_url_input(text: &str) -> Result<(), SourceError> {
    let fail = |reason: String| SourceError {
        reason,
        hint: URL_HINT,
    };
    match scheme(text).as_ref().map(|(s, rest)| (s.as_str(), *rest)) {
        Some(("http" | "https", _)) => check_http_url(text).map_err(fail),
        Some((other, _)) => Err(fail(format!("unsupported scheme '{other}' in '{text}'"))),
        None if text.trim().is_empty() => Err(fail("it is empty".into())),
        None => Err(fail(format!("'{text}' is not a URL (no `scheme://`)"))),
    }
}

/// The lower-cased scheme and the rest, when `text` starts with `scheme://`.
fn scheme(text: &str) -> Option<(String, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme.to_ascii_lowercase(), rest))
}

/// `scheme://[user@]host[:port][/path][?query][#fragment]` with a plausible host.
fn check_http_url(text: &str) -> Result<(), String> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "URL '{text}' contains whitespace; percent-encode spaces as %20"
        ));
    }
    let rest = text.split_once("://").map_or("", |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port, ipv6) = if let Some(inner) = host_port.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(format!("URL '{text}' has an unclosed `[` in its host"));
        };
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("URL '{text}' has an invalid IPv6 host '[{v6}]'"));
        }
        match after.strip_prefix(':') {
            Some(port) => (v6, Some(port), true),
            None if after.is_empty() => (v6, None, true),
            None => return Err(format!("URL '{text}' has text after its IPv6 host")),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port), false),
            None => (host_port, None, false),
        }
    };
    if host.is_empty() {
        return Err(format!("URL '{text}' has no host"));
    }
    let host_ok = ipv6
        || host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !host_ok {
        return Err(format!("URL '{text}' has an invalid host '{host}'"));
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("URL '{text}' has an invalid port '{port}'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Result<DataSource, SourceError> {
        Ok(DataSource::Path(s.into()))
    }

    #[test]
    fn sources_are_urls_or_paths() {
        for url in [
            "https://example.com/iris.csv",
            "http://example.com",
            "HTTPS://user:pw@data.example.com:8443/a/b.csv?x=1#f",
            "http://[::1]:8080/x",
            "http://10.0.0.1/x",
        ] {
            assert_eq!(classify_source(url), Ok(DataSource::Url(url.into())));
        }
        assert_eq!(classify_source("data/iris.csv"), path("data/iris.csv"));
        assert_eq!(classify_source("/srv/iris.csv"), path("/srv/iris.csv"));
        assert_eq!(
            classify_source("file:///srv/iris.csv"),
            path("/srv/iris.csv")
        );
        assert_eq!(classify_source("file://data/x.csv"), path("data/x.csv"));
        // A colon without `://` is an odd file name, not a scheme.
        assert_eq!(classify_source("a:b.csv"), path("a:b.csv"));
        assert_eq!(classify_source("./x://y"), path("./x://y"));
    }

    #[test]
    fn bad_sources_say_why() {
        let reason = |s: &str| classify_source(s).unwrap_err().reason;
        assert_eq!(reason(""), "it is empty");
        assert_eq!(reason("  "), "it is empty");
        assert!(reason("s3://bucket/x").contains("unsupported scheme 's3'"));
        assert!(reason("https://").contains("has no host"));
        assert!(reason("https:///x").contains("has no host"));
        assert!(reason("https://exa mple.com").contains("whitespace"));
        assert!(reason("https://ex$ample.com/").contains("invalid host"));
        assert!(reason("http://example.com:99999/").contains("invalid port"));
        assert!(reason("http://example.com:/").contains("invalid port"));
        assert!(reason("http://[::1/").contains("unclosed"));
        assert!(reason("http://a:b:80/").contains("invalid host 'a:b'"));
        assert!(reason("file://").contains("names no file"));
    }

    #[test]
    fn url_inputs_must_be_http() {
        assert_eq!(check_url_input("https://example.com/x"), Ok(()));
        let reason = |s: &str| check_url_input(s).unwrap_err().reason;
        assert!(reason("file:///x").contains("unsupported scheme 'file'"));
        assert!(reason("data/x.csv").contains("not a URL"));
        assert_eq!(reason(""), "it is empty");
        assert!(reason("https://").contains("no host"));
    }
}
