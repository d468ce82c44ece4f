//! apk version ordering (Alpine), written from the apk version format:
//! `number(.number)*[letter](_suffix[number])*[~hash][-rN]`.
//!
//! Numbers compare numerically, except that a component after the first that starts with `0`
//! compares as a decimal fraction (as text), as apk does (`1.01 < 1.1`). A letter sorts after
//! no letter. Suffixes `_alpha < _beta < _pre < _rc` sort before the release and
//! `_cvs < _svn < _git < _hg < _p` after it. The `-rN` revision comes last; `~hash` is ignored.

use std::cmp::Ordering;
use std::str::FromStr;

/// A parsed apk version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApkVersion {
    numbers: Vec<String>,
    letter: Option<char>,
    suffixes: Vec<(u8, u64)>,
    revision: u64,
}

/// The rank of "no more suffixes": between the pre-release and the post-release suffixes.
const RELEASE_RANK: u8 = 4;

fn suffix_rank(name: &str) -> Option<u8> {
    Some(match name {
        "alpha" => 0,
        "beta" => 1,
        "pre" => 2,
        "rc" => 3,
        "cvs" => 5,
        "svn" => 6,
        "git" => 7,
        "hg" => 8,
        "p" => 9,
        _ => return None,
    })
}

impl FromStr for ApkVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (main, revision) = match text.rsplit_once("-r") {
            Some((main, rev)) => (
                main,
                rev.parse::<u64>()
                    .map_err(|_| format!("bad revision -r{rev}"))?,
            ),
            None => (text, 0),
        };
        let main = main.split_once('~').map_or(main, |(m, _)| m);
        let (head, suffix_text) = match main.split_once('_') {
            Some((h, rest)) => (h, Some(rest)),
            None => (main, None),
        };
        let (head, letter) = match head.chars().last() {
            Some(c) if c.is_ascii_lowercase() => (&head[..head.len() - 1], Some(c)),
            _ => (head, None),
        };
        let numbers: Vec<String> = head.split('.').map(str::to_string).collect();
        if numbers
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err("expected numbers separated by dots".to_string());
        }
        let mut suffixes = Vec::new();
        if let Some(rest) = suffix_text {
            for part in rest.split('_') {
                let split = part
                    .find(|c: char| c.is_ascii_digit())
                    .unwrap_or(part.len());
                let (name, num) = part.split_at(split);
                let rank = suffix_rank(name).ok_or_else(|| format!("unknown suffix _{name}"))?;
                let num = if num.is_empty() {
                    0
                } else {
                    num.parse::<u64>()
                        .map_err(|_| format!("bad suffix number _{part}"))?
                };
                suffixes.push((rank, num));
            }
        }
        Ok(ApkVersion {
            numbers,
            letter,
            suffixes,
            revision,
        })
    }
}

fn cmp_numeric(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        for (i, (a, b)) in self.numbers.iter().zip(&other.numbers).enumerate() {
            let ord = if i > 0 && (a.starts_with('0') || b.starts_with('0')) {
                a.cmp(b)
            } else {
                cmp_numeric(a, b)
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        let ord = self
            .numbers
            .len()
            .cmp(&other.numbers.len())
            .then_with(|| self.letter.cmp(&other.letter));
        if ord != Ordering::Equal {
            return ord;
        }
        let n = self.suffixes.len().max(other.suffixes.len());
        for i in 0..n {
            let a = self.suffixes.get(i).copied().unwrap_or((RELEASE_RANK, 0));
            let b = other.suffixes.get(i).copied().unwrap_or((RELEASE_RANK, 0));
            if a != b {
                return a.cmp(&b);
            }
        }
        self.revision.cmp(&other.revision)
    }
}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use crate::version::compare;

    #[test]
    fn apk_order() {
        let ordered = [
            "1.0_alpha",
            "1.0_alpha2",
            "1.0_beta1",
            "1.0_pre1",
            "1.0_rc1",
            "1.0",
            "1.0-r1",
            "1.0-r10",
            "1.0_cvs1",
            "1.0_git20240101",
            "1.0_p1",
            "1.0_p2-r3",
            "1.0a",
            "1.0b",
            "1.0.1",
            "1.01.0",
            "1.1",
            "1.1.0",
            "1.9",
            "1.10",
            "3.3.2-r0",
            "3.3.2-r1",
            "3.3.10-r0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                compare("Alpine:v3.20", pair[0], pair[1]),
                Ok(Ordering::Less),
                "{pair:?}"
            );
        }
        assert_eq!(
            compare("Alpine:v3.20", "1.0-r0", "1.0"),
            Ok(Ordering::Equal)
        );
        assert_eq!(
            compare("Alpine:v3.20", "1.0~abc-r1", "1.0-r1"),
            Ok(Ordering::Equal)
        );
        for bad in ["", "x1", "1..2", "1.0_foo", "1.0-rX"] {
            assert!(compare("Alpine:v3.20", bad, "1.0").is_err(), "{bad}");
        }
    }
}
