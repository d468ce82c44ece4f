//! Resource allocation, pure: what resources cost (`prices`), what a group of step runs and
//! replicas used and what that cost (`usage`), and what a step should request given its
//! history (`recommend`), and which waiting step a shared machine admits next (`queue`). The store computes the sums; the CLI, the API and the engine decide
//! with these functions.

pub mod patch;
pub mod prices;
pub mod queue;
pub mod recommend;
pub mod usage;

pub use prices::{Config, ConfigError, Prices};
pub use recommend::{Evidence, Recommendation, Sample, recommend, usage_key, wasteful};
pub use usage::{Cost, Dimension, Line, Report, Sums};
