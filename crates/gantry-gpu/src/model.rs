//! GPU model names as the driver writes them and as a step asks for them.

/// Words that say who made or sold the device rather than which model it is.
const BRAND_WORDS: &[&str] = &["nvidia", "tesla", "geforce"];

/// The words of a device name or a requested model: lowercase, split on whitespace, `-` and
/// `_`, without the brand words `nvidia`, `tesla` and `geforce`.
///
/// `NVIDIA H100 80GB HBM3` → `[h100, 80gb, hbm3]`; `a100-80gb` → `[a100, 80gb]`.
pub fn model_words(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .filter(|w| !BRAND_WORDS.contains(&w.as_str()))
        .collect()
}

/// Whether the device named `name` is the model `wanted`: every word of `wanted` (see
/// [`model_words`]) is a whole word of `name`, in the same order, other words may come between.
///
/// `h200` matches `NVIDIA H200`; `h100` and `h100-80gb` match `NVIDIA H100 80GB HBM3`;
/// `a100` does not match `NVIDIA A10` (nor `a10` `NVIDIA A100-SXM4-40GB`): words are compared
/// whole. A `wanted` of only brand words (`nvidia`) matches every device.
pub fn model_matches(name: &str, wanted: &str) -> bool {
    let have = model_words(name);
    let mut have = have.iter();
    model_words(wanted)
        .iter()
        .all(|word| have.any(|h| h == word))
}

/// The MIG profile (`1g.10gb`, `2c.3g.20gb`, `1g.10gb+me`) in a MIG device's name
/// (`NVIDIA A100-SXM4-80GB MIG 1g.10gb`), a Kubernetes resource name (`nvidia.com/mig-1g.10gb`)
/// or on its own (`mig-1g.10gb`, `1g.10gb`); lowercase, extra attributes joined by `+`.
/// `None` when there is none.
pub fn parse_mig_profile(s: &str) -> Option<String> {
    let lower = s.trim().to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let candidate = match words.as_slice() {
        [] => return None,
        [one] => {
            let last = one.rsplit('/').next().unwrap_or(one);
            last.strip_prefix("mig-").unwrap_or(last)
        }
        _ => {
            let at = words.iter().position(|w| *w == "mig")?;
            words.get(at + 1)?
        }
    };
    normalize_profile(candidate)
}

/// `[Nc.]Ng.Ngb` then attributes after `+` or `.` (`me`, `gfx`), written back with `+`.
fn normalize_profile(s: &str) -> Option<String> {
    let mut parts = s.split('+');
    let head = parts.next()?;
    let mut fields = head.split('.').peekable();
    let mut profile = Vec::new();
    if let Some(compute) = fields.next_if(|f| count_with_suffix(f, "c")) {
        profile.push(compute);
    }
    let slices = fields.next().filter(|f| count_with_suffix(f, "g"))?;
    let memory = fields.next().filter(|f| count_with_suffix(f, "gb"))?;
    profile.extend([slices, memory]);
    let mut out = profile.join(".");
    for attribute in fields.chain(parts) {
        if attribute.is_empty() || !attribute.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        out.push('+');
        out.push_str(attribute);
    }
    Some(out)
}

/// `7g`, `80gb`, `2c`: digits, then exactly `suffix`.
fn count_with_suffix(s: &str, suffix: &str) -> bool {
    s.strip_suffix(suffix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_drop_brands_and_split_on_separators() {
        assert_eq!(
            model_words("NVIDIA H100 80GB HBM3"),
            ["h100", "80gb", "hbm3"]
        );
        assert_eq!(
            model_words("NVIDIA A100-SXM4-40GB"),
            ["a100", "sxm4", "40gb"]
        );
        assert_eq!(
            model_words("Tesla V100-PCIE-16GB"),
            ["v100", "pcie", "16gb"]
        );
        assert_eq!(model_words("NVIDIA GeForce RTX 4090"), ["rtx", "4090"]);
        assert_eq!(model_words(" l40s_x "), ["l40s", "x"]);
        assert!(model_words("NVIDIA").is_empty());
    }

    #[test]
    fn models_match_whole_words_in_order() {
        let cases = [
            ("NVIDIA H200", "h200", true),
            ("NVIDIA H200", "H200", true),
            ("NVIDIA H200 NVL", "h200", true),
            ("NVIDIA H100 80GB HBM3", "h100", true),
            ("NVIDIA H100 80GB HBM3", "h100-80gb", true),
            ("NVIDIA H100 80GB HBM3", "h100_hbm3", true),
            ("NVIDIA H100 80GB HBM3", "nvidia-h100", true),
            ("NVIDIA A100-SXM4-40GB", "a100-40gb", true),
            ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "a100", true),
            ("NVIDIA GeForce RTX 4090", "rtx-4090", true),
            ("NVIDIA GeForce RTX 4090", "4090", true),
            ("NVIDIA A100-SXM4-40GB", "nvidia", true),
            // Whole words only.
            ("NVIDIA A10", "a100", false),
            ("NVIDIA A100-SXM4-40GB", "a10", false),
            ("NVIDIA GH200 480GB", "h200", false),
            ("NVIDIA H100 PCIe", "h1", false),
            // Every word, in order.
            ("NVIDIA H100 80GB HBM3", "h100-94gb", false),
            ("NVIDIA H100 80GB HBM3", "80gb-h100", false),
            ("NVIDIA H100 80GB HBM3", "h200", false),
            ("NVIDIA GeForce RTX 4090", "rtx4090", false),
        ];
        for (name, wanted, expected) in cases {
            assert_eq!(model_matches(name, wanted), expected, "{name} ~ {wanted}");
        }
    }

    #[test]
    fn mig_profiles_come_from_device_and_resource_names() {
        let cases = [
            ("MIG 1g.10gb", Some("1g.10gb")),
            ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", Some("1g.10gb")),
            ("NVIDIA H100 80GB HBM3 MIG 7g.80gb", Some("7g.80gb")),
            ("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb", Some("1c.3g.20gb")),
            ("NVIDIA H100 MIG 1g.10gb+me", Some("1g.10gb+me")),
            ("nvidia.com/mig-1g.10gb", Some("1g.10gb")),
            ("nvidia.com/mig-3g.40gb", Some("3g.40gb")),
            ("nvidia.com/mig-1g.10gb.me", Some("1g.10gb+me")),
            ("mig-2g.20gb", Some("2g.20gb")),
            ("1G.5GB", Some("1g.5gb")),
            // Not a profile.
            ("NVIDIA H100 80GB HBM3", None),
            ("nvidia.com/gpu", None),
            ("MIG", None),
            ("MIG 1g", None),
            ("MIG g.10gb", None),
            ("MIG 1g.10", None),
            ("MIG 1g.10gb+", None),
            ("MIG 1g.10gb+m3", None),
            ("mig-1x.10gb", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_mig_profile(input).as_deref(), expected, "{input:?}");
        }
    }
}
