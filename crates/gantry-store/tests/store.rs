//! The metadata store against real databases: SQLite in a temp dir always, and PostgreSQL when
//! `GANTRY_TEST_POSTGRES_URL` is set (e.g. `postgres:///gantry_test?host=/var/run/postgresql`).
//! Every case runs on both; each test gets its own database so tests run in parallel.

// Helpers and cases are plain async fns, which clippy's allow-unwrap-in-tests does not cover.
#![allow(clippy::unwrap_used)]

mod support;

/// Builders for records with every optional field filled, so round trips check them all.
mod fixtures {
    use gantry_store::{RunRecord, RunStatus, StepRunRecord, StepStatus};

    pub fn run(id: &str, pipeline: &str, created_at_ms: i64, status: RunStatus) -> RunRecord {
        RunRecord {
            id: id.into(),
            pipeline: pipeline.into(),
            status,
            spec_file: "/work/p/gantry.yaml".into(),
            spec_yaml: "name: iris\nsteps: []\n".into(),
            params_json: r#"{"max_depth":4}"#.into(),
            images_json: r#"{"train":"sha256:aa"}"#.into(),
            no_cache: true,
            rerun_of: Some("r-000000000000".into()),
            created_at_ms,
            started_at_ms: Some(created_at_ms + 1),
            finished_at_ms: None,
            owner_pid: Some(4242),
            owner_host: Some("host-a/boot-1".into()),
            error: None,
            submitted_by: Some("alice".into()),
        }
    }

    pub fn step_run(
        id: &str,
        run_id: &str,
        step: &str,
        seq: i64,
        attempt: i64,
        status: StepStatus,
    ) -> StepRunRecord {
        StepRunRecord {
            id: id.into(),
            run_id: run_id.into(),
            step: step.into(),
            seq,
            attempt,
            status,
            exit_code: Some(0),
            reason: None,
            cache_key: Some(format!("key-{step}")),
            cached_from: None,
            image_digest: Some("sha256:bb".into()),
            started_at_ms: Some(10),
            finished_at_ms: Some(20 + seq),
            requested_cpu_millis: 1500,
            requested_memory_bytes: 2 << 30,
            requested_gpu: 1,
            peak_memory_bytes: Some(123_456_789),
            cpu_micros: Some(9_000_000),
            wall_ms: Some(10),
            inputs_json: r#"{"train":"sha256:cc"}"#.into(),
            outputs_json: r#"{"model":"sha256:dd"}"#.into(),
            gpu_model: Some("NVIDIA H100 80GB HBM3".into()),
            gpu_util_percent: Some(42.5),
            gpu_memory_peak_bytes: Some(1 << 30),
            gpu_idle_ms: Some(3),
            resources_note: Some("memory: auto → 2Gi".into()),
            usage_key: Some(format!("u-{step}")),
            gpu_devices: Some("1,3".into()),
        }
    }
}

mod usage_cases {
    use crate::fixtures::{run, step_run};
    use gantry_alloc::Dimension;
    use gantry_store::{ReplicaUsage, RunStatus, StepStatus, Store, UsageQuery};

    const H: i64 = 3_600_000;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    pub async fn usage_sums_by_group_window_and_scope(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let r1 = run("r-1", "iris", 0, RunStatus::Succeeded);
        let mut r2 = run("r-2", "iris", 0, RunStatus::Succeeded);
        r2.submitted_by = Some("bob".into());
        let mut r3 = run("r-3", "other", 0, RunStatus::Running);
        r3.submitted_by = None;
        for r in [&r1, &r2, &r3] {
            store.create_run(r).await.unwrap();
        }
        // One hour of 1.5 CPU, 2 GiB and an H100, half of it idle; half a core-hour used.
        let mut train = step_run("s-1", "r-1", "train", 0, 1, StepStatus::Succeeded);
        train.wall_ms = Some(H);
        train.finished_at_ms = Some(10_000);
        train.cpu_micros = Some(1_800_000_000);
        train.peak_memory_bytes = Some(1 << 30);
        train.gpu_idle_ms = Some(H / 2);
        // Its cache hit in another run.
        let mut hit = step_run("s-2", "r-2", "train", 0, 1, StepStatus::Cached);
        hit.cached_from = Some("s-1".into());
        hit.wall_ms = Some(0);
        hit.finished_at_ms = Some(20_000);
        // A sweep member: half an hour of one core, no GPU.
        let mut member = step_run("s-3", "r-1", "sweep[a=1]", 1, 1, StepStatus::Succeeded);
        member.wall_ms = Some(H / 2);
        member.requested_cpu_millis = 1000;
        member.requested_gpu = 0;
        member.gpu_model = None;
        member.finished_at_ms = Some(15_000);
        // Outside the window.
        let mut late = step_run("s-4", "r-1", "late", 2, 1, StepStatus::Succeeded);
        late.finished_at_ms = Some(1_000_000_000);
        // Still running since 5 s: counted up to the window's end.
        let mut live = step_run("s-5", "r-3", "live", 0, 1, StepStatus::Running);
        live.started_at_ms = Some(5_000);
        live.finished_at_ms = None;
        live.wall_ms = None;
        live.cpu_micros = None;
        live.requested_cpu_millis = 2000;
        live.requested_gpu = 0;
        for s in [&train, &hit, &member, &late, &live] {
            store.upsert_step_run(s).await.unwrap();
        }
        let q = |by, project: Option<&str>, run_id: Option<&str>| UsageQuery {
            since_ms: 0,
            until_ms: 5_000 + H,
            by,
            project: project.map(str::to_string),
            run_id: run_id.map(str::to_string),
        };
        let by_step = store.usage(&q(Dimension::Step, None, None)).await.unwrap();
        assert_eq!(
            by_step.keys().collect::<Vec<_>>(),
            ["iris/sweep", "iris/train", "other/live"]
        );
        let t = &by_step["iris/train"];
        assert_eq!((t.runs, t.step_runs, t.cache_hits), (2, 1, 1));
        assert!(close(t.wall_hours, 1.0));
        assert!(close(t.cpu_hours_requested, 1.5), "{t:?}");
        assert!(close(t.cpu_hours_used, 0.5));
        assert!(close(t.memory_gib_hours_requested, 2.0));
        assert!(close(t.memory_gib_hours_peak, 1.0));
        assert_eq!(t.gpu_hours.len(), 1);
        assert!(close(t.gpu_hours["NVIDIA H100 80GB HBM3"], 1.0));
        assert!(close(t.gpu_hours_idle, 0.5));
        assert!(close(t.saved.cpu_hours_requested, 1.5));
        assert!(close(t.saved.cpu_hours_used, 0.5));
        assert!(close(t.saved.gpu_hours["NVIDIA H100 80GB HBM3"], 1.0));
        assert!(close(by_step["iris/sweep"].cpu_hours_requested, 0.5));
        assert!(
            close(by_step["other/live"].cpu_hours_requested, 2.0),
            "running: up to the end"
        );

        let by_user = store.usage(&q(Dimension::User, None, None)).await.unwrap();
        assert_eq!(by_user.keys().collect::<Vec<_>>(), ["-", "alice", "bob"]);
        assert_eq!(by_user["bob"].cache_hits, 1);
        let scoped = store
            .usage(&q(Dimension::Project, Some("iris"), None))
            .await
            .unwrap();
        assert_eq!(scoped.keys().collect::<Vec<_>>(), ["iris"]);
        assert!(close(scoped["iris"].cpu_hours_requested, 2.0));
        let one_run = store
            .usage(&q(Dimension::Pipeline, None, Some("r-2")))
            .await
            .unwrap();
        assert_eq!(one_run["iris"].cache_hits, 1);
        assert_eq!(one_run["iris"].step_runs, 0);
        let before = UsageQuery {
            since_ms: 0,
            until_ms: 9_000,
            ..q(Dimension::Project, None, None)
        };
        let early = store.usage(&before).await.unwrap();
        assert_eq!(
            early.keys().collect::<Vec<_>>(),
            ["other"],
            "only the running step"
        );

        // A replica: two hours of 500m, seen after one; the window takes its share.
        let replica = ReplicaUsage {
            id: "gantry-serve-svc-m-v1-x-0-1".into(),
            deployment: "svc".into(),
            project: Some("iris".into()),
            model: "m".into(),
            version: 1,
            requested_cpu_millis: 500,
            requested_memory_bytes: 1 << 30,
            requested_gpu: 0,
            gpu_model: None,
            started_at_ms: 0,
        };
        store.replica_started(&replica).await.unwrap();
        store.replica_started(&replica).await.unwrap();
        store
            .replicas_seen(std::slice::from_ref(&replica.id), H)
            .await
            .unwrap();
        let q2 = |since, until| UsageQuery {
            since_ms: since,
            until_ms: until,
            by: Dimension::Deployment,
            project: None,
            run_id: None,
        };
        let seen = store.usage(&q2(0, 10 * H)).await.unwrap();
        assert_eq!(seen["svc"].replicas, 1);
        assert!(
            close(seen["svc"].wall_hours, 1.0),
            "counted until last seen"
        );
        store
            .replica_stopped(&replica.id, 2 * H, Some(1 << 29), Some(360_000_000))
            .await
            .unwrap();
        let second_hour = store.usage(&q2(H, 2 * H)).await.unwrap();
        let r = &second_hour["svc"];
        assert!(close(r.wall_hours, 1.0));
        assert!(close(r.cpu_hours_requested, 0.5));
        assert!(close(r.cpu_hours_used, 0.05), "half of 0.1 core-h: {r:?}");
        assert!(close(r.memory_gib_hours_requested, 1.0));
        let by_project = store
            .usage(&UsageQuery {
                by: Dimension::Project,
                ..q2(0, 10 * H)
            })
            .await
            .unwrap();
        assert_eq!(by_project["iris"].replicas, 1);
        let by_pipeline = store
            .usage(&UsageQuery {
                by: Dimension::Pipeline,
                ..q2(0, 10 * H)
            })
            .await
            .unwrap();
        assert!(!by_pipeline.contains_key("svc") && by_pipeline["iris"].replicas == 0);
    }

    pub async fn step_history_is_newest_first_with_oom_kills(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store
            .create_run(&run("r-1", "p", 0, RunStatus::Failed))
            .await
            .unwrap();
        let mut rows = Vec::new();
        for (i, (status, reason, peak)) in [
            (StepStatus::Succeeded, None, 100),
            (StepStatus::Failed, Some("oom-killed"), 512),
            (StepStatus::Succeeded, None, 300),
        ]
        .into_iter()
        .enumerate()
        {
            let mut s = step_run(&format!("s-{i}"), "r-1", "a", 0, i as i64 + 1, status);
            s.reason = reason.map(str::to_string);
            s.peak_memory_bytes = Some(peak << 20);
            s.finished_at_ms = Some(1000 + i as i64);
            s.usage_key = Some("k".into());
            rows.push(s);
        }
        let mut other = step_run("s-9", "r-1", "b", 1, 1, StepStatus::Succeeded);
        other.usage_key = Some("other".into());
        rows.push(other);
        for s in &rows {
            store.upsert_step_run(s).await.unwrap();
        }
        let h = store.step_history("k", 10).await.unwrap();
        let peaks: Vec<u64> = h.iter().map(|s| s.peak_memory_bytes >> 20).collect();
        assert_eq!(peaks, [300, 512, 100]);
        assert!(h[1].oom_killed && !h[1].succeeded);
        assert!(h[0].succeeded && !h[0].oom_killed);
        assert_eq!(h[0].requested_memory_bytes, 2 << 30);
        assert_eq!(store.step_history("k", 1).await.unwrap().len(), 1);
        assert!(store.step_history("none", 10).await.unwrap().is_empty());
    }
}

/// Each case takes the URL of a fresh database.
mod cases {
    use std::collections::BTreeMap;

    use gantry_store::{
        Direction, LogChunk, RunFilter, RunStatus, StepStatus, Store, StoreError, new_id,
    };

    use crate::fixtures::{run, step_run};

    fn chunk(stream: &str, ts_ms: i64, data: &str) -> LogChunk {
        LogChunk::message(stream, ts_ms, data)
    }

    pub async fn runs_round_trip(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let mut r = run("r-0123456789ab", "iris", 1_000, RunStatus::Queued);
        r.spec_yaml = "name: ünïcode ✓\n".into();
        store.create_run(&r).await.unwrap();
        assert_eq!(store.get_run(&r.id).await.unwrap(), r);

        let mut minimal = run("r-minimal00000", "iris", 1_001, RunStatus::Queued);
        minimal.no_cache = false;
        minimal.rerun_of = None;
        minimal.started_at_ms = None;
        minimal.owner_pid = None;
        minimal.owner_host = None;
        store.create_run(&minimal).await.unwrap();
        assert_eq!(store.get_run(&minimal.id).await.unwrap(), minimal);

        store.set_run_started(&r.id, 5_000).await.unwrap();
        store
            .update_run_status(&r.id, RunStatus::Running, None, None)
            .await
            .unwrap();
        store
            .update_run_status(
                &r.id,
                RunStatus::Failed,
                Some(9_000),
                Some("step train failed"),
            )
            .await
            .unwrap();
        // None leaves finished_at/error as they are.
        store
            .update_run_status(&r.id, RunStatus::Failed, None, None)
            .await
            .unwrap();
        let got = store.get_run(&r.id).await.unwrap();
        assert_eq!(got.status, RunStatus::Failed);
        assert_eq!(got.started_at_ms, Some(5_000));
        assert_eq!(got.finished_at_ms, Some(9_000));
        assert_eq!(got.error.as_deref(), Some("step train failed"));

        let dup = store.create_run(&r).await.unwrap_err();
        assert!(dup.to_string().contains(&r.id), "{dup}");

        for err in [
            store
                .update_run_status("r-missing", RunStatus::Failed, None, None)
                .await
                .unwrap_err(),
            store.set_run_started("r-missing", 1).await.unwrap_err(),
            store.get_run("r-missing").await.unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
            assert!(err.to_string().contains("r-missing"), "{err}");
        }
    }

    pub async fn run_prefix_lookup(url: &str) {
        let store = Store::connect(url).await.unwrap();
        for id in ["r-abcd11111111", "r-abcd22222222", "r-ffff00000000"] {
            store
                .create_run(&run(id, "p", 1, RunStatus::Queued))
                .await
                .unwrap();
        }
        assert_eq!(store.get_run("r-abcd1").await.unwrap().id, "r-abcd11111111");
        assert_eq!(store.get_run("r-ff").await.unwrap().id, "r-ffff00000000");

        let err = store.get_run("r-abcd").await.unwrap_err();
        match &err {
            StoreError::Ambiguous { matches, .. } => {
                assert_eq!(matches, &["r-abcd11111111", "r-abcd22222222"])
            }
            other => panic!("expected ambiguous, got {other}"),
        }
        assert!(err.to_string().contains("r-abcd"), "{err}");

        // Three characters is too short even though it matches exactly one run.
        assert!(matches!(
            store.get_run("r-f").await.unwrap_err(),
            StoreError::NotFound { .. }
        ));
        // LIKE wildcards have no special meaning, and case matters on both backends.
        for not_a_prefix in ["r-ab_d1", "r-ab%", "R-ABCD1"] {
            assert!(
                matches!(
                    store.get_run(not_a_prefix).await.unwrap_err(),
                    StoreError::NotFound { .. }
                ),
                "{not_a_prefix}"
            );
        }
    }

    pub async fn list_runs_filters_and_pages(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let rows = [
            ("r-000000000001", "iris", 100, RunStatus::Succeeded),
            ("r-000000000002", "wine", 200, RunStatus::Failed),
            ("r-000000000003", "iris", 300, RunStatus::Running),
            ("r-000000000004", "iris", 400, RunStatus::Failed),
            ("r-000000000005", "wine", 500, RunStatus::Queued),
        ];
        for (id, p, t, s) in rows {
            store.create_run(&run(id, p, t, s)).await.unwrap();
        }
        let ids = |runs: Vec<gantry_store::RunRecord>| -> Vec<String> {
            runs.into_iter().map(|r| r.id).collect()
        };

        let all = store.list_runs(&RunFilter::default()).await.unwrap();
        assert_eq!(
            ids(all),
            [
                "r-000000000005",
                "r-000000000004",
                "r-000000000003",
                "r-000000000002",
                "r-000000000001"
            ]
        );
        let iris = RunFilter {
            pipeline: Some("iris".into()),
            ..RunFilter::default()
        };
        assert_eq!(
            ids(store.list_runs(&iris).await.unwrap()),
            ["r-000000000004", "r-000000000003", "r-000000000001"]
        );
        let failed = RunFilter {
            status: Some(RunStatus::Failed),
            ..RunFilter::default()
        };
        assert_eq!(
            ids(store.list_runs(&failed).await.unwrap()),
            ["r-000000000004", "r-000000000002"]
        );
        let iris_failed = RunFilter {
            pipeline: Some("iris".into()),
            status: Some(RunStatus::Failed),
            ..RunFilter::default()
        };
        assert_eq!(
            ids(store.list_runs(&iris_failed).await.unwrap()),
            ["r-000000000004"]
        );
        let page = |limit, offset| RunFilter {
            limit,
            offset,
            ..RunFilter::default()
        };
        assert_eq!(
            ids(store.list_runs(&page(2, 0)).await.unwrap()),
            ["r-000000000005", "r-000000000004"]
        );
        assert_eq!(
            ids(store.list_runs(&page(2, 2)).await.unwrap()),
            ["r-000000000003", "r-000000000002"]
        );
        assert_eq!(
            ids(store.list_runs(&page(2, 4)).await.unwrap()),
            ["r-000000000001"]
        );
        assert!(store.list_runs(&page(2, 6)).await.unwrap().is_empty());
        let none = RunFilter {
            pipeline: Some("nope".into()),
            ..RunFilter::default()
        };
        assert!(store.list_runs(&none).await.unwrap().is_empty());

        let live = store
            .runs_with_status(&[RunStatus::Queued, RunStatus::Running])
            .await
            .unwrap();
        assert_eq!(ids(live), ["r-000000000003", "r-000000000005"]);
        assert!(store.runs_with_status(&[]).await.unwrap().is_empty());
        assert!(
            store
                .runs_with_status(&[RunStatus::Cancelled])
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn interrupting_a_run_interrupts_its_live_steps(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let r = run("r-aaaaaaaaaaaa", "p", 1, RunStatus::Running);
        store.create_run(&r).await.unwrap();
        let mut done = step_run("s-1", &r.id, "ingest", 0, 1, StepStatus::Succeeded);
        done.reason = Some("ok".into());
        let mut running = step_run("s-2", &r.id, "train", 1, 1, StepStatus::Running);
        running.finished_at_ms = None;
        let mut pending = step_run("s-3", &r.id, "eval", 2, 1, StepStatus::Pending);
        pending.finished_at_ms = None;
        for s in [&done, &running, &pending] {
            store.upsert_step_run(s).await.unwrap();
        }
        // Another run's live step is untouched.
        let other = run("r-bbbbbbbbbbbb", "p", 2, RunStatus::Running);
        store.create_run(&other).await.unwrap();
        let mut other_step = step_run("s-4", &other.id, "train", 0, 1, StepStatus::Running);
        other_step.finished_at_ms = None;
        store.upsert_step_run(&other_step).await.unwrap();

        store
            .mark_run_interrupted(&r.id, 7_000, "owner process 4242 is gone")
            .await
            .unwrap();

        let got = store.get_run(&r.id).await.unwrap();
        assert_eq!(got.status, RunStatus::Interrupted);
        assert_eq!(got.finished_at_ms, Some(7_000));
        assert_eq!(got.error.as_deref(), Some("owner process 4242 is gone"));
        let steps = store.list_step_runs(&r.id).await.unwrap();
        assert_eq!(steps[0], done);
        for s in &steps[1..] {
            assert_eq!(s.status, StepStatus::Interrupted, "{}", s.step);
            assert_eq!(s.finished_at_ms, Some(7_000));
            assert_eq!(s.reason.as_deref(), Some("owner process 4242 is gone"));
        }
        assert_eq!(store.list_step_runs(&other.id).await.unwrap(), [other_step]);

        // A run that finished in the meantime keeps its outcome.
        let finished = run("r-cccccccccccc", "p", 3, RunStatus::Succeeded);
        store.create_run(&finished).await.unwrap();
        store
            .mark_run_interrupted(&finished.id, 8_000, "late")
            .await
            .unwrap();
        assert_eq!(store.get_run(&finished.id).await.unwrap(), finished);

        let err = store
            .mark_run_interrupted("r-missing", 1, "x")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    }

    pub async fn step_runs_round_trip_in_plan_order(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let r = run("r-aaaaaaaaaaaa", "p", 1, RunStatus::Running);
        store.create_run(&r).await.unwrap();
        let s_b2 = step_run("s-b2", &r.id, "b", 1, 2, StepStatus::Succeeded);
        let s_a1 = step_run("s-a1", &r.id, "a", 0, 1, StepStatus::Succeeded);
        let mut s_b1 = step_run("s-b1", &r.id, "b", 1, 1, StepStatus::Running);
        s_b1.exit_code = None;
        s_b1.cache_key = None;
        s_b1.image_digest = None;
        s_b1.finished_at_ms = None;
        s_b1.peak_memory_bytes = None;
        s_b1.cpu_micros = None;
        s_b1.wall_ms = None;
        for s in [&s_b2, &s_a1, &s_b1] {
            store.upsert_step_run(s).await.unwrap();
        }
        assert_eq!(
            store.list_step_runs(&r.id).await.unwrap(),
            [s_a1.clone(), s_b1.clone(), s_b2.clone()]
        );

        // Updating by id replaces every field.
        let mut failed = s_b1.clone();
        failed.status = StepStatus::Failed;
        failed.exit_code = Some(137);
        failed.reason = Some("oom-killed".into());
        failed.finished_at_ms = Some(99);
        failed.peak_memory_bytes = Some(1 << 31);
        failed.outputs_json = "{}".into();
        store.upsert_step_run(&failed).await.unwrap();
        let steps = store.list_step_runs(&r.id).await.unwrap();
        assert_eq!(steps, [s_a1, failed, s_b2]);
        assert!(store.list_step_runs("r-none").await.unwrap().is_empty());

        // A step run must belong to an existing run.
        let orphan = step_run("s-x", "r-none", "a", 0, 1, StepStatus::Pending);
        let err = store.upsert_step_run(&orphan).await.unwrap_err();
        assert!(err.to_string().contains("s-x"), "{err}");
    }

    pub async fn find_cached_returns_latest_real_success(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let r = run("r-aaaaaaaaaaaa", "p", 1, RunStatus::Running);
        store.create_run(&r).await.unwrap();
        let with = |id: &str, status, finished, cached_from: Option<&str>| {
            let mut s = step_run(id, &r.id, "train", 0, 1, status);
            s.cache_key = Some("K".into());
            s.finished_at_ms = Some(finished);
            s.cached_from = cached_from.map(String::from);
            s
        };
        assert_eq!(store.find_cached("K").await.unwrap(), None);
        store
            .upsert_step_run(&with("s-old", StepStatus::Succeeded, 100, None))
            .await
            .unwrap();
        let newest_real = with("s-new", StepStatus::Succeeded, 200, None);
        store.upsert_step_run(&newest_real).await.unwrap();
        // Newer, but a failure, a cache hit, and a succeeded copy of another run's outputs.
        store
            .upsert_step_run(&with("s-fail", StepStatus::Failed, 300, None))
            .await
            .unwrap();
        store
            .upsert_step_run(&with("s-hit", StepStatus::Cached, 400, Some("s-new")))
            .await
            .unwrap();
        store
            .upsert_step_run(&with("s-copy", StepStatus::Succeeded, 500, Some("s-old")))
            .await
            .unwrap();
        assert_eq!(store.find_cached("K").await.unwrap(), Some(newest_real));
        assert_eq!(store.find_cached("other").await.unwrap(), None);
    }

    pub async fn artifacts_and_lineage(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let r = run("r-aaaaaaaaaaaa", "p", 1, RunStatus::Running);
        store.create_run(&r).await.unwrap();
        let split = step_run("s-split", &r.id, "split", 0, 1, StepStatus::Succeeded);
        let train = step_run("s-train", &r.id, "train", 1, 1, StepStatus::Succeeded);
        store.upsert_step_run(&train).await.unwrap();
        store.upsert_step_run(&split).await.unwrap();

        let big = u64::MAX >> 1;
        store
            .record_artifact("sha256:train", "directory", big, 10)
            .await
            .unwrap();
        store
            .record_artifact("sha256:train", "file", 1, 20)
            .await
            .unwrap();
        let a = store.get_artifact("sha256:train").await.unwrap().unwrap();
        assert_eq!(
            (a.digest.as_str(), a.kind.as_str(), a.size, a.created_at_ms),
            ("sha256:train", "directory", big as i64, 10)
        );
        assert_eq!(store.get_artifact("sha256:none").await.unwrap(), None);
        let err = store
            .record_artifact("sha256:huge", "file", u64::MAX, 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sha256:huge"), "{err}");
        store
            .record_artifact("sha256:model", "file", 42, 30)
            .await
            .unwrap();

        store
            .record_lineage("s-split", "train", "sha256:train", Direction::Output)
            .await
            .unwrap();
        store
            .record_lineage("s-train", "model", "sha256:stale", Direction::Output)
            .await
            .unwrap();
        store
            .record_lineage("s-train", "model", "sha256:model", Direction::Output)
            .await
            .unwrap();
        store
            .record_lineage("s-train", "train", "sha256:train", Direction::Input)
            .await
            .unwrap();
        store
            .record_lineage("s-train", "extra", "sha256:unrecorded", Direction::Input)
            .await
            .unwrap();

        let rows: Vec<_> = store
            .lineage_for_run(&r.id)
            .await
            .unwrap()
            .into_iter()
            .map(|l| {
                (
                    l.step_run_id,
                    l.step,
                    l.direction,
                    l.name,
                    l.digest,
                    l.kind,
                    l.size,
                )
            })
            .collect();
        let row = |sr: &str,
                   step: &str,
                   dir: &str,
                   name: &str,
                   digest: &str,
                   kind: Option<&str>,
                   size: Option<i64>| {
            (
                sr.to_string(),
                step.to_string(),
                dir.to_string(),
                name.to_string(),
                digest.to_string(),
                kind.map(String::from),
                size,
            )
        };
        assert_eq!(
            rows,
            [
                row(
                    "s-split",
                    "split",
                    "output",
                    "train",
                    "sha256:train",
                    Some("directory"),
                    Some(big as i64)
                ),
                row(
                    "s-train",
                    "train",
                    "input",
                    "extra",
                    "sha256:unrecorded",
                    None,
                    None
                ),
                row(
                    "s-train",
                    "train",
                    "input",
                    "train",
                    "sha256:train",
                    Some("directory"),
                    Some(big as i64)
                ),
                row(
                    "s-train",
                    "train",
                    "output",
                    "model",
                    "sha256:model",
                    Some("file"),
                    Some(42)
                ),
            ]
        );
        assert!(store.lineage_for_run("r-none").await.unwrap().is_empty());
    }

    pub async fn logs_page_by_id(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let r = run("r-aaaaaaaaaaaa", "p", 1, RunStatus::Running);
        store.create_run(&r).await.unwrap();
        let a1 = step_run("s-a1", &r.id, "a", 0, 1, StepStatus::Failed);
        let a2 = step_run("s-a2", &r.id, "a", 0, 2, StepStatus::Running);
        let b = step_run("s-b", &r.id, "b", 1, 1, StepStatus::Running);
        for s in [&a1, &a2, &b] {
            store.upsert_step_run(s).await.unwrap();
        }
        let other = run("r-bbbbbbbbbbbb", "p", 2, RunStatus::Running);
        store.create_run(&other).await.unwrap();
        store
            .upsert_step_run(&step_run("s-o", &other.id, "a", 0, 1, StepStatus::Running))
            .await
            .unwrap();
        store
            .append_logs("s-o", &[chunk("stdout", 1, "other run")])
            .await
            .unwrap();

        store
            .append_logs(
                "s-a1",
                &[
                    chunk("stdout", 1, "a1 line 1\n"),
                    chunk("stderr", 2, "a1 oops\n"),
                ],
            )
            .await
            .unwrap();
        store
            .append_logs("s-b", &[chunk("stdout", 3, "b says \0hi\n")])
            .await
            .unwrap();
        store
            .append_logs(
                "s-a2",
                &[chunk("gantry", 4, "retrying"), chunk("stdout", 5, "ok")],
            )
            .await
            .unwrap();
        store.append_logs("s-a2", &[]).await.unwrap();

        let all = store.logs(&r.id, None, 0, 0).await.unwrap();
        let seen: Vec<_> = all
            .iter()
            .map(|l| {
                (
                    l.step.as_str(),
                    l.attempt,
                    l.stream.as_str(),
                    l.ts_ms,
                    l.line,
                    l.data.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a", 1, "stdout", 1, 0, "a1 line 1"),
                ("a", 1, "stderr", 2, 1, "a1 oops"),
                ("b", 1, "stdout", 3, 0, "b says \u{FFFD}hi"),
                ("a", 2, "gantry", 4, 0, "retrying"),
                ("a", 2, "stdout", 5, 1, "ok"),
            ]
        );
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));

        // A chunk of many lines from both streams: each line keeps its stream, its number
        // follows the step run's earlier lines, and a reader can stop and resume inside it.
        let mut many = LogChunk::default();
        many.push_lines("stdout", "l0\nl1\nl2", 3, 6);
        many.push_lines("stderr", "e3", 1, 7);
        many.push_lines("stdout", "l4\n\nl6", 3, 8);
        let ids = store
            .append_logs("s-b", &[many, LogChunk::default()])
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1], 0, "an empty chunk is not stored");
        let b = store.logs(&r.id, Some("b"), 0, 0).await.unwrap();
        let b_seen: Vec<_> = b
            .iter()
            .map(|l| (l.line, l.stream.as_str(), l.data.as_str()))
            .collect();
        assert_eq!(
            b_seen,
            [
                (0, "stdout", "b says \u{FFFD}hi"),
                (1, "stdout", "l0"),
                (2, "stdout", "l1"),
                (3, "stdout", "l2"),
                (4, "stderr", "e3"),
                (5, "stdout", "l4"),
                (6, "stdout", ""),
                (7, "stdout", "l6"),
            ]
        );
        assert!(b.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(store.last_log_id(&r.id).await.unwrap(), b[7].id);
        let all = store.logs(&r.id, None, 0, 0).await.unwrap();
        assert_eq!(all.len(), 12);

        // Paging: two at a time, resuming after the last position seen, also inside a chunk.
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = store.logs(&r.id, None, after, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            after = page.last().unwrap().id;
            paged.extend(page);
        }
        assert_eq!(paged, all);

        let only_a = store.logs(&r.id, Some("a"), 0, 0).await.unwrap();
        assert_eq!(only_a.len(), 4);
        assert!(only_a.iter().all(|l| l.step == "a"));
        let a_after = store.logs(&r.id, Some("a"), only_a[1].id, 1).await.unwrap();
        assert_eq!(a_after.len(), 1);
        assert_eq!(a_after[0].data, "retrying");
        assert!(
            store
                .logs(&r.id, Some("zzz"), 0, 0)
                .await
                .unwrap()
                .is_empty()
        );

        // Chunk reads: backwards from the end (a tail), since a time, containing a text.
        let q = |from, backwards, since_ms, contains| gantry_store::ChunkQuery {
            step: Some("b"),
            from,
            backwards,
            since_ms,
            contains,
            limit: 0,
        };
        let back = store
            .log_chunks(&r.id, &q(0, true, None, None))
            .await
            .unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].first_line, back[0].line_count), (1, 7));
        assert_eq!(back[0].streams, "o3e1o3");
        let before = store
            .log_chunks(&r.id, &q(back[0].id, true, None, None))
            .await
            .unwrap();
        assert_eq!(before, back[1..]);
        let recent = store
            .log_chunks(&r.id, &q(0, false, Some(4), None))
            .await
            .unwrap();
        assert_eq!(recent, back[..1]);
        let hits = store
            .log_chunks(&r.id, &q(0, false, None, Some("e3")))
            .await
            .unwrap();
        assert_eq!(hits, back[..1]);

        // A tail: the position after which the last n (matching) lines start.
        let start = store
            .log_tail_start(&r.id, Some("b"), 3, None, |_| true)
            .await
            .unwrap();
        let tail = store.logs(&r.id, Some("b"), start, 0).await.unwrap();
        let texts: Vec<_> = tail.iter().map(|l| l.data.as_str()).collect();
        assert_eq!(texts, ["l4", "", "l6"]);
        let start = store
            .log_tail_start(&r.id, Some("b"), 2, None, |l| l.starts_with('l'))
            .await
            .unwrap();
        let tail = store.logs(&r.id, Some("b"), start, 0).await.unwrap();
        assert_eq!(tail[0].data, "l4");
        // The first line of a chunk and more lines than there are.
        let start = store
            .log_tail_start(&r.id, Some("b"), 7, None, |_| true)
            .await
            .unwrap();
        assert_eq!(
            store.logs(&r.id, Some("b"), start, 0).await.unwrap()[0].data,
            "l0"
        );
        assert_eq!(
            store
                .log_tail_start(&r.id, Some("b"), 99, None, |_| true)
                .await
                .unwrap(),
            0
        );

        // Dropping a chunk (the log cap) keeps later lines' numbers; a marker line can be
        // rewritten once it knows what was dropped.
        store.drop_log_chunks("s-b", &[back[1].id]).await.unwrap();
        let marker = store
            .append_logs("s-b", &[chunk("gantry", 9, "dropped ?")])
            .await
            .unwrap()[0];
        store
            .rewrite_log_line("s-b", marker, "dropped 1 line", 10)
            .await
            .unwrap();
        let b = store.logs(&r.id, Some("b"), 0, 0).await.unwrap();
        assert_eq!(b.len(), 8);
        assert_eq!(b[0].line, 1);
        assert_eq!((b[7].line, b[7].data.as_str()), (8, "dropped 1 line"));

        let err = store
            .append_logs("s-missing", &[chunk("stdout", 1, "x")])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("s-missing"), "{err}");
    }

    pub async fn metrics_round_trip(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let r = run("r-aaaaaaaaaaaa", "p", 1, RunStatus::Running);
        store.create_run(&r).await.unwrap();
        store
            .upsert_step_run(&step_run(
                "s-eval",
                &r.id,
                "eval",
                1,
                1,
                StepStatus::Succeeded,
            ))
            .await
            .unwrap();
        store
            .upsert_step_run(&step_run(
                "s-train",
                &r.id,
                "train",
                0,
                1,
                StepStatus::Succeeded,
            ))
            .await
            .unwrap();
        let m = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        store
            .record_metrics("s-eval", &m(&[("accuracy", 0.5), ("f1", 0.25)]), 1)
            .await
            .unwrap();
        store
            .record_metrics("s-eval", &m(&[("accuracy", 0.97)]), 2)
            .await
            .unwrap();
        store
            .record_metrics("s-train", &m(&[("loss", 3.0), ("epochs", 10.0)]), 3)
            .await
            .unwrap();
        store.record_metrics("s-train", &m(&[]), 4).await.unwrap();
        let rows: Vec<_> = store
            .metrics_for_run(&r.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.step, m.key, m.value))
            .collect();
        let expect = |s: &str, k: &str, v: f64| (s.to_string(), k.to_string(), v);
        assert_eq!(
            rows,
            [
                expect("train", "epochs", 10.0),
                expect("train", "loss", 3.0),
                expect("eval", "accuracy", 0.97),
                expect("eval", "f1", 0.25),
            ]
        );
        let err = store
            .record_metrics("s-eval", &m(&[("good", 1.0), ("bad", f64::NAN)]), 5)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
        assert_eq!(store.metrics_for_run(&r.id).await.unwrap().len(), 4);
    }

    /// Two handles (as two processes would hold) write at once while a third follows the
    /// logs: nothing is lost and the follower never skips a row.
    pub async fn concurrent_handles_lose_nothing(url: &str) {
        const WRITES: i64 = 60;
        let first = Store::connect(url).await.unwrap();
        let second = Store::connect(url).await.unwrap();
        let follower = Store::connect(url).await.unwrap();
        let r = run("r-aaaaaaaaaaaa", "p", 1, RunStatus::Running);
        first.create_run(&r).await.unwrap();
        for (id, seq) in [("s-1", 0), ("s-2", 1)] {
            first
                .upsert_step_run(&step_run(id, &r.id, id, seq, 1, StepStatus::Running))
                .await
                .unwrap();
        }

        let writer = |store: Store, step_run_id: &'static str| {
            let run_id = r.id.clone();
            tokio::spawn(async move {
                for i in 0..WRITES {
                    store
                        .append_logs(
                            step_run_id,
                            &[
                                chunk("stdout", i, &format!("{step_run_id} {i} a")),
                                chunk("stdout", i, &format!("{step_run_id} {i} b")),
                            ],
                        )
                        .await
                        .unwrap();
                    let mut other = run(&new_id("r-"), "p", i, RunStatus::Queued);
                    other.rerun_of = Some(run_id.clone());
                    store.create_run(&other).await.unwrap();
                    store
                        .record_artifact(&format!("sha256:{i}"), "file", 1, i)
                        .await
                        .unwrap();
                }
            })
        };
        let w1 = writer(first.clone(), "s-1");
        let w2 = writer(second.clone(), "s-2");

        let expected_logs = 2 * 2 * WRITES as usize;
        let writers_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let run_id = r.id.clone();
        let done = writers_done.clone();
        let follow = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                // Read the flag before the page: an empty page after the writers finished
                // means the follower has caught up with everything committed.
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = follower.logs(&run_id, None, after, 7).await.unwrap();
                match page.last() {
                    Some(last) => after = last.id,
                    None if finished => break seen,
                    None => tokio::task::yield_now().await,
                }
                seen.extend(page);
            }
        });
        w1.await.unwrap();
        w2.await.unwrap();
        writers_done.store(true, std::sync::atomic::Ordering::SeqCst);
        let followed = follow.await.unwrap();

        let all = first.logs(&r.id, None, 0, 0).await.unwrap();
        assert_eq!(all.len(), expected_logs);
        assert_eq!(followed, all, "the follower skipped or reordered rows");
        for step_run_id in ["s-1", "s-2"] {
            // Each append's two chunks are adjacent per writer, in the order written.
            let lines: Vec<_> = all
                .iter()
                .filter(|l| l.data.starts_with(step_run_id))
                .map(|l| l.data.clone())
                .collect();
            let want: Vec<_> = (0..WRITES)
                .flat_map(|i| {
                    [
                        format!("{step_run_id} {i} a"),
                        format!("{step_run_id} {i} b"),
                    ]
                })
                .collect();
            assert_eq!(lines, want);
        }
        let runs = second.list_runs(&RunFilter::default()).await.unwrap();
        assert_eq!(runs.len(), 1 + 2 * WRITES as usize);
        for i in 0..WRITES {
            assert!(
                second
                    .get_artifact(&format!("sha256:{i}"))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }

    pub async fn reopening_keeps_data_and_migrates_once(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let r = run("r-aaaaaaaaaaaa", "p", 1, RunStatus::Queued);
        store.create_run(&r).await.unwrap();
        drop(store);
        for _ in 0..2 {
            let again = Store::connect(url).await.unwrap();
            assert_eq!(again.get_run(&r.id).await.unwrap(), r);
        }
        // Concurrent first connections to an existing database also agree.
        let (a, b) = tokio::join!(Store::connect(url), Store::connect(url));
        a.unwrap();
        b.unwrap();

        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        crate::assert_each_migration_applied_once(&versions);
    }
}

/// The model registry. Each case takes the URL of a fresh database.
mod model_cases {
    use std::collections::BTreeMap;

    use gantry_store::{NewModelVersion, RunStatus, Store, StoreError};

    use crate::fixtures::run;

    /// A registration with every optional field filled, so round trips check them all.
    fn new_version(
        model: &str,
        digest: &str,
        step_run_id: Option<&str>,
        now_ms: i64,
    ) -> NewModelVersion {
        NewModelVersion {
            model: model.into(),
            artifact_digest: digest.into(),
            artifact_kind: "file".into(),
            run_id: Some("r-aaaaaaaaaaaa".into()),
            step_run_id: step_run_id.map(String::from),
            step: Some("train".into()),
            metrics_json: r#"{"accuracy":0.97,"f1":0.5}"#.into(),
            data_digests_json: r#"["sha256:d1","sha256:d2"]"#.into(),
            params_json: r#"{"max_depth":4,"criterion":"gini"}"#.into(),
            flavor: "builtin".into(),
            description: Some("trained on ünïcode ✓".into()),
            alias: None,
            now_ms,
        }
    }

    fn with_alias(mut v: NewModelVersion, alias: &str) -> NewModelVersion {
        v.alias = Some(alias.into());
        v
    }

    #[track_caller]
    fn assert_not_found(err: StoreError, kind: &str, id: &str) {
        match &err {
            StoreError::NotFound { kind: k, id: i } => {
                assert_eq!((*k, i.as_str()), (kind, id), "{err}");
            }
            other => panic!("expected {kind} {id} not found, got: {other}"),
        }
        assert!(err.to_string().contains(id), "{err}");
    }

    #[track_caller]
    fn assert_invalid(err: StoreError, mentions: &str) {
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert!(
            err.to_string().contains(mentions),
            "'{mentions}' missing: {err}"
        );
    }

    fn versions_of(list: &[gantry_store::ModelVersionRecord]) -> Vec<i64> {
        list.iter().map(|v| v.version).collect()
    }

    pub async fn versions_are_numbered_per_model(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let new1 = new_version("iris", "sha256:m1", Some("s-1"), 1_000);
        let v1 = store.register_model_version(&new1).await.unwrap();
        assert_eq!(v1.model, "iris");
        assert_eq!(v1.version, 1);
        assert_eq!(v1.artifact_digest, "sha256:m1");
        assert_eq!(v1.artifact_kind, "file");
        assert_eq!(v1.run_id.as_deref(), Some("r-aaaaaaaaaaaa"));
        assert_eq!(v1.step_run_id.as_deref(), Some("s-1"));
        assert_eq!(v1.step.as_deref(), Some("train"));
        assert_eq!(v1.metrics_json, new1.metrics_json);
        assert_eq!(v1.data_digests_json, new1.data_digests_json);
        assert_eq!(v1.params_json, new1.params_json);
        assert_eq!(v1.flavor, "builtin");
        assert_eq!(v1.description, new1.description);
        assert_eq!(v1.tags_json, "{}");
        assert_eq!(v1.created_at_ms, 1_000);
        assert!(v1.aliases.is_empty());
        assert_eq!(store.get_model_version("iris", 1).await.unwrap(), v1);

        let v2 = store
            .register_model_version(&new_version("iris", "sha256:m2", Some("s-2"), 2_000))
            .await
            .unwrap();
        assert_eq!(v2.version, 2);
        let wine = store
            .register_model_version(&new_version("wine", "sha256:w1", Some("s-3"), 1_500))
            .await
            .unwrap();
        assert_eq!(wine.version, 1, "numbering is per model");

        // Without a step run there is nothing to deduplicate on: each call is a new version.
        let mut outside = new_version("iris", "sha256:m3", None, 3_000);
        outside.run_id = None;
        outside.step = None;
        outside.description = None;
        let v3 = store.register_model_version(&outside).await.unwrap();
        let v4 = store.register_model_version(&outside).await.unwrap();
        assert_eq!((v3.version, v4.version), (3, 4));
        assert_eq!(v3.run_id, None);
        assert_eq!(store.get_model_version("iris", 3).await.unwrap(), v3);

        let model = store.get_model("iris").await.unwrap();
        assert_eq!(model.name, "iris");
        assert_eq!(model.description, None);
        assert_eq!(model.created_at_ms, 1_000);
        assert_eq!(model.updated_at_ms, 3_000);
        assert_eq!(model.latest_version, Some(4));
        assert!(model.aliases.is_empty());

        let listed = store.list_model_versions("iris").await.unwrap();
        assert_eq!(listed, [v4, v3, v2, v1], "newest first");

        assert_not_found(store.get_model("nope").await.unwrap_err(), "model", "nope");
        assert_not_found(
            store.list_model_versions("nope").await.unwrap_err(),
            "model",
            "nope",
        );
        assert_not_found(
            store.get_model_version("iris", 9).await.unwrap_err(),
            "model version",
            "iris@9",
        );
        assert_not_found(
            store.get_model_version("nope", 1).await.unwrap_err(),
            "model",
            "nope",
        );
    }

    pub async fn aliases_move_and_references_resolve(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let v1 = store
            .register_model_version(&with_alias(
                new_version("iris", "sha256:m1", Some("s-1"), 1_000),
                "staging",
            ))
            .await
            .unwrap();
        assert_eq!(v1.aliases, ["staging"]);
        let v2 = store
            .register_model_version(&with_alias(
                new_version("iris", "sha256:m2", Some("s-2"), 2_000),
                "staging",
            ))
            .await
            .unwrap();
        assert_eq!(v2.aliases, ["staging"]);
        assert!(
            store
                .get_model_version("iris", 1)
                .await
                .unwrap()
                .aliases
                .is_empty(),
            "registering with an alias moves it"
        );

        store
            .set_model_alias("iris", 1, "champion", 5_000)
            .await
            .unwrap();
        let model = store.get_model("iris").await.unwrap();
        assert_eq!(
            model.aliases,
            BTreeMap::from([("champion".to_string(), 1), ("staging".to_string(), 2)])
        );
        assert_eq!(model.updated_at_ms, 5_000);
        store
            .set_model_alias("iris", 2, "champion", 6_000)
            .await
            .unwrap();
        // Setting it where it already is changes nothing but the time.
        store
            .set_model_alias("iris", 2, "champion", 7_000)
            .await
            .unwrap();
        let listed = store.list_model_versions("iris").await.unwrap();
        assert_eq!(versions_of(&listed), [2, 1]);
        assert_eq!(listed[0].aliases, ["champion", "staging"]);
        assert!(listed[1].aliases.is_empty());
        assert_eq!(store.get_model("iris").await.unwrap().updated_at_ms, 7_000);

        let v3 = store
            .register_model_version(&new_version("iris", "sha256:m3", Some("s-3"), 8_000))
            .await
            .unwrap();
        for (reference, version) in [
            ("iris", 3),
            ("iris@latest", 3),
            ("iris@1", 1),
            ("iris@2", 2),
            ("iris@02", 2),
            ("iris@champion", 2),
            ("iris@staging", 2),
        ] {
            let got = store.resolve_model(reference).await.unwrap();
            assert_eq!(
                (got.model.as_str(), got.version),
                ("iris", version),
                "{reference}"
            );
        }
        assert_eq!(store.resolve_model("iris").await.unwrap(), v3);
        assert_eq!(
            store.resolve_model("iris@champion").await.unwrap(),
            store.get_model_version("iris", 2).await.unwrap()
        );

        assert_not_found(
            store.resolve_model("iris@9").await.unwrap_err(),
            "model version",
            "iris@9",
        );
        assert_not_found(
            store.resolve_model("iris@prod").await.unwrap_err(),
            "model alias",
            "iris@prod",
        );
        for reference in ["nope", "nope@latest", "nope@1", "nope@champion"] {
            assert_not_found(
                store.resolve_model(reference).await.unwrap_err(),
                "model",
                "nope",
            );
        }
        for reference in [
            "iris@",
            "iris@v1",
            "ir is",
            "@champion",
            "iris@99999999999999999999",
        ] {
            assert_invalid(store.resolve_model(reference).await.unwrap_err(), reference);
        }

        assert_not_found(
            store
                .set_model_alias("iris", 9, "champion", 9_000)
                .await
                .unwrap_err(),
            "model version",
            "iris@9",
        );
        assert_not_found(
            store
                .set_model_alias("nope", 1, "champion", 9_000)
                .await
                .unwrap_err(),
            "model",
            "nope",
        );
        for alias in ["latest", "1", "v1", "", "a b"] {
            let err = store
                .set_model_alias("iris", 1, alias, 9_000)
                .await
                .unwrap_err();
            assert_invalid(err, &format!("'{alias}'"));
        }
        assert_eq!(
            store.resolve_model("iris@champion").await.unwrap().version,
            2
        );

        store.delete_model_alias("iris", "staging").await.unwrap();
        assert_not_found(
            store.resolve_model("iris@staging").await.unwrap_err(),
            "model alias",
            "iris@staging",
        );
        assert_not_found(
            store
                .delete_model_alias("iris", "staging")
                .await
                .unwrap_err(),
            "model alias",
            "iris@staging",
        );
        assert_not_found(
            store
                .delete_model_alias("nope", "staging")
                .await
                .unwrap_err(),
            "model",
            "nope",
        );
        // The version the alias named stays, with its other alias.
        assert_eq!(
            store.get_model_version("iris", 2).await.unwrap().aliases,
            ["champion"]
        );
        assert_eq!(
            store.get_model("iris").await.unwrap().aliases,
            BTreeMap::from([("champion".to_string(), 2)])
        );
    }

    pub async fn registering_a_step_run_again_returns_its_version(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let first = with_alias(
            new_version("iris", "sha256:m1", Some("s-a"), 1_000),
            "staging",
        );
        let v1 = store.register_model_version(&first).await.unwrap();
        store
            .register_model_version(&new_version("iris", "sha256:m2", Some("s-b"), 2_000))
            .await
            .unwrap();
        store
            .set_model_alias("iris", 2, "staging", 3_000)
            .await
            .unwrap();

        // A retried registration (later, same step run) finds the first one and moves nothing.
        let mut retry = first.clone();
        retry.now_ms = 4_000;
        let again = store.register_model_version(&retry).await.unwrap();
        assert_eq!(again.version, 1);
        assert_eq!(again.artifact_digest, v1.artifact_digest);
        assert_eq!(again.created_at_ms, 1_000);
        assert!(again.aliases.is_empty(), "{:?}", again.aliases);
        assert_eq!(
            store.resolve_model("iris@staging").await.unwrap().version,
            2
        );
        assert_eq!(
            versions_of(&store.list_model_versions("iris").await.unwrap()),
            [2, 1]
        );
        assert_eq!(store.get_model("iris").await.unwrap().updated_at_ms, 3_000);

        // The same step run may register into another model.
        let other = store
            .register_model_version(&new_version("iris-onnx", "sha256:m1", Some("s-a"), 5_000))
            .await
            .unwrap();
        assert_eq!((other.model.as_str(), other.version), ("iris-onnx", 1));

        // A different artifact from the same step run is a mistake, not a new version.
        let mut conflicting = first.clone();
        conflicting.artifact_digest = "sha256:zz".into();
        let err = store
            .register_model_version(&conflicting)
            .await
            .unwrap_err();
        assert_invalid(err, "s-a");
        assert_eq!(store.list_model_versions("iris").await.unwrap().len(), 2);
    }

    /// Registrations racing from two handles (as two processes would) get 1..=N, each once;
    /// racing retries of one step run all get the same version.
    pub async fn concurrent_registrations_leave_no_gaps(url: &str) {
        const N: i64 = 16;
        let handles = [
            Store::connect(url).await.unwrap(),
            Store::connect(url).await.unwrap(),
        ];
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let store = handles[(i % 2) as usize].clone();
                tokio::spawn(async move {
                    let v = with_alias(
                        new_version("iris", &format!("sha256:{i}"), Some(&format!("s-{i}")), i),
                        "champion",
                    );
                    store.register_model_version(&v).await.unwrap()
                })
            })
            .collect();
        let dup_tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = handles[i % 2].clone();
                tokio::spawn(async move {
                    let v = new_version("dup", "sha256:dup", Some("s-dup"), 1);
                    store.register_model_version(&v).await.unwrap()
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        let mut numbers: Vec<i64> = got.iter().map(|v| v.version).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=N).collect::<Vec<_>>());

        let stored = handles[0].list_model_versions("iris").await.unwrap();
        assert_eq!(versions_of(&stored), (1..=N).rev().collect::<Vec<_>>());
        for v in &got {
            let row = stored.iter().find(|s| s.version == v.version).unwrap();
            assert_eq!(
                row.step_run_id, v.step_run_id,
                "the version belongs to its caller"
            );
            assert_eq!(row.artifact_digest, v.artifact_digest);
        }
        let model = handles[1].get_model("iris").await.unwrap();
        assert_eq!(model.latest_version, Some(N));
        let champion = model.aliases["champion"];
        assert_eq!(model.aliases.len(), 1);
        assert_eq!(
            stored
                .iter()
                .filter(|v| !v.aliases.is_empty())
                .map(|v| v.version)
                .collect::<Vec<_>>(),
            [champion],
            "the alias names exactly one version"
        );

        let mut dups = Vec::new();
        for t in dup_tasks {
            dups.push(t.await.unwrap());
        }
        assert!(
            dups.iter().all(|d| d.version == 1),
            "{:?}",
            versions_of(&dups)
        );
        assert_eq!(
            handles[0].list_model_versions("dup").await.unwrap().len(),
            1
        );
    }

    /// Makes one field of a registration invalid.
    type Spoil = fn(&mut NewModelVersion);

    pub async fn invalid_registrations_change_nothing(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let long = "a".repeat(129);
        for name in ["", "-iris", "ir is", "iris@2", "iris/2", long.as_str()] {
            let err = store
                .register_model_version(&new_version(name, "sha256:m", Some("s-1"), 1))
                .await
                .unwrap_err();
            assert_invalid(err, &format!("model name '{name}'"));
        }
        for alias in ["latest", "7", "V2", "", "a.b"] {
            let err = store
                .register_model_version(&with_alias(
                    new_version("iris", "sha256:m", Some("s-1"), 1),
                    alias,
                ))
                .await
                .unwrap_err();
            assert_invalid(err, &format!("model alias '{alias}'"));
        }
        let bad_fields: [(&str, Spoil); 8] = [
            ("metrics_json", |v| v.metrics_json = "[0.9]".into()),
            ("metrics_json", |v| {
                v.metrics_json = r#"{"acc":"high"}"#.into()
            }),
            ("metrics_json", |v| v.metrics_json = "{".into()),
            ("data_digests_json", |v| v.data_digests_json = "{}".into()),
            ("data_digests_json", |v| v.data_digests_json = "[1]".into()),
            ("params_json", |v| v.params_json = "[]".into()),
            ("artifact_digest", |v| v.artifact_digest.clear()),
            ("flavor", |v| v.flavor.clear()),
        ];
        for (field, spoil) in bad_fields {
            let mut v = new_version("iris", "sha256:m", Some("s-1"), 1);
            spoil(&mut v);
            let err = store.register_model_version(&v).await.unwrap_err();
            assert_invalid(err, field);
        }
        assert!(store.list_models().await.unwrap().is_empty());

        let longest = "A".repeat(128);
        for name in [longest.as_str(), "7", "iris.v2_final-B"] {
            store
                .register_model_version(&new_version(name, "sha256:m", None, 1))
                .await
                .unwrap();
        }
        assert_eq!(store.list_models().await.unwrap().len(), 3);
    }

    pub async fn models_list_by_name_and_by_run(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let register = |model: &str, run_id: &str, now_ms: i64, alias: Option<&str>| {
            let mut v = new_version(model, &format!("sha256:{model}{now_ms}"), None, now_ms);
            v.run_id = Some(run_id.into());
            v.alias = alias.map(String::from);
            let store = store.clone();
            async move { store.register_model_version(&v).await.unwrap() }
        };
        register("b", "r-1", 10, Some("champion")).await;
        register("a", "r-1", 20, None).await;
        register("B", "r-2", 5, None).await;
        register("a", "r-2", 30, Some("staging")).await;
        register("a.2", "r-2", 40, None).await;
        register("10", "r-2", 50, None).await;

        let models = store.list_models().await.unwrap();
        let summary: Vec<_> = models
            .iter()
            .map(|m| (m.name.as_str(), m.latest_version, m.aliases.clone()))
            .collect();
        let aliases = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        assert_eq!(
            summary,
            [
                ("10", Some(1), aliases(&[])),
                ("B", Some(1), aliases(&[])),
                ("a", Some(2), aliases(&[("staging", 2)])),
                ("a.2", Some(1), aliases(&[])),
                ("b", Some(1), aliases(&[("champion", 1)])),
            ],
            "bytewise by name on every backend"
        );
        assert_eq!(models[2], store.get_model("a").await.unwrap());
        assert_eq!((models[2].created_at_ms, models[2].updated_at_ms), (20, 30));

        let of_run = |run_id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .model_versions_for_run(run_id)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|v| (v.model, v.version, v.aliases))
                    .collect::<Vec<_>>()
            }
        };
        let row = |m: &str, v: i64, a: &[&str]| {
            (
                m.to_string(),
                v,
                a.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            of_run("r-1").await,
            [row("b", 1, &["champion"]), row("a", 1, &[])]
        );
        assert_eq!(
            of_run("r-2").await,
            [
                row("B", 1, &[]),
                row("a", 2, &["staging"]),
                row("a.2", 1, &[]),
                row("10", 1, &[]),
            ]
        );
        assert!(of_run("r-none").await.is_empty());
        let full = store.model_versions_for_run("r-1").await.unwrap();
        assert_eq!(full[0], store.get_model_version("b", 1).await.unwrap());
    }

    /// A database made by a gantry that only knew migration 1 gains the registry and keeps
    /// its runs.
    pub async fn upgrading_a_version_1_database_keeps_its_runs(fresh_url: &str) {
        use sqlx::SqlSafeStr;
        use sqlx::migrate::MigrateDatabase;
        use sqlx::migrate::{Migration, MigrationType, Migrator};

        // The harness has already migrated the database it hands over: make another one.
        let sqlite = fresh_url.starts_with("sqlite:");
        let url = &if sqlite {
            fresh_url.replace("gantry.db", "gantry-v1.db")
        } else {
            let name = format!("gantry_t_{}", gantry_store::new_id(""));
            crate::support::with_database(fresh_url, &name)
        };
        sqlx::any::install_default_drivers();
        sqlx::Any::create_database(url).await.unwrap();
        let init = if sqlite {
            include_str!("../migrations/sqlite/0001_init.sql")
        } else {
            include_str!("../migrations/postgres/0001_init.sql")
        };
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        Migrator::with_migrations(vec![Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            init.into_sql_str(),
            false,
        )])
        .run(&pool)
        .await
        .unwrap();
        let old = run("r-old000000000", "p", 1, RunStatus::Succeeded);
        sqlx::query(
            "INSERT INTO runs (id, pipeline, status, spec_file, spec_yaml, params_json, \
             images_json, no_cache, rerun_of, created_at_ms, started_at_ms, finished_at_ms, \
             owner_pid, owner_host, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&old.id)
        .bind(&old.pipeline)
        .bind(old.status.as_str())
        .bind(&old.spec_file)
        .bind(&old.spec_yaml)
        .bind(&old.params_json)
        .bind(&old.images_json)
        .bind(i64::from(old.no_cache))
        .bind(old.rerun_of.as_deref())
        .bind(old.created_at_ms)
        .bind(old.started_at_ms)
        .bind(old.finished_at_ms)
        .bind(old.owner_pid)
        .bind(old.owner_host.as_deref())
        .bind(old.error.as_deref())
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = Store::connect(url).await.unwrap();
        // Who submitted it was not recorded then.
        let old = gantry_store::RunRecord {
            submitted_by: None,
            ..old
        };
        assert_eq!(store.get_run(&old.id).await.unwrap(), old);
        let mut v = new_version("iris", "sha256:m1", Some("s-1"), 2);
        v.run_id = Some(old.id.clone());
        store.register_model_version(&v).await.unwrap();
        assert_eq!(
            store.model_versions_for_run(&old.id).await.unwrap().len(),
            1
        );
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        crate::assert_each_migration_applied_once(&versions);
        pool.close().await;
        if !sqlite {
            sqlx::Any::force_drop_database(url).await.unwrap();
        }
    }
}

/// What gc keeps: everything a kept run (in progress, or ended inside the retention)
/// consumed or produced, what a running step holds before its lineage is written, every
/// model version's artifact and data, uploads granted inside the retention; the logs it may
/// drop are those of the other runs.
mod gc_cases {
    use crate::fixtures::{run, step_run};
    use gantry_store::{Direction, LogChunk, NewModelVersion, RunStatus, StepStatus, Store};

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    pub async fn gc_keeps_what_kept_runs_models_and_uploads_use(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let cutoff = 1_000_000;
        // An old run (ended before the cutoff), a recent one, and one in progress.
        let mut old = run("r-old", "p", 10, RunStatus::Succeeded);
        old.finished_at_ms = Some(500);
        old.images_json = format!(r#"{{"a":"{}"}}"#, d('1'));
        let mut recent = run("r-new", "p", 10, RunStatus::Failed);
        recent.finished_at_ms = Some(cutoff + 1);
        recent.images_json = format!(r#"{{"a":"{}"}}"#, d('2'));
        let mut live = run("r-live", "p", 10, RunStatus::Running);
        live.images_json = "{}".into();
        for r in [&old, &recent, &live] {
            store.create_run(r).await.unwrap();
        }
        let mut s_old = step_run("s-old", "r-old", "a", 0, 1, StepStatus::Succeeded);
        s_old.image_digest = Some(d('3'));
        let s_new = step_run("s-new", "r-new", "a", 0, 1, StepStatus::Failed);
        // The running step's input is on its record only (no lineage yet).
        let mut s_live = step_run("s-live", "r-live", "a", 0, 1, StepStatus::Running);
        s_live.inputs_json = format!(r#"{{"data":"{}"}}"#, d('c'));
        s_live.outputs_json = "{}".into();
        for s in [&s_old, &s_new, &s_live] {
            store.upsert_step_run(s).await.unwrap();
        }
        store
            .record_lineage("s-old", "x", &d('a'), Direction::Output)
            .await
            .unwrap();
        store
            .record_lineage("s-new", "x", &d('b'), Direction::Output)
            .await
            .unwrap();
        // An old run's output that a model version registered, with its data.
        store
            .record_lineage("s-old", "model", &d('e'), Direction::Output)
            .await
            .unwrap();
        store
            .register_model_version(&NewModelVersion {
                model: "m".into(),
                artifact_digest: d('e'),
                artifact_kind: "file".into(),
                run_id: None,
                step_run_id: None,
                step: None,
                metrics_json: "{}".into(),
                data_digests_json: format!(r#"["{}"]"#, d('f')),
                params_json: "{}".into(),
                flavor: "builtin".into(),
                description: None,
                alias: None,
                now_ms: 1,
            })
            .await
            .unwrap();
        // A drift reference profile is a tag of the version.
        store
            .set_registered_model_version_tag(
                "m",
                1,
                &gantry_store::KeyValue::new("gantry.reference_profile", d('9')),
            )
            .await
            .unwrap();
        store.grant_artifact(&d('7'), "p", "t", 5).await.unwrap();
        store
            .grant_artifact(&d('8'), "p", "t", cutoff + 5)
            .await
            .unwrap();

        let kept = store.referenced_artifacts(cutoff).await.unwrap();
        for c in ['b', 'c', 'e', 'f', '8', '9'] {
            assert!(kept.contains(&d(c)), "{c} must be kept: {kept:?}");
        }
        for c in ['a', '7'] {
            assert!(!kept.contains(&d(c)), "{c} is not in use: {kept:?}");
        }
        // The re-check before removal agrees, digest by digest.
        for c in ['a', 'b', 'c', 'e', 'f', '7', '8', '9'] {
            assert_eq!(
                store.artifact_referenced(&d(c), cutoff).await.unwrap(),
                kept.contains(&d(c)),
                "{c}"
            );
        }
        // Uploading the same content again renews its grant.
        store
            .grant_artifact(&d('7'), "p", "t", cutoff + 9)
            .await
            .unwrap();
        assert!(store.artifact_referenced(&d('7'), cutoff).await.unwrap());
        // Everything is kept with a cutoff before every run.
        let all = store.referenced_artifacts(0).await.unwrap();
        assert!(all.contains(&d('a')) && all.contains(&d('7')));

        let images = store.referenced_images(cutoff).await.unwrap();
        assert!(images.contains(&d('2')) && images.contains("sha256:bb"));
        assert!(!images.contains(&d('1')) && !images.contains(&d('3')));
        let active = store.active_run_ids().await.unwrap();
        assert_eq!(active, ["r-live".to_owned()].into());

        // Logs: the old run's go, the others' stay.
        for (s, text) in [
            ("s-old", "old\nlines"),
            ("s-new", "new"),
            ("s-live", "live"),
        ] {
            store
                .append_logs(s, &[LogChunk::message("stdout", 1, text)])
                .await
                .unwrap();
        }
        let expired = store.expired_logs(cutoff).await.unwrap();
        assert_eq!((expired.chunks, expired.bytes), (1, 10));
        assert_eq!(store.log_volume().await.unwrap().chunks, 3);
        assert_eq!(store.delete_expired_logs(cutoff).await.unwrap(), expired);
        assert!(store.logs("r-old", None, 0, 0).await.unwrap().is_empty());
        assert_eq!(store.logs("r-new", None, 0, 0).await.unwrap().len(), 1);
        assert_eq!(store.logs("r-live", None, 0, 0).await.unwrap().len(), 1);
        assert_eq!(store.log_volume().await.unwrap().chunks, 2);
    }
}

/// Admission control's durable state: project quotas and the run queue.
mod queue_cases {
    use crate::fixtures::run;
    use gantry_store::{ProjectQuota, QueuedRun, RunStatus, Store, StoreError};

    const GIB: i64 = 1 << 30;

    fn quota(project: &str, weight: i64) -> ProjectQuota {
        ProjectQuota {
            project: project.into(),
            cpu_millis: Some(8_000),
            memory_bytes: Some(64 * GIB),
            gpus: Some(2),
            max_runs: Some(5),
            weight,
            updated_at_ms: 1_700_000_000_000,
            updated_by: Some("admin".into()),
        }
    }

    fn queued(run_id: &str, project: &str, seq: i64) -> QueuedRun {
        QueuedRun {
            run_id: run_id.into(),
            project: project.into(),
            priority: 10 - seq,
            seq,
            request_json: format!(r#"{{"run":"{run_id}","cpu_millis":1500}}"#),
            enqueued_at_ms: 1_700_000_000_000 + seq,
        }
    }

    async fn create_runs(store: &Store, ids: &[&str]) {
        for id in ids {
            store
                .create_run(&run(id, "iris", 10, RunStatus::Queued))
                .await
                .unwrap();
        }
    }

    pub async fn quotas_upsert_list_and_delete(url: &str) {
        let store = Store::connect(url).await.unwrap();
        assert!(store.project_quotas().await.unwrap().is_empty());
        assert_eq!(store.project_quota("iris").await.unwrap(), None);

        // Inserted out of name order; "B" sorts before "a" bytewise on both backends.
        let iris = quota("iris", 3);
        let a = quota("a", 1);
        let b = quota("B", 2);
        for q in [&iris, &a, &b] {
            store.set_project_quota(q).await.unwrap();
        }
        assert_eq!(
            store.project_quotas().await.unwrap(),
            [b.clone(), a.clone(), iris.clone()]
        );
        assert_eq!(store.project_quota("iris").await.unwrap(), Some(iris));

        // Setting again replaces every field, including limits going back to none.
        let replaced = ProjectQuota {
            project: "iris".into(),
            cpu_millis: None,
            memory_bytes: Some(512 << 20),
            gpus: None,
            max_runs: Some(1),
            weight: 7,
            updated_at_ms: 1_800_000_000_000,
            updated_by: None,
        };
        store.set_project_quota(&replaced).await.unwrap();
        assert_eq!(
            store.project_quota("iris").await.unwrap().as_ref(),
            Some(&replaced)
        );
        assert_eq!(store.project_quotas().await.unwrap().len(), 3);

        assert!(store.delete_project_quota("iris").await.unwrap());
        assert!(!store.delete_project_quota("iris").await.unwrap());
        assert!(!store.delete_project_quota("never-set").await.unwrap());
        assert_eq!(store.project_quota("iris").await.unwrap(), None);
        assert_eq!(store.project_quotas().await.unwrap(), [b, a]);
    }

    pub async fn quota_limits_round_trip_none_and_large_values(url: &str) {
        let store = Store::connect(url).await.unwrap();
        // No limit at all: every optional field NULL.
        let open = ProjectQuota {
            project: "open".into(),
            cpu_millis: None,
            memory_bytes: None,
            gpus: None,
            max_runs: None,
            weight: 1,
            updated_at_ms: 0,
            updated_by: None,
        };
        // Values above 2^32 and zero limits (zero is a limit, not "none").
        let big = ProjectQuota {
            project: "big".into(),
            cpu_millis: Some(5_000_000_000),
            memory_bytes: Some(64 * GIB),
            gpus: Some(0),
            max_runs: Some(0),
            weight: i64::from(u32::MAX) + 1,
            updated_at_ms: i64::MAX,
            updated_by: Some("ops@example.com".into()),
        };
        for q in [&open, &big] {
            store.set_project_quota(q).await.unwrap();
        }
        assert_eq!(store.project_quota("open").await.unwrap(), Some(open));
        assert_eq!(store.project_quota("big").await.unwrap(), Some(big));
    }

    pub async fn invalid_quotas_are_refused(url: &str) {
        let store = Store::connect(url).await.unwrap();
        let valid = quota("iris", 2);
        store.set_project_quota(&valid).await.unwrap();
        let mut bad = Vec::new();
        for weight in [0, -1] {
            bad.push(ProjectQuota {
                weight,
                ..valid.clone()
            });
        }
        bad.push(ProjectQuota {
            cpu_millis: Some(-1),
            ..valid.clone()
        });
        bad.push(ProjectQuota {
            memory_bytes: Some(-GIB),
            ..valid.clone()
        });
        bad.push(ProjectQuota {
            gpus: Some(-2),
            ..valid.clone()
        });
        bad.push(ProjectQuota {
            max_runs: Some(i64::MIN),
            ..valid.clone()
        });
        for q in &bad {
            let err = store.set_project_quota(q).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{q:?}: {err}");
        }
        // A refused quota changes nothing, nor creates a new project's.
        assert_eq!(store.project_quota("iris").await.unwrap(), Some(valid));
        let err = store.set_project_quota(&quota("new", 0)).await.unwrap_err();
        assert!(err.to_string().contains("weight"), "{err}");
        assert_eq!(store.project_quota("new").await.unwrap(), None);
    }

    pub async fn queue_is_read_by_seq_and_replaced(url: &str) {
        let store = Store::connect(url).await.unwrap();
        assert!(store.queued_runs().await.unwrap().is_empty());
        create_runs(&store, &["r-1", "r-2", "r-3"]).await;
        // Enqueued out of submission order; seqs above 2^32.
        let base = 1 << 40;
        let third = queued("r-1", "iris", base + 3);
        let first = queued("r-2", "iris", base + 1);
        let second = queued("r-3", "other", base + 2);
        for q in [&third, &first, &second] {
            store.enqueue_run(q).await.unwrap();
        }
        assert_eq!(
            store.queued_runs().await.unwrap(),
            [first.clone(), second.clone(), third.clone()]
        );

        // Queueing a run again replaces its row (here: it moves to the front).
        let requeued = QueuedRun {
            run_id: "r-1".into(),
            project: "moved".into(),
            priority: -5,
            seq: base,
            request_json: "{}".into(),
            enqueued_at_ms: 42,
        };
        store.enqueue_run(&requeued).await.unwrap();
        assert_eq!(
            store.queued_runs().await.unwrap(),
            [requeued.clone(), first.clone(), second.clone()]
        );

        assert!(store.dequeue_run("r-2").await.unwrap());
        assert!(!store.dequeue_run("r-2").await.unwrap());
        assert!(!store.dequeue_run("r-unknown").await.unwrap());
        assert_eq!(store.queued_runs().await.unwrap(), [requeued, second]);

        // A run that does not exist cannot be queued.
        let err = store
            .enqueue_run(&queued("r-missing", "iris", 1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { kind: "run", id } if id == "r-missing"),
            "{err}"
        );
        assert_eq!(store.queued_runs().await.unwrap().len(), 2);
    }

    pub async fn queue_and_quotas_survive_reconnecting(url: &str) {
        let store = Store::connect(url).await.unwrap();
        create_runs(&store, &["r-a", "r-b"]).await;
        let a = queued("r-a", "iris", 2);
        let b = queued("r-b", "iris", 1);
        store.enqueue_run(&a).await.unwrap();
        store.enqueue_run(&b).await.unwrap();
        let q = quota("iris", 4);
        store.set_project_quota(&q).await.unwrap();
        drop(store);

        let again = Store::connect(url).await.unwrap();
        assert_eq!(again.queued_runs().await.unwrap(), [b, a.clone()]);
        assert_eq!(again.project_quotas().await.unwrap(), [q]);
        assert!(again.dequeue_run("r-b").await.unwrap());
        drop(again);

        let third = Store::connect(url).await.unwrap();
        assert_eq!(third.queued_runs().await.unwrap(), [a]);
    }

    /// The store has no public run deletion (gc drops logs, not runs), so the run is deleted
    /// with SQL: its queue row must go with it, and must not block the delete.
    pub async fn deleting_a_run_removes_its_queue_row(url: &str) {
        let store = Store::connect(url).await.unwrap();
        create_runs(&store, &["r-gone", "r-kept"]).await;
        store
            .enqueue_run(&queued("r-gone", "iris", 1))
            .await
            .unwrap();
        let kept = queued("r-kept", "iris", 2);
        store.enqueue_run(&kept).await.unwrap();

        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let deleted = sqlx::query("DELETE FROM runs WHERE id = $1")
            .bind("r-gone")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(deleted.rows_affected(), 1);
        pool.close().await;

        assert_eq!(store.queued_runs().await.unwrap(), [kept]);
        assert!(!store.dequeue_run("r-gone").await.unwrap());
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
                    let backend = gantry_store::Store::connect(&db.url).await.unwrap().backend();
                    assert_eq!(backend, "postgres");
                    crate::$module::$case(&db.url).await;
                    db.finish().await;
                }
            )+
        }
    };
}

on_every_backend!(
    cases::runs_round_trip,
    cases::run_prefix_lookup,
    cases::list_runs_filters_and_pages,
    cases::interrupting_a_run_interrupts_its_live_steps,
    cases::step_runs_round_trip_in_plan_order,
    cases::find_cached_returns_latest_real_success,
    cases::artifacts_and_lineage,
    cases::logs_page_by_id,
    cases::metrics_round_trip,
    cases::concurrent_handles_lose_nothing,
    cases::reopening_keeps_data_and_migrates_once,
    model_cases::versions_are_numbered_per_model,
    model_cases::aliases_move_and_references_resolve,
    model_cases::registering_a_step_run_again_returns_its_version,
    model_cases::concurrent_registrations_leave_no_gaps,
    model_cases::invalid_registrations_change_nothing,
    model_cases::models_list_by_name_and_by_run,
    model_cases::upgrading_a_version_1_database_keeps_its_runs,
    gc_cases::gc_keeps_what_kept_runs_models_and_uploads_use,
    usage_cases::usage_sums_by_group_window_and_scope,
    usage_cases::step_history_is_newest_first_with_oom_kills,
    queue_cases::quotas_upsert_list_and_delete,
    queue_cases::quota_limits_round_trip_none_and_large_values,
    queue_cases::invalid_quotas_are_refused,
    queue_cases::queue_is_read_by_seq_and_replaced,
    queue_cases::queue_and_quotas_survive_reconnecting,
    queue_cases::deleting_a_run_removes_its_queue_row,
);

/// What only SQLite has: a file, its journal mode, and the URL forms the CLI accepts.
mod sqlite_file {
    use gantry_store::{Store, StoreError};
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    use std::str::FromStr;

    #[tokio::test]
    async fn creates_the_file_and_its_directory_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/home/gantry.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        assert!(path.is_file());

        let mut conn = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// Migration 14 turns the row-per-line log into chunks: every old row reads back as
    /// before (a multi-line message as its lines), numbered per step run, and new lines
    /// follow the old ones.
    #[tokio::test]
    async fn old_log_rows_survive_the_move_to_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gantry.db", dir.path().display());
        {
            let pool = crate::support::sqlite_at_migration(&url, 13).await;
            for sql in [
                "INSERT INTO runs (id, pipeline, status, spec_file, spec_yaml, params_json, \
                 images_json, no_cache, created_at_ms) VALUES ('r-1', 'p', 'succeeded', 'p.yaml', \
                 '', '{}', '{}', 0, 1)",
                "INSERT INTO step_runs (id, run_id, step, seq, attempt, status, \
                 requested_cpu_millis, requested_memory_bytes, requested_gpu, inputs_json, \
                 outputs_json) VALUES ('s-a', 'r-1', 'a', 0, 1, 'failed', 1, 1, 0, '{}', '{}')",
                "INSERT INTO step_runs (id, run_id, step, seq, attempt, status, \
                 requested_cpu_millis, requested_memory_bytes, requested_gpu, inputs_json, \
                 outputs_json) VALUES ('s-b', 'r-1', 'b', 1, 1, 'succeeded', 1, 1, 0, '{}', '{}')",
                "INSERT INTO logs (run_id, step_run_id, stream, ts_ms, data) VALUES \
                 ('r-1', 's-a', 'stdout', 10, 'one'), \
                 ('r-1', 's-b', 'stderr', 11, 'b says hi' || char(10)), \
                 ('r-1', 's-a', 'gantry', 12, 'failed:' || char(10) || 'two lines'), \
                 ('r-1', 's-a', 'stderr', 13, '')",
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
        let store = Store::connect(&url).await.unwrap();
        let rows = store.logs("r-1", None, 0, 0).await.unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.step.as_str(),
                    r.line,
                    r.stream.as_str(),
                    r.ts_ms,
                    r.data.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a", 0, "stdout", 10, "one"),
                ("b", 0, "stderr", 11, "b says hi"),
                ("a", 1, "gantry", 12, "failed:"),
                ("a", 2, "gantry", 12, "two lines"),
                ("a", 3, "stderr", 13, ""),
            ]
        );
        store
            .append_logs(
                "s-a",
                &[gantry_store::LogChunk::message("stdout", 14, "new")],
            )
            .await
            .unwrap();
        let a = store.logs("r-1", Some("a"), rows[4].id, 0).await.unwrap();
        assert_eq!((a[0].line, a[0].data.as_str()), (4, "new"));
        assert!(a[0].id > rows[4].id);
    }

    #[tokio::test]
    async fn foreign_keys_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/g.db", dir.path().display()))
            .await
            .unwrap();
        let err = store
            .append_logs(
                "s-nope",
                &[gantry_store::LogChunk::message("stdout", 1, "x")],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }));
        let err = store
            .record_metrics("s-nope", &[("a".to_string(), 1.0)].into(), 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("s-nope"), "{err}");
    }

    #[tokio::test]
    async fn relative_urls_resolve_against_the_working_directory() {
        // Relative to the process's cwd (a unique name, removed afterwards): a run written
        // through the URL is read back after reopening it, from the file of that name.
        let name = format!("gantry-store-test-{}.db", gantry_store::new_id(""));
        let _cleanup = RemovedOnDrop(name.clone());
        let url = format!("sqlite://{name}");
        let store = Store::connect(&url).await.unwrap();
        let run = crate::fixtures::run(
            "r-00000000beef",
            "iris",
            1_700_000_000_000,
            gantry_store::RunStatus::Running,
        );
        store.create_run(&run).await.unwrap();
        drop(store);
        assert!(std::path::Path::new(&name).is_file());
        let reopened = Store::connect(&url).await.unwrap();
        assert_eq!(reopened.get_run(&run.id).await.unwrap(), run);
        drop(reopened);
        let absolute = std::env::current_dir().unwrap().join(&name);
        let by_path = Store::connect(&format!("sqlite://{}", absolute.display()))
            .await
            .unwrap();
        assert_eq!(by_path.get_run(&run.id).await.unwrap(), run);
    }

    /// Removes a database created in the working directory, even when the test fails.
    struct RemovedOnDrop(String);

    impl Drop for RemovedOnDrop {
        fn drop(&mut self) {
            let name = &self.0;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{name}{suffix}"));
            }
            let _ = std::fs::remove_file(std::path::Path::new(name).with_extension("migrate-lock"));
        }
    }

    #[tokio::test]
    async fn unsupported_urls_say_what_is_accepted() {
        for url in ["mysql://u@h/db", "sqlite::memory:", "/tmp/gantry.db"] {
            let err = Store::connect(url).await.unwrap_err();
            assert!(
                matches!(err, StoreError::UnsupportedUrl { .. }),
                "{url}: {err}"
            );
            assert!(err.to_string().contains("sqlite:///"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_postgres_fails_with_the_url_and_no_password() {
        let err = Store::connect("postgres://bob:hunter2@127.0.0.1:1/nothing")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Connect { .. }), "{msg}");
        assert!(msg.contains("127.0.0.1:1"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}

/// Every embedded migration (0001 runs, 0002 models, 0003 tracking, 0004 auth, …) is
/// recorded exactly once, in order, with no gap.
fn assert_each_migration_applied_once(versions: &[i64]) {
    assert!(versions.len() >= 4, "migrations applied: {versions:?}");
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(versions, expected);
}
