//! MLflow-compatible tracking in the store, against real databases: SQLite always, and
//! PostgreSQL when `GANTRY_TEST_POSTGRES_URL` is set. Every case runs on both.

#![allow(clippy::unwrap_used)]

mod support;

mod cases {
    use gantry_store::{
        KeyValue, MetricPoint, NewRegisteredModelVersion, NewTrackingRun, SearchQuery, Store,
        StoreError, TrackingRunUpdate, ViewType,
    };

    fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> MetricPoint {
        MetricPoint {
            key: key.into(),
            value,
            timestamp,
            step,
        }
    }

    async fn new_run(store: &Store, exp: &str, name: &str, start: i64) -> String {
        store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: exp.into(),
                    user_id: "alice".into(),
                    run_name: Some(name.into()),
                    start_time: Some(start),
                    tags: vec![KeyValue::new("team", "ml")],
                },
                start,
            )
            .await
            .unwrap()
            .info
            .run_id
    }

    pub async fn experiments_lifecycle(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let default = store.get_experiment("0").await.unwrap();
        assert_eq!(default.name, "Default");
        assert_eq!(default.artifact_location, "mlflow-artifacts:/0");

        let id = store
            .create_experiment("iris", None, &[KeyValue::new("owner", "bob")], 100)
            .await
            .unwrap();
        assert_ne!(id, "0");
        let e = store.get_experiment_by_name("iris").await.unwrap();
        assert_eq!(e.experiment_id, id);
        assert_eq!(e.artifact_location, format!("mlflow-artifacts:/{id}"));
        assert_eq!(e.tags, [KeyValue::new("owner", "bob")]);
        assert_eq!((e.creation_time, e.last_update_time), (100, 100));

        let err = store
            .create_experiment("iris", None, &[], 101)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        let err = store
            .create_experiment("  ", None, &[], 101)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        for missing in ["999", "x", "-1"] {
            let err = store.get_experiment(missing).await.unwrap_err();
            assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        }

        let other = store
            .create_experiment("wine", Some("s3://bucket/wine"), &[], 200)
            .await
            .unwrap();
        assert_eq!(
            store
                .get_experiment(&other)
                .await
                .unwrap()
                .artifact_location,
            "s3://bucket/wine"
        );
        store
            .rename_experiment(&other, "wine-2", 300)
            .await
            .unwrap();
        let err = store
            .rename_experiment(&other, "iris", 301)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        store
            .set_experiment_tag(&other, &KeyValue::new("k", "v"))
            .await
            .unwrap();

        // Deleting marks the experiment and its runs; restoring brings both back.
        let run = new_run(&store, &other, "r", 400).await;
        store
            .set_experiment_deleted(&other, true, 500)
            .await
            .unwrap();
        assert_eq!(
            store
                .get_tracking_run(&run)
                .await
                .unwrap()
                .info
                .lifecycle_stage,
            "deleted"
        );
        let err = store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: other.clone(),
                    ..Default::default()
                },
                600,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("active"), "{err}");
        let active = store
            .search_experiments(&SearchQuery::default())
            .await
            .unwrap();
        let names: Vec<_> = active.items.iter().map(|e| e.name.as_str()).collect();
        // Newest first: "Default" was created by the migration, after these fake times.
        assert_eq!(names, ["Default", "iris"]);
        let deleted = store
            .search_experiments(&SearchQuery {
                view: ViewType::DeletedOnly,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(deleted.items.len(), 1);
        assert_eq!(deleted.items[0].name, "wine-2");
        store
            .set_experiment_deleted(&other, false, 700)
            .await
            .unwrap();
        assert_eq!(
            store
                .get_tracking_run(&run)
                .await
                .unwrap()
                .info
                .lifecycle_stage,
            "active"
        );

        let found = store
            .search_experiments(&SearchQuery {
                filter: "name LIKE 'wi%' and tags.k = 'v'".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found.items.len(), 1);
        let page1 = store
            .search_experiments(&SearchQuery {
                max_results: Some(2),
                order_by: vec!["name ASC".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let names: Vec<_> = page1.items.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Default", "iris"]);
        let page2 = store
            .search_experiments(&SearchQuery {
                max_results: Some(2),
                order_by: vec!["name ASC".into()],
                page_token: page1.next_page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page2.items.len(), 1);
        assert_eq!(page2.items[0].name, "wine-2");
        assert!(page2.next_page_token.is_none());
    }

    pub async fn runs_params_tags_and_metrics(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let exp = store.create_experiment("e", None, &[], 1).await.unwrap();
        let created = store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: exp.clone(),
                    user_id: "alice".into(),
                    run_name: None,
                    start_time: Some(1_000),
                    tags: vec![KeyValue::new("mlflow.runName", "from-tag")],
                },
                999,
            )
            .await
            .unwrap();
        let id = created.info.run_id.clone();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(created.info.run_name, "from-tag");
        assert_eq!(created.info.status, "RUNNING");
        assert_eq!(created.info.start_time, Some(1_000));
        assert_eq!(
            created.info.artifact_uri,
            format!("mlflow-artifacts:/{exp}/{id}/artifacts")
        );
        assert_eq!(created.tags, [KeyValue::new("mlflow.runName", "from-tag")]);

        // A run without any name gets a random one.
        let unnamed = store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: exp.clone(),
                    ..Default::default()
                },
                5,
            )
            .await
            .unwrap();
        assert!(!unnamed.info.run_name.is_empty());

        store
            .log_batch(
                &id,
                &[
                    metric("acc", 0.5, 10, 0),
                    metric("acc", 0.7, 11, 1),
                    metric("acc", 0.6, 12, 0),
                    metric("nan", f64::NAN, 10, 0),
                    metric("inf", f64::INFINITY, 10, 0),
                    metric("ninf", f64::NEG_INFINITY, 10, 0),
                ],
                &[KeyValue::new("lr", "0.1"), KeyValue::new("lr", "0.1")],
                &[KeyValue::new("t", "1"), KeyValue::new("t", "2")],
            )
            .await
            .unwrap();
        // The same param value again is fine; another one is refused and the whole batch
        // with it.
        store
            .log_batch(&id, &[], &[KeyValue::new("lr", "0.1")], &[])
            .await
            .unwrap();
        let err = store
            .log_batch(
                &id,
                &[metric("acc", 0.99, 99, 99)],
                &[KeyValue::new("lr", "0.2")],
                &[KeyValue::new("t", "3")],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("lr"), "{err}");

        let run = store.get_tracking_run(&id).await.unwrap();
        assert_eq!(run.params, [KeyValue::new("lr", "0.1")]);
        assert!(run.tags.contains(&KeyValue::new("t", "2")));
        let latest = |key: &str| run.metrics.iter().find(|m| m.key == key).unwrap().clone();
        // Largest step wins over a later timestamp at a smaller step.
        assert_eq!(latest("acc"), metric("acc", 0.7, 11, 1));
        assert!(latest("nan").value.is_nan());
        assert_eq!(latest("inf").value, f64::INFINITY);
        assert_eq!(latest("ninf").value, f64::NEG_INFINITY);

        // Renaming through the tag or the update keeps name and tag together.
        store
            .log_batch(&id, &[], &[], &[KeyValue::new("mlflow.runName", "renamed")])
            .await
            .unwrap();
        assert_eq!(
            store.get_tracking_run(&id).await.unwrap().info.run_name,
            "renamed"
        );
        let info = store
            .update_tracking_run(
                &id,
                &TrackingRunUpdate {
                    status: Some("FINISHED".into()),
                    end_time: Some(2_000),
                    run_name: Some("final".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (info.status.as_str(), info.end_time, info.run_name.as_str()),
            ("FINISHED", Some(2_000), "final")
        );
        let run = store.get_tracking_run(&id).await.unwrap();
        assert!(run.tags.contains(&KeyValue::new("mlflow.runName", "final")));
        let err = store
            .update_tracking_run(
                &id,
                &TrackingRunUpdate {
                    status: Some("DONE".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");

        // History: every point, by step then timestamp, paginated with tokens.
        let page = store.metric_history(&id, "acc", None, None).await.unwrap();
        let points: Vec<_> = page.items.iter().map(|m| (m.step, m.value)).collect();
        assert_eq!(points, [(0, 0.5), (0, 0.6), (1, 0.7)]);
        let first = store
            .metric_history(&id, "acc", Some(2), None)
            .await
            .unwrap();
        assert_eq!(first.items.len(), 2);
        let rest = store
            .metric_history(&id, "acc", Some(2), first.next_page_token.as_deref())
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 1);
        assert!(rest.next_page_token.is_none());
        let err = store
            .metric_history(&id, "nan", Some(2), first.next_page_token.as_deref())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("page_token"), "{err}");
        // A retried batch does not duplicate points.
        store
            .log_batch(&id, &[metric("acc", 0.7, 11, 1)], &[], &[])
            .await
            .unwrap();
        assert_eq!(
            store
                .metric_history(&id, "acc", None, None)
                .await
                .unwrap()
                .items
                .len(),
            3
        );

        // Every value reads back exactly (history is read in bulk: SQLite rows straight from
        // SQLite, PostgreSQL through the native driver), infinities and NaN too, in order.
        let tricky = [
            0.1,
            1.0 / 3.0,
            -2.5e-308,
            f64::from_bits(1),
            f64::MAX,
            -1.0491224717154157e247,
            6.788250289738745e152,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            123_456_789_012_345_680.0,
        ];
        let exact: Vec<MetricPoint> = tricky
            .iter()
            .enumerate()
            .map(|(i, v)| metric("exact", *v, 5_000 + i as i64, i as i64))
            .collect();
        store.log_batch(&id, &exact, &[], &[]).await.unwrap();
        let back = store
            .metric_history(&id, "exact", None, None)
            .await
            .unwrap();
        assert_eq!(back.items.len(), tricky.len());
        for (got, want) in back.items.iter().zip(&tricky) {
            assert!(
                got.value.to_bits() == want.to_bits() || (got.value.is_nan() && want.is_nan()),
                "{} read back as {}",
                want,
                got.value
            );
        }
        let steps: Vec<i64> = back.items.iter().map(|m| m.step).collect();
        assert_eq!(steps, (0..tricky.len() as i64).collect::<Vec<_>>());
        let timestamps: Vec<i64> = back.items.iter().map(|m| m.timestamp).collect();
        assert_eq!(timestamps[3], 5_003);
        assert!(
            store
                .metric_history(&id, "no-such-metric", None, None)
                .await
                .unwrap()
                .items
                .is_empty()
        );

        // Deleted runs refuse writes until restored; unknown runs are not found.
        store
            .set_tracking_run_deleted(&id, true, 3_000)
            .await
            .unwrap();
        let err = store
            .log_batch(&id, &[metric("x", 1.0, 1, 0)], &[], &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("active"), "{err}");
        store
            .set_tracking_run_deleted(&id, false, 3_001)
            .await
            .unwrap();
        store
            .log_batch(&id, &[metric("x", 1.0, 1, 0)], &[], &[])
            .await
            .unwrap();
        for err in [
            store.get_tracking_run("nope").await.unwrap_err(),
            store
                .log_batch("nope", &[metric("x", 1.0, 1, 0)], &[], &[])
                .await
                .unwrap_err(),
            store.log_batch("nope", &[], &[], &[]).await.unwrap_err(),
            store
                .metric_history("nope", "x", None, None)
                .await
                .unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        }
        store.delete_tracking_run_tag(&id, "t").await.unwrap();
        let err = store.delete_tracking_run_tag(&id, "t").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

        // Values at MLflow's limits fit (no index entry limit gets in the way).
        store
            .log_batch(
                &id,
                &[],
                &[KeyValue::new("long", "p".repeat(6000))],
                &[KeyValue::new("long", "t".repeat(8000))],
            )
            .await
            .unwrap();

        // Invalid keys are refused before anything is written.
        for bad in ["../x", "/abs", "a//b"] {
            let err = store
                .log_batch(&id, &[metric(bad, 1.0, 1, 0)], &[], &[])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        }
    }

    pub async fn search_filters_orders_and_pages(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let a = store.create_experiment("a", None, &[], 1).await.unwrap();
        let b = store.create_experiment("b", None, &[], 1).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..10i64 {
            let exp = if i % 2 == 0 { &a } else { &b };
            let id = new_run(&store, exp, &format!("run-{i}"), 1_000 + i).await;
            let lr = if i < 5 { "0.1" } else { "0.01" };
            let mut metrics = vec![metric("acc", i as f64 / 10.0, 1, 0)];
            if i == 9 {
                metrics.clear();
            }
            store
                .log_batch(&id, &metrics, &[KeyValue::new("lr", lr)], &[])
                .await
                .unwrap();
            ids.push(id);
        }
        let exps = vec![a.clone(), b.clone()];
        let search =
            |filter: &str, order: &[&str], max: Option<usize>, token: Option<String>| SearchQuery {
                experiment_ids: exps.clone(),
                filter: filter.into(),
                view: ViewType::ActiveOnly,
                max_results: max,
                order_by: order.iter().map(|s| s.to_string()).collect(),
                page_token: token,
            };
        let names = |page: &gantry_store::Page<gantry_store::TrackingRun>| -> Vec<String> {
            page.items.iter().map(|r| r.info.run_name.clone()).collect()
        };

        // Default order: newest first.
        let all = store
            .search_tracking_runs(&search("", &[], None, None))
            .await
            .unwrap();
        assert_eq!(names(&all)[0], "run-9");
        assert_eq!(all.items.len(), 10);
        assert!(all.items[0].params.contains(&KeyValue::new("lr", "0.01")));

        let hits = store
            .search_tracking_runs(&search(
                "metrics.acc > 0.15 and params.lr = '0.1'",
                &["metrics.acc DESC"],
                None,
                None,
            ))
            .await
            .unwrap();
        assert_eq!(names(&hits), ["run-4", "run-3", "run-2"]);

        // Runs without the metric sort last both ways.
        let asc = store
            .search_tracking_runs(&search("", &["metrics.acc ASC"], None, None))
            .await
            .unwrap();
        assert_eq!(names(&asc)[0], "run-0");
        assert_eq!(names(&asc)[9], "run-9");
        let desc = store
            .search_tracking_runs(&search("", &["metrics.acc DESC"], None, None))
            .await
            .unwrap();
        assert_eq!(names(&desc)[0], "run-8");
        assert_eq!(names(&desc)[9], "run-9");

        let like = store
            .search_tracking_runs(&search(
                "attributes.run_name LIKE 'run-1%' and tags.team = 'ml' and attributes.status = 'RUNNING'",
                &[],
                None,
                None,
            ))
            .await
            .unwrap();
        assert_eq!(names(&like), ["run-1"]);
        let by_id = store
            .search_tracking_runs(&search(
                &format!("attributes.run_id IN ('{}', '{}')", ids[2], ids[7]),
                &["attributes.start_time ASC"],
                None,
                None,
            ))
            .await
            .unwrap();
        assert_eq!(names(&by_id), ["run-2", "run-7"]);

        // Pagination: pages of 4 cover every run once; a token only fits its query.
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = store
                .search_tracking_runs(&search(
                    "",
                    &["params.lr", "attributes.run_name"],
                    Some(4),
                    token,
                ))
                .await
                .unwrap();
            seen.extend(names(&page));
            token = page.next_page_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[0], "run-5");
        // The next page may be asked with another page size (MLflow's tokens are offsets).
        let two = store
            .search_tracking_runs(&search(
                "",
                &["params.lr", "attributes.run_name"],
                Some(2),
                None,
            ))
            .await
            .unwrap();
        let six = store
            .search_tracking_runs(&search(
                "",
                &["params.lr", "attributes.run_name"],
                Some(6),
                two.next_page_token.clone(),
            ))
            .await
            .unwrap();
        let mut resized = names(&two);
        resized.extend(names(&six));
        assert_eq!(resized, seen[..8].to_vec());
        let first = store
            .search_tracking_runs(&search("", &[], Some(4), None))
            .await
            .unwrap();
        let err = store
            .search_tracking_runs(&search(
                "params.lr = '0.1'",
                &[],
                Some(4),
                first.next_page_token,
            ))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("page_token"), "{err}");

        for (filter, max) in [
            ("metrics.acc > 'x'", None),
            ("", Some(50_001)),
            ("", Some(0)),
        ] {
            let err = store
                .search_tracking_runs(&search(filter, &[], max, None))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Invalid { .. }),
                "{filter} {max:?}: {err}"
            );
        }

        // Deleted runs only show with their view type.
        store
            .set_tracking_run_deleted(&ids[0], true, 9)
            .await
            .unwrap();
        let active = store
            .search_tracking_runs(&search("", &[], None, None))
            .await
            .unwrap();
        assert_eq!(active.items.len(), 9);
        let mut q = search("", &[], None, None);
        q.view = ViewType::DeletedOnly;
        let deleted = store.search_tracking_runs(&q).await.unwrap();
        assert_eq!(names(&deleted), ["run-0"]);
    }

    /// 32 writers logging batches at once: every point is there afterwards.
    pub async fn concurrent_batches_lose_nothing(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let run = new_run(&store, "0", "busy", 1).await;
        let mut tasks = Vec::new();
        for w in 0..32i64 {
            let store = store.clone();
            let run = run.clone();
            tasks.push(tokio::spawn(async move {
                for batch in 0..5i64 {
                    let metrics: Vec<_> = (0..200i64)
                        .map(|i| metric(&format!("w{w}"), i as f64, batch, batch * 200 + i))
                        .collect();
                    store.log_batch(&run, &metrics, &[], &[]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let run_data = store.get_tracking_run(&run).await.unwrap();
        assert_eq!(run_data.metrics.len(), 32);
        for w in 0..32 {
            let h = store
                .metric_history(&run, &format!("w{w}"), None, None)
                .await
                .unwrap();
            assert_eq!(h.items.len(), 1000, "writer {w}");
            let latest = run_data
                .metrics
                .iter()
                .find(|m| m.key == format!("w{w}"))
                .unwrap();
            assert_eq!(latest.step, 999);
        }
    }

    /// Batches logged at once, some of them refused (unknown run, deleted run, a param that
    /// would change): each refused batch fails alone and leaves nothing, every other batch is
    /// stored whole — on SQLite they share transactions of the store's one writer.
    pub async fn refused_batches_fail_alone(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let good = new_run(&store, "0", "good", 1).await;
        let gone = new_run(&store, "0", "gone", 1).await;
        let race = new_run(&store, "0", "race", 1).await;
        store
            .log_batch(&good, &[], &[KeyValue::new("lr", "0.1")], &[])
            .await
            .unwrap();
        store
            .set_tracking_run_deleted(&gone, true, 2)
            .await
            .unwrap();

        let points = |key: &str, n: i64| -> Vec<MetricPoint> {
            (0..n).map(|i| metric(key, i as f64, 5, i)).collect()
        };
        let mut tasks = Vec::new();
        for w in 0..24i64 {
            let store = store.clone();
            let (good, gone, race) = (good.clone(), gone.clone(), race.clone());
            tasks.push(tokio::spawn(async move {
                let key = format!("w{w}");
                match w % 6 {
                    // Accepted: metrics, the same param value again, a tag.
                    0 | 1 => {
                        store
                            .log_batch(
                                &good,
                                &points(&key, 300),
                                &[KeyValue::new("lr", "0.1")],
                                &[KeyValue::new(&key, "t")],
                            )
                            .await
                    }
                    // Refused: the param would change; its metrics must not stay.
                    2 => {
                        store
                            .log_batch(
                                &good,
                                &points(&key, 300),
                                &[KeyValue::new("lr", "0.2")],
                                &[],
                            )
                            .await
                    }
                    3 => store.log_batch(&gone, &points(&key, 10), &[], &[]).await,
                    4 => {
                        store
                            .log_batch(
                                "0123456789abcdef0123456789abcdef",
                                &points(&key, 10),
                                &[],
                                &[],
                            )
                            .await
                    }
                    // Racing for one param of a fresh run: one value wins.
                    _ => {
                        store
                            .log_batch(&race, &points(&key, 10), &[KeyValue::new("p", &key)], &[])
                            .await
                    }
                }
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let mut race_winners = Vec::new();
        for (w, r) in results.iter().enumerate() {
            match w % 6 {
                0 | 1 => assert!(r.is_ok(), "writer {w}: {r:?}"),
                2 | 3 => assert!(
                    matches!(r, Err(StoreError::Invalid { .. })),
                    "writer {w}: {r:?}"
                ),
                4 => assert!(
                    matches!(r, Err(StoreError::NotFound { .. })),
                    "writer {w}: {r:?}"
                ),
                _ => {
                    if r.is_ok() {
                        race_winners.push(format!("w{w}"));
                    } else {
                        assert!(
                            matches!(r, Err(StoreError::Invalid { .. })),
                            "writer {w}: {r:?}"
                        );
                    }
                }
            }
        }
        let run = store.get_tracking_run(&good).await.unwrap();
        for w in 0..24 {
            let key = format!("w{w}");
            let h = store.metric_history(&good, &key, None, None).await.unwrap();
            let expected = if w % 6 < 2 { 300 } else { 0 };
            assert_eq!(h.items.len(), expected, "writer {w}");
            assert_eq!(
                run.tags.iter().any(|t| t.key == key),
                w % 6 < 2,
                "writer {w}"
            );
        }
        assert_eq!(run.params, [KeyValue::new("lr", "0.1")]);
        assert!(
            store
                .metric_history(&gone, "w3", None, None)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert_eq!(race_winners.len(), 1, "{race_winners:?}");
        let raced = store.get_tracking_run(&race).await.unwrap();
        assert_eq!(raced.params, [KeyValue::new("p", &race_winners[0])]);
        assert_eq!(
            raced
                .metrics
                .iter()
                .map(|m| m.key.as_str())
                .collect::<Vec<_>>(),
            [race_winners[0].as_str()]
        );
    }

    pub async fn registry_models_versions_and_aliases(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let m = store
            .create_registered_model("iris", Some("flowers"), &[KeyValue::new("team", "ml")], 10)
            .await
            .unwrap();
        assert_eq!(m.description.as_deref(), Some("flowers"));
        assert_eq!(m.tags, [KeyValue::new("team", "ml")]);
        let err = store
            .create_registered_model("iris", None, &[], 11)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        let err = store
            .create_registered_model("bad name", None, &[], 11)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");

        for i in 1..=3 {
            let v = store
                .create_registered_model_version(
                    &NewRegisteredModelVersion {
                        name: "iris".into(),
                        source: format!("runs:/r{i}/model"),
                        run_id: Some(format!("r{i}")),
                        description: Some(format!("v{i}")),
                        tags: vec![KeyValue::new("n", i.to_string())],
                        user_id: Some("alice".into()),
                        ..Default::default()
                    },
                    100 + i,
                )
                .await
                .unwrap();
            assert_eq!(v.version, i);
            assert_eq!(v.status, "READY");
            assert_eq!(v.current_stage, "None");
        }
        // The gantry registry sees the same versions.
        let gantry = store.resolve_model("iris@latest").await.unwrap();
        assert_eq!(gantry.version, 3);
        assert_eq!(gantry.flavor, "mlflow");
        assert_eq!(gantry.artifact_digest, "runs:/r3/model");

        store
            .set_model_alias("iris", 2, "champion", 200)
            .await
            .unwrap();
        let v = store
            .registered_model_version_by_alias("iris", "champion")
            .await
            .unwrap();
        assert_eq!(v.version, 2);
        assert_eq!(v.aliases, ["champion"]);
        let m = store.get_registered_model("iris").await.unwrap();
        assert_eq!(m.aliases, [("champion".to_string(), 2)]);
        assert_eq!(m.latest_versions[0].version, 3);

        let v = store
            .update_registered_model_version("iris", 1, Some("first"), 300)
            .await
            .unwrap();
        assert_eq!(v.description.as_deref(), Some("first"));
        assert_eq!(v.last_updated_timestamp, 300);
        store
            .set_registered_model_version_tag("iris", 1, &KeyValue::new("stage", "old"))
            .await
            .unwrap();

        let found = store
            .search_registered_model_versions(&SearchQuery {
                filter: "name = 'iris' and tags.stage = 'old'".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found.items.len(), 1);
        assert_eq!(found.items[0].version, 1);
        let all = store
            .search_registered_model_versions(&SearchQuery {
                filter: "name = 'iris'".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let versions: Vec<_> = all.items.iter().map(|v| v.version).collect();
        assert_eq!(versions, [3, 2, 1]);

        store
            .create_registered_model("wine", None, &[], 12)
            .await
            .unwrap();
        let models = store
            .search_registered_models(&SearchQuery {
                filter: "name LIKE 'ir%'".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(models.items.len(), 1);
        assert_eq!(models.items[0].name, "iris");

        store
            .delete_registered_model_version("iris", 2)
            .await
            .unwrap();
        let err = store
            .registered_model_version_by_alias("iris", "champion")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        let err = store
            .get_registered_model_version("iris", 2)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        store.delete_registered_model("iris").await.unwrap();
        let err = store.get_registered_model("iris").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        assert!(store.resolve_model("iris").await.is_err());
    }
}

mod series {
    use gantry_store::{KeyValue, MetricPoint, NewTrackingRun, Store};

    /// The UI's charts read long histories reduced in the database: every column's smallest
    /// and largest value survive, short histories come back whole, NaN points are left out.
    pub async fn long_histories_keep_every_columns_extremes(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let exp = store
            .create_experiment("curves", None, &[], 1)
            .await
            .unwrap();
        let run = store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: exp,
                    user_id: "u".into(),
                    run_name: Some("long".into()),
                    start_time: Some(1),
                    tags: vec![KeyValue::new("t", "1")],
                },
                1,
            )
            .await
            .unwrap()
            .info
            .run_id;
        let n = 20_000i64;
        for start in (0..n).step_by(1000) {
            let batch: Vec<MetricPoint> = (start..start + 1000)
                .map(|i| MetricPoint {
                    key: "loss".into(),
                    value: if i == 12_345 {
                        1e6
                    } else if i == 777 {
                        -5.0
                    } else {
                        1.0 / (1.0 + i as f64)
                    },
                    timestamp: 1_000_000 + i * 10,
                    step: i,
                })
                .collect();
            store.log_batch(&run, &batch, &[], &[]).await.unwrap();
        }
        store
            .log_batch(
                &run,
                &[MetricPoint {
                    key: "loss".into(),
                    value: f64::NAN,
                    timestamp: 5,
                    step: n + 10,
                }],
                &[],
                &[],
            )
            .await
            .unwrap();
        for by_time in [false, true] {
            let pts = store
                .metric_series(&run, "loss", by_time, 400)
                .await
                .unwrap();
            assert!(pts.len() <= 800, "{}", pts.len());
            assert!(pts.len() >= 400, "{}", pts.len());
            let max = pts.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            let min = pts.iter().map(|p| p.1).fold(f64::MAX, f64::min);
            assert_eq!(max, 1e6);
            assert_eq!(min, -5.0);
            assert!(pts.iter().all(|p| p.1.is_finite()));
            assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0), "x in order");
            // The spike sits where it was logged.
            let spike = pts.iter().find(|p| p.1 == 1e6).unwrap();
            let x = if by_time {
                1_000_000.0 + 123_450.0
            } else {
                12_345.0
            };
            let width = if by_time {
                20_000.0 * 10.0 / 400.0
            } else {
                20_000.0 / 400.0
            };
            assert!((spike.0 - x).abs() <= width, "{} vs {x}", spike.0);
        }
        // Short: every point, in order.
        let pts = store
            .metric_series(&run, "loss", false, 10_000)
            .await
            .unwrap();
        assert_eq!(pts.len(), n as usize);
        assert_eq!(pts[777], (777.0, -5.0));
        assert!(
            store
                .metric_series(&run, "none", false, 400)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

macro_rules! on_every_backend {
    ($($module:ident::$case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::support::TestDb::sqlite();
                    crate::$module::$case(&db.url).await;
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
                    crate::$module::$case(&db.url).await;
                    db.finish().await;
                }
            )+
        }
    };
}

on_every_backend!(
    cases::experiments_lifecycle,
    cases::runs_params_tags_and_metrics,
    cases::search_filters_orders_and_pages,
    cases::concurrent_batches_lose_nothing,
    cases::refused_batches_fail_alone,
    cases::registry_models_versions_and_aliases,
    series::long_histories_keep_every_columns_extremes,
);

/// A SQLite database written before metric points moved into a WITHOUT ROWID table (migration
/// 13) keeps every point, in order, and takes new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_metric_points_survive_the_move_to_a_keyed_table() {
    use gantry_store::{KeyValue, MetricPoint, Store};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gantry.db", dir.path().display());
    {
        // The schema as of migration 12.
        let pool = crate::support::sqlite_at_migration(&url, 12).await;
        sqlx::query(
            "INSERT INTO mlflow_runs (run_uuid, experiment_id, run_name, user_id, status, \
             start_time, lifecycle_stage, artifact_uri) \
             VALUES ('00000000000000000000000000000001', 0, 'old', 'u', 'RUNNING', 1, \
             'active', '')",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (step, value, nan) in [(2, 0.5, 0), (1, -1.25, 0), (3, 0.0, 1), (1, 7.0, 0)] {
            sqlx::query(
                "INSERT INTO mlflow_metrics (run_uuid, key, step, timestamp_ms, value, is_nan) \
                 VALUES ('00000000000000000000000000000001', 'loss', ?1, 10, ?2, ?3)",
            )
            .bind(step)
            .bind(value)
            .bind(nan)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }

    let store = Store::connect(&url).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let ddl: String =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'mlflow_metrics'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ddl.contains("WITHOUT ROWID"), "{ddl}");
    pool.close().await;
    let run = "00000000000000000000000000000001";
    let points = |h: Vec<MetricPoint>| -> Vec<(i64, String)> {
        h.into_iter()
            .map(|m| (m.step, format!("{}", m.value)))
            .collect()
    };
    let h = store.metric_history(run, "loss", None, None).await.unwrap();
    assert_eq!(
        points(h.items),
        [
            (1, "-1.25".into()),
            (1, "7".into()),
            (2, "0.5".into()),
            (3, "NaN".into())
        ]
    );
    let point = MetricPoint {
        key: "loss".into(),
        value: 0.25,
        timestamp: 11,
        step: 4,
    };
    // A point logged again is still kept once.
    store
        .log_batch(
            run,
            &[point.clone(), point],
            &[KeyValue::new("p", "1")],
            &[],
        )
        .await
        .unwrap();
    let h = store.metric_history(run, "loss", None, None).await.unwrap();
    assert_eq!(h.items.len(), 5);
}
