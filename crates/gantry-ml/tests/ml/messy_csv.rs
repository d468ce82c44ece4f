//! csv-ingest on the kind of files people really have, then the rest of the
//! pipeline on them.

use std::fs;
use std::io::Write;

use gantry_ml::dataset::{self, ColumnType};
use serde_json::json;

use crate::support::{ingest, run, try_run, write_source};

const MESSY: &str = "\
id,age,income,city,member,signup,note,churned
1,34,52000.5,Paris,true,2023-01-15,\"likes \"\"quotes\"\", commas\",no
2,NA,61000,Lyon,false,2023-02-01T10:30:00Z,plain,yes
3,45,?,Paris,TRUE,2023-03-10,\"multi
line\",no
4,29,48000,,False,,null,yes
5,NaN,55000,Nice,yes,2023-05-05 08:00,x,no
6,52,null,Lyon,no,2023-06-30T12:00:00+02:00,y,yes
7,41,70000,Paris,true,2023-07-01,z,no
8,38,,Nice,false,2023-08-12,w,yes
";

#[test]
fn types_missing_markers_quotes_and_newlines() {
    let step = ingest(MESSY, json!({}));
    let ds = dataset::read(&step.output("dataset")).unwrap();
    assert_eq!(ds.rows(), 8);
    let ty = |name: &str| ds.column(name).unwrap().ty();
    assert_eq!(ty("id"), ColumnType::Int);
    assert_eq!(ty("age"), ColumnType::Int);
    assert_eq!(ty("income"), ColumnType::Float);
    assert_eq!(ty("city"), ColumnType::Categorical);
    assert_eq!(ty("member"), ColumnType::Bool);
    assert_eq!(ty("signup"), ColumnType::Datetime);
    assert_eq!(ty("churned"), ColumnType::Bool);
    let age = ds.column("age").unwrap();
    assert_eq!(age.missing_count(), 2, "NA and NaN");
    assert_eq!(
        ds.column("income").unwrap().missing_count(),
        3,
        "?, null and empty"
    );
    assert_eq!(ds.column("city").unwrap().missing_count(), 1);
    assert_eq!(
        ds.column("note").unwrap().text(0).as_deref(),
        Some("likes \"quotes\", commas")
    );
    assert_eq!(
        ds.column("note").unwrap().text(2).as_deref(),
        Some("multi\nline")
    );
    let signup = ds.column("signup").unwrap();
    assert_eq!(signup.text(1).as_deref(), Some("2023-02-01T10:30:00Z"));
    assert_eq!(
        signup.text(5).as_deref(),
        Some("2023-06-30T10:00:00Z"),
        "offset converted to UTC"
    );
    assert_eq!(signup.text(4).as_deref(), Some("2023-05-05T08:00:00Z"));
    let schema = ds.schema();
    let city = schema.columns.iter().find(|c| c.name == "city").unwrap();
    assert_eq!(
        city.categories.as_deref(),
        Some(&["Lyon".to_string(), "Nice".into(), "Paris".into()][..])
    );
    assert!(city.nullable);
    assert!(
        step.outcome.summary.contains("| signup | datetime | 1 |"),
        "{}",
        step.outcome.summary
    );

    // Profile copes with every type.
    let profile = run(
        "profile",
        json!({"bins": 4}),
        &[("dataset", &step.output("dataset"))],
    );
    let p = gantry_ml::profile::Profile::load(&profile.output("profile")).unwrap();
    let member = p.column("member").unwrap().categorical.as_ref().unwrap();
    assert_eq!(member.top.iter().map(|t| t.count).sum::<u64>(), 8);
    assert_eq!(
        p.column("signup")
            .unwrap()
            .numeric
            .as_ref()
            .unwrap()
            .histogram
            .counts
            .len(),
        4
    );
    assert_eq!(p.column("income").unwrap().missing, 3);
}

#[test]
fn a_ragged_row_is_reported_with_its_line_and_field_counts() {
    let csv = "a,b,c\n1,2,3\n4,\"five, still five\",6\n7,8\n9,10,11\n";
    let (_g, path) = write_source("bad.csv", csv.as_bytes());
    let err = try_run("csv-ingest", json!({}), &[("source", &path)])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("line 4: expected 3 fields (like the header) but found 2"),
        "{err}"
    );
    // A quoted newline shifts the line count, and the report follows the file's lines.
    let csv = "a,b\n1,\"x\ny\"\n2,3,4\n";
    let (_g, path) = write_source("bad.csv", csv.as_bytes());
    let err = try_run("csv-ingest", json!({}), &[("source", &path)])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("line 4: expected 2 fields"), "{err}");
}

#[test]
fn gzip_is_sniffed_whatever_the_name() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(MESSY.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let (_g, path) = write_source("data.bin", &bytes);
    let step = run("csv-ingest", json!({}), &[("source", &path)]);
    assert!(step.outcome.summary.contains("(gzip)"));
    let plain = ingest(MESSY, json!({}));
    for file in ["schema.json", "data.jsonl"] {
        assert_eq!(
            fs::read(step.output("dataset").join(file)).unwrap(),
            fs::read(plain.output("dataset").join(file)).unwrap()
        );
    }
}

#[test]
fn delimiter_header_columns_types_and_missing_options() {
    let csv = "1;a;x\n2;b;-\n3;;z\n";
    let step = ingest(
        csv,
        json!({
            "delimiter": ";",
            "header": false,
            "missing": ["-"],
            "columns": {"column_1": "n", "column_3": "code"},
            "types": {"n": "float"}
        }),
    );
    let ds = dataset::read(&step.output("dataset")).unwrap();
    assert_eq!(ds.column_names(), vec!["n", "code"]);
    assert_eq!(ds.column("n").unwrap().ty(), ColumnType::Float);
    assert_eq!(
        ds.column("code").unwrap().missing_count(),
        1,
        "`-` is missing"
    );
    // With `missing` replaced, the empty string is a value.
    let step = ingest(
        csv,
        json!({"delimiter": ";", "header": false, "missing": ["-"], "columns": ["column_2"]}),
    );
    let ds = dataset::read(&step.output("dataset")).unwrap();
    assert_eq!(ds.column("column_2").unwrap().text(2).as_deref(), Some(""));

    // Tab-separated, quote character changed.
    let step = ingest(
        "a\tb\n'x\ty'\t2\n",
        json!({"delimiter": "tab", "quote": "'"}),
    );
    let ds = dataset::read(&step.output("dataset")).unwrap();
    assert_eq!(ds.column("a").unwrap().text(0).as_deref(), Some("x\ty"));

    // A forced type that does not fit names the line, the column and the value.
    let (_g, path) = write_source("d.csv", b"n,v\n1,2\n2,abc\n");
    let err = try_run(
        "csv-ingest",
        json!({"types": {"v": "int"}}),
        &[("source", &path)],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("line 3, column `v`: `abc` is not a int value"),
        "{err}"
    );
    let err = try_run(
        "csv-ingest",
        json!({"columns": ["n", "w"]}),
        &[("source", &path)],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("`columns` names `w`") && err.contains("the columns are: n, v"),
        "{err}"
    );
    let err = try_run(
        "csv-ingest",
        json!({"types": {"n": "integer"}}),
        &[("source", &path)],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("`types.n` must be one of"), "{err}");
    let err = try_run("csv-ingest", json!({}), &[])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing input `source`"), "{err}");
    let (_g, path) = write_source("dup.csv", b"a,a\n1,2\n");
    let err = try_run("csv-ingest", json!({}), &[("source", &path)])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("names `a` twice"), "{err}");
    let (_g, path) = write_source("empty.csv", b"");
    let err = try_run("csv-ingest", json!({}), &[("source", &path)])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("the file is empty"), "{err}");
}

#[test]
fn many_distinct_strings_are_text_and_clean_drops_them() {
    let mut csv = String::from("name,group,y\n");
    for i in 0..60 {
        csv.push_str(&format!("user{i},{},{}\n", ["a", "b", "c"][i % 3], i % 2));
    }
    let step = ingest(&csv, json!({}));
    let ds = dataset::read(&step.output("dataset")).unwrap();
    assert_eq!(ds.column("name").unwrap().ty(), ColumnType::Text);
    assert_eq!(ds.column("group").unwrap().ty(), ColumnType::Categorical);
    let clean = run(
        "clean",
        json!({"label": "y"}),
        &[("dataset", &step.output("dataset"))],
    );
    assert!(
        clean
            .outcome
            .summary
            .contains("dropped column `name`: text column (60 distinct values)"),
        "{}",
        clean.outcome.summary
    );
    let forced = ingest(&csv, json!({"max_categories": 100}));
    let ds = dataset::read(&forced.output("dataset")).unwrap();
    assert_eq!(ds.column("name").unwrap().ty(), ColumnType::Categorical);
}

#[test]
fn messy_data_through_clean_split_train_evaluate() {
    // A larger messy file: missing values in several markers, categories, a
    // bool and a datetime, a label that depends on them.
    let mut csv = String::from("age,plan,active,joined,spend,churn\n");
    let markers = ["", "NA", "?", "null", "NaN"];
    for i in 0..300 {
        let age = if i % 17 == 0 {
            markers[i % 5].to_string()
        } else {
            (18 + (i * 7) % 50).to_string()
        };
        let plan = ["basic", "pro", "team"][(i * 5) % 3];
        let plan = if i % 23 == 0 { "" } else { plan };
        let active = if i % 3 == 0 { "false" } else { "true" };
        let joined = format!("2022-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
        let spend = (i * 37 % 200) as f64 / 2.0;
        let churn = if active == "false" && plan != "team" || spend < 10.0 {
            "yes"
        } else {
            "no"
        };
        csv.push_str(&format!(
            "{age},\"{plan}\",{active},{joined},{spend},{churn}\n"
        ));
    }
    csv.push_str(
        &csv.clone()
            .lines()
            .nth(5)
            .map(|l| format!("{l}\n"))
            .unwrap(),
    ); // a duplicate row
    let data = ingest(&csv, json!({}));
    let clean = run(
        "clean",
        json!({"label": "churn", "impute": "mean", "encoding": "onehot", "standardize": true}),
        &[("dataset", &data.output("dataset"))],
    );
    assert_eq!(clean.metric("duplicates_dropped"), 1.0);
    assert!(clean.metric("values_imputed") >= 30.0);
    let transform: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(clean.output("transform")).unwrap()).unwrap();
    let features: Vec<&str> = transform["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        features,
        vec![
            "age",
            "plan=basic",
            "plan=pro",
            "plan=team",
            "active",
            "joined",
            "spend"
        ]
    );
    let cleaned = dataset::read(&clean.output("dataset")).unwrap();
    assert!(cleaned.columns.iter().all(|c| c.missing_count() == 0));
    let parts = run(
        "split",
        json!({"test_fraction": 0.25, "validation_fraction": 0.15, "seed": 5, "stratify": "churn"}),
        &[("dataset", &clean.output("dataset"))],
    );
    assert!(parts.output("validation").join("schema.json").is_file());
    assert_eq!(
        parts.metric("train_rows") + parts.metric("test_rows") + parts.metric("validation_rows"),
        300.0
    );
    let model = run(
        "train",
        json!({"label": "churn", "algorithm": "gradient_boosting", "n_estimators": 60}),
        &[
            ("train", &parts.output("train")),
            ("transform", &clean.output("transform")),
            ("validation", &parts.output("validation")),
        ],
    );
    assert_eq!(
        model.metric("validation.rows"),
        parts.metric("validation_rows")
    );
    let report = run(
        "evaluate",
        json!({}),
        &[
            ("model", &model.output("model")),
            ("test", &parts.output("test")),
        ],
    );
    assert!(
        report.metric("accuracy") >= 0.85,
        "{:?}",
        report.outcome.metrics
    );

    // Encoded data without its transform would give a model that cannot serve raw rows.
    let err = try_run(
        "train",
        json!({"label": "churn"}),
        &[("train", &parts.output("train"))],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("also give train clean's transform"), "{err}");

    // The model also takes the raw (uncleaned) rows: it applies the transform itself.
    let raw_eval = run(
        "evaluate",
        json!({}),
        &[
            ("model", &model.output("model")),
            ("test", &data.output("dataset")),
        ],
    );
    assert!(raw_eval.metric("accuracy") >= 0.85);
    assert_eq!(raw_eval.metric("rows"), 301.0);
}

#[test]
fn validate_reports_every_failure() {
    let step = ingest(MESSY, json!({}));
    let err = try_run(
        "validate",
        json!({
            "min_rows": 100,
            "required": ["age", "email"],
            "columns": {
                "age": {"type": "int", "min": 30, "max": 50, "max_missing": 0.1},
                "city": {"allowed": ["Paris", "Lyon"], "not_null": true},
                "id": {"unique": true, "type": "float"},
                "signup": {"min": "2023-02-01"},
                "ghost": {"type": "int"}
            }
        }),
        &[("dataset", &step.output("dataset"))],
    )
    .err()
    .unwrap()
    .to_string();
    for expected in [
        "validation failed, 9 of 13 checks",
        "- min_rows: 8 rows, at least 100 expected",
        "- required on column `email`: missing; the columns are: id, age",
        "- min on column `age`: 1 values below 30 (e.g. row 4: 29)",
        "- max on column `age`: 1 values above 50 (e.g. row 6: 52)",
        "- max_missing on column `age`: 2 missing (25.0%), at most 10.0% allowed (e.g. row 2: missing)",
        "- allowed on column `city`: 2 values not allowed: Nice",
        "- not_null on column `city`: 1 missing",
        "- min on column `signup`: 1 values below \"2023-02-01\" (e.g. row 1: 2023-01-15T00:00:00Z)",
        "- exists on column `ghost`: no such column",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    // Rule typos are caught before running.
    let err = gantry_ml::validate_with("validate", &json!({"columns": {"age": {"minimum": 3}}}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown rule `columns.age.minimum`"), "{err}");
}
