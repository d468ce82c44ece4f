//! Pipeline graphs: a layered (Sugiyama-style) [`layout`] and its SVG
//! [`render`]ing, left to right.
//!
//! The layout, step by step, each linear in nodes + edges (times a fixed
//! number of sweeps), so a thousand nodes take milliseconds:
//!
//! 1. edges to unknown ids, self-loops and repeats are dropped;
//! 2. cycles are broken by reversing the back edges of a depth-first search
//!    (roots and children in input order), so the result is deterministic;
//! 3. layer = longest path from a source (layers are columns);
//! 4. edges spanning several layers get a virtual point in each layer between;
//! 5. each layer is ordered by barycenter sweeps, down and up, keeping the
//!    order with fewest crossings (ties by input index);
//! 6. y coordinates: each node is pulled towards its neighbours' mean while
//!    keeping the order and the spacing (isotonic regression), rounded to
//!    whole pixels; x: columns as wide as their widest node.
//!
//! The markup uses the classes `dag` (the `<svg>`), `edges`, `edge`,
//! `nodes`, `node`, `status-{status}`, `label`, `sub` and `empty`.

use std::collections::{HashMap, HashSet};

use crate::format::{coord, escape_into, push_coord, sanitize_id, text_width, truncate};

/// A pipeline step to draw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// Identifies the node in [`Graph::edges`] (the first node wins when ids repeat).
    pub id: String,
    /// Drawn in the box (shortened with `…` when long; the full text is in
    /// the node's `<title>`).
    pub label: String,
    /// A second, smaller line (duration, cache hit, …).
    pub sublabel: Option<String>,
    /// Becomes the class `status-{status}`, reduced to `[a-z0-9-]`.
    pub status: String,
    /// Makes the node a link. Only same-site references are kept: starting
    /// with `/` (but not `//`), `#` or `?`; others (`javascript:`, `https:`,
    /// `//host`) are dropped.
    pub href: Option<String>,
}

/// Steps and the dependencies between them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// The steps, in a stable order (it breaks ties in the layout).
    pub nodes: Vec<Node>,
    /// (from, to) by node id: `from` runs before `to`. Unknown ids,
    /// self-loops and repeats are ignored; cycles are tolerated.
    pub edges: Vec<(String, String)>,
}

/// Where everything goes, in SVG user units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// Width of the whole picture, margins included.
    pub width: f64,
    /// Height of the whole picture, margins included.
    pub height: f64,
    /// One per [`Graph::nodes`] entry, in the same order.
    pub nodes: Vec<PlacedNode>,
    /// One per kept edge (see [`Graph::edges`]), in input order.
    pub edges: Vec<PlacedEdge>,
}

/// A node's box.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedNode {
    /// The node's id.
    pub id: String,
    /// Column, from 0 (the sources) rightwards.
    pub layer: usize,
    /// Rank within the column, from 0 at the top (nodes only, virtual
    /// points not counted).
    pub order: usize,
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Box width (from the label's length, clamped).
    pub w: f64,
    /// Box height.
    pub h: f64,
}

/// An edge's route.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedEdge {
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// Polyline from the source box's side to the target box's side: two
    /// points for neighbouring columns, plus two (entering and leaving) for
    /// each column crossed. Edges that close a cycle run right to left.
    pub points: Vec<(f64, f64)>,
}

const MARGIN: f64 = 10.0;
const COLUMN_GAP: f64 = 56.0;
const NODE_GAP: f64 = 18.0;
const VIRTUAL_GAP: f64 = 10.0;
const LABEL_PX: f64 = 12.0;
const SUB_PX: f64 = 10.0;
const PAD_X: f64 = 12.0;
const MIN_W: f64 = 72.0;
const MAX_W: f64 = 220.0;
/// Most barycenter sweeps (each is followed by a crossing count).
const SWEEPS: usize = 8;
/// Sweeps × (items + links) allowed before fewer sweeps are made.
const SWEEP_BUDGET: usize = 1_500_000;
/// Passes that pull nodes towards their neighbours' height.
const ALIGN_PASSES: usize = 6;

/// Box size of a node: wide enough for its label (clamped), taller with a sublabel.
fn node_size(node: &Node) -> (f64, f64) {
    let label = text_width(&node.label, LABEL_PX);
    let sub = node
        .sublabel
        .as_deref()
        .map_or(0.0, |s| text_width(s, SUB_PX));
    let w = (label.max(sub) + 2.0 * PAD_X).ceil().clamp(MIN_W, MAX_W);
    let h = if node.sublabel.as_deref().is_some_and(|s| !s.is_empty()) {
        44.0
    } else {
        30.0
    };
    (w, h)
}

/// Edges reversed to break cycles: the back edges of a depth-first search
/// from each unvisited node in index order, children in edge order.
fn back_edges(n: usize, edges: &[(usize, usize)]) -> Vec<bool> {
    let mut out: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for (k, &(u, v)) in edges.iter().enumerate() {
        out[u].push((v, k));
    }
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; n];
    let mut reversed = vec![false; edges.len()];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if state[root] != NEW {
            continue;
        }
        state[root] = OPEN;
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (u, next) = *top;
            if let Some(&(v, k)) = out[u].get(next) {
                top.1 += 1;
                match state[v] {
                    NEW => {
                        state[v] = OPEN;
                        stack.push((v, 0));
                    }
                    OPEN => reversed[k] = true,
                    _ => {}
                }
            } else {
                state[u] = DONE;
                stack.pop();
            }
        }
    }
    reversed
}

/// Longest path from a source, for an acyclic edge list.
fn longest_path_layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for &(u, v) in edges {
        out[u].push(v);
        indegree[v] += 1;
    }
    let mut layer = vec![0usize; n];
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&v| indegree[v] == 0).collect();
    while let Some(u) = queue.pop_front() {
        for &v in &out[u] {
            layer[v] = layer[v].max(layer[u] + 1);
            indegree[v] -= 1;
            if indegree[v] == 0 {
                queue.push_back(v);
            }
        }
    }
    layer
}

/// Neighbour lists in one flat array (compressed rows), in link order.
struct Adjacency {
    start: Vec<usize>,
    list: Vec<usize>,
}

impl Adjacency {
    /// Groups `links` (a, b) by a: the neighbours of a are its b's.
    fn new(items: usize, links: &[(usize, usize)], flip: bool) -> Self {
        let key = |&(a, b): &(usize, usize)| if flip { (b, a) } else { (a, b) };
        let mut start = vec![0; items + 1];
        for link in links {
            start[key(link).0 + 1] += 1;
        }
        for i in 0..items {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut list = vec![0; links.len()];
        for link in links {
            let (a, b) = key(link);
            list[fill[a]] = b;
            fill[a] += 1;
        }
        Adjacency { start, list }
    }

    fn of(&self, item: usize) -> &[usize] {
        &self.list[self.start[item]..self.start[item + 1]]
    }
}

/// The layered graph: real nodes `0..n`, virtual points after; links only
/// between neighbouring layers.
struct Layered {
    layer_of: Vec<usize>,
    /// Neighbours in the layer above (left).
    up: Adjacency,
    /// Neighbours in the layer below (right).
    down: Adjacency,
    /// Items of each layer, top to bottom.
    layers: Vec<Vec<usize>>,
}

impl Layered {
    /// `links` (a, b) join an item of one layer to one of the next.
    fn new(layer_of: Vec<usize>, links: &[(usize, usize)], layers: Vec<Vec<usize>>) -> Self {
        let items = layer_of.len();
        Layered {
            up: Adjacency::new(items, links, true),
            down: Adjacency::new(items, links, false),
            layer_of,
            layers,
        }
    }

    fn item_count(&self) -> usize {
        self.layer_of.len()
    }

    /// Positions of every item within its layer.
    fn positions(&self) -> Vec<usize> {
        let mut pos = vec![0; self.item_count()];
        for layer in &self.layers {
            for (i, &item) in layer.iter().enumerate() {
                pos[item] = i;
            }
        }
        pos
    }

    /// Total edge crossings between neighbouring layers.
    fn crossings(&self, pos: &[usize]) -> u64 {
        let mut total = 0;
        let mut targets = Vec::new();
        let mut tree = Vec::new();
        for pair in self.layers.windows(2) {
            let [upper, lower] = pair else { continue };
            // Links sorted by (upper position, lower position); crossings are
            // the inversions among the lower positions (Fenwick tree).
            targets.clear();
            for &u in upper {
                let start = targets.len();
                targets.extend(self.down.of(u).iter().map(|&v| pos[v]));
                targets[start..].sort_unstable();
            }
            tree.clear();
            tree.resize(lower.len() + 1, 0u64);
            for (seen, &t) in targets.iter().enumerate() {
                // Earlier targets at or above t in the order (not crossing).
                let mut not_after = 0;
                let mut i = t + 1;
                while i > 0 {
                    not_after += tree[i];
                    i &= i - 1;
                }
                total += seen as u64 - not_after;
                let mut i = t + 1;
                while i < tree.len() {
                    tree[i] += 1;
                    i += i & i.wrapping_neg();
                }
            }
        }
        total
    }

    /// Barycenter sweeps, alternately down and up, keeping the order with
    /// fewest crossings; stops early once two sweeps in a row gain nothing.
    fn order(&mut self, sweeps: usize) {
        let mut pos = self.positions();
        let mut best_crossings = self.crossings(&pos);
        let mut best = self.layers.clone();
        let last = self.layers.len().saturating_sub(1);
        let mut keys: Vec<(f64, usize)> = Vec::new();
        let mut idle = 0;
        for sweep in 0..sweeps {
            if best_crossings == 0 || idle >= 2 {
                break;
            }
            let downwards = sweep % 2 == 0;
            for step in 0..last {
                let (l, other) = if downwards {
                    (step + 1, step)
                } else {
                    (last - 1 - step, last - step)
                };
                let adjacency = if downwards { &self.up } else { &self.down };
                // Positions as fractions of their layer, so that layers of
                // different sizes (and items without neighbours there, which
                // keep their own place) compare fairly.
                let own_len = self.layers[l].len() as f64;
                let other_len = self.layers[other].len() as f64;
                keys.clear();
                keys.extend(self.layers[l].iter().map(|&item| {
                    let adj = adjacency.of(item);
                    let key = if adj.is_empty() {
                        (pos[item] as f64 + 0.5) / own_len
                    } else {
                        let sum: usize = adj.iter().map(|&a| pos[a]).sum();
                        (sum as f64 / adj.len() as f64 + 0.5) / other_len
                    };
                    (key, item)
                }));
                keys.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for (i, (slot, &(_, item))) in self.layers[l].iter_mut().zip(&keys).enumerate() {
                    *slot = item;
                    pos[item] = i;
                }
            }
            let c = self.crossings(&pos);
            if c < best_crossings {
                best_crossings = c;
                best.clone_from(&self.layers);
                idle = 0;
            } else {
                idle += 1;
            }
        }
        self.layers = best;
    }
}

/// Places centres in order with at least `gap[i]` between centre i-1 and
/// centre i (`gap[0]` is ignored), as near `desired` as possible in the
/// weighted least-squares sense: pool-adjacent-violators on the problem
/// shifted by the cumulative gaps. The result replaces `out`.
fn place_in_order(
    desired: &[f64],
    weight: &[f64],
    gap: &[f64],
    blocks: &mut Vec<(f64, f64, usize)>,
    out: &mut Vec<f64>,
) {
    blocks.clear();
    let mut offset = 0.0;
    for (i, (&d, &w)) in desired.iter().zip(weight).enumerate() {
        if i > 0 {
            offset += gap[i];
        }
        // Blocks of (sum of weights, weighted sum of shifted targets, items).
        let mut block = (w, w * (d - offset), 1);
        while let Some(&(bw, bs, bc)) = blocks.last() {
            if bs / bw <= block.1 / block.0 {
                break;
            }
            block = (block.0 + bw, block.1 + bs, block.2 + bc);
            blocks.pop();
        }
        blocks.push(block);
    }
    out.clear();
    let mut offset = 0.0;
    for &(w, s, count) in blocks.iter() {
        for _ in 0..count {
            if !out.is_empty() {
                offset += gap[out.len()];
            }
            out.push(s / w + offset);
        }
    }
}

/// Computes the layered layout of `g` (see the module docs for the steps).
/// An empty graph gives an empty 0 × 0 layout.
pub fn layout(g: &Graph) -> Layout {
    let n = g.nodes.len();
    if n == 0 {
        return Layout::default();
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, node) in g.nodes.iter().enumerate() {
        index.entry(node.id.as_str()).or_insert(i);
    }
    let mut seen = HashSet::with_capacity(g.edges.len());
    let edges: Vec<(usize, usize)> = g
        .edges
        .iter()
        .filter_map(|(a, b)| Some((*index.get(a.as_str())?, *index.get(b.as_str())?)))
        .filter(|&(u, v)| u != v && seen.insert((u, v)))
        .collect();
    let reversed = back_edges(n, &edges);
    let acyclic: Vec<(usize, usize)> = edges
        .iter()
        .zip(&reversed)
        .map(|(&(u, v), &r)| if r { (v, u) } else { (u, v) })
        .collect();
    let layer = longest_path_layers(n, &acyclic);
    let layer_count = layer.iter().max().map_or(1, |m| m + 1);

    // Virtual points for long edges: one chain (a run of consecutive item
    // numbers) per distinct acyclic edge.
    let mut layer_of = layer.clone();
    let mut links = Vec::with_capacity(acyclic.len());
    let mut chains: HashMap<(usize, usize), (usize, usize)> = HashMap::with_capacity(acyclic.len());
    for &(u, v) in &acyclic {
        if chains.contains_key(&(u, v)) {
            continue;
        }
        let first = layer_of.len();
        let mut prev = u;
        for l in layer[u] + 1..layer[v] {
            let item = layer_of.len();
            layer_of.push(l);
            links.push((prev, item));
            prev = item;
        }
        links.push((prev, v));
        chains.insert((u, v), (first, layer_of.len()));
    }
    let items = layer_of.len();
    let mut g2 = Layered::new(layer_of, &links, vec![Vec::new(); layer_count]);

    // Initial order: depth-first from the nodes in index order, so that
    // what hangs together starts together.
    let mut visited = vec![false; items];
    let mut stack = Vec::new();
    for root in 0..n {
        if visited[root] {
            continue;
        }
        stack.push(root);
        while let Some(item) = stack.pop() {
            if visited[item] {
                continue;
            }
            visited[item] = true;
            g2.layers[g2.layer_of[item]].push(item);
            stack.extend(g2.down.of(item).iter().rev().filter(|&&d| !visited[d]));
        }
    }
    // Fewer sweeps for graphs that long edges made huge: a bounded cost.
    let work = items + links.len();
    let sweeps = (SWEEP_BUDGET / work.max(1)).clamp(2, SWEEPS);
    g2.order(sweeps);

    // Sizes; virtual points are 0 high.
    let sizes: Vec<(f64, f64)> = g.nodes.iter().map(node_size).collect();
    let height_of = |item: usize| if item < n { sizes[item].1 } else { 0.0 };
    let gap_between = |a: usize, b: usize| {
        let space = if a < n && b < n {
            NODE_GAP
        } else {
            VIRTUAL_GAP
        };
        (height_of(a) + height_of(b)) / 2.0 + space
    };

    // y: centres, packed and centred per layer, then aligned with neighbours.
    let mut y = vec![0.0; items];
    let gaps: Vec<Vec<f64>> = g2
        .layers
        .iter()
        .map(|layer| {
            (0..layer.len())
                .map(|i| {
                    if i == 0 {
                        0.0
                    } else {
                        gap_between(layer[i - 1], layer[i])
                    }
                })
                .collect()
        })
        .collect();
    for (layer, gap) in g2.layers.iter().zip(&gaps) {
        let mut at = 0.0;
        for (&item, &g) in layer.iter().zip(gap) {
            at += g;
            y[item] = at;
        }
        let (Some(&first), Some(&last)) = (layer.first(), layer.last()) else {
            continue;
        };
        let middle = (y[first] - height_of(first) / 2.0 + y[last] + height_of(last) / 2.0) / 2.0;
        for &item in layer {
            y[item] -= middle;
        }
    }
    let mut desired = Vec::new();
    let mut weights = Vec::new();
    let mut blocks = Vec::new();
    let mut placed = Vec::new();
    let last = layer_count - 1;
    for pass in 0..ALIGN_PASSES {
        let downwards = pass % 2 == 0;
        for step in 0..last {
            let l = if downwards { step + 1 } else { last - 1 - step };
            let adjacency = if downwards { &g2.up } else { &g2.down };
            let layer = &g2.layers[l];
            desired.clear();
            weights.clear();
            for &item in layer {
                let adj = adjacency.of(item);
                desired.push(if adj.is_empty() {
                    y[item]
                } else {
                    adj.iter().map(|&a| y[a]).sum::<f64>() / adj.len() as f64
                });
                // Virtual points weigh more: long edges run straight.
                weights.push(if item < n { 1.0 } else { 2.0 });
            }
            place_in_order(&desired, &weights, &gaps[l], &mut blocks, &mut placed);
            for (&item, &v) in layer.iter().zip(&placed) {
                y[item] = v;
            }
        }
    }
    // Whole pixels (every height is even, so tops are whole too), then shift
    // everything below the top margin.
    for v in &mut y {
        *v = v.round();
    }
    let top = (0..items)
        .map(|i| y[i] - height_of(i) / 2.0)
        .fold(f64::INFINITY, f64::min);
    let shift = MARGIN - top;
    for v in &mut y {
        *v += shift;
    }
    let bottom = (0..items)
        .map(|i| y[i] + height_of(i) / 2.0)
        .fold(0.0, f64::max);

    // x: columns as wide as their widest node.
    let mut column_w = vec![0.0f64; layer_count];
    for (i, size) in sizes.iter().enumerate() {
        column_w[layer[i]] = column_w[layer[i]].max(size.0);
    }
    let mut column_x = Vec::with_capacity(layer_count);
    let mut at = MARGIN;
    for w in &column_w {
        column_x.push(at);
        at += w + COLUMN_GAP;
    }
    let width = at - COLUMN_GAP + MARGIN;

    let mut order_in_layer = vec![0; n];
    for layer in &g2.layers {
        for (rank, &item) in layer.iter().filter(|&&i| i < n).enumerate() {
            order_in_layer[item] = rank;
        }
    }
    let nodes: Vec<PlacedNode> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let (w, h) = sizes[i];
            let l = layer[i];
            PlacedNode {
                id: node.id.clone(),
                layer: l,
                order: order_in_layer[i],
                x: column_x[l] + ((column_w[l] - w) / 2.0).round(),
                y: y[i] - h / 2.0,
                w,
                h,
            }
        })
        .collect();

    let edges = edges
        .iter()
        .zip(&reversed)
        .map(|(&(u, v), &r)| {
            let (a, b) = if r { (v, u) } else { (u, v) };
            let (na, nb) = (&nodes[a], &nodes[b]);
            let mut points = vec![(na.x + na.w, y[a])];
            let (first, end) = chains.get(&(a, b)).copied().unwrap_or((0, 0));
            for (&l, &at) in g2.layer_of[first..end].iter().zip(&y[first..end]) {
                points.push((column_x[l], at));
                points.push((column_x[l] + column_w[l], at));
            }
            points.push((nb.x, y[b]));
            if r {
                points.reverse();
            }
            PlacedEdge {
                from: g.nodes[u].id.clone(),
                to: g.nodes[v].id.clone(),
                points,
            }
        })
        .collect();

    Layout {
        width,
        height: bottom + MARGIN,
        nodes,
        edges,
    }
}

/// `status` as a class suffix: ASCII lowercased, anything outside
/// `[a-z0-9-]` turned into `-`; empty becomes `unknown`. The node's class is
/// `status-{status_class(status)}`.
pub fn status_class(status: &str) -> String {
    let s: String = status
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "unknown".to_owned()
    } else {
        s
    }
}

/// `href` when it stays on this site (`/path` but not `//host`, `#frag`,
/// `?query`) and holds no control characters; `None` otherwise.
pub fn safe_href(href: &str) -> Option<&str> {
    let same_site = match href.as_bytes() {
        [b'/', b'/' | b'\\', ..] => false,
        [b'/' | b'#' | b'?', ..] => true,
        _ => false,
    };
    (same_site && !href.chars().any(char::is_control)).then_some(href)
}

/// Draws `g` as `<svg class="dag">`: nodes as `<g class="node status-…">`
/// boxes (`<rect rx="4">`, label, optional `<text class="sub">`, a `<title>`
/// with the full texts), links where [`Node::href`] is safe, edges as
/// `<path class="edge">` curves with an arrow (`marker-end="url(#{id}-arrow)"`).
/// `id` prefixes the element ids (reduced to `[A-Za-z0-9_-]`), `title` is
/// the accessible title. An empty graph draws a small "no steps" picture.
pub fn render(g: &Graph, id: &str, title: &str) -> String {
    let id = sanitize_id(id);
    let placed = layout(g);
    let (w, h) = if g.nodes.is_empty() {
        (200.0, 40.0)
    } else {
        (placed.width, placed.height)
    };
    let (ws, hs) = (coord(w), coord(h));
    let mut out = String::with_capacity(1024 + g.nodes.len() * 400 + g.edges.len() * 160);
    // A graph whose nodes are links is a group of links, not an image (an image's content
    // is presentational, so links inside it would be hidden from assistive technology).
    let role = if g
        .nodes
        .iter()
        .any(|n| n.href.as_deref().and_then(safe_href).is_some())
    {
        "group"
    } else {
        "img"
    };
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {ws} {hs}\" role=\"{role}\" \
         aria-labelledby=\"{id}-title\" class=\"dag\" width=\"{ws}\" height=\"{hs}\" \
         font-family=\"system-ui, sans-serif\" font-size=\"12\"><title id=\"{id}-title\">"
    ));
    escape_into(&mut out, title);
    out.push_str("</title>");
    if g.nodes.is_empty() {
        out.push_str(
            "<text class=\"empty\" x=\"100\" y=\"24\" text-anchor=\"middle\" fill=\"currentColor\">no steps</text></svg>",
        );
        return out;
    }
    out.push_str(&format!(
        "<defs><marker id=\"{id}-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"8\" markerHeight=\"8\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">\
         <path d=\"M0,0L10,5L0,10z\" fill=\"currentColor\"/></marker></defs>"
    ));

    out.push_str("<g class=\"edges\">");
    for edge in &placed.edges {
        out.push_str("<path class=\"edge\" d=\"");
        push_curve(&mut out, &edge.points);
        out.push_str(&format!(
            "\" fill=\"none\" stroke=\"currentColor\" marker-end=\"url(#{id}-arrow)\"><title>"
        ));
        escape_into(&mut out, &edge.from);
        out.push_str(" → ");
        escape_into(&mut out, &edge.to);
        out.push_str("</title></path>");
    }
    out.push_str("</g><g class=\"nodes\">");
    for (node, p) in g.nodes.iter().zip(&placed.nodes) {
        let href = node.href.as_deref().and_then(safe_href);
        if let Some(href) = href {
            out.push_str("<a href=\"");
            escape_into(&mut out, href);
            out.push_str("\">");
        }
        out.push_str(&format!(
            "<g class=\"node status-{}\" data-node=\"",
            status_class(&node.status)
        ));
        escape_into(&mut out, &node.id);
        out.push_str("\"><title>");
        escape_into(&mut out, &node.label);
        if let Some(sub) = node.sublabel.as_deref().filter(|s| !s.is_empty()) {
            out.push('\n');
            escape_into(&mut out, sub);
        }
        if !node.status.is_empty() {
            out.push_str("\nstatus: ");
            escape_into(&mut out, &node.status);
        }
        out.push_str("</title><rect x=\"");
        push_coord(&mut out, p.x);
        out.push_str("\" y=\"");
        push_coord(&mut out, p.y);
        out.push_str("\" width=\"");
        push_coord(&mut out, p.w);
        out.push_str("\" height=\"");
        push_coord(&mut out, p.h);
        out.push_str("\" rx=\"4\" fill=\"none\" stroke=\"currentColor\" pointer-events=\"all\"/>");
        let centre = p.x + p.w / 2.0;
        let inner = p.w - 2.0 * PAD_X + 4.0;
        let sub = node.sublabel.as_deref().filter(|s| !s.is_empty());
        let label_y = if sub.is_some() {
            p.y + 18.0
        } else {
            p.y + p.h / 2.0 + 4.0
        };
        let max_chars = (inner / (LABEL_PX * 0.6)).floor().max(1.0) as usize;
        out.push_str(&format!(
            "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"currentColor\">",
            coord(centre),
            coord(label_y)
        ));
        escape_into(&mut out, &truncate(&node.label, max_chars));
        out.push_str("</text>");
        if let Some(sub) = sub {
            let max_chars = (inner / (SUB_PX * 0.6)).floor().max(1.0) as usize;
            out.push_str(&format!(
                "<text class=\"sub\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" \
                 fill=\"currentColor\">",
                coord(centre),
                coord(p.y + 34.0)
            ));
            escape_into(&mut out, &truncate(sub, max_chars));
            out.push_str("</text>");
        }
        out.push_str("</g>");
        if href.is_some() {
            out.push_str("</a>");
        }
    }
    out.push_str("</g></svg>");
    out
}

/// `M p0 C … p1 C … p2 …`: a cubic between each pair of points, leaving and
/// arriving horizontally, so edges flow smoothly between columns.
fn push_curve(out: &mut String, points: &[(f64, f64)]) {
    let Some(&(x, y)) = points.first() else {
        return;
    };
    out.push('M');
    push_coord(out, x);
    out.push(',');
    push_coord(out, y);
    for pair in points.windows(2) {
        let [(x0, y0), (x1, y1)] = [pair[0], pair[1]];
        if y0 == y1 {
            out.push('L');
        } else {
            let mid = (x0 + x1) / 2.0;
            out.push('C');
            for (x, y) in [(mid, y0), (mid, y1)] {
                push_coord(out, x);
                out.push(',');
                push_coord(out, y);
                out.push(' ');
            }
        }
        push_coord(out, x1);
        out.push(',');
        push_coord(out, y1);
    }
}

#[cfg(test)]
#[path = "dag_tests.rs"]
mod tests;
