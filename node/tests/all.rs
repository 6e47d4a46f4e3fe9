//! The integration tests of `node`, one module per file beside this one, in one test
//! binary: one link instead of one per file (8 to 25 s each on two cores), and
//! the shared modules compiled once. A file not named here would never run:
//! `every_test_file_is_a_module` checks that none is left out.
//!
//! One file's tests: `cargo test -p markaz-node --test node_tests <file>::`.

mod support;

mod access;
mod api;
mod catalog_doc;
mod clock;
mod daily_docs;
mod desk;
mod device_panels;
mod devices_outbox;
mod devices_supervisors;
mod disk_guard;
mod fuzz_corpus;
mod integrity;
mod login_redirect;
mod supervisor;
mod sync_hub;

#[test]
fn every_test_file_is_a_module() {
    let this = include_str!("all.rs");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for entry in std::fs::read_dir(&dir).expect("the tests folder") {
        let path = entry.expect("an entry").path();
        let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
            continue;
        };
        let module = if path.extension().is_some_and(|e| e == "rs") {
            name != "all"
        } else {
            path.join("mod.rs").is_file()
        };
        if module {
            assert!(
                this.lines().any(|l| l == format!("mod {name};")),
                "tests/{name} is not a module of tests/all.rs, so its tests never run"
            );
        }
    }
}
