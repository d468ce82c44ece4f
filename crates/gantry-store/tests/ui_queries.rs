//! The web UI's store queries against real databases: SQLite in a temp dir always, and
//! PostgreSQL when `GANTRY_TEST_POSTGRES_URL` is set. Every case runs on both; each test gets
//! its own database.

// Helpers and cases are plain async fns, which clippy's allow-unwrap-in-tests does not cover.
#![allow(clippy::unwrap_used)]

mod support;

mod fixtures {
    use gantry_store::{RunRecord, RunStatus, StepRunRecord, StepStatus};

    pub fn run(id: &str, pipeline: &str, created_at_ms: i64, status: RunStatus) -> RunRecord {
        RunRecord {
            id: id.into(),
            pipeline: pipeline.into(),
            status,
            spec_file: "/work/p/gantry.yaml".into(),
            spec_yaml: "name: p\nsteps: []\n".into(),
            params_json: "{}".into(),
            images_json: "{}".into(),
            no_cache: false,
            rerun_of: None,
            created_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            owner_pid: None,
            owner_host: None,
            error: None,
            submitted_by: None,
        }
    }

    pub fn step(
        id: &str,
        run_id: &str,
        step: &str,
        attempt: i64,
        status: StepStatus,
    ) -> StepRunRecord {
        StepRunRecord {
            id: id.into(),
            run_id: run_id.into(),
            step: step.into(),
            seq: 0,
            attempt,
            status,
            exit_code: None,
            reason: None,
            cache_key: None,
            cached_from: None,
            image_digest: None,
            started_at_ms: None,
            finished_at_ms: None,
            requested_cpu_millis: 0,
            requested_memory_bytes: 0,
            requested_gpu: 0,
            peak_memory_bytes: None,
            cpu_micros: None,
            wall_ms: None,
            inputs_json: "{}".into(),
            outputs_json: "{}".into(),
            gpu_model: None,
            gpu_util_percent: None,
            gpu_memory_peak_bytes: None,
            gpu_idle_ms: None,
            resources_note: None,
            usage_key: None,
            gpu_devices: None,
        }
    }
}

mod cases {
    use std::collections::{BTreeMap, HashSet};

    use gantry_store::{
        Cmp, LogChunk, NewToken, RunCursor, RunQuery, RunRecord, RunSort, RunStatus, StepStatus,
        StepSummary, Store,
    };
    use serde_json::json;

    use crate::fixtures::{run, step};

    /// Every page of `q` (starting where it says), following `next` to the end; panics on a
    /// page that is neither full nor the last one.
    async fn all_pages(store: &Store, q: &RunQuery) -> Vec<Vec<String>> {
        let mut q = q.clone();
        let mut pages = Vec::new();
        loop {
            let page = store.list_runs_page(&q).await.unwrap();
            let ids: Vec<String> = page.runs.iter().map(|r| r.id.clone()).collect();
            pages.push(ids);
            assert!(pages.len() < 10_000, "paging does not end");
            match page.next {
                Some(c) => q.after = Some(c),
                None => return pages,
            }
        }
    }

    fn ids(q: &[RunRecord]) -> Vec<String> {
        q.iter().map(|r| r.id.clone()).collect()
    }

    async fn page_ids(store: &Store, q: &RunQuery) -> Vec<String> {
        let page = store.list_runs_page(q).await.unwrap();
        assert!(page.next.is_none(), "expected one page for {q:?}");
        ids(&page.runs)
    }

    /// 130 runs in 13 groups of equal `created_at_ms`, durations with ties and runs without
    /// a finish: every sort and order, at several page sizes, shows each run exactly once, in
    /// (key, id) order.
    pub async fn pages_show_every_run_once_in_key_then_id_order(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let mut expected: Vec<(i64, i64, String)> = Vec::new(); // (created, duration, id)
        for i in 0..130i64 {
            // Ids not in creation order, so the tie-break on id is visible.
            let id = format!("r-{:03}", (i * 37) % 130);
            let mut r = run(&id, "p", 1_000 + i / 10, RunStatus::Succeeded);
            let duration = if i % 7 == 0 {
                // Never finished (still running, or killed): sorts as -1.
                r.started_at_ms = Some(5_000);
                -1
            } else if i % 11 == 0 {
                // Never started either.
                -1
            } else {
                r.started_at_ms = Some(5_000 + i);
                r.finished_at_ms = Some(5_000 + i + (i % 5) * 100);
                (i % 5) * 100
            };
            expected.push((r.created_at_ms, duration, id));
            store.create_run(&r).await.unwrap();
        }
        for sort in [RunSort::Created, RunSort::Duration] {
            for ascending in [true, false] {
                let mut want: Vec<(i64, String)> = expected
                    .iter()
                    .map(|(c, d, id)| {
                        let key = if sort == RunSort::Created { *c } else { *d };
                        (key, id.clone())
                    })
                    .collect();
                want.sort();
                if !ascending {
                    want.reverse();
                }
                let want: Vec<String> = want.into_iter().map(|(_, id)| id).collect();
                for limit in [1usize, 7, 13, 50, 130, 500] {
                    let q = RunQuery {
                        sort,
                        ascending,
                        limit,
                        ..RunQuery::default()
                    };
                    let pages = all_pages(&store, &q).await;
                    let what = format!("{sort:?} ascending={ascending} limit={limit}");
                    let n_pages = 130usize.div_ceil(limit);
                    assert_eq!(pages.len(), n_pages, "{what}: {pages:?}");
                    for p in &pages {
                        assert!(p.len() <= limit, "{what}");
                    }
                    for p in &pages[..n_pages - 1] {
                        assert_eq!(p.len(), limit, "{what}: a page before the last is short");
                    }
                    let got: Vec<String> = pages.concat();
                    let unique: HashSet<&String> = got.iter().collect();
                    assert_eq!(unique.len(), got.len(), "{what}: a run repeated");
                    assert_eq!(got, want, "{what}");
                }
            }
        }
        // The cursor of a run without a finish is -1 under the duration sort.
        let q = RunQuery {
            sort: RunSort::Duration,
            ascending: true,
            limit: 1,
            ..RunQuery::default()
        };
        let first = store.list_runs_page(&q).await.unwrap();
        let next = first.next.unwrap();
        assert_eq!(next.key, -1);
        assert_eq!(next.id, first.runs[0].id);
        assert!(first.runs[0].finished_at_ms.is_none());
        // A cursor taken from the middle of a group of ties continues inside it.
        let q = RunQuery {
            ascending: true,
            after: Some(RunCursor {
                key: 1_003,
                id: "r-050".into(),
            }),
            limit: 1000,
            ..RunQuery::default()
        };
        let got = page_ids(&store, &q).await;
        let want: Vec<String> = {
            let mut v: Vec<(i64, String)> = expected
                .iter()
                .map(|(c, _, id)| (*c, id.clone()))
                .filter(|(c, id)| (*c, id.as_str()) > (1_003, "r-050"))
                .collect();
            v.sort();
            v.into_iter().map(|(_, id)| id).collect()
        };
        assert_eq!(got, want);
        // A limit of 0 is a page of one, not an empty page that never ends.
        let page = store
            .list_runs_page(&RunQuery {
                limit: 0,
                ..RunQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.runs.len(), 1);
        assert!(page.next.is_some());
    }

    pub async fn filters_on_pipeline_status_and_time(url: &str) {
        let store = Store::connect(url).await.unwrap();
        for (id, pipeline, created, status) in [
            ("r-a1", "alpha", 100, RunStatus::Succeeded),
            ("r-a2", "alpha", 200, RunStatus::Failed),
            ("r-a3", "alpha", 300, RunStatus::Succeeded),
            ("r-b1", "beta", 150, RunStatus::Succeeded),
            ("r-b2", "beta", 250, RunStatus::Running),
            ("r-c1", "alphabet", 350, RunStatus::Succeeded),
        ] {
            store
                .create_run(&run(id, pipeline, created, status))
                .await
                .unwrap();
        }
        let q = |f: fn(&mut RunQuery)| {
            let mut q = RunQuery {
                limit: 100,
                ..RunQuery::default()
            };
            f(&mut q);
            q
        };
        assert_eq!(
            page_ids(&store, &q(|_| {})).await,
            ["r-c1", "r-a3", "r-b2", "r-a2", "r-b1", "r-a1"]
        );
        // Exact pipeline, not a prefix.
        assert_eq!(
            page_ids(&store, &q(|q| q.pipeline = Some("alpha".into()))).await,
            ["r-a3", "r-a2", "r-a1"]
        );
        assert_eq!(
            page_ids(&store, &q(|q| q.pipeline = Some("ALPHA".into()))).await,
            Vec::<String>::new()
        );
        assert_eq!(
            page_ids(&store, &q(|q| q.status = Some(RunStatus::Succeeded))).await,
            ["r-c1", "r-a3", "r-b1", "r-a1"]
        );
        // since is inclusive, until exclusive.
        assert_eq!(
            page_ids(&store, &q(|q| q.since_ms = Some(200))).await,
            ["r-c1", "r-a3", "r-b2", "r-a2"]
        );
        assert_eq!(
            page_ids(&store, &q(|q| q.until_ms = Some(250))).await,
            ["r-a2", "r-b1", "r-a1"]
        );
        assert_eq!(
            page_ids(
                &store,
                &q(|q| {
                    q.since_ms = Some(150);
                    q.until_ms = Some(300);
                })
            )
            .await,
            ["r-b2", "r-a2", "r-b1"]
        );
        assert_eq!(
            page_ids(
                &store,
                &q(|q| {
                    q.pipeline = Some("alpha".into());
                    q.status = Some(RunStatus::Succeeded);
                    q.since_ms = Some(101);
                })
            )
            .await,
            ["r-a3"]
        );
        // Filters hold on every page, not just the first.
        let pages = all_pages(
            &store,
            &RunQuery {
                pipeline: Some("alpha".into()),
                limit: 1,
                ..RunQuery::default()
            },
        )
        .await;
        assert_eq!(pages, [vec!["r-a3"], vec!["r-a2"], vec!["r-a1"]]);
    }

    async fn with_params(store: &Store, id: &str, created: i64, params: serde_json::Value) {
        let mut r = run(id, "p", created, RunStatus::Succeeded);
        r.params_json = params.to_string();
        store.create_run(&r).await.unwrap();
    }

    pub async fn param_filter_is_exact(url: &str) {
        let store = Store::connect(url).await.unwrap();
        with_params(&store, "r-num", 10, json!({"lr": 0.1, "algo": "rf"})).await;
        with_params(&store, "r-str", 9, json!({"lr": "0.1"})).await;
        with_params(&store, "r-other", 8, json!({"lr": 0.01, "algo": "RF"})).await;
        // The key text appears, but not as a top-level key: a nested object.
        with_params(&store, "r-nested", 7, json!({"meta": {"lr": 0.1}})).await;
        // ... and inside a value.
        with_params(
            &store,
            "r-inval",
            6,
            json!({"note": "\"lr\":0.1", "x": "lr"}),
        )
        .await;
        // Keys differing in case only (SQLite's LIKE ignores ASCII case).
        with_params(&store, "r-upper", 5, json!({"LR": 0.1, "ALGO": "rf"})).await;
        with_params(&store, "r-bool", 4, json!({"deep": true, "n": 10})).await;
        // LIKE's wildcards and escape, and a JSON-escaped quote, in a key.
        with_params(&store, "r-weird", 3, json!({"we\"ird\\k%_y": 5})).await;
        with_params(
            &store,
            "r-weird2",
            2,
            json!({"weXird\\kAAy": 5, "wexirdxk%_y": 5}),
        )
        .await;
        with_params(&store, "r-longer", 1, json!({"lr2": 0.1, "xlr": 0.1})).await;
        let param = |k: &str, v: &str| RunQuery {
            param: Some((k.into(), v.into())),
            limit: 100,
            ..RunQuery::default()
        };
        // Numbers compare by their JSON text or numerically; strings by their content.
        assert_eq!(
            page_ids(&store, &param("lr", "0.1")).await,
            ["r-num", "r-str"]
        );
        assert_eq!(page_ids(&store, &param("lr", "0.10")).await, ["r-num"]);
        assert_eq!(page_ids(&store, &param("lr", "1e-1")).await, ["r-num"]);
        assert_eq!(page_ids(&store, &param("lr", "0.01")).await, ["r-other"]);
        assert_eq!(page_ids(&store, &param("algo", "rf")).await, ["r-num"]);
        assert_eq!(page_ids(&store, &param("algo", "RF")).await, ["r-other"]);
        assert_eq!(page_ids(&store, &param("ALGO", "rf")).await, ["r-upper"]);
        assert_eq!(page_ids(&store, &param("LR", "0.1")).await, ["r-upper"]);
        assert_eq!(page_ids(&store, &param("deep", "true")).await, ["r-bool"]);
        assert_eq!(
            page_ids(&store, &param("deep", "True")).await,
            Vec::<String>::new()
        );
        assert_eq!(page_ids(&store, &param("n", "10")).await, ["r-bool"]);
        assert_eq!(
            page_ids(&store, &param("we\"ird\\k%_y", "5")).await,
            ["r-weird"]
        );
        assert_eq!(
            page_ids(&store, &param("wexirdxk%_y", "5")).await,
            ["r-weird2"]
        );
        assert_eq!(
            page_ids(&store, &param("l_", "0.1")).await,
            Vec::<String>::new()
        );
        assert_eq!(
            page_ids(&store, &param("l%", "0.1")).await,
            Vec::<String>::new()
        );
        assert_eq!(
            page_ids(&store, &param("meta", "0.1")).await,
            Vec::<String>::new()
        );
        assert_eq!(
            page_ids(&store, &param("note", "\"lr\":0.1")).await,
            ["r-inval"]
        );
        assert_eq!(page_ids(&store, &param("x", "lr")).await, ["r-inval"]);
        assert_eq!(page_ids(&store, &param("lr2", "0.1")).await, ["r-longer"]);
        // With paging: one matching run per page, the non-matching ones in between skipped.
        let pages = all_pages(
            &store,
            &RunQuery {
                limit: 1,
                ..param("lr", "0.1")
            },
        )
        .await;
        assert_eq!(pages.concat(), ["r-num", "r-str"]);
        assert!(pages.len() <= 3, "{pages:?}");
        // Ascending too.
        let pages = all_pages(
            &store,
            &RunQuery {
                limit: 1,
                ascending: true,
                ..param("lr", "0.1")
            },
        )
        .await;
        assert_eq!(pages.concat(), ["r-str", "r-num"]);
    }

    async fn metric(store: &Store, run_id: &str, step_name: &str, values: &[(&str, f64)]) {
        let sid = format!("{run_id}-{step_name}");
        store
            .upsert_step_run(&step(&sid, run_id, step_name, 1, StepStatus::Succeeded))
            .await
            .unwrap();
        let m: BTreeMap<String, f64> = values.iter().map(|(k, v)| ((*k).into(), *v)).collect();
        store.record_metrics(&sid, &m, 1).await.unwrap();
    }

    pub async fn metric_filter_compares_any_step(url: &str) {
        let store = Store::connect(url).await.unwrap();
        for (i, id) in ["r-1", "r-2", "r-3", "r-4", "r-5", "r-6"]
            .iter()
            .enumerate()
        {
            let mut r = run(id, "p", 10 - i as i64, RunStatus::Succeeded);
            if *id == "r-6" {
                r.pipeline = "q".into();
                r.params_json = json!({"k": "v"}).to_string();
            }
            store.create_run(&r).await.unwrap();
        }
        metric(&store, "r-1", "train", &[("acc", 0.8)]).await;
        metric(&store, "r-2", "train", &[("acc", 0.9), ("loss", 0.3)]).await;
        metric(&store, "r-3", "train", &[("acc", 0.95)]).await;
        metric(&store, "r-4", "train", &[("loss", 0.1)]).await;
        // r-5: no steps at all. r-6: two steps on either side of 0.9.
        metric(&store, "r-6", "a", &[("acc", 0.5)]).await;
        metric(&store, "r-6", "b", &[("acc", 0.99)]).await;
        let q = |cmp: Cmp, v: f64| RunQuery {
            metric: Some(("acc".into(), cmp, v)),
            limit: 100,
            ..RunQuery::default()
        };
        assert_eq!(page_ids(&store, &q(Cmp::Lt, 0.9)).await, ["r-1", "r-6"]);
        assert_eq!(
            page_ids(&store, &q(Cmp::Le, 0.9)).await,
            ["r-1", "r-2", "r-6"]
        );
        assert_eq!(page_ids(&store, &q(Cmp::Eq, 0.9)).await, ["r-2"]);
        assert_eq!(
            page_ids(&store, &q(Cmp::Ge, 0.9)).await,
            ["r-2", "r-3", "r-6"]
        );
        assert_eq!(page_ids(&store, &q(Cmp::Gt, 0.9)).await, ["r-3", "r-6"]);
        assert_eq!(
            page_ids(&store, &q(Cmp::Gt, 1.0)).await,
            Vec::<String>::new()
        );
        // The name must match exactly: loss 0.1 is no acc.
        assert_eq!(
            page_ids(&store, &q(Cmp::Lt, 0.2)).await,
            Vec::<String>::new()
        );
        let mut loss = q(Cmp::Lt, 0.2);
        loss.metric = Some(("loss".into(), Cmp::Lt, 0.2));
        assert_eq!(page_ids(&store, &loss).await, ["r-4"]);
        // Combined with the other filters.
        let mut both = q(Cmp::Ge, 0.9);
        both.pipeline = Some("p".into());
        assert_eq!(page_ids(&store, &both).await, ["r-2", "r-3"]);
        let mut with_param = q(Cmp::Ge, 0.9);
        with_param.param = Some(("k".into(), "v".into()));
        assert_eq!(page_ids(&store, &with_param).await, ["r-6"]);
        let mut with_time = q(Cmp::Ge, 0.9);
        with_time.since_ms = Some(8);
        with_time.status = Some(RunStatus::Succeeded);
        assert_eq!(page_ids(&store, &with_time).await, ["r-2", "r-3"]);
        with_time.status = Some(RunStatus::Failed);
        assert_eq!(page_ids(&store, &with_time).await, Vec::<String>::new());
        // Paged one by one under the duration sort (all -1: ties on id).
        let pages = all_pages(
            &store,
            &RunQuery {
                limit: 1,
                sort: RunSort::Duration,
                ..q(Cmp::Ge, 0.9)
            },
        )
        .await;
        assert_eq!(pages.concat(), ["r-6", "r-3", "r-2"]);
    }

    /// Creates many runs quickly (several writers on PostgreSQL).
    async fn bulk(store: &Store, runs: Vec<RunRecord>) {
        let writers = if store.backend() == "postgres" { 8 } else { 1 };
        let mut chunks: Vec<Vec<RunRecord>> = (0..writers).map(|_| Vec::new()).collect();
        for (i, r) in runs.into_iter().enumerate() {
            chunks[i % writers].push(r);
        }
        let mut tasks = Vec::new();
        for chunk in chunks {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for r in &chunk {
                    store.create_run(r).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    /// A param filter checked in Rust stops after examining 5000 rows: the page may be
    /// short, and its cursor continues where the scan stopped.
    pub async fn param_filter_over_many_rows_pages_on(url: &str) {
        let store = Store::connect(url).await.unwrap();
        // created 0..5105; the "tag" key is in every run, so SQL's prefilter passes them all.
        let n = 5_105i64;
        let tag = |c: i64| match c {
            0..=2 | 5_103..=5_104 => "edge",
            95..=99 => "late",
            _ => "plain",
        };
        let runs = (0..n)
            .map(|c| {
                let mut r = run(&format!("r-{c:05}"), "p", c, RunStatus::Succeeded);
                r.params_json = json!({"tag": tag(c)}).to_string();
                r
            })
            .collect();
        bulk(&store, runs).await;

        // Newest first: 2 matches, then 5100 rows that do not, then 3 more.
        let q = RunQuery {
            param: Some(("tag".into(), "edge".into())),
            limit: 10,
            ..RunQuery::default()
        };
        let first = store.list_runs_page(&q).await.unwrap();
        assert_eq!(ids(&first.runs), ["r-05104", "r-05103"]);
        let cursor = first.next.clone().expect("a short page with a cursor");
        assert!(cursor.key < 5_103 && cursor.key > 2, "{cursor:?}");
        let second = store
            .list_runs_page(&RunQuery {
                after: Some(cursor),
                ..q.clone()
            })
            .await
            .unwrap();
        assert_eq!(ids(&second.runs), ["r-00002", "r-00001", "r-00000"]);
        assert_eq!(second.next, None);

        // Oldest first, same answer reversed.
        let pages = all_pages(
            &store,
            &RunQuery {
                ascending: true,
                ..q.clone()
            },
        )
        .await;
        assert_eq!(
            pages.concat(),
            ["r-00000", "r-00001", "r-00002", "r-05103", "r-05104"]
        );

        // Every match is reached by following the cursors, even when the rows after the
        // 5000th examined one are the last of the table (the scan ends inside its final,
        // short batch): here 5010 rows, the matches the oldest 5 of them.
        let late = RunQuery {
            param: Some(("tag".into(), "late".into())),
            since_ms: Some(95),
            limit: 10,
            ..RunQuery::default()
        };
        let pages = all_pages(&store, &late).await;
        assert_eq!(
            pages.concat(),
            ["r-00099", "r-00098", "r-00097", "r-00096", "r-00095"],
            "pages: {pages:?}"
        );
    }

    pub async fn step_summaries_add_up_steps(url: &str) {
        let store = Store::connect(url).await.unwrap();
        for id in ["r-s1", "r-s2", "r-s3"] {
            store
                .create_run(&run(id, "p", 1, RunStatus::Running))
                .await
                .unwrap();
        }
        const GIB: i64 = 1 << 30;
        let mut a = step("s1-a", "r-s1", "a", 1, StepStatus::Succeeded);
        a.requested_cpu_millis = 1_000;
        a.requested_memory_bytes = 6 * GIB;
        a.peak_memory_bytes = Some(5 * GIB);
        a.cpu_micros = Some(3_000_000_000);
        let mut b = step("s1-b", "r-s1", "b", 1, StepStatus::Cached);
        b.requested_cpu_millis = 500;
        b.requested_memory_bytes = 8 * GIB;
        let mut c1 = step("s1-c1", "r-s1", "c", 1, StepStatus::Failed);
        c1.requested_cpu_millis = 4_000;
        c1.requested_memory_bytes = GIB;
        c1.peak_memory_bytes = Some(7 * GIB);
        c1.cpu_micros = Some(2_500_000_000);
        let mut c2 = step("s1-c2", "r-s1", "c", 2, StepStatus::Running);
        c2.requested_cpu_millis = 4_000;
        c2.requested_memory_bytes = GIB;
        let d = step("s1-d", "r-s1", "d", 1, StepStatus::Pending);
        // r-s2: one step that never reported usage.
        let mut e = step("s2-e", "r-s2", "e", 1, StepStatus::Cached);
        e.requested_cpu_millis = 250;
        for s in [&a, &b, &c1, &c2, &d, &e] {
            store.upsert_step_run(s).await.unwrap();
        }
        let got = store
            .step_summaries(&[
                "r-s1".to_owned(),
                "r-s2".to_owned(),
                "r-s3".to_owned(),
                "r-nope".to_owned(),
            ])
            .await
            .unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got["r-s1"],
            StepSummary {
                step_runs: 5,
                cached: 1,
                failed: 1,
                running: 1,
                max_requested_cpu_millis: 4_000,
                max_requested_memory_bytes: 8 * GIB,
                max_peak_memory_bytes: Some(7 * GIB),
                cpu_micros: Some(5_500_000_000),
            }
        );
        assert_eq!(
            got["r-s2"],
            StepSummary {
                step_runs: 1,
                cached: 1,
                failed: 0,
                running: 0,
                max_requested_cpu_millis: 250,
                max_requested_memory_bytes: 0,
                max_peak_memory_bytes: None,
                cpu_micros: None,
            }
        );
        assert!(!got.contains_key("r-s3"));
        assert!(store.step_summaries(&[]).await.unwrap().is_empty());
        // One run asked for alone gets the same summary.
        let one = store.step_summaries(&["r-s2".to_owned()]).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one["r-s2"], got["r-s2"]);
        // A step moving on changes the counts (upsert of the same id).
        c2.status = StepStatus::Succeeded;
        c2.cpu_micros = Some(1);
        store.upsert_step_run(&c2).await.unwrap();
        let again = store.step_summaries(&["r-s1".to_owned()]).await.unwrap();
        assert_eq!(again["r-s1"].running, 0);
        assert_eq!(again["r-s1"].step_runs, 5);
        assert_eq!(again["r-s1"].cpu_micros, Some(5_500_000_001));
    }

    async fn log(store: &Store, step_run: &str, lines: &[&str]) {
        let chunks: Vec<LogChunk> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| LogChunk::message("stdout", i as i64, l))
            .collect();
        store.append_logs(step_run, &chunks).await.unwrap();
    }

    pub async fn search_logs_finds_literal_text(url: &str) {
        let store = Store::connect(url).await.unwrap();
        for id in ["r-l", "r-m", "r-empty"] {
            store
                .create_run(&run(id, "p", 1, RunStatus::Running))
                .await
                .unwrap();
        }
        for s in [
            step("l-a1", "r-l", "a", 1, StepStatus::Failed),
            step("l-a2", "r-l", "a", 2, StepStatus::Running),
            step("l-b", "r-l", "b", 1, StepStatus::Running),
            step("m-a", "r-m", "a", 1, StepStatus::Running),
            step("e-a", "r-empty", "a", 1, StepStatus::Running),
        ] {
            store.upsert_step_run(&s).await.unwrap();
        }
        assert_eq!(store.last_log_id("r-l").await.unwrap(), 0);
        log(
            &store,
            "l-a1",
            &["Hello World\n", "hello world\n", "100% done\n", "a_b\n"],
        )
        .await;
        log(&store, "m-a", &["Hello World from m\n"]).await;
        log(
            &store,
            "l-b",
            &["World of b\n", "axb\n", "x%y\n", "back\\slash\n"],
        )
        .await;
        log(&store, "l-a2", &["retry: Hello World\n"]).await;

        let texts = |rows: &[gantry_store::LogRow]| -> Vec<String> {
            rows.iter().map(|r| r.data.trim_end().to_owned()).collect()
        };
        let all = store.logs("r-l", None, 0, 0).await.unwrap();
        assert_eq!(all.len(), 9);

        let found = store
            .search_logs("r-l", None, "World", 0, 100)
            .await
            .unwrap();
        assert_eq!(
            texts(&found),
            ["Hello World", "World of b", "retry: Hello World"]
        );
        assert_eq!(found[0].step, "a");
        assert_eq!(found[0].attempt, 1);
        assert_eq!(found[2].attempt, 2);
        assert_eq!(found[1].step, "b");
        // Case-sensitive.
        let found = store
            .search_logs("r-l", None, "hello", 0, 100)
            .await
            .unwrap();
        assert_eq!(texts(&found), ["hello world"]);
        assert!(
            store
                .search_logs("r-l", None, "HELLO", 0, 100)
                .await
                .unwrap()
                .is_empty()
        );
        // One step, every attempt.
        let found = store
            .search_logs("r-l", Some("a"), "World", 0, 100)
            .await
            .unwrap();
        assert_eq!(texts(&found), ["Hello World", "retry: Hello World"]);
        let found = store
            .search_logs("r-l", Some("b"), "World", 0, 100)
            .await
            .unwrap();
        assert_eq!(texts(&found), ["World of b"]);
        assert!(
            store
                .search_logs("r-l", Some("nope"), "World", 0, 100)
                .await
                .unwrap()
                .is_empty()
        );
        // LIKE wildcards are plain characters.
        let found = store.search_logs("r-l", None, "%", 0, 100).await.unwrap();
        assert_eq!(texts(&found), ["100% done", "x%y"]);
        let found = store.search_logs("r-l", None, "_", 0, 100).await.unwrap();
        assert_eq!(texts(&found), ["a_b"]);
        let found = store.search_logs("r-l", None, "a_b", 0, 100).await.unwrap();
        assert_eq!(texts(&found), ["a_b"]);
        let found = store.search_logs("r-l", None, "x%y", 0, 100).await.unwrap();
        assert_eq!(texts(&found), ["x%y"]);
        let found = store.search_logs("r-l", None, "\\", 0, 100).await.unwrap();
        assert_eq!(texts(&found), ["back\\slash"]);
        // Paging: after the last id seen, at most `limit`.
        let p1 = store.search_logs("r-l", None, "World", 0, 2).await.unwrap();
        assert_eq!(texts(&p1), ["Hello World", "World of b"]);
        let p2 = store
            .search_logs("r-l", None, "World", p1[1].id, 2)
            .await
            .unwrap();
        assert_eq!(texts(&p2), ["retry: Hello World"]);
        let p3 = store
            .search_logs("r-l", None, "World", p2[0].id, 2)
            .await
            .unwrap();
        assert!(p3.is_empty());
        // A limit below 1 still returns one row.
        let p0 = store.search_logs("r-l", None, "World", 0, 0).await.unwrap();
        assert_eq!(texts(&p0), ["Hello World"]);
        // The ids are the log rows' ids.
        let ids_all: Vec<i64> = all.iter().map(|r| r.id).collect();
        assert!(found.iter().all(|r| ids_all.contains(&r.id)));
        // Other runs' rows never appear.
        let found = store
            .search_logs("r-m", None, "World", 0, 100)
            .await
            .unwrap();
        assert_eq!(texts(&found), ["Hello World from m"]);
        // In a chunk of several lines only the lines holding the text match.
        let mut chunk = LogChunk::default();
        chunk.push_lines("stdout", "epoch 1\nWorld in the middle\nepoch 2", 3, 20);
        store.append_logs("m-a", &[chunk]).await.unwrap();
        let found = store
            .search_logs("r-m", None, "World", 0, 100)
            .await
            .unwrap();
        assert_eq!(texts(&found), ["Hello World from m", "World in the middle"]);
        assert_eq!(found[1].line, 2);
        let m_rows = store.logs("r-m", None, 0, 0).await.unwrap();
        assert_eq!(store.last_log_id("r-m").await.unwrap(), m_rows[3].id);

        // last_log_id: the largest id of this run, not of the table.
        assert_eq!(
            store.last_log_id("r-l").await.unwrap(),
            *ids_all.iter().max().unwrap()
        );
        assert_ne!(m_rows[3].id, *ids_all.iter().max().unwrap());
        assert_eq!(store.last_log_id("r-empty").await.unwrap(), 0);
        assert_eq!(store.last_log_id("r-unknown").await.unwrap(), 0);
    }

    fn token(id: &str, name: &str, role: &str, project: Option<&str>) -> NewToken {
        NewToken {
            id: id.into(),
            name: name.into(),
            secret_sha256: format!("{:0>64}", id.trim_start_matches("t-")),
            role: role.into(),
            project: project.map(String::from),
            now_ms: 1,
        }
    }

    pub async fn sessions_expire_and_die_with_their_token(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store
            .create_token(&token("t-aaaa", "alice", "editor", Some("iris")))
            .await
            .unwrap();
        store
            .create_token(&token("t-bbbb", "bob", "viewer", None))
            .await
            .unwrap();
        store
            .create_ui_session("h-alice", "t-aaaa", 1_000, 2_000)
            .await
            .unwrap();
        store
            .create_ui_session("h-bob", "t-bbbb", 1_000, 50_000)
            .await
            .unwrap();

        let s = store.ui_session("h-alice", 1_500).await.unwrap().unwrap();
        assert_eq!(s.id, "t-aaaa");
        assert_eq!(s.name, "alice");
        assert_eq!(s.role, "editor");
        assert_eq!(s.project.as_deref(), Some("iris"));
        assert!(s.revoked_at_ms.is_none());
        // Expiry is exclusive: at expires_at_ms the session is over.
        assert!(store.ui_session("h-alice", 1_999).await.unwrap().is_some());
        assert!(store.ui_session("h-alice", 2_000).await.unwrap().is_none());
        assert!(store.ui_session("h-nobody", 1_500).await.unwrap().is_none());
        // Not the token's hash either: only a session id opens a session.
        let hash = format!("{:0>64}", "aaaa");
        assert!(store.ui_session(&hash, 1_500).await.unwrap().is_none());

        // Revoking the token ends its sessions at once.
        let b = store.ui_session("h-bob", 1_500).await.unwrap().unwrap();
        assert_eq!(b.name, "bob");
        store.revoke_token("bob", 1_600).await.unwrap();
        assert!(store.ui_session("h-bob", 1_700).await.unwrap().is_none());

        // A new session prunes expired ones (anyone's): alice's, expired at 2000, is gone
        // even when asked about a time it was valid.
        assert!(store.ui_session("h-alice", 1_500).await.unwrap().is_some());
        store
            .create_ui_session("h-alice2", "t-aaaa", 3_000, 9_000)
            .await
            .unwrap();
        assert!(store.ui_session("h-alice", 1_500).await.unwrap().is_none());
        assert!(store.ui_session("h-alice2", 3_001).await.unwrap().is_some());
        store
            .create_ui_session("h-alice3", "t-aaaa", 3_000, 9_000)
            .await
            .unwrap();

        // Logout ends one session, not the others of the same token.
        store.delete_ui_session("h-alice2").await.unwrap();
        assert!(store.ui_session("h-alice2", 3_001).await.unwrap().is_none());
        assert!(store.ui_session("h-alice3", 3_001).await.unwrap().is_some());
        // Ending an unknown session is fine.
        store.delete_ui_session("h-nobody").await.unwrap();
        // A session of an unknown token is refused (foreign key) on both backends.
        assert!(
            store
                .create_ui_session("h-ghost", "t-ghost", 3_000, 9_000)
                .await
                .is_err()
        );
    }

    pub async fn pipelines_are_distinct_and_sorted(url: &str) {
        let store = Store::connect(url).await.unwrap();
        assert!(store.run_pipelines().await.unwrap().is_empty());
        for (i, p) in ["gamma", "alpha", "beta", "alpha", "gamma", "alpha"]
            .iter()
            .enumerate()
        {
            store
                .create_run(&run(&format!("r-{i}"), p, i as i64, RunStatus::Succeeded))
                .await
                .unwrap();
        }
        assert_eq!(
            store.run_pipelines().await.unwrap(),
            ["alpha", "beta", "gamma"]
        );
    }

    pub async fn audit_pages_go_back_in_time(url: &str) {
        let store = Store::connect(url).await.unwrap();
        assert!(
            store
                .list_audit_before(i64::MAX, 3)
                .await
                .unwrap()
                .is_empty()
        );
        let mut all = Vec::new();
        for i in 0..7 {
            all.push(
                store
                    .append_audit("root", "run.submit", &format!("r-{i}"), &json!({"i": i}), i)
                    .await
                    .unwrap(),
            );
        }
        all.reverse(); // newest first
        let mut seen = Vec::new();
        let mut before = i64::MAX;
        let mut pages = 0;
        loop {
            let page = store.list_audit_before(before, 3).await.unwrap();
            if page.is_empty() {
                break;
            }
            pages += 1;
            assert!(page.len() <= 3);
            for w in page.windows(2) {
                assert!(w[0].id > w[1].id, "newest first");
            }
            before = page.last().unwrap().id;
            seen.extend(page.iter().map(|a| a.id));
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, all);
        // Entries keep what was written.
        let one = store.list_audit_before(all[0], 1).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, all[1]);
        assert_eq!(one[0].target, "r-5");
        assert_eq!(one[0].detail, json!({"i": 5}));
        // `limit <= 0`: everything older.
        let rest = store.list_audit_before(all[2], 0).await.unwrap();
        assert_eq!(rest.iter().map(|a| a.id).collect::<Vec<_>>(), all[3..]);
        // Nothing is older than the oldest.
        assert!(
            store
                .list_audit_before(all[6], 10)
                .await
                .unwrap()
                .is_empty()
        );
        // list_audit is the first page.
        assert_eq!(
            store
                .list_audit(2)
                .await
                .unwrap()
                .iter()
                .map(|a| a.id)
                .collect::<Vec<_>>(),
            all[..2]
        );
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
    pages_show_every_run_once_in_key_then_id_order,
    filters_on_pipeline_status_and_time,
    param_filter_is_exact,
    metric_filter_compares_any_step,
    param_filter_over_many_rows_pages_on,
    step_summaries_add_up_steps,
    search_logs_finds_literal_text,
    sessions_expire_and_die_with_their_token,
    pipelines_are_distinct_and_sorted,
    audit_pages_go_back_in_time,
);
