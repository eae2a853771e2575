//! The official Python `kubernetes` client (pip) against the real server. `make test` prepares
//! its virtualenv at `target/python-venv` (or `$COMPAT_PYTHON` names the interpreter).

use std::path::PathBuf;
use std::process::Command;

use compat_tests::TestCluster;

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("COMPAT_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python-venv/bin/python")
}

#[test]
fn the_python_client_does_crud_patch_list_watch_and_server_side_apply() {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run `make test`, which creates the venv with the kubernetes client",
        python.display()
    );
    let cluster = TestCluster::start().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/smoke.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&cluster.kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("python client smoke: ok"), "{stdout}");
}
