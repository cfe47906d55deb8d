//! What the runtime's integration tests share: the repository's digits task.

use std::io::Read;
use std::path::{Path, PathBuf};

use fl_workflow::Workflow;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The digits task named `name` with `seed`: the shipped `digits-cnn` package, the initiator
/// validating and testing on its data, participants `site-1` .. `site-<sites>`, then the
/// `extra` lines of YAML (rounds, timeouts, ...), writing to `out`.
pub fn digits_workflow(out: &Path, name: &str, seed: u64, sites: usize, extra: &str) -> Workflow {
    let r = repo();
    let data = r.join("datasets/digits");
    let mut text = format!(
        "version: 1\nname: {name}\nseed: {seed}\nmodel: {model}\n\
         initiator:\n  node: initiator\n  validation: {init}\n  test: {init}\n\
         participants:\n",
        model = r.join("models/digits-cnn").display(),
        init = data.join("initiator").display(),
    );
    for i in 1..=sites {
        let dir = data.join(format!("site-{i}"));
        text.push_str(&format!(
            "  - node: site-{i}\n    data: {}\n",
            dir.display()
        ));
    }
    text.push_str(extra);
    text.push_str(&format!("output: {}\n", out.display()));
    Workflow::parse(&text, out.join("workflow.yaml")).expect("a valid workflow")
}

/// The weights a result's `model.zip` holds.
pub fn weights(model_zip: &Path) -> Vec<u8> {
    let file = std::fs::File::open(model_zip).expect("model.zip");
    let mut archive = zip::ZipArchive::new(file).expect("zip");
    let mut entry = archive.by_name("model.safetensors").expect("weights");
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).expect("read");
    bytes
}
