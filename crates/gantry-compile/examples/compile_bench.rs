//! Times compiling a 1,000-member matrix sweep (plus its input step and a fan-in over every
//! member) to both targets. Run: `cargo run --release -p gantry-compile --example compile_bench
//! --features k8s-openapi/v1_33` (target: under 100 ms per compile).

use std::path::Path;
use std::time::Instant;

use gantry_compile::{CompileOptions, Target, compile};

const IMAGE: &str = "registry.example.com/team/trainer@sha256:2222222222222222222222222222222222222222222222222222222222222222";
const HELPER: &str = "registry.example.com/gantry@sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn main() {
    let members = 1000;
    let values: Vec<String> = (0..members)
        .map(|i| format!("{}", 0.001 * f64::from(i)))
        .collect();
    let spec = format!(
        "name: sweep\nparams:\n  depth: 4\nsteps:\n  - name: prep\n    uses: builtin/split\n    outputs: [data]\n  - name: train\n    image: {IMAGE}\n    command: [train, \"--lr=${{matrix.lr}}\", \"--depth=${{params.depth}}\", \"${{inputs.data}}\"]\n    matrix: {{ lr: [{}] }}\n    inputs: {{ data: prep.data }}\n    outputs: [model]\n    resources: {{ cpu: 2, memory: 4Gi, gpu: 1 }}\n    retries: 2\n    timeout: 1h\n  - name: pick\n    uses: builtin/evaluate\n    inputs: {{ models: train.model }}\n    outputs: [best]\n",
        values.join(", ")
    );
    let pipeline =
        gantry_spec::parse("sweep.yaml", Path::new("."), &spec).expect("the spec parses");
    let opts = CompileOptions::new("s3://bucket/prefix", HELPER);
    for target in [Target::Argo, Target::Kfp] {
        // Warm up once, then the best and the median of 20.
        let text = compile(&pipeline, target, &opts).expect("compiles");
        let mut times: Vec<f64> = (0..20)
            .map(|_| {
                let start = Instant::now();
                let out = compile(&pipeline, target, &opts).expect("compiles");
                std::hint::black_box(out);
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{target:?}: {} steps, {} bytes: best {:.1} ms, median {:.1} ms",
            members + 2,
            text.len(),
            times[0],
            times[times.len() / 2]
        );
    }
}
