//! Test databases shared by the store's test binaries: SQLite in a tempdir, PostgreSQL
//! (a fresh database per test) when `GANTRY_TEST_POSTGRES_URL` is set.

#[path = "../../../../testing/skip.rs"]
pub mod skip;

use sqlx::migrate::MigrateDatabase;

pub const POSTGRES_ENV: &str = "GANTRY_TEST_POSTGRES_URL";

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: bool,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gantry.db", dir.path().display());
        TestDb {
            url,
            _dir: Some(dir),
            postgres: false,
        }
    }

    /// None when PostgreSQL is not configured (a skip: see [`skip`]); panics when it is
    /// configured but unusable, so a broken setup never passes as "skipped".
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let base = skip::unless_env(
            POSTGRES_ENV,
            &format!(
                "a PostgreSQL URL (e.g. postgres:///postgres?host=/var/run/postgresql&user=root) \
                 to run {test} against PostgreSQL"
            ),
        )?;
        sqlx::any::install_default_drivers();
        let name = format!("gantry_t_{}", gantry_store::new_id("").as_str());
        let url = with_database(&base, &name);
        sqlx::Any::create_database(&url).await.unwrap_or_else(|e| {
            panic!("{POSTGRES_ENV}={base} is set but creating database {name} failed: {e}")
        });
        Some(TestDb {
            url,
            _dir: None,
            postgres: true,
        })
    }

    pub async fn finish(self) {
        if self.postgres {
            sqlx::Any::force_drop_database(&self.url).await.unwrap();
        }
    }
}

/// `url` with its database name replaced by `db`, keeping user, host and query.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

#[test]
fn database_names_are_replaced() {
    assert_eq!(
        with_database("postgres://root@127.0.0.1/gantry_test", "x"),
        "postgres://root@127.0.0.1/x"
    );
    assert_eq!(
        with_database("postgres:///gantry_test?host=/var/run/postgresql", "x"),
        "postgres:///x?host=/var/run/postgresql"
    );
    assert_eq!(
        with_database("postgres://u:p@h:5432", "x"),
        "postgres://u:p@h:5432/x"
    );
}

/// A SQLite database at `url` with the schema as of migration `last`, applied by hand (the way
/// an older gantry left it), for tests of the migrations after it.
#[allow(dead_code)] // not every test binary that includes this module migrates
pub async fn sqlite_at_migration(url: &str, last: i64) -> sqlx::SqlitePool {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let mut files: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    files.sort();
    let mut migrations = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let version: i64 = name[..4].parse().unwrap();
        if version <= last {
            let sql = std::fs::read_to_string(path).unwrap();
            migrations.push(Migration::new(
                version,
                name.into(),
                MigrationType::Simple,
                sqlx::AssertSqlSafe(sql).into_sql_str(),
                false,
            ));
        }
    }
    assert_eq!(migrations.len() as i64, last);
    let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
    let pool = sqlx::SqlitePool::connect_with(opts.create_if_missing(true))
        .await
        .unwrap();
    Migrator::with_migrations(migrations)
        .run(&pool)
        .await
        .unwrap();
    pool
}
