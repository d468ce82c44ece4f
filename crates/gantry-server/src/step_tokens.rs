//! Per-run tokens for steps' MLflow calls on a server with `--auth`: an editor token
//! scoped to the run's pipeline (its project), minted when the run starts and revoked
//! when it ends, so a step's `mlflow` client authenticates through the relay without
//! ever holding a user's token.

use crate::auth::{Role, issue_token};
use futures::future::BoxFuture;
use gantry_engine::StepTokens;
use gantry_store::Store;

pub struct RunScopedTokens {
    pub store: Store,
}

impl StepTokens for RunScopedTokens {
    fn issue<'a>(
        &'a self,
        run_id: &'a str,
        pipeline: &'a str,
    ) -> BoxFuture<'a, Result<(String, String), String>> {
        Box::pin(async move {
            let t = issue_token(
                &self.store,
                &format!("steps-of-{run_id}"),
                Role::Editor,
                Some(pipeline),
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok((t.record.id.clone(), t.secret))
        })
    }

    fn revoke<'a>(&'a self, token_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self
                .store
                .revoke_token(token_id, gantry_engine::now_ms())
                .await
            {
                tracing::warn!("could not revoke step token {token_id}: {e}");
            }
        })
    }
}
