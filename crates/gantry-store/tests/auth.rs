//! API tokens and the audit log against real databases: SQLite always, PostgreSQL when
//! `GANTRY_TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used)]

mod support;

mod cases {
    use gantry_store::{NewToken, Store, StoreError};
    use serde_json::json;

    fn token(id: &str, name: &str, role: &str, project: Option<&str>) -> NewToken {
        NewToken {
            id: id.into(),
            name: name.into(),
            secret_sha256: format!("{:0>64}", id.trim_start_matches("t-")),
            role: role.into(),
            project: project.map(String::from),
            now_ms: 1000,
        }
    }

    pub async fn tokens_verify_only_with_the_right_hash(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let t = token("t-aaaa", "ci", "editor", Some("iris"));
        let created = store.create_token(&t).await.unwrap();
        assert_eq!(created.role, "editor");
        assert_eq!(created.project.as_deref(), Some("iris"));

        let ok = store
            .verify_token("t-aaaa", &t.secret_sha256, 2000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ok.name, "ci");
        assert_eq!(ok.last_used_at_ms, Some(2000));
        let wrong = format!("{:0>64}", "bbbb");
        assert!(
            store
                .verify_token("t-aaaa", &wrong, 2001)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .verify_token("t-zzzz", &t.secret_sha256, 2001)
                .await
                .unwrap()
                .is_none()
        );

        let listed = store.list_tokens().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].last_used_at_ms, Some(2000));
        // The hash never leaves in a serialized record.
        let shown = serde_json::to_string(&listed).unwrap();
        assert!(!shown.contains(&t.secret_sha256), "{shown}");

        // Revoked by name: verification fails from then on.
        let revoked = store.revoke_token("ci", 3000).await.unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(3000));
        assert!(
            store
                .verify_token("t-aaaa", &t.secret_sha256, 4000)
                .await
                .unwrap()
                .is_none()
        );
        let again = store.revoke_token("t-aaaa", 5000).await.unwrap();
        assert_eq!(
            again.revoked_at_ms,
            Some(3000),
            "the first revocation is kept"
        );
        assert!(matches!(
            store.revoke_token("nobody", 1).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    pub async fn invalid_tokens_are_refused(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store
            .create_token(&token("t-aaaa", "a", "viewer", None))
            .await
            .unwrap();
        let dup = store
            .create_token(&token("t-bbbb", "a", "viewer", None))
            .await;
        assert!(matches!(dup, Err(StoreError::Invalid { .. })), "{dup:?}");
        let role = store
            .create_token(&token("t-cccc", "c", "root", None))
            .await;
        assert!(matches!(role, Err(StoreError::Invalid { .. })), "{role:?}");
        assert_eq!(store.list_tokens().await.unwrap().len(), 1);
    }

    pub async fn audit_log_is_append_only_newest_first(url: &str) {
        let store = Store::connect(url).await.unwrap();
        for i in 0..5 {
            store
                .append_audit(
                    "ci",
                    "run.submit",
                    &format!("r-{i}"),
                    &json!({"n": i}),
                    100 + i,
                )
                .await
                .unwrap();
        }
        let all = store.list_audit(0).await.unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].target, "r-4");
        assert_eq!(all[0].detail, json!({"n": 4}));
        assert_eq!(all[4].ts_ms, 100);
        let two = store.list_audit(2).await.unwrap();
        assert_eq!(
            two.iter().map(|a| a.target.as_str()).collect::<Vec<_>>(),
            ["r-4", "r-3"]
        );
        // Reopening (migrations already applied) keeps everything.
        drop(store);
        let store = Store::connect(url).await.unwrap();
        assert_eq!(store.list_audit(0).await.unwrap().len(), 5);
    }

    pub async fn uploads_are_granted_per_project(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
        assert!(!store.artifact_granted(d, "a").await.unwrap());
        store.grant_artifact(d, "a", "alice", 1).await.unwrap();
        // A second upload of the same content by the same project is no error.
        store.grant_artifact(d, "a", "bob", 2).await.unwrap();
        assert!(store.artifact_granted(d, "a").await.unwrap());
        assert!(!store.artifact_granted(d, "b").await.unwrap());
        store.grant_artifact(d, "b", "carol", 3).await.unwrap();
        assert!(store.artifact_granted(d, "b").await.unwrap());
    }
}

macro_rules! on_every_backend {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::support::TestDb::sqlite();
                    crate::cases::$case(&db.url).await;
                    db.finish().await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = crate::support::TestDb::postgres(stringify!($case)).await else {
                        return;
                    };
                    crate::cases::$case(&db.url).await;
                    db.finish().await;
                }
            )+
        }
    };
}

on_every_backend!(
    tokens_verify_only_with_the_right_hash,
    invalid_tokens_are_refused,
    audit_log_is_append_only_newest_first,
    uploads_are_granted_per_project,
);
