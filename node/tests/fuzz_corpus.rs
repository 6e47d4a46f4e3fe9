//! Replays every committed fuzz corpus input (`fuzz/corpus/<target>/*`) through the same
//! functions the cargo-fuzz targets call, so a plain `cargo test` checks the corpus — and
//! every crash once found and fixed — even on a machine without cargo-fuzz or nightly.

#[path = "../../fuzz/src/lib.rs"]
mod fuzz;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = corpus_dir(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_corpus_input_replays_without_panic() {
    let mut failures = Vec::new();
    for (target, run) in fuzz::TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {target} at {}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(
            files.len() >= 5,
            "{target}: a handful of seeds is committed, found {}",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).expect("readable corpus file");
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}

/// The seeds are real-shaped: the valid ones decode to what a device would have meant, so
/// the fuzzer starts from inputs that reach deep into each parser.
#[test]
fn the_valid_seeds_decode() {
    use markaz_hardware::modem::sms;
    use markaz_hardware::power::{vedirect, voltronic};

    let pdu = String::from_utf8(seed("sms_pdu", "ucs2_marhaba")).unwrap();
    let d = sms::decode_submit(&pdu).unwrap();
    assert_eq!(
        (d.to.to_string().as_str(), d.text.as_str()),
        ("+963944123456", "مرحبا")
    );
    let part = String::from_utf8(seed("sms_pdu", "ucs2_concat_part1")).unwrap();
    let d = sms::decode_submit(&part).unwrap();
    assert!(d.concat.is_some(), "{d:?}");

    let mppt = seed("vedirect", "mppt_block");
    let blocks = vedirect::Parser::new().feed(&mppt[1..]);
    assert_eq!(blocks.len(), 1);
    assert!(vedirect::Reading::from_block(&blocks[0]).is_ok());
    let two = seed("vedirect", "bmv_two_blocks");
    assert_eq!(vedirect::Parser::new().feed(&two[1..]).len(), 2);

    for name in ["qpigs_new_firmware", "qpigs_17_fields"] {
        let reply = seed("voltronic", name);
        let data = voltronic::decode_reply(&reply).unwrap();
        voltronic::Qpigs::parse(data).unwrap();
    }
    let data = seed("voltronic", "qmod_battery");
    assert_eq!(
        voltronic::Mode::parse(voltronic::decode_reply(&data).unwrap()).unwrap(),
        voltronic::Mode::Battery
    );

    for name in ["midan", "demo", "empty"] {
        let text = String::from_utf8(seed("config", name)).unwrap();
        markaz_config::parse_node(&text, name).unwrap();
    }
    let hub = String::from_utf8(seed("config", "hub")).unwrap();
    markaz_config::parse_hub(&hub, "hub").unwrap();

    let frames = seed("sync_frame", "frames");
    assert_eq!(markaz_sync::frame::decode_frames(&frames).unwrap().len(), 3);
    let batch = seed("sync_frame", "batch_v1");
    assert_eq!(
        markaz_sync::frame::decode_batch(&batch, 1).unwrap().len(),
        3
    );
}
