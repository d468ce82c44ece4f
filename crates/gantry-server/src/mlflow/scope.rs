//! Project scoping of the MLflow API: what a token scoped to one project
//! (`Principal.project = Some(P)`) may see and change. Unscoped callers see everything, and
//! for them every check here returns at once without touching the store, so their answers
//! are exactly what they were before scoping existed.
//!
//! A pipeline run's project is its pipeline name, and the engine mirrors pipeline runs into
//! the experiment named after the pipeline, so for a caller of project P:
//!
//! - an experiment is P's when its name is `P` or starts with `P/`; P may only create (or
//!   rename to) such names (403 otherwise);
//! - a tracking run is P's when its experiment is;
//! - a registered model is P's when it carries the tag [`PROJECT_TAG`] = P (set on
//!   `registered-models/create` by a scoped caller, and never settable by one); an untagged
//!   model is P's when one of its versions was registered by a step of a pipeline run of P
//!   (`builtin/register`; the rule of `/api/v1/models`, narrowed to step-registered versions
//!   and exact run ids). A tag, when present, decides alone, so another project's pipeline
//!   registering into the same name does not open the model;
//! - model versions follow their model;
//! - a logged model (MLflow 3) is P's when its experiment is;
//! - a path of the artifact proxy is P's when its first segment is the id of one of P's
//!   experiments (`mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/...`).
//!
//! Everything else answers exactly as if it did not exist (MLflow's 404
//! RESOURCE_DOES_NOT_EXIST with the store's message). Searches drop what is not P's from
//! each page the store returns and keep the store's page tokens: paging through all pages
//! yields every visible item exactly once, but a page may hold fewer than `max_results`
//! items (even none) while a next page token is still given, which tells a patient caller
//! roughly how many hidden things lie between its own. `runs/search` drops the experiment
//! ids that are not P's before searching, as it ignores missing ones, so its pages are full.
//!
//! Names are global: creating a model whose name another project holds answers
//! RESOURCE_ALREADY_EXISTS, as MLflow's clients expect, and so reveals that the name exists.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use gantry_store::{
    Experiment, KeyValue, LoggedModel, RegisteredModel, RegisteredModelVersion, SearchQuery, Store,
    StoreError, TrackingRun, ViewType, tracking_limits,
};

use super::ApiError;
use crate::auth::Principal;

/// The registered-model tag naming the project a model belongs to.
pub const PROJECT_TAG: &str = "gantry.project";

// ----- the decisions (pure) ----------------------------------------------------------------

/// Whether an experiment named `name` belongs to `project`: named `project` or `project/…`.
pub fn experiment_is_projects(name: &str, project: &str) -> bool {
    name.strip_prefix(project)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The project a registered model's tags assign it to, if any.
pub fn tagged_project(tags: &[KeyValue]) -> Option<&str> {
    tags.iter()
        .find(|t| t.key == PROJECT_TAG)
        .map(|t| t.value.as_str())
}

/// The tags a model created by a caller of `project` is stored with: the given ones plus
/// [`PROJECT_TAG`] = `project`; None when they name another project in that tag.
pub fn tags_of_new_model(mut tags: Vec<KeyValue>, project: &str) -> Option<Vec<KeyValue>> {
    if tags
        .iter()
        .any(|t| t.key == PROJECT_TAG && t.value != project)
    {
        return None;
    }
    tags.retain(|t| t.key != PROJECT_TAG);
    tags.push(KeyValue::new(PROJECT_TAG, project));
    Some(tags)
}

/// The first segment of an artifact path below the proxy's root: the experiment id of
/// `<experiment_id>/<run_id>/artifacts/...`; None for the root itself.
pub fn artifact_experiment_id(rel: &Path) -> Option<&str> {
    rel.components().next().and_then(|c| c.as_os_str().to_str())
}

/// The store's own "not found" errors, so a hidden thing answers like a missing one.
pub(super) fn experiment_missing(id_or_name: &str) -> ApiError {
    ApiError::from(StoreError::NotFound {
        kind: "experiment",
        id: id_or_name.to_owned(),
    })
}

fn run_missing(run_id: &str) -> ApiError {
    ApiError::from(StoreError::NotFound {
        kind: "tracking run",
        id: run_id.to_owned(),
    })
}

fn logged_model_missing(model_id: &str) -> ApiError {
    ApiError::from(StoreError::NotFound {
        kind: "logged model",
        id: model_id.to_owned(),
    })
}

fn model_missing(name: &str) -> ApiError {
    ApiError::from(StoreError::NotFound {
        kind: "model",
        id: name.to_owned(),
    })
}

// ----- the checks handlers call ------------------------------------------------------------

/// The caller's project scope for one request.
pub struct Scope<'a> {
    store: &'a Store,
    /// None: an unscoped caller, who sees everything.
    project: Option<&'a str>,
}

impl<'a> Scope<'a> {
    pub fn new(store: &'a Store, who: &'a Principal) -> Scope<'a> {
        Scope {
            store,
            project: who.project.as_deref(),
        }
    }

    // ----- experiments ---------------------------------------------------------------------

    fn shows_experiment(&self, e: &Experiment) -> bool {
        self.project
            .is_none_or(|p| experiment_is_projects(&e.name, p))
    }

    /// `e`, looked up as `asked` (its id or name), or "not found" when it is not the caller's.
    pub fn experiment(&self, e: Experiment, asked: &str) -> Result<Experiment, ApiError> {
        if self.shows_experiment(&e) {
            Ok(e)
        } else {
            Err(experiment_missing(asked))
        }
    }

    /// Refuses (as missing) an experiment that is not the caller's.
    pub async fn require_experiment(&self, experiment_id: &str) -> Result<(), ApiError> {
        if self.project.is_none() {
            return Ok(());
        }
        let e = self.store.get_experiment(experiment_id).await?;
        self.experiment(e, experiment_id).map(drop)
    }

    /// Refuses (403) creating or renaming an experiment to a name outside the caller's project.
    pub fn may_name_experiment(&self, name: &str) -> Result<(), ApiError> {
        match self.project {
            Some(p) if !experiment_is_projects(name, p) => Err(ApiError::denied(format!(
                "'{name}' is not an experiment name of project '{p}': a token of project {p} \
                 may create experiments named {p} or {p}/…"
            ))),
            _ => Ok(()),
        }
    }

    pub fn retain_experiments(&self, experiments: &mut Vec<Experiment>) {
        experiments.retain(|e| self.shows_experiment(e));
    }

    /// Of the ids a run search names, those to search: the caller's, and those that do not
    /// exist (the store finds no runs in them, as before).
    pub async fn searchable_experiment_ids(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        if self.project.is_none() {
            return Ok(ids);
        }
        let mut kept = Vec::with_capacity(ids.len());
        for id in ids {
            match self.store.get_experiment(&id).await {
                Ok(e) if !self.shows_experiment(&e) => {}
                Ok(_) | Err(StoreError::NotFound { .. }) => kept.push(id),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(kept)
    }

    /// Ids of the caller's experiments, deleted ones included.
    async fn experiment_ids(&self) -> Result<HashSet<String>, ApiError> {
        let mut ids = HashSet::new();
        let mut query = SearchQuery {
            view: ViewType::All,
            max_results: Some(tracking_limits::SEARCH_MAX),
            ..SearchQuery::default()
        };
        loop {
            let page = self.store.search_experiments(&query).await?;
            ids.extend(
                page.items
                    .into_iter()
                    .filter(|e| self.shows_experiment(e))
                    .map(|e| e.experiment_id),
            );
            match page.next_page_token {
                Some(t) => query.page_token = Some(t),
                None => return Ok(ids),
            }
        }
    }

    // ----- runs ----------------------------------------------------------------------------

    /// `run`, looked up as `asked`, or "not found" when its experiment is not the caller's.
    pub async fn run(&self, run: TrackingRun, asked: &str) -> Result<TrackingRun, ApiError> {
        let Some(project) = self.project else {
            return Ok(run);
        };
        match self.store.get_experiment(&run.info.experiment_id).await {
            Ok(e) if experiment_is_projects(&e.name, project) => Ok(run),
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(run_missing(asked)),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses (as missing) a run whose experiment is not the caller's.
    pub async fn require_run(&self, run_id: &str) -> Result<(), ApiError> {
        if self.project.is_none() {
            return Ok(());
        }
        let run = self.store.get_tracking_run(run_id).await?;
        self.run(run, run_id).await.map(drop)
    }

    // ----- logged models -------------------------------------------------------------------

    /// `m`, looked up as `asked`, or "not found" when its experiment is not the caller's.
    pub async fn logged_model(&self, m: LoggedModel, asked: &str) -> Result<LoggedModel, ApiError> {
        let Some(project) = self.project else {
            return Ok(m);
        };
        match self.store.get_experiment(&m.experiment_id).await {
            Ok(e) if experiment_is_projects(&e.name, project) => Ok(m),
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(logged_model_missing(asked)),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses (as missing) a logged model whose experiment is not the caller's.
    pub async fn require_logged_model(&self, model_id: &str) -> Result<(), ApiError> {
        if self.project.is_none() {
            return Ok(());
        }
        let m = self.store.get_logged_model(model_id, true).await?;
        self.logged_model(m, model_id).await.map(drop)
    }

    // ----- registered models ---------------------------------------------------------------

    /// Whether the caller sees the model `name` with `tags`; `runs` remembers pipeline runs'
    /// projects across the calls of one request.
    async fn shows_model(
        &self,
        name: &str,
        tags: &[KeyValue],
        runs: &mut HashMap<String, bool>,
    ) -> Result<bool, ApiError> {
        let Some(project) = self.project else {
            return Ok(true);
        };
        if let Some(tagged) = tagged_project(tags) {
            return Ok(tagged == project);
        }
        let versions = match self.store.list_model_versions(name).await {
            Ok(v) => v,
            Err(StoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        // Only versions a step registered carry a gantry run id (MLflow's carry a tracking
        // run's), and only the exact id counts (the store's lookup also takes prefixes).
        for run_id in versions
            .iter()
            .filter(|v| v.step_run_id.is_some())
            .filter_map(|v| v.run_id.as_deref())
        {
            let ours = match runs.get(run_id) {
                Some(ours) => *ours,
                None => {
                    let ours = match self.store.get_run(run_id).await {
                        Ok(r) => r.id == run_id && r.pipeline == project,
                        Err(StoreError::NotFound { .. } | StoreError::Ambiguous { .. }) => false,
                        Err(e) => return Err(e.into()),
                    };
                    runs.insert(run_id.to_owned(), ours);
                    ours
                }
            };
            if ours {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `m`, or "not found" when it is not the caller's.
    pub async fn model(&self, m: RegisteredModel) -> Result<RegisteredModel, ApiError> {
        if self
            .shows_model(&m.name, &m.tags, &mut HashMap::new())
            .await?
        {
            Ok(m)
        } else {
            Err(model_missing(&m.name))
        }
    }

    /// Refuses (as missing) a model that is not the caller's; its versions, aliases and tags
    /// follow it.
    pub async fn require_model(&self, name: &str) -> Result<(), ApiError> {
        if self.project.is_none() {
            return Ok(());
        }
        let m = self.store.get_registered_model(name).await?;
        self.model(m).await.map(drop)
    }

    /// The tags a new model is stored with: a scoped caller's get [`PROJECT_TAG`].
    pub fn new_model_tags(&self, tags: Vec<KeyValue>) -> Result<Vec<KeyValue>, ApiError> {
        let Some(project) = self.project else {
            return Ok(tags);
        };
        tags_of_new_model(tags, project).ok_or_else(|| {
            ApiError::denied(format!(
                "a token of project {project} creates models of project {project}: the tag \
                 {PROJECT_TAG} cannot name another project"
            ))
        })
    }

    /// Refuses (403) a scoped caller's change of a model's [`PROJECT_TAG`].
    pub fn may_change_model_tag(&self, key: &str) -> Result<(), ApiError> {
        match self.project {
            Some(project) if key == PROJECT_TAG => Err(ApiError::denied(format!(
                "the tag {PROJECT_TAG} says which project a model belongs to: a token of \
                 project {project} cannot set or delete it (an unscoped admin can)"
            ))),
            _ => Ok(()),
        }
    }

    pub async fn retain_models(&self, models: &mut Vec<RegisteredModel>) -> Result<(), ApiError> {
        if self.project.is_none() {
            return Ok(());
        }
        let mut runs = HashMap::new();
        let mut kept = Vec::with_capacity(models.len());
        for m in models.drain(..) {
            if self.shows_model(&m.name, &m.tags, &mut runs).await? {
                kept.push(m);
            }
        }
        *models = kept;
        Ok(())
    }

    pub async fn retain_versions(
        &self,
        versions: &mut Vec<RegisteredModelVersion>,
    ) -> Result<(), ApiError> {
        if self.project.is_none() {
            return Ok(());
        }
        let mut runs = HashMap::new();
        let mut models: HashMap<String, bool> = HashMap::new();
        let mut kept = Vec::with_capacity(versions.len());
        for v in versions.drain(..) {
            let shown = match models.get(&v.name) {
                Some(shown) => *shown,
                None => {
                    let shown = match self.store.get_registered_model(&v.name).await {
                        Ok(m) => self.shows_model(&m.name, &m.tags, &mut runs).await?,
                        Err(StoreError::NotFound { .. }) => false,
                        Err(e) => return Err(e.into()),
                    };
                    models.insert(v.name.clone(), shown);
                    shown
                }
            };
            if shown {
                kept.push(v);
            }
        }
        *versions = kept;
        Ok(())
    }

    // ----- the artifact proxy --------------------------------------------------------------

    /// Whether the caller may touch `rel` (a checked path below the proxy's root): its first
    /// segment must be the id of one of the caller's experiments. The root itself is shown
    /// (its listing is filtered by [`Scope::retain_artifact_root`]).
    pub async fn shows_artifact_path(&self, rel: &Path) -> Result<bool, ApiError> {
        if self.project.is_none() {
            return Ok(true);
        }
        let Some(experiment_id) = artifact_experiment_id(rel) else {
            return Ok(rel.as_os_str().is_empty());
        };
        match self.store.get_experiment(experiment_id).await {
            // The id as the store writes it: "007" or "+7" name other directories than "7".
            Ok(e) => Ok(e.experiment_id == experiment_id && self.shows_experiment(&e)),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps, of the root's entries (experiment ids), the caller's experiments.
    pub async fn retain_artifact_root<T>(
        &self,
        entries: &mut Vec<T>,
        name: impl Fn(&T) -> &str,
    ) -> Result<(), ApiError> {
        if self.project.is_none() {
            return Ok(());
        }
        let ids = self.experiment_ids().await?;
        entries.retain(|e| ids.contains(name(e)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn experiments_of_a_project_are_named_after_it() {
        assert!(experiment_is_projects("alpha", "alpha"));
        assert!(experiment_is_projects("alpha/tuning", "alpha"));
        assert!(experiment_is_projects("alpha/a/b", "alpha"));
        assert!(experiment_is_projects("alpha/", "alpha"));
        assert!(!experiment_is_projects("alphabet", "alpha"));
        assert!(!experiment_is_projects("alph", "alpha"));
        assert!(!experiment_is_projects("beta", "alpha"));
        assert!(!experiment_is_projects("beta/alpha", "alpha"));
        assert!(!experiment_is_projects("Alpha", "alpha"));
        assert!(!experiment_is_projects("", "alpha"));
        assert!(!experiment_is_projects("Default", "alpha"));
    }

    #[test]
    fn a_models_project_is_its_tag() {
        let tags = vec![
            KeyValue::new("team", "x"),
            KeyValue::new(PROJECT_TAG, "alpha"),
        ];
        assert_eq!(tagged_project(&tags), Some("alpha"));
        assert_eq!(tagged_project(&tags[..1]), None);
    }

    #[test]
    fn new_models_get_the_creators_project() {
        let tags = tags_of_new_model(vec![KeyValue::new("team", "x")], "alpha").unwrap();
        assert_eq!(
            tags,
            vec![
                KeyValue::new("team", "x"),
                KeyValue::new(PROJECT_TAG, "alpha")
            ]
        );
        let same = tags_of_new_model(vec![KeyValue::new(PROJECT_TAG, "alpha")], "alpha").unwrap();
        assert_eq!(same, vec![KeyValue::new(PROJECT_TAG, "alpha")]);
        assert!(tags_of_new_model(vec![KeyValue::new(PROJECT_TAG, "beta")], "alpha").is_none());
    }

    #[test]
    fn artifact_paths_start_with_their_experiment() {
        let p = PathBuf::from("12/abc/artifacts/model.pkl");
        assert_eq!(artifact_experiment_id(&p), Some("12"));
        assert_eq!(artifact_experiment_id(Path::new("12")), Some("12"));
        assert_eq!(artifact_experiment_id(Path::new("")), None);
    }
}
