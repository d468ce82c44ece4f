//! The run's DAG as a state machine: which steps are ready, which must be skipped.
//!
//! Pure: the scheduler loop feeds it outcomes and asks it what to do next.

/// Where one step stands within a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeState {
    Waiting,
    Running,
    Succeeded,
    Failed,
    /// Not run because a dependency did not succeed; holds that dependency's name.
    Skipped(String),
    Cancelled,
}

impl NodeState {
    fn is_done(&self) -> bool {
        !matches!(self, NodeState::Waiting | NodeState::Running)
    }
}

#[derive(Debug)]
pub(crate) struct Dag {
    names: Vec<String>,
    deps: Vec<Vec<usize>>,
    states: Vec<NodeState>,
}

impl Dag {
    /// `deps[i]` lists the indices step `i` depends on; steps are in plan order.
    pub(crate) fn new(names: Vec<String>, deps: Vec<Vec<usize>>) -> Dag {
        let states = vec![NodeState::Waiting; names.len()];
        Dag {
            names,
            deps,
            states,
        }
    }

    pub(crate) fn set(&mut self, i: usize, s: NodeState) {
        self.states[i] = s;
    }

    #[cfg(test)]
    pub(crate) fn state(&self, i: usize) -> &NodeState {
        &self.states[i]
    }

    /// Waiting steps whose dependencies all succeeded, in plan order.
    pub(crate) fn ready(&self) -> Vec<usize> {
        (0..self.names.len())
            .filter(|&i| {
                self.states[i] == NodeState::Waiting
                    && self.deps[i]
                        .iter()
                        .all(|&d| self.states[d] == NodeState::Succeeded)
            })
            .collect()
    }

    /// Marks every waiting step with a dependency that failed, was skipped or was
    /// cancelled as skipped, transitively; returns the newly skipped steps.
    pub(crate) fn propagate_skips(&mut self) -> Vec<(usize, String)> {
        let mut skipped = Vec::new();
        // Plan order is topological, so one pass reaches every descendant.
        for i in 0..self.names.len() {
            if self.states[i] != NodeState::Waiting {
                continue;
            }
            let blocker = self.deps[i].iter().find(|&&d| {
                matches!(
                    self.states[d],
                    NodeState::Failed | NodeState::Skipped(_) | NodeState::Cancelled
                )
            });
            if let Some(&d) = blocker {
                let name = self.names[d].clone();
                self.states[i] = NodeState::Skipped(name.clone());
                skipped.push((i, name));
            }
        }
        skipped
    }

    /// Marks all waiting steps cancelled; returns them.
    pub(crate) fn cancel_waiting(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, s) in self.states.iter_mut().enumerate() {
            if *s == NodeState::Waiting {
                *s = NodeState::Cancelled;
                out.push(i);
            }
        }
        out
    }

    pub(crate) fn all_done(&self) -> bool {
        self.states.iter().all(NodeState::is_done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a -> b -> d, a -> c, e independent
    fn diamond() -> Dag {
        Dag::new(
            ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
            vec![vec![], vec![0], vec![0], vec![1, 2], vec![]],
        )
    }

    #[test]
    fn roots_are_ready_first_then_children() {
        let mut g = diamond();
        assert_eq!(g.ready(), vec![0, 4]);
        g.set(0, NodeState::Running);
        assert_eq!(g.ready(), vec![4]);
        g.set(0, NodeState::Succeeded);
        assert_eq!(g.ready(), vec![1, 2, 4]);
        g.set(1, NodeState::Succeeded);
        assert_eq!(g.ready(), vec![2, 4], "d waits for c");
        g.set(2, NodeState::Succeeded);
        assert_eq!(g.ready(), vec![3, 4]);
    }

    #[test]
    fn failure_skips_descendants_but_not_independent_steps() {
        let mut g = diamond();
        g.set(0, NodeState::Succeeded);
        g.set(1, NodeState::Failed);
        let skipped = g.propagate_skips();
        assert_eq!(skipped, vec![(3, "b".to_string())]);
        assert_eq!(g.ready(), vec![2, 4]);
        g.set(2, NodeState::Succeeded);
        g.set(4, NodeState::Succeeded);
        assert!(g.all_done());
    }

    #[test]
    fn skips_are_transitive() {
        let mut g = diamond();
        g.set(0, NodeState::Failed);
        let skipped = g.propagate_skips();
        assert_eq!(
            skipped,
            vec![
                (1, "a".to_string()),
                (2, "a".to_string()),
                (3, "b".to_string())
            ]
        );
        assert_eq!(g.ready(), vec![4]);
    }

    #[test]
    fn cancel_marks_only_waiting_steps() {
        let mut g = diamond();
        g.set(0, NodeState::Running);
        assert_eq!(g.cancel_waiting(), vec![1, 2, 3, 4]);
        assert_eq!(*g.state(0), NodeState::Running);
        assert!(!g.all_done());
    }
}
