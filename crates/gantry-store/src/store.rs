use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, Row, SqlSafeStr, Transaction};
use std::path::PathBuf;

use crate::error::StoreError;

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "models",
        include_str!("../migrations/sqlite/0002_models.sql"),
    ),
    (
        3,
        "tracking",
        include_str!("../migrations/sqlite/0003_tracking.sql"),
    ),
    (
        4,
        "auth",
        include_str!("../migrations/sqlite/0004_auth.sql"),
    ),
    (
        5,
        "serving",
        include_str!("../migrations/sqlite/0005_serving.sql"),
    ),
    (
        6,
        "uploads",
        include_str!("../migrations/sqlite/0006_uploads.sql"),
    ),
    (
        7,
        "monitor",
        include_str!("../migrations/sqlite/0007_monitor.sql"),
    ),
    (
        8,
        "images",
        include_str!("../migrations/sqlite/0008_images.sql"),
    ),
    (9, "ui", include_str!("../migrations/sqlite/0009_ui.sql")),
    (
        10,
        "registry",
        include_str!("../migrations/sqlite/0010_registry.sql"),
    ),
    (
        11,
        "logged models",
        include_str!("../migrations/sqlite/0011_logged_models.sql"),
    ),
    (
        12,
        "prediction log",
        include_str!("../migrations/sqlite/0012_prediction_log.sql"),
    ),
    (
        13,
        "metrics without rowid",
        include_str!("../migrations/sqlite/0013_metrics_without_rowid.sql"),
    ),
    (
        14,
        "log chunks",
        include_str!("../migrations/sqlite/0014_log_chunks.sql"),
    ),
    (
        15,
        "usage",
        include_str!("../migrations/sqlite/0015_usage.sql"),
    ),
    (
        16,
        "queue",
        include_str!("../migrations/sqlite/0016_queue.sql"),
    ),
    (
        17,
        "gpu devices",
        include_str!("../migrations/sqlite/0017_gpu_devices.sql"),
    ),
    (
        18,
        "usage indexes",
        include_str!("../migrations/sqlite/0018_usage_indexes.sql"),
    ),
    (
        19,
        "exported runs",
        include_str!("../migrations/sqlite/0019_exported_runs.sql"),
    ),
];

const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "models",
        include_str!("../migrations/postgres/0002_models.sql"),
    ),
    (
        3,
        "tracking",
        include_str!("../migrations/postgres/0003_tracking.sql"),
    ),
    (
        4,
        "auth",
        include_str!("../migrations/postgres/0004_auth.sql"),
    ),
    (
        5,
        "serving",
        include_str!("../migrations/postgres/0005_serving.sql"),
    ),
    (
        6,
        "uploads",
        include_str!("../migrations/postgres/0006_uploads.sql"),
    ),
    (
        7,
        "monitor",
        include_str!("../migrations/postgres/0007_monitor.sql"),
    ),
    (
        8,
        "images",
        include_str!("../migrations/postgres/0008_images.sql"),
    ),
    (9, "ui", include_str!("../migrations/postgres/0009_ui.sql")),
    (
        10,
        "registry",
        include_str!("../migrations/postgres/0010_registry.sql"),
    ),
    (
        11,
        "logged models",
        include_str!("../migrations/postgres/0011_logged_models.sql"),
    ),
    (
        12,
        "prediction log",
        include_str!("../migrations/postgres/0012_prediction_log.sql"),
    ),
    (
        13,
        "metrics without rowid",
        include_str!("../migrations/postgres/0013_metrics_without_rowid.sql"),
    ),
    (
        14,
        "log chunks",
        include_str!("../migrations/postgres/0014_log_chunks.sql"),
    ),
    (
        15,
        "usage",
        include_str!("../migrations/postgres/0015_usage.sql"),
    ),
    (
        16,
        "queue",
        include_str!("../migrations/postgres/0016_queue.sql"),
    ),
    (
        17,
        "gpu devices",
        include_str!("../migrations/postgres/0017_gpu_devices.sql"),
    ),
    (
        18,
        "usage indexes",
        include_str!("../migrations/postgres/0018_usage_indexes.sql"),
    ),
    (
        19,
        "exported runs",
        include_str!("../migrations/postgres/0019_exported_runs.sql"),
    ),
];

/// How long SQLite waits for another writer (another gantry process, or this one) before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The metadata store: runs, step runs, artifacts, lineage, logs, metrics, registered models,
/// deployments and their prediction log.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// SQLite only: read-only connections for reads of many rows (a metric's history), run
    /// on a blocking thread: sqlx copies every value and hands rows over between threads in
    /// small batches, which costs more than SQLite's own reading.
    pub(crate) bulk: Option<crate::bulk::BulkReader>,
    /// PostgreSQL only: a small pool of the native driver for the same reads (the Any
    /// driver converts every row it reads).
    pub(crate) bulk_pg: Option<sqlx::PgPool>,
    /// SQLite only: the thread that writes tracking batches, group-committed.
    pub(crate) writer: Option<crate::writer::TrackingWriter>,
    /// SQLite only: the database file.
    sqlite_file: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the store at `url` and brings its schema up to date.
    ///
    /// Accepted URLs: `sqlite:///abs/path/gantry.db`, `sqlite://relative.db`,
    /// `postgres://user@host/db` (and `postgresql://`).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let shown = redact_url(url);
        let mut sqlite_file = None;
        let options = match backend {
            Backend::Sqlite => {
                sqlite_file = Some(prepare_sqlite_file(url, &shown).await?);
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // With WAL, NORMAL only risks the last commits on power loss (never
                            // corruption) and avoids an fsync per log append; a run cut short
                            // that way is found as interrupted on the next start anyway.
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
            }
            // sqlx retries a refused connection until the acquire timeout: fail a command
            // against a dead server in seconds, while riding out a restart.
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10)),
        };
        let pool = options
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?;
        // sqlx locks migrations on PostgreSQL (advisory lock) but not on SQLite: without a
        // lock, two processes opening a new database at once both apply migration 1.
        let _migration_lock = match &sqlite_file {
            Some(db) => Some(lock_file(db.with_extension("migrate-lock")).await?),
            None => None,
        };
        migrator(backend)
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: shown.clone(),
                source,
            })?;
        let bulk = sqlite_file
            .as_ref()
            .map(|db| crate::bulk::BulkReader::new(db.clone(), SQLITE_BUSY_TIMEOUT));
        let bulk_pg = match backend {
            Backend::Postgres => sqlx::postgres::PgConnectOptions::from_str(url)
                .ok()
                .map(|o| {
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(2)
                        .min_connections(0)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_lazy_with(o)
                }),
            Backend::Sqlite => None,
        };
        let writer = match &sqlite_file {
            Some(db) => Some(crate::writer::TrackingWriter::start(
                db.clone(),
                SQLITE_BUSY_TIMEOUT,
            )?),
            None => None,
        };
        Ok(Store {
            pool,
            backend,
            bulk,
            bulk_pg,
            writer,
            sqlite_file,
        })
    }

    /// The database file of a SQLite store (its `-wal` and `-shm` lie beside it).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.sqlite_file.clone()
    }

    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Starts a transaction that will write.
    ///
    /// On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`): a deferred transaction
    /// that reads first and writes later fails at once with SQLITE_BUSY when another
    /// connection committed in between, without waiting for the busy timeout.
    pub(crate) async fn begin_write(
        &self,
        op: &str,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        };
        tx.map_err(StoreError::query(op))
    }
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        if url.contains(":memory:") || url.contains("mode=memory") {
            // Each pooled connection would get its own empty in-memory database.
            return Err(StoreError::UnsupportedUrl {
                url: url.to_owned(),
            });
        }
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}

fn migrator(backend: Backend) -> Migrator {
    let sources = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    let migrations = sources
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// Creates the database file (and its directory) and switches it to WAL.
///
/// The Any driver cannot pass SQLite options, so this is done once with a native connection;
/// WAL is a property of the file and sticks for every later connection.
async fn prepare_sqlite_file(url: &str, shown: &str) -> Result<PathBuf, StoreError> {
    let connect_err = |source| StoreError::Connect {
        url: shown.to_owned(),
        source,
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(connect_err)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    if let Some(dir) = options.get_filename().parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    // Switching to WAL needs an exclusive lock that the busy timeout does not cover, so two
    // processes opening a brand-new database at once can see SQLITE_BUSY here: retry briefly.
    let mut attempt = 0;
    loop {
        match options.connect().await {
            Ok(conn) => {
                conn.close().await.map_err(connect_err)?;
                return Ok(options.get_filename().to_path_buf());
            }
            Err(err) if attempt < 50 && is_sqlite_busy(&err) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(connect_err(err)),
        }
    }
}

/// An exclusive advisory lock on `path`, held until the returned value is dropped.
async fn lock_file(path: PathBuf) -> Result<Flock<std::fs::File>, StoreError> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| std::io::Error::from(errno))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|source| StoreError::Lock {
        path: shown,
        source,
    })
}

pub(crate) fn is_sqlite_busy(err: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
        _ => false,
    }
}

/// Hides a password in `scheme://user:password@host/...` so it never reaches an error message.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &authority[..colon],
                &rest[at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Reads one column, naming the column when the stored value has an unexpected type.
pub(crate) fn column<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(name).map_err(|e| StoreError::Corrupt {
        what: format!("column {name}"),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db.example:5432/gantry?sslmode=require"),
            "postgres://bob:***@db.example:5432/gantry?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://bob@db/gantry"),
            "postgres://bob@db/gantry"
        );
        assert_eq!(
            redact_url("sqlite:///tmp/a@b:c/gantry.db"),
            "sqlite:///tmp/a@b:c/gantry.db"
        );
    }

    #[test]
    fn backends_come_from_the_url_scheme() {
        assert_eq!(backend_of("sqlite:///x.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend_of("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend_of("postgres://u@h/d").unwrap(), Backend::Postgres);
        assert_eq!(backend_of("postgresql://u@h/d").unwrap(), Backend::Postgres);
        assert!(backend_of("mysql://u@h/d").is_err());
        assert!(backend_of("sqlite::memory:").is_err());
    }
}
