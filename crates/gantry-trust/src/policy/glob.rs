//! Globs over normalized image names (`registry/repository`): `*` matches within one path
//! segment (no `/`), `**` matches across segments (any characters, `/` included); every other
//! character matches itself.

/// A compiled image-name glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Literal(u8),
    Star,
    DoubleStar,
}

impl Glob {
    /// Checks the pattern: it must be written normalized, starting with a registry
    /// (`docker.io/library/busybox`, not `busybox`) or a wildcard, and hold no tag or digest.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("the pattern is empty".into());
        }
        if pattern.contains('@') {
            return Err(format!(
                "`{pattern}` holds a digest; patterns match names without tag or digest"
            ));
        }
        if pattern.contains("***") {
            return Err(format!("`{pattern}` has `***`; use `*` or `**`"));
        }
        let (first, rest) = pattern.split_once('/').unwrap_or((pattern, ""));
        if !first.contains('*') {
            if !super::reference::is_registry(first) {
                let normalized = if rest.is_empty() {
                    format!("docker.io/library/{pattern}")
                } else {
                    format!("docker.io/{pattern}")
                };
                return Err(format!(
                    "`{pattern}` does not start with a registry; write names normalized, as \
                     in `{normalized}`"
                ));
            }
            if rest.is_empty() {
                return Err(format!(
                    "`{pattern}` names a registry only; write `{first}/**` for all its images"
                ));
            }
        }
        if rest.contains(':') {
            return Err(format!(
                "`{pattern}` holds a tag; patterns match names without tag or digest"
            ));
        }
        if pattern
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
        {
            return Err(format!(
                "`{pattern}` has upper-case letters or spaces, which no normalized image name has"
            ));
        }
        Ok(Glob {
            pattern: pattern.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` (`registry/repository`) matches.
    pub fn matches(&self, name: &str) -> bool {
        let tokens = tokenize(self.pattern.as_bytes());
        matches_from(&tokens, name.as_bytes())
    }
}

fn tokenize(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        if pattern[i] == b'*' {
            if pattern.get(i + 1) == Some(&b'*') {
                tokens.push(Token::DoubleStar);
                i += 2;
            } else {
                tokens.push(Token::Star);
                i += 1;
            }
        } else {
            tokens.push(Token::Literal(pattern[i]));
            i += 1;
        }
    }
    tokens
}

/// Dynamic programming over (token, byte) positions: linear space, no backtracking blow-up.
fn matches_from(tokens: &[Token], name: &[u8]) -> bool {
    // reachable[j]: the tokens consumed so far can match name[..j].
    let mut reachable = vec![false; name.len() + 1];
    reachable[0] = true;
    for token in tokens {
        let mut next = vec![false; name.len() + 1];
        match token {
            Token::Literal(c) => {
                for j in 0..name.len() {
                    if reachable[j] && name[j] == *c {
                        next[j + 1] = true;
                    }
                }
            }
            Token::Star | Token::DoubleStar => {
                let crosses = *token == Token::DoubleStar;
                for j in 0..=name.len() {
                    if reachable[j] || (j > 0 && next[j - 1] && (crosses || name[j - 1] != b'/')) {
                        next[j] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).is_ok_and(|g| g.matches(name))
    }

    #[test]
    fn star_stays_in_a_segment_and_double_star_crosses() {
        assert!(m("localhost:5000/team/*", "localhost:5000/team/model"));
        assert!(!m("localhost:5000/team/*", "localhost:5000/team/a/b"));
        assert!(m("localhost:5000/team/**", "localhost:5000/team/a/b"));
        assert!(!m("localhost:5000/team/**", "localhost:5000/other/a"));
        assert!(m("**", "ghcr.io/x/y"));
        assert!(m("*/library/*", "docker.io/library/busybox"));
        assert!(m("ghcr.io/org/*-model", "ghcr.io/org/fraud-model"));
        assert!(!m("ghcr.io/org/*-model", "ghcr.io/org/fraud-model2"));
        assert!(m("docker.io/library/busybox", "docker.io/library/busybox"));
        assert!(!m(
            "docker.io/library/busybox",
            "docker.io/library/busybox2"
        ));
    }

    #[test]
    fn patterns_must_be_normalized() {
        assert!(Glob::new("busybox").is_err());
        assert!(Glob::new("docker.io/library/busybox:1.36").is_err());
        assert!(Glob::new("ghcr.io").is_err());
        assert!(Glob::new("localhost:5000/x").is_ok());
    }
}
