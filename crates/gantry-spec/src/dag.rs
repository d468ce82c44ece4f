//! The step graph: edges run from a dependency to the step that needs it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

pub(crate) struct Dag {
    graph: DiGraph<(), ()>,
}

impl Dag {
    /// Nodes are the step indices `0..steps`, in declaration order.
    pub(crate) fn new(steps: usize) -> Self {
        let mut graph = DiGraph::with_capacity(steps, steps);
        for _ in 0..steps {
            graph.add_node(());
        }
        Self { graph }
    }

    /// `step` runs after `dependency`. Self-dependencies are the caller's to reject.
    pub(crate) fn add_dependency(&mut self, step: usize, dependency: usize) {
        if step != dependency {
            self.graph
                .update_edge(NodeIndex::new(dependency), NodeIndex::new(step), ());
        }
    }

    fn successors(&self, node: usize) -> Vec<usize> {
        let mut next: Vec<usize> = self
            .graph
            .neighbors_directed(NodeIndex::new(node), Direction::Outgoing)
            .map(NodeIndex::index)
            .collect();
        next.sort_unstable();
        next
    }

    /// One cycle per strongly connected component, as `[a, b, …, a]` in data-flow
    /// order and starting at the earliest-declared step, so reports are stable.
    pub(crate) fn cycles(&self) -> Vec<Vec<usize>> {
        let mut cycles: Vec<Vec<usize>> = tarjan_scc(&self.graph)
            .into_iter()
            .filter(|scc| scc.len() > 1)
            .filter_map(|scc| {
                let members: HashSet<usize> = scc.iter().map(|n| n.index()).collect();
                let start = *members.iter().min()?;
                self.cycle_through(start, &members)
            })
            .collect();
        cycles.sort();
        cycles
    }

    /// Shortest way from `start` back to itself inside one component (BFS).
    fn cycle_through(&self, start: usize, members: &HashSet<usize>) -> Option<Vec<usize>> {
        let mut parent = vec![None; self.graph.node_count()];
        let mut queue = VecDeque::from([start]);
        let mut seen = HashSet::from([start]);
        while let Some(node) = queue.pop_front() {
            for next in self.successors(node) {
                if next == start {
                    let mut chain = Vec::new();
                    let mut cur = node;
                    while cur != start {
                        chain.push(cur);
                        cur = parent[cur]?;
                    }
                    chain.reverse();
                    let mut path = vec![start];
                    path.extend(chain);
                    path.push(start);
                    return Some(path);
                }
                if members.contains(&next) && seen.insert(next) {
                    parent[next] = Some(node);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Kahn's algorithm; among ready steps the earliest-declared goes first, so the
    /// order is deterministic and follows the file where the graph allows.
    pub(crate) fn topological_order(&self) -> Option<Vec<usize>> {
        let n = self.graph.node_count();
        let mut indegree: Vec<usize> = (0..n)
            .map(|i| {
                self.graph
                    .neighbors_directed(NodeIndex::new(i), Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|i| indegree[*i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(node)) = ready.pop() {
            order.push(node);
            for next in self.successors(node) {
                indegree[next] -= 1;
                if indegree[next] == 0 {
                    ready.push(Reverse(next));
                }
            }
        }
        (order.len() == n).then_some(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_are_broken_by_declaration_order() {
        // 0 -> 2, 1 -> 2, 3 independent, 4 needs 3
        let mut dag = Dag::new(5);
        dag.add_dependency(2, 0);
        dag.add_dependency(2, 1);
        dag.add_dependency(4, 3);
        assert_eq!(dag.topological_order(), Some(vec![0, 1, 2, 3, 4]));
        let mut dag = Dag::new(3);
        dag.add_dependency(0, 2);
        dag.add_dependency(1, 2);
        assert_eq!(dag.topological_order(), Some(vec![2, 0, 1]));
    }

    #[test]
    fn cycles_are_reported_in_data_flow_order_from_the_earliest_step() {
        let mut dag = Dag::new(4);
        dag.add_dependency(1, 0); // 0 -> 1
        dag.add_dependency(2, 1); // 1 -> 2
        dag.add_dependency(0, 2); // 2 -> 0
        dag.add_dependency(3, 0);
        assert_eq!(dag.topological_order(), None);
        assert_eq!(dag.cycles(), vec![vec![0, 1, 2, 0]]);
    }

    #[test]
    fn two_step_cycle_and_separate_components() {
        let mut dag = Dag::new(5);
        dag.add_dependency(0, 1);
        dag.add_dependency(1, 0);
        dag.add_dependency(3, 4);
        dag.add_dependency(4, 3);
        assert_eq!(dag.cycles(), vec![vec![0, 1, 0], vec![3, 4, 3]]);
    }
}
