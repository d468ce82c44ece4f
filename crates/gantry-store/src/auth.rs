//! API tokens and the audit log of the server.
//!
//! A token is stored as the sha256 of its secret, never the secret itself; the server
//! hashes what a client presents and [`Store::verify_token`] compares the two in constant
//! time. The audit log is append-only: one row per write made through the server.

use serde::Serialize;
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::store::{Store, column};

/// A stored API token (without its secret, which only its creator ever saw).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    /// "viewer", "editor" or "admin".
    pub role: String,
    /// A token scoped to a project sees and changes only that project.
    pub project: Option<String>,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    /// Hex sha256 of the secret; never serialized.
    #[serde(skip)]
    pub secret_sha256: String,
}

impl TokenRecord {
    pub fn revoked(&self) -> bool {
        self.revoked_at_ms.is_some()
    }
}

/// What [`Store::create_token`] needs; the caller generates the id and hashes the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    pub id: String,
    pub name: String,
    pub secret_sha256: String,
    pub role: String,
    pub project: Option<String>,
    pub now_ms: i64,
}

/// One write made through the server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub ts_ms: i64,
    /// Token name (never its secret), or "local" in single-user mode.
    pub principal: String,
    /// e.g. "run.submit", "run.cancel", "token.create".
    pub action: String,
    /// What was written: a run id, a token name, a model, …
    pub target: String,
    pub detail: serde_json::Value,
}

pub(crate) const TOKEN_COLUMNS: &str =
    "id, name, secret_sha256, role, project, created_at_ms, last_used_at_ms, revoked_at_ms";

impl Store {
    /// Stores a new token. A name already in use (even by a revoked token) is refused.
    pub async fn create_token(&self, t: &NewToken) -> Result<TokenRecord, StoreError> {
        if !matches!(t.role.as_str(), "viewer" | "editor" | "admin") {
            return Err(StoreError::Invalid {
                what: "token role".into(),
                detail: format!("'{}': expected viewer, editor or admin", t.role),
            });
        }
        if t.name.trim().is_empty() {
            return Err(StoreError::Invalid {
                what: "token name".into(),
                detail: "it is empty; give the token a name that says who uses it".into(),
            });
        }
        let existing = sqlx::query("SELECT id FROM api_tokens WHERE name = $1")
            .bind(&t.name)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(format!("looking up token {}", t.name)))?;
        if existing.is_some() {
            return Err(StoreError::Invalid {
                what: "token name".into(),
                detail: format!(
                    "a token named '{}' already exists; pick another name or revoke and rename",
                    t.name
                ),
            });
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, name, secret_sha256, role, project, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.secret_sha256)
        .bind(&t.role)
        .bind(t.project.as_deref())
        .bind(t.now_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!("creating token {}", t.name)))?;
        Ok(TokenRecord {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.role.clone(),
            project: t.project.clone(),
            created_at_ms: t.now_ms,
            last_used_at_ms: None,
            revoked_at_ms: None,
            secret_sha256: t.secret_sha256.clone(),
        })
    }

    /// All tokens, revoked ones included, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at_ms, id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes the token with this id or name; revoking twice keeps the first time.
    pub async fn revoke_token(
        &self,
        id_or_name: &str,
        now_ms: i64,
    ) -> Result<TokenRecord, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $2) \
             WHERE id = $1 OR name = $1",
        )
        .bind(id_or_name)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!("revoking token {id_or_name}")))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "token",
                id: id_or_name.to_owned(),
            });
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 OR name = $1"
        )))
        .bind(id_or_name)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query(format!("reading token {id_or_name}")))?;
        token_from_row(&row)
    }

    /// The live token with this id whose stored hash equals `secret_sha256` (compared in
    /// constant time), with its last use recorded; None for an unknown, revoked or wrong one.
    pub async fn verify_token(
        &self,
        id: &str,
        secret_sha256: &str,
        now_ms: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("verifying a token"))?;
        let Some(row) = row else { return Ok(None) };
        let token = token_from_row(&row)?;
        if token.revoked() || !constant_time_eq(&token.secret_sha256, secret_sha256) {
            return Ok(None);
        }
        // Last use is informational: a busy database must not fail the request.
        let _ = sqlx::query("UPDATE api_tokens SET last_used_at_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await;
        Ok(Some(TokenRecord {
            last_used_at_ms: Some(now_ms),
            ..token
        }))
    }

    /// Records that someone of `project` uploaded the artifact `digest` (so runs of that
    /// project may name it). Granting again changes nothing.
    /// Records that `project` may use `digest` (it uploaded it); an upload of the same content
    /// again renews the grant, which also keeps the content from gc for the retention.
    pub async fn grant_artifact(
        &self,
        digest: &str,
        project: &str,
        granted_by: &str,
        ts_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO artifact_grants (digest, project, granted_by, created_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (digest, project) \
             DO UPDATE SET created_at_ms = excluded.created_at_ms",
        )
        .bind(digest)
        .bind(project)
        .bind(granted_by)
        .bind(ts_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "granting {digest} to project {project}"
        )))?;
        Ok(())
    }

    /// Whether the artifact `digest` was uploaded for `project`.
    pub async fn artifact_granted(&self, digest: &str, project: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM artifact_grants WHERE digest = $1 AND project = $2",
        )
        .bind(digest)
        .bind(project)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "looking up the grant of {digest} to project {project}"
        )))?;
        Ok(column::<i64>(&row, "n")? > 0)
    }

    /// Appends one entry to the audit log and returns its id.
    pub async fn append_audit(
        &self,
        principal: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
        ts_ms: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO audit_log (ts_ms, principal, action, target, detail_json) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(ts_ms)
        .bind(principal)
        .bind(action)
        .bind(target)
        .bind(detail.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "recording {action} in the audit log"
        )))?;
        column(&row, "id")
    }

    /// The newest `limit` audit entries (`limit <= 0`: all), newest first.
    pub async fn list_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        self.list_audit_before(i64::MAX, limit).await
    }

    /// The newest `limit` audit entries older than entry `before_id`, newest first (the
    /// pages of the audit log).
    pub async fn list_audit_before(
        &self,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = if limit <= 0 { i64::MAX } else { limit };
        let rows = sqlx::query(
            "SELECT id, ts_ms, principal, action, target, detail_json FROM audit_log \
             WHERE id < $2 ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .bind(before_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading the audit log"))?;
        rows.iter()
            .map(|row| {
                let detail: String = column(row, "detail_json")?;
                Ok(AuditRecord {
                    id: column(row, "id")?,
                    ts_ms: column(row, "ts_ms")?,
                    principal: column(row, "principal")?,
                    action: column(row, "action")?,
                    target: column(row, "target")?,
                    detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt {
                        what: "audit_log.detail_json".into(),
                        detail: e.to_string(),
                    })?,
                })
            })
            .collect()
    }
}

pub(crate) fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: column(row, "id")?,
        name: column(row, "name")?,
        role: column(row, "role")?,
        project: column(row, "project")?,
        created_at_ms: column(row, "created_at_ms")?,
        last_used_at_ms: column(row, "last_used_at_ms")?,
        revoked_at_ms: column(row, "revoked_at_ms")?,
        secret_sha256: column(row, "secret_sha256")?,
    })
}

/// Equality whose running time depends only on the lengths, so a caller cannot learn
/// a stored hash byte by byte from response times.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(super::constant_time_eq("abc", "abc"));
        assert!(!super::constant_time_eq("abc", "abd"));
        assert!(!super::constant_time_eq("abc", "ab"));
    }
}
