//! The integration tests of `hub`, one module per file beside this one, in one test
//! binary: one link instead of one per file (8 to 25 s each on two cores), and
//! the shared modules compiled once. A file not named here would never run:
//! `every_test_file_is_a_module` checks that none is left out.
//!
//! One file's tests: `cargo test -p markaz-hub --test hub_tests <file>::`.

mod rig;
mod support;

mod hub_catalog;
mod hub_data_pages;
mod hub_energy;
mod hub_operators;
mod hub_pages;
mod hub_revoke;
mod hub_sessions;
mod hub_sync;
mod migrate_store;
mod pg_tls;
mod tls_modem;
mod tls_mutual;

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
