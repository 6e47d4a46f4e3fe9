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

    use markaz_sync::protocol::{Request, Response};
    for name in ["push_framed", "push_compact"] {
        match Request::decode(&seed("sync_message", name)).unwrap() {
            Request::Push { changes, .. } => assert_eq!(changes.len(), 2, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(Request::decode(&seed("sync_message", "push_compact_cut")).is_err());
    assert!(matches!(
        Response::decode(&seed("sync_message", "welcome")).unwrap(),
        Response::Welcome {
            compact_push: true,
            ..
        }
    ));
}

/// The short fuzzing pass CI runs on stable Rust: every target gets seeded random
/// mutations of its committed corpus (bit flips, truncations, insertions of bytes that
/// parsers treat specially, duplicated and spliced ranges across seeds) for a bounded
/// time — `MARKAZ_FUZZ_SECS` per target, 2 s by default — and none may panic. It has no
/// coverage guidance, so it complements the cargo-fuzz campaign (`.ci/fuzz-short`, and the
/// long run in docs/RELIABILITY.md) rather than replacing it. A failing input is written
/// to `target/fuzz-short/<target>-<n>` with the seed that made it, so it can be added to
/// the corpus once fixed.
#[test]
fn mutated_corpus_inputs_never_panic() {
    let secs: f64 = std::env::var("MARKAZ_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let seed: u64 = std::env::var("MARKAZ_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d61_726b_617a);
    let budget = std::time::Duration::from_secs_f64(secs);
    let mut failures = Vec::new();
    for (target, run) in fuzz::TARGETS {
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir(target))
            .expect("corpus dir")
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .map(|p| std::fs::read(p).expect("corpus file"))
            .collect();
        seeds.sort();
        let mut rng = XorShift(seed ^ target.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
        let start = std::time::Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < budget {
            let input = mutate(&mut rng, &seeds);
            runs += 1;
            if catch_unwind(AssertUnwindSafe(|| run(&input))).is_err() {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-short");
                let _ = std::fs::create_dir_all(&dir);
                let file = dir.join(format!("{target}-{runs}"));
                let _ = std::fs::write(&file, &input);
                failures.push(format!(
                    "{target}: run {runs} (seed {seed}) → {}",
                    file.display()
                ));
                if failures.len() > 10 {
                    break;
                }
            }
        }
        println!("fuzz-short {target}: {runs} mutated inputs in {secs} s");
        assert!(runs > 0, "{target}: no input ran");
    }
    assert!(
        failures.is_empty(),
        "mutated inputs that panic: {failures:#?}"
    );
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes the parsers give meaning to: line ends, separators, the SMS prompt, checksum
/// and frame markers, quotes, digits at the edges of ranges, and non-ASCII.
const INTERESTING: &[u8] = b"\r\n\t,:;=\"'>()[]{}#+-0129AFafz\x00\x1a\x7f\x80\xff";

fn mutate(rng: &mut XorShift, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                data.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if len > 0 => {
                data.truncate(rng.below(len));
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                data.drain(a..b);
            }
            5 if len > 0 => {
                // Duplicate a range (repeated fields, doubled frames).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = data[a..b].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            6 => {
                // Splice in a range of another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(128)).min(other.len());
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[a..b].iter().copied());
                }
            }
            _ if len > 0 => {
                // Overwrite with a random byte (lengths and counts in binary frames).
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data.truncate(1 << 16);
    data
}
