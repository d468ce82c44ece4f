//! Small classic datasets as CSV text (header + rows), from the data bundled in
//! smartcore, with readable column names and a named label column. Demos and
//! tests use them; nothing is downloaded.

use smartcore::dataset::Dataset;

/// The dataset names [`csv_by_name`] knows.
pub const NAMES: [&str; 3] = ["breast_cancer", "iris", "diabetes"];

/// A dataset by name (`breast_cancer`, `iris`, `diabetes`).
pub fn csv_by_name(name: &str) -> Option<String> {
    match name {
        "breast_cancer" | "breast-cancer" => Some(breast_cancer_csv()),
        "iris" => Some(iris_csv()),
        "diabetes" => Some(diabetes_csv()),
        _ => None,
    }
}

/// Wisconsin diagnostic breast cancer: 569 rows, 30 float features
/// (`mean_radius`, …, `worst_fractal_dimension`) and `diagnosis`
/// (`malignant` / `benign`).
pub fn breast_cancer_csv() -> String {
    let data = smartcore::dataset::breast_cancer::load_dataset();
    let names: Vec<String> = data.feature_names.iter().map(|n| snake(n)).collect();
    // sklearn's encoding, which smartcore's copy follows: 0 = malignant, 1 = benign.
    to_csv(&data, &names, "diagnosis", |y| {
        if y == 0 { "malignant" } else { "benign" }.to_string()
    })
}

/// Fisher's iris: 150 rows, `sepal_length`, `sepal_width`, `petal_length`,
/// `petal_width` (cm) and `species` (`setosa` / `versicolor` / `virginica`).
pub fn iris_csv() -> String {
    let data = smartcore::dataset::iris::load_dataset();
    let names = ["sepal_length", "sepal_width", "petal_length", "petal_width"].map(String::from);
    let species = data.target_names.clone();
    to_csv(&data, &names, "species", |y| {
        species
            .get(y as usize)
            .cloned()
            .unwrap_or_else(|| y.to_string())
    })
}

/// Efron et al.'s diabetes data: 442 rows, ten scaled baseline variables
/// (`age`, `sex`, `bmi`, `bp`, `s1`…`s6`) and `progression` (an int, disease
/// progression one year later).
pub fn diabetes_csv() -> String {
    let data = smartcore::dataset::diabetes::load_dataset();
    let names: Vec<String> = data.feature_names.iter().map(|n| snake(n)).collect();
    to_csv(&data, &names, "progression", |y| y.to_string())
}

fn snake(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn to_csv(
    data: &Dataset<f32, u32>,
    names: &[String],
    label: &str,
    label_text: impl Fn(u32) -> String,
) -> String {
    let mut out = names.join(",");
    out.push(',');
    out.push_str(label);
    out.push('\n');
    for (row, y) in data.target.iter().enumerate().take(data.num_samples) {
        let start = row * data.num_features;
        for x in &data.data[start..start + data.num_features] {
            // f32's Display is its shortest round-trip form: "5.1", not 5.099999904632568.
            out.push_str(&x.to_string());
            out.push(',');
        }
        out.push_str(&label_text(*y));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(csv: &str) -> (usize, usize, String) {
        let mut lines = csv.lines();
        let header = lines.next().unwrap().to_string();
        let cols = header.split(',').count();
        let rows: Vec<&str> = lines.collect();
        assert!(rows.iter().all(|r| r.split(',').count() == cols));
        (rows.len(), cols, header)
    }

    #[test]
    fn bundled_datasets_have_their_known_shapes_and_labels() {
        let (rows, cols, header) = shape(&breast_cancer_csv());
        assert_eq!((rows, cols), (569, 31));
        assert!(header.starts_with("mean_radius,mean_texture,"), "{header}");
        assert!(
            header.ends_with(",worst_fractal_dimension,diagnosis"),
            "{header}"
        );
        let csv = breast_cancer_csv();
        assert_eq!(csv.matches(",malignant\n").count(), 212);
        assert_eq!(csv.matches(",benign\n").count(), 357);

        let (rows, cols, header) = shape(&iris_csv());
        assert_eq!((rows, cols), (150, 5));
        assert_eq!(
            header,
            "sepal_length,sepal_width,petal_length,petal_width,species"
        );
        let csv = iris_csv();
        assert!(
            csv.contains("\n5.1,3.5,1.4,0.2,setosa\n"),
            "{}",
            &csv[..200]
        );
        for s in ["setosa", "versicolor", "virginica"] {
            assert_eq!(csv.matches(&format!(",{s}\n")).count(), 50);
        }

        let (rows, cols, header) = shape(&diabetes_csv());
        assert_eq!((rows, cols), (442, 11));
        assert_eq!(header, "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,progression");
        assert!(csv_by_name("nope").is_none());
    }
}
