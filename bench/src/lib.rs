//! `cargo xtask bench …` (the `markaz-bench` binary, not shipped): the benchmarks, measured against the limits of the
//! machine and written to `docs/BENCHMARKS.md`, never asserted in timed tests.
//!
//! Each benchmark rewrites only its own section of the file, between
//! `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`, with the figures, the
//! command that reproduces them and the machine they were measured on. Shared parts:
//! [`workload`] (the deterministic center-day), [`shaper`] (the emulated 3G link),
//! [`rig`] (a real hub in this process and centers that sync with it over mutual TLS).

pub mod catch_up;
pub mod disk;
pub mod failover;
pub mod group_commit;
pub mod hub_load;
pub mod million;
pub mod no_wait;
pub mod restore;
pub mod rig;
pub mod shaper;
pub mod workload;

use std::path::Path;

use anyhow::Context;

/// Median of `v` (0 for an empty list).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `q` quantile (0..=1) of sorted `v`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The machine, for the record: cores, CPU model, kernel, build profile.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let profile = if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    };
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!("{cpus} CPUs ({model}), Linux {kernel}, {profile}, load average {load} at start")
}

/// Replaces the section `name` of `path` with `body` (appending the section, under
/// `heading`, if the markers are absent).
pub fn write_section(path: &Path, name: &str, heading: &str, body: &str) -> anyhow::Result<()> {
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{section}{}", &old[..a], &old[b + end.len()..])
        }
        _ => format!("{}\n\n## {heading}\n\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("while writing {}", path.display()))
}

/// A directory for benchmark data under `target/`, on the disk of the checkout.
pub fn scratch_dir(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::current_dir()?
        .join("target")
        .join(format!("bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
    Ok(dir)
}

/// Formats a byte count with thousands separators.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place_or_appended() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("B.md");
        std::fs::write(&p, "# B\n\nintro\n").unwrap();
        write_section(&p, "x", "X", "one").unwrap();
        write_section(&p, "y", "Y", "two").unwrap();
        write_section(&p, "x", "X", "three").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains("## X\n\n<!-- bench:x:start -->\nthree\n<!-- bench:x:end -->"));
        assert!(s.contains("<!-- bench:y:start -->\ntwo\n"));
        assert!(!s.contains("one"));
        assert_eq!(s.matches("## X").count(), 1);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
    }
}
