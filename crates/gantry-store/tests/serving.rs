//! Deployments, the prediction log, feedback and alert events against real databases: SQLite
//! always, PostgreSQL when `GANTRY_TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used)]

mod support;

/// Counting commits where each backend records them, to check that a batch is one transaction.
mod commits {
    use std::str::FromStr;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    pub enum CommitCounter {
        /// PostgreSQL stamps every row with the id of the transaction that inserted it (`xmin`).
        Postgres { url: String },
        /// SQLite (WAL) appends each commit to the write-ahead log, whose last frame of a
        /// commit carries the database size: counted from a log emptied at the start.
        Sqlite { wal: std::path::PathBuf },
    }

    impl CommitCounter {
        pub async fn start(url: &str) -> CommitCounter {
            if !url.starts_with("sqlite:") {
                return CommitCounter::Postgres {
                    url: url.to_owned(),
                };
            }
            let options = SqliteConnectOptions::from_str(url).unwrap();
            let wal = std::path::PathBuf::from(format!("{}-wal", options.get_filename().display()));
            let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
            // Copies every committed page into the database file and empties the log.
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(busy, 0, "the checkpoint could not empty the log");
            conn.close().await.unwrap();
            assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
            CommitCounter::Sqlite { wal }
        }

        /// Transactions that wrote predictions of `deployment` (PostgreSQL) or commits since
        /// `start` (SQLite).
        pub async fn count(&self, deployment: &str) -> usize {
            match self {
                CommitCounter::Postgres { url } => {
                    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(DISTINCT xmin::text) FROM predictions WHERE deployment = $1",
                    )
                    .bind(deployment)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                    usize::try_from(n).unwrap()
                }
                CommitCounter::Sqlite { wal } => wal_commits(&std::fs::read(wal).unwrap()),
            }
        }
    }

    /// Commit frames in a write-ahead log (https://sqlite.org/fileformat.html#the_write_ahead_log):
    /// a 32-byte header, then frames of a 24-byte header and one page; a frame belongs to the
    /// current log when its salts match the header's, and ends a commit when its "database
    /// size after commit" field is not 0.
    fn wal_commits(log: &[u8]) -> usize {
        let be = |at: usize| u32::from_be_bytes(log[at..at + 4].try_into().unwrap());
        assert!(log.len() >= 32, "no write-ahead log header");
        assert_eq!(be(0) & !1, 0x377f_0682, "not a write-ahead log");
        let page = be(8) as usize;
        let salts = &log[16..24];
        let mut commits = 0;
        let mut frame = 32;
        while frame + 24 + page <= log.len() && &log[frame + 8..frame + 16] == salts {
            if be(frame + 4) != 0 {
                commits += 1;
            }
            frame += 24 + page;
        }
        commits
    }
}

mod cases {
    use gantry_store::{NewAlertEvent, NewPrediction, Store, StoreError};
    use serde_json::{Value, json};

    use crate::commits::CommitCounter;

    fn prediction(id: &str, deployment: &str, role: &str, rows: usize, at: i64) -> NewPrediction {
        NewPrediction {
            request_id: id.into(),
            deployment: deployment.into(),
            model: "iris".into(),
            version: 3,
            role: role.into(),
            inputs: Value::Array((0..rows).map(|i| json!({"x": i, "y": 0.5})).collect()).into(),
            outputs: Value::Array((0..rows).map(|i| json!(i % 3)).collect()),
            rows: rows as i64,
            error: None,
            latency_us: 250,
            created_at_ms: at,
        }
    }

    fn ids(records: &[gantry_store::PredictionRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{}/{}", r.request_id, r.role))
            .collect()
    }

    pub async fn deployments_have_revisions_and_compare_and_set(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let v1 = json!({"model": "iris@1", "replicas": 1});
        let created = store
            .put_deployment("iris", &v1, Some("ml"), "create", "alice", Some(0), 1000)
            .await
            .unwrap();
        assert_eq!(created.revision, 1);
        assert_eq!(created.created_at_ms, 1000);

        // Creating again with "must not exist" is a conflict naming the current revision.
        let err = store
            .put_deployment("iris", &v1, None, "create", "bob", Some(0), 1500)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    expected: 0,
                    actual: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("deployment 'iris'"), "{err}");

        let v2 = json!({"model": "iris@2", "replicas": 2});
        let updated = store
            .put_deployment("iris", &v2, Some("ml"), "update", "alice", Some(1), 2000)
            .await
            .unwrap();
        assert_eq!(updated.revision, 2);
        assert_eq!(updated.created_at_ms, 1000, "creation time is kept");
        assert_eq!(updated.updated_at_ms, 2000);

        // An editor still holding revision 1 cannot overwrite revision 2.
        let stale = store
            .put_deployment("iris", &v1, Some("ml"), "update", "bob", Some(1), 2100)
            .await
            .unwrap_err();
        assert!(
            matches!(
                stale,
                StoreError::Conflict {
                    expected: 1,
                    actual: 2,
                    ..
                }
            ),
            "{stale:?}"
        );
        // Neither did the refused write leave a revision behind.
        assert_eq!(store.deployment_revisions("iris").await.unwrap().len(), 2);
        // Updating something that does not exist with an expected revision: conflict, not create.
        let missing = store
            .put_deployment("ghost", &v1, None, "update", "bob", Some(4), 2100)
            .await
            .unwrap_err();
        assert!(
            matches!(
                missing,
                StoreError::Conflict {
                    expected: 4,
                    actual: 0,
                    ..
                }
            ),
            "{missing:?}"
        );

        // Unconditional writes always go through.
        let v3 = json!({"model": "iris@2", "replicas": 3});
        let forced = store
            .put_deployment("iris", &v3, None, "scale", "carol", None, 3000)
            .await
            .unwrap();
        assert_eq!(forced.revision, 3);
        assert_eq!(forced.project, None);
        store
            .put_deployment("alpha", &json!({}), None, "create", "carol", None, 3100)
            .await
            .unwrap();

        let got = store.get_deployment("iris").await.unwrap();
        assert_eq!(got, forced);
        let listed = store.list_deployments().await.unwrap();
        assert_eq!(
            listed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["alpha", "iris"]
        );

        let revisions = store.deployment_revisions("iris").await.unwrap();
        assert_eq!(
            revisions
                .iter()
                .map(|r| (r.revision, r.action.as_str(), r.principal.as_str()))
                .collect::<Vec<_>>(),
            [
                (3, "scale", "carol"),
                (2, "update", "alice"),
                (1, "create", "alice")
            ]
        );
        assert_eq!(revisions[1].spec, v2);

        let nobody = store.get_deployment("ghost").await.unwrap_err();
        assert!(matches!(
            nobody,
            StoreError::NotFound {
                kind: "deployment",
                ..
            }
        ));
        assert!(nobody.to_string().contains("'ghost'"), "{nobody}");
        assert!(matches!(
            store.deployment_revisions("ghost").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store
                .put_deployment(" ", &v1, None, "create", "bob", None, 1)
                .await,
            Err(StoreError::Invalid { .. })
        ));
    }

    pub async fn undeploy_keeps_history_and_recreate_continues_it(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let v1 = json!({"model": "iris@1"});
        let v2 = json!({"model": "iris@2"});
        store
            .put_deployment("iris", &v1, None, "create", "alice", Some(0), 10)
            .await
            .unwrap();
        store
            .put_deployment("iris", &v2, None, "promote", "alice", Some(1), 20)
            .await
            .unwrap();
        store.delete_deployment("iris", "bob", 30).await.unwrap();

        assert!(matches!(
            store.get_deployment("iris").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(store.list_deployments().await.unwrap().is_empty());
        assert!(matches!(
            store.delete_deployment("iris", "bob", 31).await,
            Err(StoreError::NotFound { .. })
        ));
        let history = store.deployment_revisions("iris").await.unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].action, "undeploy");
        assert_eq!(history[0].principal, "bob");
        assert_eq!(history[0].spec, v2, "undeploy records the last spec");

        // Created again: "must not exist" holds, and numbering continues after the undeploy.
        let again = store
            .put_deployment("iris", &v1, None, "create", "carol", Some(0), 40)
            .await
            .unwrap();
        assert_eq!(again.revision, 4);
        assert_eq!(again.created_at_ms, 40);
        let history = store.deployment_revisions("iris").await.unwrap();
        assert_eq!(
            history.iter().map(|r| r.revision).collect::<Vec<_>>(),
            [4, 3, 2, 1]
        );
    }

    pub async fn concurrent_editors_never_reuse_a_revision(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .put_deployment("race", &json!({"by": i}), None, "update", "t", None, i)
                    .await
                    .map(|d| d.revision)
            }));
        }
        let mut revisions = Vec::new();
        for t in tasks {
            revisions.push(t.await.unwrap().unwrap());
        }
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=8).collect::<Vec<i64>>());
        let current = store.get_deployment("race").await.unwrap();
        assert_eq!(current.revision, 8);
        assert_eq!(store.deployment_revisions("race").await.unwrap().len(), 8);

        // Compare-and-set from 8 editors holding the same revision: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .put_deployment(
                        "race",
                        &json!({"cas": i}),
                        None,
                        "update",
                        "t",
                        Some(8),
                        100,
                    )
                    .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(d) => {
                    assert_eq!(d.revision, 9);
                    won += 1;
                }
                Err(StoreError::Conflict { actual: 9, .. }) => {}
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!(won, 1);
    }

    pub async fn a_batch_is_written_whole_or_not_at_all(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store
            .insert_predictions(&[prediction("q-0", "iris", "primary", 1, 5)])
            .await
            .unwrap();

        // A duplicate inside the batch: nothing of it is written.
        let batch = vec![
            prediction("q-1", "iris", "primary", 1, 10),
            prediction("q-2", "iris", "primary", 1, 11),
            prediction("q-1", "iris", "primary", 1, 12),
        ];
        let err = store.insert_predictions(&batch).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
        assert!(err.to_string().contains("q-1/primary"), "{err}");
        assert_eq!(store.count_predictions("iris").await.unwrap(), 1);

        // A duplicate of an earlier batch, after 300 good ones (more than one INSERT).
        let mut batch: Vec<NewPrediction> = (0..300)
            .map(|i| prediction(&format!("b-{i}"), "iris", "primary", 1, 100 + i))
            .collect();
        batch.push(prediction("q-0", "iris", "primary", 1, 500));
        let err = store.insert_predictions(&batch).await.unwrap_err();
        assert!(err.to_string().contains("q-0/primary"), "{err}");
        assert_eq!(store.count_predictions("iris").await.unwrap(), 1);

        // The same request id in another role is not a duplicate.
        store
            .insert_predictions(&[
                prediction("q-0", "iris", "shadow", 1, 5),
                prediction("q-9", "iris", "canary", 1, 6),
            ])
            .await
            .unwrap();
        assert_eq!(store.count_predictions("iris").await.unwrap(), 3);

        // An invalid prediction fails the batch before anything is written, naming it.
        let mut bad = prediction("q-bad", "iris", "primary", 2, 7);
        bad.inputs = json!({"not": "an array"}).into();
        let err = store
            .insert_predictions(&[prediction("q-ok", "iris", "primary", 1, 7), bad])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }));
        assert!(err.to_string().contains("q-bad"), "{err}");
        let mut huge = prediction("q-huge", "iris", "primary", 1, 7);
        huge.inputs =
            json!([{"blob": "x".repeat(gantry_store::serving_limits::PREDICTION_JSON_BYTES)}])
                .into();
        assert!(matches!(
            store.insert_predictions(&[huge]).await,
            Err(StoreError::Invalid { .. })
        ));
        assert_eq!(store.count_predictions("iris").await.unwrap(), 3);
        assert!(store.insert_predictions(&[]).await.is_ok());
    }

    pub async fn recent_predictions_window_limit_roles_and_labels(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let mut failed = prediction("r-4", "iris", "primary", 2, 400);
        failed.error = Some("model crashed\0".into());
        failed.outputs = json!([]);
        store
            .insert_predictions(&[
                prediction("r-1", "iris", "primary", 1, 100),
                prediction("r-2", "iris", "primary", 3, 200),
                prediction("r-2", "iris", "shadow", 3, 200),
                prediction("r-3", "iris", "canary", 1, 300),
                failed,
                prediction("o-1", "other", "primary", 1, 350),
            ])
            .await
            .unwrap();
        store.put_feedback("r-2", 0, &json!(2), 250).await.unwrap();
        store
            .put_feedback("r-2", 2, &json!({"class": "setosa"}), 260)
            .await
            .unwrap();

        let all = store.recent_predictions("iris", 0, 0, &[]).await.unwrap();
        assert_eq!(
            ids(&all),
            [
                "r-4/primary",
                "r-3/canary",
                "r-2/shadow",
                "r-2/primary",
                "r-1/primary"
            ]
        );
        let r2 = &all[3];
        assert_eq!(r2.rows, 3);
        assert_eq!(r2.inputs[1], json!({"x": 1, "y": 0.5}));
        assert_eq!(r2.outputs, json!([0, 1, 2]));
        assert_eq!(
            r2.labels,
            [Some(json!(2)), None, Some(json!({"class": "setosa"}))]
        );
        assert_eq!(
            all[2].labels, r2.labels,
            "a shadow copy shares the request's labels"
        );
        assert_eq!(all[0].error.as_deref(), Some("model crashed\u{FFFD}"));
        assert_eq!(all[0].labels, [None, None]);

        let window = store.recent_predictions("iris", 200, 0, &[]).await.unwrap();
        assert_eq!(window.len(), 4, "created at the bound is inside the window");
        let limited = store.recent_predictions("iris", 0, 2, &[]).await.unwrap();
        assert_eq!(ids(&limited), ["r-4/primary", "r-3/canary"]);
        let live = store
            .recent_predictions("iris", 0, 0, &["primary", "canary"])
            .await
            .unwrap();
        assert_eq!(
            ids(&live),
            ["r-4/primary", "r-3/canary", "r-2/primary", "r-1/primary"]
        );
        let shadows = store
            .recent_predictions("iris", 0, 10, &["shadow"])
            .await
            .unwrap();
        assert_eq!(ids(&shadows), ["r-2/shadow"]);
        assert!(matches!(
            store.recent_predictions("iris", 0, 10, &["champion"]).await,
            Err(StoreError::Invalid { .. })
        ));

        // get_prediction answers with the request's primary, never its shadow.
        let got = store.get_prediction("r-2").await.unwrap();
        assert_eq!(got.role, "primary");
        assert_eq!(got, all[3]);
        assert_eq!(store.get_prediction("r-3").await.unwrap().role, "canary");
        assert!(matches!(
            store.get_prediction("nope").await,
            Err(StoreError::NotFound {
                kind: "prediction",
                ..
            })
        ));
    }

    pub async fn feedback_upserts_and_is_checked(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store
            .insert_predictions(&[prediction("f-1", "iris", "primary", 2, 100)])
            .await
            .unwrap();
        store
            .put_feedback("f-1", 1, &json!("setosa"), 110)
            .await
            .unwrap();
        store
            .put_feedback("f-1", 1, &json!("virginica"), 120)
            .await
            .unwrap();
        let got = store.get_prediction("f-1").await.unwrap();
        assert_eq!(got.labels, [None, Some(json!("virginica"))]);

        let missing = store
            .put_feedback("f-404", 0, &json!(1), 130)
            .await
            .unwrap_err();
        assert!(
            matches!(
                missing,
                StoreError::NotFound {
                    kind: "prediction",
                    ..
                }
            ),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("f-404"), "{missing}");
        let out_of_range = store
            .put_feedback("f-1", 2, &json!(1), 130)
            .await
            .unwrap_err();
        assert!(matches!(out_of_range, StoreError::Invalid { .. }));
        assert!(
            out_of_range.to_string().contains("2 rows"),
            "{out_of_range}"
        );
        assert!(matches!(
            store.put_feedback("f-1", -1, &json!(1), 130).await,
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            store.put_feedback("f-1", 0, &Value::Null, 130).await,
            Err(StoreError::Invalid { .. })
        ));
        // None of the refused labels landed.
        assert_eq!(
            store.get_prediction("f-1").await.unwrap().labels,
            [None, Some(json!("virginica"))]
        );
    }

    pub async fn pruning_by_age_and_count_takes_feedback_along(url: &str) {
        let store = Store::connect(url).await.unwrap();
        // 2500 predictions of "iris" at t = 0..2500 (several prune batches), one of "other".
        let batch: Vec<NewPrediction> = (0..2500)
            .map(|i| prediction(&format!("p-{i:05}"), "iris", "primary", 1, i))
            .collect();
        for chunk in batch.chunks(500) {
            store.insert_predictions(chunk).await.unwrap();
        }
        store
            .insert_predictions(&[prediction("o-1", "other", "primary", 1, 0)])
            .await
            .unwrap();
        for id in ["p-00005", "p-01500", "p-02499", "o-1"] {
            store.put_feedback(id, 0, &json!(1), 3000).await.unwrap();
        }

        // By age: everything created before t = 1200 goes; "other" is untouched.
        let deleted = store.prune_predictions("iris", 0, 1200).await.unwrap();
        assert_eq!(deleted, 1200);
        assert_eq!(store.count_predictions("iris").await.unwrap(), 1300);
        assert_eq!(store.count_predictions("other").await.unwrap(), 1);
        let oldest = store.recent_predictions("iris", 0, 0, &[]).await.unwrap();
        assert_eq!(oldest.last().unwrap().request_id, "p-01200");
        // Its feedback went with it: a new prediction with the old id starts unlabelled.
        store
            .insert_predictions(&[prediction("p-00005", "again", "primary", 1, 9000)])
            .await
            .unwrap();
        assert_eq!(
            store.get_prediction("p-00005").await.unwrap().labels,
            [None]
        );

        // By count: the newest 100 stay, with their feedback.
        let deleted = store
            .prune_predictions("iris", 100, i64::MIN)
            .await
            .unwrap();
        assert_eq!(deleted, 1200);
        let kept = store.recent_predictions("iris", 0, 0, &[]).await.unwrap();
        assert_eq!(kept.len(), 100);
        assert_eq!(kept[0].request_id, "p-02499");
        assert_eq!(kept[99].request_id, "p-02400");
        assert_eq!(kept[0].labels, [Some(json!(1))]);
        assert!(matches!(
            store.put_feedback("p-01500", 0, &json!(2), 3100).await,
            Err(StoreError::NotFound { .. })
        ));
        store
            .insert_predictions(&[prediction("p-01500", "again", "primary", 1, 9001)])
            .await
            .unwrap();
        assert_eq!(
            store.get_prediction("p-01500").await.unwrap().labels,
            [None]
        );
        assert_eq!(
            store.get_prediction("o-1").await.unwrap().labels,
            [Some(json!(1))]
        );

        // Nothing to do: zero, and the rest stays.
        assert_eq!(store.prune_predictions("iris", 100, 0).await.unwrap(), 0);
        assert_eq!(
            store.prune_predictions("iris", 0, i64::MIN).await.unwrap(),
            0
        );

        // Both bounds at once: whichever removes more wins.
        assert_eq!(store.prune_predictions("iris", 50, 2430).await.unwrap(), 50);
        assert_eq!(store.prune_predictions("iris", 10, 2460).await.unwrap(), 40);
        assert_eq!(store.count_predictions("iris").await.unwrap(), 10);

        // Ties in time: the count is exact, broken by request id then role.
        store
            .insert_predictions(&[
                prediction("t-a", "tied", "primary", 1, 7),
                prediction("t-a", "tied", "shadow", 1, 7),
                prediction("t-b", "tied", "primary", 1, 7),
            ])
            .await
            .unwrap();
        store.put_feedback("t-a", 0, &json!(0), 8).await.unwrap();
        assert_eq!(
            store.prune_predictions("tied", 2, i64::MIN).await.unwrap(),
            1
        );
        let left = store.recent_predictions("tied", 0, 0, &[]).await.unwrap();
        assert_eq!(ids(&left), ["t-b/primary", "t-a/shadow"]);
        // The shadow still holds the request's labels.
        assert_eq!(left[1].labels, [Some(json!(0))]);
    }

    pub async fn alert_events_newest_first(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let event = |rule: &str, state: &str, value: Option<f64>, at: i64| NewAlertEvent {
            deployment: "iris".into(),
            rule: rule.into(),
            state: state.into(),
            value,
            message: format!("{rule} is {state}"),
            created_at_ms: at,
        };
        let first = store
            .insert_alert_event(&event("psi", "firing", Some(0.31), 100))
            .await
            .unwrap();
        let second = store
            .insert_alert_event(&event("psi", "resolved", Some(0.05), 200))
            .await
            .unwrap();
        assert!(second.id > first.id);
        store
            .insert_alert_event(&event("accuracy", "firing", None, 200))
            .await
            .unwrap();
        let mut other = event("psi", "firing", Some(1.0), 150);
        other.deployment = "other".into();
        store.insert_alert_event(&other).await.unwrap();

        let events = store.alert_events("iris", 0).await.unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| (e.rule.as_str(), e.state.as_str(), e.value, e.created_at_ms))
                .collect::<Vec<_>>(),
            [
                ("accuracy", "firing", None, 200),
                ("psi", "resolved", Some(0.05), 200),
                ("psi", "firing", Some(0.31), 100),
            ]
        );
        assert_eq!(events[2], first);
        assert_eq!(store.alert_events("iris", 1).await.unwrap().len(), 1);
        assert!(matches!(
            store
                .insert_alert_event(&event("psi", "pending", None, 1))
                .await,
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            store
                .insert_alert_event(&event("psi", "firing", Some(f64::NAN), 1))
                .await,
            Err(StoreError::Invalid { .. })
        ));
    }

    pub async fn concurrent_batches_lose_nothing(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for b in 0..5 {
                    let batch: Vec<NewPrediction> = (0..50)
                        .map(|i| {
                            prediction(
                                &format!("c-{t}-{b}-{i}"),
                                "busy",
                                "primary",
                                2,
                                i64::from(i),
                            )
                        })
                        .collect();
                    store.insert_predictions(&batch).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.count_predictions("busy").await.unwrap(), 8 * 5 * 50);
        let all = store.recent_predictions("busy", 0, 0, &[]).await.unwrap();
        assert_eq!(all.len(), 2000);
        assert!(all.iter().all(|p| p.inputs.as_array().unwrap().len() == 2));
    }

    /// The prediction log's writer commits up to 512 queued records at once: a batch of 500
    /// (three multi-row INSERTs) must be one transaction, i.e. one commit each, counted where
    /// the database itself records commits. (Its speed is measured in bench/, not here.)
    pub async fn a_batch_of_five_hundred_is_one_transaction(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let commits = CommitCounter::start(url).await;
        let rounds = 3;
        for round in 0..rounds {
            let batch: Vec<NewPrediction> = (0..500)
                .map(|i| prediction(&format!("s-{round}-{i}"), "batched", "primary", 4, i))
                .collect();
            store.insert_predictions(&batch).await.unwrap();
        }
        assert_eq!(store.count_predictions("batched").await.unwrap(), 1500);
        assert_eq!(
            commits.count("batched").await,
            rounds,
            "{}: 3 batches of 500 predictions took another number of commits",
            store.backend()
        );
    }

    /// Two rows of three typed columns, and the JSON rows a row-wise record of them holds.
    fn columnar(id: &str, at: i64) -> (NewPrediction, Value) {
        use gantry_store::columns::{Column, ColumnValues, Columns};
        let columns = Columns::new(
            2,
            vec![
                Column {
                    name: "petal".into(),
                    values: ColumnValues::F64(vec![1.25, f64::NAN]),
                },
                Column {
                    name: "count".into(),
                    values: ColumnValues::I64(vec![3, -4]),
                },
                Column {
                    name: "city".into(),
                    values: ColumnValues::Text(vec!["Basel".into(), "Bern".into()]),
                },
            ],
        )
        .unwrap();
        let mut p = prediction(id, "iris", "primary", 2, at);
        p.inputs = gantry_store::PredictionInputs::Columns(columns);
        let rows = json!([
            {"city": "Basel", "count": 3, "petal": 1.25},
            {"city": "Bern", "count": -4, "petal": null},
        ]);
        (p, rows)
    }

    pub async fn column_records_read_back_as_rows_in_writer_order(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store.register_log_writer("w-a", 1000).await.unwrap();
        let (c1, rows) = columnar("c-1", 1000);
        let (c2, _) = columnar("c-2", 1001);
        let r3 = prediction("c-3", "iris", "primary", 1, 1002);
        store
            .log_predictions("w-a", &[1, 2], &[c1, c2])
            .await
            .unwrap();
        assert_eq!(store.last_logged_seq("w-a").await.unwrap(), 2);
        store.log_predictions("w-a", &[3], &[r3]).await.unwrap();
        assert!(store.prediction_logged("c-3", "primary").await.unwrap());
        assert!(!store.prediction_logged("c-3", "shadow").await.unwrap());
        assert_eq!(store.last_logged_seq("w-none").await.unwrap(), 0);
        // Another writer's records and unnumbered ones are not in this writer's order.
        store
            .log_predictions(
                "w-b",
                &[1],
                &[prediction("c-b", "iris", "primary", 1, 1003)],
            )
            .await
            .unwrap();
        store
            .insert_predictions(&[prediction("c-x", "iris", "primary", 1, 1004)])
            .await
            .unwrap();

        let read = store.get_prediction("c-1").await.unwrap();
        assert_eq!(read.inputs, rows, "columns read back as the rows they hold");
        assert_eq!(read.rows, 2);
        let recent = store.recent_predictions("iris", 0, 0, &[]).await.unwrap();
        assert_eq!(recent.len(), 5);
        assert!(
            recent
                .iter()
                .any(|r| r.request_id == "c-2" && r.inputs == rows)
        );

        let after = store.logged_predictions_after("w-a", 0, 100).await.unwrap();
        let order: Vec<(i64, &str)> = after
            .iter()
            .map(|l| (l.seq, l.prediction.request_id.as_str()))
            .collect();
        assert_eq!(order, [(1, "c-1"), (2, "c-2"), (3, "c-3")]);
        assert!(matches!(
            after[0].prediction.inputs,
            gantry_store::PredictionInputs::Columns(_)
        ));
        assert_eq!(after[0].prediction.inputs.to_rows().into_owned(), rows);
        let page = store.logged_predictions_after("w-a", 1, 1).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].seq, 2);

        // The same checks as for rows: a column record must agree with its row count.
        let (mut bad, _) = columnar("c-bad", 1005);
        bad.rows = 3;
        let err = store
            .log_predictions("w-a", &[4], &[bad])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("c-bad"), "{err}");

        // A request id this writer logged before fails the whole batch, naming it.
        let (fresh, _) = columnar("c-4", 1006);
        let (again, _) = columnar("c-1", 1007);
        let err = store
            .log_predictions("w-a", &[4, 5], &[fresh, again])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
        assert!(err.to_string().contains("c-1/primary"), "{err}");
        assert!(!store.prediction_logged("c-4", "primary").await.unwrap());
        assert_eq!(store.last_logged_seq("w-a").await.unwrap(), 3);
    }

    pub async fn writer_checkpoints_are_compare_and_set(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store.register_log_writer("w-live", 5_000).await.unwrap();
        store.register_log_writer("w-dead", 1_000).await.unwrap();
        store.register_log_writer("w-idle", 1_000).await.unwrap();
        for (writer, seq, id) in [
            ("w-live", 1, "l-1"),
            ("w-dead", 1, "d-1"),
            ("w-dead", 2, "d-2"),
        ] {
            store
                .log_predictions(writer, &[seq], &[prediction(id, "iris", "primary", 1, 100)])
                .await
                .unwrap();
        }
        // Old heartbeat and uncounted records: only w-dead (w-idle has nothing to count).
        let stale = store.stale_log_writers(2_000).await.unwrap();
        let names: Vec<&str> = stale.iter().map(|w| w.writer.as_str()).collect();
        assert_eq!(names, ["w-dead"]);
        assert_eq!(stale[0].folded_seq, 0);

        // Taking it over moves the checkpoint once; a second taker from the same state loses.
        assert!(
            store
                .checkpoint_log_writer("w-dead", 0, 2, 6_000, &[], &[])
                .await
                .unwrap()
        );
        assert!(
            !store
                .checkpoint_log_writer("w-dead", 0, 2, 6_000, &[], &[])
                .await
                .unwrap()
        );
        let dead = store.log_writer("w-dead").await.unwrap().unwrap();
        assert_eq!((dead.folded_seq, dead.heartbeat_ms), (2, 6_000));
        assert!(
            store
                .stale_log_writers(7_000)
                .await
                .unwrap()
                .iter()
                .all(|w| w.writer != "w-dead")
        );
        assert!(store.log_writer("w-none").await.unwrap().is_none());

        // A checkpoint that lost its race writes none of its buckets.
        let bucket = gantry_store::BucketState {
            key: gantry_store::BucketKey {
                deployment: "iris".into(),
                bucket_ms: 0,
                span_ms: 60_000,
                role: "primary".into(),
                version: 3,
                reference: String::new(),
                writer: "w-live".into(),
            },
            seq: 1,
            state_json: "{}".into(),
            updated_at_ms: 1,
        };
        assert!(
            !store
                .checkpoint_log_writer("w-live", 7, 8, 6_000, std::slice::from_ref(&bucket), &[])
                .await
                .unwrap()
        );
        assert!(
            store
                .monitor_buckets("iris", 0, 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .checkpoint_log_writer("w-live", 0, 1, 6_000, std::slice::from_ref(&bucket), &[])
                .await
                .unwrap()
        );
        assert_eq!(store.monitor_buckets("iris", 0, 0).await.unwrap().len(), 1);
        // A writer found only in a journal is registered as long dead; a known one is kept.
        store
            .register_log_writer_if_absent("w-orphan")
            .await
            .unwrap();
        store.register_log_writer_if_absent("w-live").await.unwrap();
        let orphan = store.log_writer("w-orphan").await.unwrap().unwrap();
        assert_eq!((orphan.folded_seq, orphan.heartbeat_ms), (0, 0));
        assert_eq!(
            store
                .log_writer("w-live")
                .await
                .unwrap()
                .unwrap()
                .heartbeat_ms,
            6_000
        );
        // Registering again renews the heartbeat and keeps the checkpoint.
        store.register_log_writer("w-live", 9_000).await.unwrap();
        let live = store.log_writer("w-live").await.unwrap().unwrap();
        assert_eq!((live.folded_seq, live.heartbeat_ms), (1, 9_000));
    }

    pub async fn everything_survives_reopening(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store
            .put_deployment(
                "iris",
                &json!({"model": "iris@1"}),
                None,
                "create",
                "a",
                Some(0),
                1,
            )
            .await
            .unwrap();
        store
            .insert_predictions(&[prediction("k-1", "iris", "primary", 1, 2)])
            .await
            .unwrap();
        store.put_feedback("k-1", 0, &json!(1), 3).await.unwrap();
        store
            .insert_alert_event(&NewAlertEvent {
                deployment: "iris".into(),
                rule: "psi".into(),
                state: "firing".into(),
                value: Some(0.4),
                message: "drift".into(),
                created_at_ms: 4,
            })
            .await
            .unwrap();
        drop(store);

        let store = Store::connect(url).await.unwrap();
        assert_eq!(store.get_deployment("iris").await.unwrap().revision, 1);
        assert_eq!(
            store.get_prediction("k-1").await.unwrap().labels,
            [Some(json!(1))]
        );
        assert_eq!(store.alert_events("iris", 0).await.unwrap().len(), 1);
        // The next revision still continues from the stored one.
        let next = store
            .put_deployment(
                "iris",
                &json!({"model": "iris@2"}),
                None,
                "update",
                "a",
                Some(1),
                5,
            )
            .await
            .unwrap();
        assert_eq!(next.revision, 2);
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
    deployments_have_revisions_and_compare_and_set,
    undeploy_keeps_history_and_recreate_continues_it,
    concurrent_editors_never_reuse_a_revision,
    a_batch_is_written_whole_or_not_at_all,
    recent_predictions_window_limit_roles_and_labels,
    feedback_upserts_and_is_checked,
    pruning_by_age_and_count_takes_feedback_along,
    alert_events_newest_first,
    concurrent_batches_lose_nothing,
    a_batch_of_five_hundred_is_one_transaction,
    everything_survives_reopening,
    column_records_read_back_as_rows_in_writer_order,
    writer_checkpoints_are_compare_and_set,
);
