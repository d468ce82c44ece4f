//! `GANTRY_HOME/config.yaml`: the price table that turns usage into cost.
//!
//! ```yaml
//! prices:
//!   currency: EUR
//!   cpu_hour: 0.03          # per core-hour requested
//!   memory_gib_hour: 0.004  # per GiB-hour requested
//!   gpu_hour:               # per GPU-hour, by model (a number alone: every model)
//!     default: 2.5
//!     h100: 3.2
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

/// Default prices: roughly on-demand cloud list prices in USD (a general-purpose vCPU-hour,
/// a GiB-hour of memory, a data-centre GPU-hour). Set your own in `config.yaml`.
pub const DEFAULT_CPU_HOUR: f64 = 0.0316;
pub const DEFAULT_MEMORY_GIB_HOUR: f64 = 0.0042;
pub const DEFAULT_GPU_HOUR: f64 = 2.50;
pub const DEFAULT_CURRENCY: &str = "USD";

/// The largest config file read; it is a few lines.
const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prices {
    pub currency: String,
    pub cpu_hour: f64,
    pub memory_gib_hour: f64,
    /// Model name (lowercase, e.g. `h100`) → price; `default` for any other model.
    pub gpu_hour: BTreeMap<String, f64>,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            currency: DEFAULT_CURRENCY.into(),
            cpu_hour: DEFAULT_CPU_HOUR,
            memory_gib_hour: DEFAULT_MEMORY_GIB_HOUR,
            gpu_hour: BTreeMap::from([("default".to_string(), DEFAULT_GPU_HOUR)]),
        }
    }
}

impl Prices {
    /// The hourly price of one GPU of `model` (a device name such as "NVIDIA H100 80GB
    /// HBM3"): the longest configured key that is one of the name's words (`h100`), else
    /// `default`.
    pub fn gpu_hour_for(&self, model: Option<&str>) -> f64 {
        let default = self
            .gpu_hour
            .get("default")
            .copied()
            .unwrap_or(DEFAULT_GPU_HOUR);
        let Some(model) = model else {
            return default;
        };
        let lower = model.to_ascii_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
            .filter(|w| !w.is_empty())
            .collect();
        self.gpu_hour
            .iter()
            .filter(|(k, _)| k.as_str() != "default")
            .filter(|(k, _)| words.contains(&k.as_str()) || lower == **k)
            .max_by_key(|(k, _)| k.len())
            .map_or(default, |(_, v)| *v)
    }
}

/// Everything `config.yaml` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Config {
    pub prices: Prices,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("reading {origin}: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    prices: Option<RawPrices>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrices {
    currency: Option<String>,
    cpu_hour: Option<f64>,
    memory_gib_hour: Option<f64>,
    gpu_hour: Option<RawGpuPrice>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGpuPrice {
    One(f64),
    ByModel(BTreeMap<String, f64>),
}

impl Config {
    /// Reads `path`; a missing file is the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                origin: path.display().to_string(),
                source,
            }),
        }
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let at = |line: u64, column: u64, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            line: line.max(1),
            column: column.max(1),
            message,
        };
        if text.len() > MAX_CONFIG_BYTES {
            return Err(at(
                1,
                1,
                format!("the config is larger than {MAX_CONFIG_BYTES} bytes"),
            ));
        }
        let options = serde_saphyr::options! { strict_booleans: true };
        let raw: Option<RawConfig> =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| {
                let inner = e.without_snippet();
                let (line, column) = inner
                    .location()
                    .filter(|l| l.line() > 0)
                    .map_or((1, 1), |l| (l.line(), l.column()));
                let message: String = UserMessageFormatter
                    .format_message(inner)
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                at(line, column, message)
            })?;
        let mut config = Config::default();
        let Some(raw) = raw.and_then(|r| r.prices) else {
            return Ok(config);
        };
        let price = |name: &str, v: f64| -> Result<f64, ConfigError> {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(at(
                    1,
                    1,
                    format!("`prices.{name}` is {v}; write a price ≥ 0, e.g. `{name}: 0.05`"),
                ))
            }
        };
        let p = &mut config.prices;
        if let Some(c) = raw.currency {
            let c = c.trim().to_string();
            if c.is_empty() || c.len() > 8 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                return Err(at(
                    1,
                    1,
                    format!("`prices.currency` is {c:?}; write a currency code such as USD or EUR"),
                ));
            }
            p.currency = c.to_ascii_uppercase();
        }
        if let Some(v) = raw.cpu_hour {
            p.cpu_hour = price("cpu_hour", v)?;
        }
        if let Some(v) = raw.memory_gib_hour {
            p.memory_gib_hour = price("memory_gib_hour", v)?;
        }
        match raw.gpu_hour {
            None => {}
            Some(RawGpuPrice::One(v)) => {
                p.gpu_hour = BTreeMap::from([("default".to_string(), price("gpu_hour", v)?)]);
            }
            Some(RawGpuPrice::ByModel(models)) => {
                for (model, v) in models {
                    let key = model.trim().to_ascii_lowercase();
                    if key.is_empty() {
                        return Err(at(1, 1, "`prices.gpu_hour` has an empty model name".into()));
                    }
                    let v = price(&format!("gpu_hour.{key}"), v)?;
                    p.gpu_hour.insert(key, v);
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_a_file_or_a_prices_section() {
        let dir = std::env::temp_dir().join("gantry-alloc-no-such-config.yaml");
        assert_eq!(Config::load(&dir).ok(), Some(Config::default()));
        assert_eq!(Config::parse("", "c").ok(), Some(Config::default()));
        assert_eq!(
            Config::parse("prices: {}\n", "c").ok(),
            Some(Config::default())
        );
    }

    #[test]
    fn prices_are_read_and_gpu_models_matched_by_word() -> Result<(), ConfigError> {
        let c = Config::parse(
            "prices:\n  currency: eur\n  cpu_hour: 0.05\n  memory_gib_hour: 0.01\n  gpu_hour:\n    default: 2\n    h100: 3.5\n    a10: 1\n",
            "c",
        )?;
        let p = &c.prices;
        assert_eq!(p.currency, "EUR");
        assert_eq!((p.cpu_hour, p.memory_gib_hour), (0.05, 0.01));
        assert_eq!(p.gpu_hour_for(Some("NVIDIA H100 80GB HBM3")), 3.5);
        assert_eq!(p.gpu_hour_for(Some("NVIDIA A10")), 1.0);
        // a100 is not a10: words, not substrings.
        assert_eq!(p.gpu_hour_for(Some("NVIDIA A100-SXM4-40GB")), 2.0);
        assert_eq!(p.gpu_hour_for(None), 2.0);
        let one = Config::parse("prices: { gpu_hour: 4 }", "c")?;
        assert_eq!(one.prices.gpu_hour_for(Some("NVIDIA H200")), 4.0);
        Ok(())
    }

    #[test]
    fn bad_configs_say_where_and_what() {
        let err = |text: &str| match Config::parse(text, "config.yaml") {
            Err(e) => e.to_string(),
            Ok(c) => format!("accepted: {c:?}"),
        };
        let e = err("prices:\n  cpu_hours: 1\n");
        assert!(e.starts_with("config.yaml:2:"), "{e}");
        assert!(e.contains("cpu_hours"), "{e}");
        let e = err("prices:\n  cpu_hour: -1\n");
        assert!(e.contains("`prices.cpu_hour` is -1"), "{e}");
        let e = err("prices:\n  currency: \"US dollars\"\n");
        assert!(e.contains("currency code"), "{e}");
        let e = err("prices:\n  gpu_hour: cheap\n");
        assert!(e.starts_with("config.yaml:2:"), "{e}");
        let e = err("pricez: {}\n");
        assert!(e.contains("pricez"), "{e}");
    }
}
