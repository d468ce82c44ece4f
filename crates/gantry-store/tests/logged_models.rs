//! MLflow 3's logged models in the store, against real databases: SQLite always, and
//! PostgreSQL when `GANTRY_TEST_POSTGRES_URL` is set. Every case runs on both.

#![allow(clippy::unwrap_used)]

mod support;

mod cases {
    use gantry_store::{
        KeyValue, LoggedModelMetricInput, MetricPoint, NewLoggedModel, NewTrackingRun, RunOutput,
        SearchQuery, Store, StoreError,
    };

    async fn new_run(store: &Store, exp: &str) -> String {
        store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: exp.into(),
                    user_id: "alice".into(),
                    run_name: Some("trainer".into()),
                    start_time: Some(10),
                    tags: Vec::new(),
                },
                10,
            )
            .await
            .unwrap()
            .info
            .run_id
    }

    fn model(exp: &str, name: &str, run: Option<&str>) -> NewLoggedModel {
        NewLoggedModel {
            experiment_id: exp.into(),
            name: Some(name.into()),
            source_run_id: run.map(str::to_owned),
            model_type: Some("toy".into()),
            tags: vec![KeyValue::new("team", "ml")],
            params: vec![KeyValue::new("depth", "3")],
        }
    }

    fn search(exp: &str, filter: &str) -> SearchQuery {
        SearchQuery {
            experiment_ids: vec![exp.into()],
            filter: filter.into(),
            ..SearchQuery::default()
        }
    }

    pub async fn lifecycle_tags_params_metrics_and_outputs(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let exp = store.create_experiment("lm", None, &[], 1).await.unwrap();
        let run = new_run(&store, &exp).await;
        let m = store
            .create_logged_model(&model(&exp, "model", Some(&run)), 100)
            .await
            .unwrap();
        let hex = m.model_id.strip_prefix("m-").unwrap();
        assert_eq!(hex.len(), 32);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(m.status, "PENDING");
        assert_eq!(m.lifecycle_stage, "active");
        assert_eq!(m.source_run_id.as_deref(), Some(run.as_str()));
        assert_eq!(m.model_type.as_deref(), Some("toy"));
        assert_eq!(
            m.artifact_location,
            format!("mlflow-artifacts:/{exp}/models/{}/artifacts", m.model_id)
        );
        assert_eq!((m.creation_time, m.last_update_time), (100, 100));
        assert_eq!(m.tags, [KeyValue::new("team", "ml")]);
        assert_eq!(m.params, [KeyValue::new("depth", "3")]);

        // An unnamed model gets a name; a missing or deleted experiment takes none.
        let unnamed = NewLoggedModel {
            experiment_id: exp.clone(),
            ..NewLoggedModel::default()
        };
        let named = store.create_logged_model(&unnamed, 101).await.unwrap();
        assert!(!named.name.is_empty());
        assert_eq!(named.source_run_id, None);
        let err = store
            .create_logged_model(&model("987654", "x", None), 101)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        let gone = store.create_experiment("gone", None, &[], 1).await.unwrap();
        store.set_experiment_deleted(&gone, true, 2).await.unwrap();
        let err = store
            .create_logged_model(&model(&gone, "x", None), 101)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");

        // Finalize.
        let ready = store
            .finalize_logged_model(&m.model_id, "READY", 200)
            .await
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.last_update_time),
            ("READY", 200)
        );
        let err = store
            .finalize_logged_model(&m.model_id, "DONE", 201)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");

        // Tags: set, overwrite, delete; a missing tag is not found.
        store
            .set_logged_model_tags(
                &m.model_id,
                &[KeyValue::new("team", "platform"), KeyValue::new("a/b", "c")],
                300,
            )
            .await
            .unwrap();
        let got = store.get_logged_model(&m.model_id, false).await.unwrap();
        assert_eq!(
            got.tags,
            [KeyValue::new("a/b", "c"), KeyValue::new("team", "platform")]
        );
        assert_eq!(got.last_update_time, 300);
        store
            .delete_logged_model_tag(&m.model_id, "a/b", 301)
            .await
            .unwrap();
        let err = store
            .delete_logged_model_tag(&m.model_id, "a/b", 302)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        let err = store
            .set_logged_model_tags(&m.model_id, &[KeyValue::new("../x", "v")], 303)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");

        // Params are immutable: the same value again is fine, another one is refused.
        store
            .log_logged_model_params(
                &m.model_id,
                &[KeyValue::new("depth", "3"), KeyValue::new("lr", "0.1")],
                400,
            )
            .await
            .unwrap();
        let err = store
            .log_logged_model_params(&m.model_id, &[KeyValue::new("lr", "0.2")], 401)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        let got = store.get_logged_model(&m.model_id, false).await.unwrap();
        assert_eq!(
            got.params,
            [KeyValue::new("depth", "3"), KeyValue::new("lr", "0.1")]
        );

        // Linked metrics: every point, NaN kept, the same point once.
        let point = |key: &str, value: f64, step: i64| LoggedModelMetricInput {
            model_id: m.model_id.clone(),
            point: MetricPoint {
                key: key.into(),
                value,
                timestamp: 5,
                step,
            },
            dataset_name: String::new(),
            dataset_digest: String::new(),
        };
        let points = [
            point("acc", 0.5, 0),
            point("acc", 0.7, 1),
            point("acc", 0.7, 1),
            point("loss", f64::NAN, 0),
        ];
        store.log_logged_model_metrics(&run, &points).await.unwrap();
        let got = store.get_logged_model(&m.model_id, false).await.unwrap();
        let seen: Vec<(&str, i64, bool)> = got
            .metrics
            .iter()
            .map(|p| (p.point.key.as_str(), p.point.step, p.point.value.is_nan()))
            .collect();
        assert_eq!(
            seen,
            [("acc", 0, false), ("acc", 1, false), ("loss", 0, true)]
        );
        assert!(got.metrics.iter().all(|p| p.run_id == run));
        let mut stray = point("acc", 1.0, 2);
        stray.model_id = "m-0123".into();
        let err = store
            .log_logged_model_metrics(&run, &[stray])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

        // Outputs: a run lists its models once per step.
        let out = RunOutput {
            model_id: m.model_id.clone(),
            step: 0,
        };
        store
            .log_run_outputs(&run, &[out.clone(), out.clone()])
            .await
            .unwrap();
        store
            .log_run_outputs(&run, std::slice::from_ref(&out))
            .await
            .unwrap();
        assert_eq!(store.run_outputs(&run).await.unwrap(), [out]);
        let err = store
            .log_run_outputs(
                &run,
                &[RunOutput {
                    model_id: "m-missing".into(),
                    step: 0,
                }],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        let err = store
            .log_run_outputs("0123456789abcdef0123456789abcdef", &[])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

        // Delete: soft; gone from get, search and changes, kept for allow_deleted.
        store.delete_logged_model(&m.model_id, 500).await.unwrap();
        let err = store
            .get_logged_model(&m.model_id, false)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        let kept = store.get_logged_model(&m.model_id, true).await.unwrap();
        assert_eq!(kept.lifecycle_stage, "deleted");
        for err in [
            store
                .delete_logged_model(&m.model_id, 501)
                .await
                .unwrap_err(),
            store
                .set_logged_model_tags(&m.model_id, &[KeyValue::new("k", "v")], 501)
                .await
                .unwrap_err(),
            store
                .finalize_logged_model(&m.model_id, "READY", 501)
                .await
                .unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        }
        let found = store
            .search_logged_models(&search(&exp, "name = 'model'"))
            .await
            .unwrap();
        assert!(found.items.is_empty());
    }

    pub async fn search_filters_orders_and_pages(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let exp = store.create_experiment("lm", None, &[], 1).await.unwrap();
        let other_exp = store
            .create_experiment("other", None, &[], 1)
            .await
            .unwrap();
        let run = new_run(&store, &exp).await;
        let mut ids = Vec::new();
        for (i, name) in ["b", "a", "c", "a"].iter().enumerate() {
            let mut new = model(&exp, name, (i % 2 == 0).then_some(run.as_str()));
            new.tags = vec![KeyValue::new("i", i.to_string())];
            new.params = vec![KeyValue::new("depth", (i % 2).to_string())];
            let m = store
                .create_logged_model(&new, 1000 + i as i64)
                .await
                .unwrap();
            ids.push(m.model_id);
        }
        store
            .create_logged_model(&model(&other_exp, "a", None), 2000)
            .await
            .unwrap();
        store
            .finalize_logged_model(&ids[2], "READY", 3000)
            .await
            .unwrap();

        let find = |filter: &str| {
            let q = search(&exp, filter);
            let store = store.clone();
            async move {
                store
                    .search_logged_models(&q)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|m| m.model_id)
                    .collect::<Vec<_>>()
            }
        };
        // Newest first by default.
        assert_eq!(
            find("").await,
            [
                ids[3].clone(),
                ids[2].clone(),
                ids[1].clone(),
                ids[0].clone()
            ]
        );
        assert_eq!(find("name = 'a'").await, [ids[3].clone(), ids[1].clone()]);
        assert_eq!(find("tags.i = '2'").await, [ids[2].clone()]);
        assert_eq!(
            find("params.depth = '1'").await,
            [ids[3].clone(), ids[1].clone()]
        );
        assert_eq!(find("status = 'READY'").await, [ids[2].clone()]);
        assert_eq!(
            find(&format!("source_run_id = '{run}' AND name != 'c'")).await,
            [ids[0].clone()]
        );
        assert_eq!(
            find("name LIKE 'a%' AND params.depth = '1' AND tags.i = '3'").await,
            [ids[3].clone()]
        );
        assert!(find("tags.missing = 'x'").await.is_empty());
        for bad in [
            "metrics.acc > 1",
            "run_name = 'x'",
            "name = 'a' OR name = 'b'",
        ] {
            let err = store
                .search_logged_models(&search(&exp, bad))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{bad}: {err}");
        }
        // No experiments: nothing; several: all of them.
        let none = store
            .search_logged_models(&SearchQuery::default())
            .await
            .unwrap();
        assert!(none.items.is_empty());
        let both = store
            .search_logged_models(&SearchQuery {
                experiment_ids: vec![exp.clone(), other_exp.clone()],
                filter: "name = 'a'".into(),
                ..SearchQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(both.items.len(), 3);

        // Ordered by name, then newest first among equal names.
        let by_name = store
            .search_logged_models(&SearchQuery {
                order_by: vec!["name ASC".into()],
                ..search(&exp, "")
            })
            .await
            .unwrap();
        let names: Vec<&str> = by_name.items.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "a", "b", "c"]);
        assert_eq!(by_name.items[0].model_id, ids[3]);
        let oldest = store
            .search_logged_models(&SearchQuery {
                order_by: vec!["creation_timestamp ASC".into()],
                ..search(&exp, "")
            })
            .await
            .unwrap();
        assert_eq!(oldest.items[0].model_id, ids[0]);

        // Pages: offsets, so the next page may ask for another size.
        let mut q = SearchQuery {
            max_results: Some(1),
            ..search(&exp, "")
        };
        let first = store.search_logged_models(&q).await.unwrap();
        assert_eq!(first.items.len(), 1);
        q.page_token = first.next_page_token.clone();
        q.max_results = Some(2);
        let second = store.search_logged_models(&q).await.unwrap();
        assert_eq!(second.items.len(), 2);
        q.page_token = second.next_page_token.clone();
        q.max_results = Some(10);
        let third = store.search_logged_models(&q).await.unwrap();
        assert_eq!(third.items.len(), 1);
        assert_eq!(third.next_page_token, None);
        let mut paged: Vec<String> = [first.items, second.items, third.items]
            .into_iter()
            .flatten()
            .map(|m| m.model_id)
            .collect();
        assert_eq!(paged, find("").await);
        paged.sort();
        paged.dedup();
        assert_eq!(paged.len(), 4);
        // A token belongs to its search.
        let err = store
            .search_logged_models(&SearchQuery {
                page_token: first.next_page_token,
                ..search(&exp, "name = 'a'")
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        let err = store
            .search_logged_models(&SearchQuery {
                max_results: Some(0),
                ..search(&exp, "")
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
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
    cases::lifecycle_tags_params_metrics_and_outputs,
    cases::search_filters_orders_and_pages,
);
