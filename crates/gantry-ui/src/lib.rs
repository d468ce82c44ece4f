//! Charts and pipeline graphs for gantry's server-rendered web UI, drawn as
//! inline SVG strings. Pure: no I/O, no async, nothing beyond std.
//!
//! ```text
//! svg::LineChart / svg::BarChart ── render() ──> "<svg …>…</svg>"   metrics, drift
//! dag::Graph ── dag::layout() ──> dag::Layout ── dag::render() ──> "<svg class=\"dag\" …>"
//! ```
//!
//! Every SVG is safe to paste into a page with a strict Content-Security-Policy:
//! no `style` attributes, no `<style>`, no `<script>`. Colours come from CSS
//! classes the page's stylesheet defines (`series-0` … `series-7`,
//! `status-*`, `grid`, `axis`, `edge`, …) and from `currentColor`; the
//! presentation attributes drawn here (`stroke="currentColor"`,
//! `fill="none"`, …) are only fallbacks that any stylesheet rule overrides.
//! Every text drawn is escaped with [`escape`], and the caller's id prefix is
//! reduced to `[A-Za-z0-9_-]` so that several SVGs on one page never clash.

#![warn(missing_docs)]

mod format;

pub mod dag;
pub mod svg;

pub use svg::escape;

#[cfg(test)]
mod testutil;
