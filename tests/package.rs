//! The Debian package: what `cargo deb` makes from `[package.metadata.deb]` and
//! `packaging/`, inspected with dpkg-deb, then unpacked into a scratch root whose own
//! binary checks its own example configs.
//!
//! The package is built from the `markaz` binary these tests build anyway (`cargo deb
//! --no-build` of this test's profile, `--fast` compression): CI does not compile a
//! second, release binary for it. What is checked is the packaging — files, modes,
//! conffiles, maintainer scripts, stripping and the separate debug symbols — which is
//! the same for a release build; the shipped package is `cargo deb -p markaz` (release).
//! Without cargo-deb the tests skip and say so, unless `CI` is set (`.ci/run` installs
//! it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};

struct Built {
    deb: PathBuf,
    dbgsym: PathBuf,
    /// The unstripped binary the package was made from.
    bin: PathBuf,
}

/// Builds the package once for this test binary; `None`: cargo-deb is not installed.
fn package() -> Option<&'static Built> {
    static BUILT: OnceLock<std::result::Result<Option<Built>, String>> = OnceLock::new();
    match BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}"))) {
        Ok(built) => built.as_ref(),
        Err(e) => panic!("building the package: {e}"),
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn build() -> Result<Option<Built>> {
    let has_cargo_deb = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_deb {
        if std::env::var_os("CI").is_some() {
            bail!("cargo-deb is not installed and CI is set (.ci/run installs it)");
        }
        eprintln!(
            "skipping package test: cargo-deb not installed (cargo install cargo-deb --locked)"
        );
        return Ok(None);
    }
    let bin = markaz_e2e::markaz_bin()?;
    let profile_dir = bin.parent().context("binary without a directory")?;
    let target_dir = profile_dir
        .parent()
        .context("profile dir without a parent")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => bail!("no profile in {}", bin.display()),
    };
    let out = target_dir.join("e2e-debian");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = Command::new(cargo())
        .args([
            "deb",
            "-p",
            "markaz",
            "--no-build",
            "--fast",
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--output")
        .arg(&out)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .context("running cargo deb")?;
    ensure!(
        run.status.success(),
        "cargo deb failed: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let find = |suffix: &str, prefix: &str| -> Result<PathBuf> {
        std::fs::read_dir(&out)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
            })
            .with_context(|| format!("no {prefix}*{suffix} in {}", out.display()))
    };
    Ok(Some(Built {
        deb: find(".deb", "markaz_")?,
        dbgsym: find(".ddeb", "markaz-dbgsym_")?,
        bin,
    }))
}

fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `dpkg-deb -c` line of `path` (like `./usr/bin/markaz`).
fn entry<'a>(listing: &'a str, path: &str) -> Option<&'a str> {
    listing
        .lines()
        .find(|l| l.split_whitespace().last() == Some(path))
}

/// The ELF section names of `file` (readelf from binutils, which cargo-deb needs too).
fn sections(file: &Path) -> Result<String> {
    run("readelf", &["-S", "-W", &file.display().to_string()])
}

#[test]
fn the_package_holds_a_stripped_binary_units_configs_and_its_scripts() -> Result<()> {
    let Some(built) = package() else {
        return Ok(());
    };
    let deb = built.deb.display().to_string();

    let listing = run("dpkg-deb", &["-c", &deb])?;
    for (path, mode) in [
        ("./usr/bin/markaz", "-rwxr-xr-x"),
        ("./lib/systemd/system/markaz-node.service", "-rw-r--r--"),
        ("./lib/systemd/system/markaz-hub.service", "-rw-r--r--"),
        // The configs may carry the first admin password: not world-readable.
        ("./etc/markaz/node.toml", "-rw-r-----"),
        ("./etc/markaz/hub.toml", "-rw-r-----"),
        (
            "./usr/share/doc/markaz/examples/60-markaz.rules",
            "-rw-r--r--",
        ),
        ("./usr/share/doc/markaz/examples/midan.toml", "-rw-r--r--"),
        ("./usr/share/doc/markaz/OPERATIONS.md", "-rw-r--r--"),
        ("./usr/share/doc/markaz/CONFIG.md", "-rw-r--r--"),
    ] {
        let line = entry(&listing, path)
            .with_context(|| format!("{path} is not in the package:\n{listing}"))?;
        assert!(line.starts_with(mode), "{path}: {line}");
        assert!(
            line.contains(" root/root ") || line.contains(" 0/0 "),
            "{path}: {line}"
        );
    }
    assert!(
        !listing.contains("/usr/lib/debug"),
        "debug symbols belong in the -dbgsym package, not in the one a center downloads:\n{listing}"
    );

    let info = run("dpkg-deb", &["-I", &deb])?;
    assert!(info.contains("Package: markaz"), "{info}");
    let depends = info
        .lines()
        .find(|l| l.trim_start().starts_with("Depends:"))
        .with_context(|| format!("no Depends:\n{info}"))?;
    assert!(
        depends.contains("adduser") && depends.contains("libc6"),
        "{depends}"
    );

    // Control files: conffiles and the maintainer scripts.
    let control = tempfile::tempdir()?;
    run(
        "dpkg-deb",
        &["-e", &deb, &control.path().display().to_string()],
    )?;
    let read = |name: &str| std::fs::read_to_string(control.path().join(name));
    let conffiles = read("conffiles")?;
    for f in ["/etc/markaz/node.toml", "/etc/markaz/hub.toml"] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} is not a conffile, an upgrade would overwrite the technician's edits: {conffiles}"
        );
    }
    let postinst = read("postinst")?;
    for needed in [
        "adduser --system",
        "--ingroup markaz",
        "adduser --quiet markaz dialout",
        "install -d -o markaz -g markaz -m 0750 /var/lib/markaz",
        "systemctl try-restart markaz-node.service markaz-hub.service",
    ] {
        assert!(
            postinst.contains(needed),
            "postinst lacks `{needed}`:\n{postinst}"
        );
    }
    let prerm = read("prerm")?;
    assert!(
        prerm.contains(r#"[ "$1" = "remove" ]"#),
        "prerm stops the services only on removal, not on upgrade:\n{prerm}"
    );
    let postrm = read("postrm")?;
    assert!(
        !postrm.contains("rm -rf") && !postrm.contains("rm -r "),
        "even a purge keeps /var/lib/markaz:\n{postrm}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)?.permissions().mode();
        assert_eq!(mode & 0o755, 0o755, "{script} is not executable: {mode:o}");
        run("sh", &["-n", &path.display().to_string()])?;
    }

    // Stripped: the packaged binary has no debug sections; the .ddeb has them, in a file
    // named by the binary's build id.
    let root = tempfile::tempdir()?;
    run(
        "dpkg-deb",
        &["-x", &deb, &root.path().display().to_string()],
    )?;
    let shipped = root.path().join("usr/bin/markaz");
    let original = sections(&built.bin)?;
    assert!(
        original.contains(".debug_line"),
        "the build had no debug info to move:\n{original}"
    );
    let stripped = sections(&shipped)?;
    // (`.debug_gdb_scripts` is loaded data — rustc's pointer to its pretty-printers —
    // not debug info, and stays.)
    for section in [".debug_info", ".debug_line", ".debug_str", ".symtab"] {
        assert!(
            !stripped.contains(section),
            "the shipped binary keeps {section}:\n{stripped}"
        );
    }
    assert!(
        std::fs::metadata(&shipped)?.len() < std::fs::metadata(&built.bin)?.len(),
        "stripping made the binary no smaller"
    );
    let dbg_listing = run("dpkg-deb", &["-c", &built.dbgsym.display().to_string()])?;
    let debug_file = dbg_listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .find(|p| p.starts_with("./usr/lib/debug/.build-id/") && p.ends_with(".debug"))
        .with_context(|| format!("no build-id debug file in the dbgsym package:\n{dbg_listing}"))?
        .to_string();
    let dbg_root = tempfile::tempdir()?;
    run(
        "dpkg-deb",
        &[
            "-x",
            &built.dbgsym.display().to_string(),
            &dbg_root.path().display().to_string(),
        ],
    )?;
    let debug_sections = sections(&dbg_root.path().join(&debug_file))?;
    assert!(
        debug_sections.contains(".debug_line"),
        "{debug_file} holds no line tables:\n{debug_sections}"
    );
    Ok(())
}

#[test]
fn the_unpacked_package_checks_its_own_example_configs() -> Result<()> {
    let Some(built) = package() else {
        return Ok(());
    };
    let root = tempfile::tempdir()?;
    let r = root.path();
    run(
        "dpkg-deb",
        &[
            "-x",
            &built.deb.display().to_string(),
            &r.display().to_string(),
        ],
    )?;
    let markaz = r.join("usr/bin/markaz");
    let markaz = markaz.to_str().context("path")?;

    let version = run(markaz, &["--version"])?;
    assert!(version.starts_with("markaz "), "{version}");
    for (file, kind) in [("node.toml", "node"), ("hub.toml", "hub")] {
        let path = r.join("etc/markaz").join(file);
        let out = run(markaz, &["check-config", &path.display().to_string()])
            .with_context(|| format!("the installed {file} does not pass check-config"))?;
        assert!(out.contains(&format!("ok ({kind} config)")), "{out}");
    }
    let example = r.join("usr/share/doc/markaz/examples/midan.toml");
    run(markaz, &["check-config", &example.display().to_string()])?;

    // The units start the installed binary on the installed configs, and let the service
    // write exactly where those configs keep their data.
    let node_toml = std::fs::read_to_string(r.join("etc/markaz/node.toml"))?;
    let hub_toml = std::fs::read_to_string(r.join("etc/markaz/hub.toml"))?;
    for (unit, sub, config, data_dir) in [
        (
            "markaz-node.service",
            "node",
            &node_toml,
            "data_dir = \"/var/lib/markaz\"",
        ),
        (
            "markaz-hub.service",
            "hub",
            &hub_toml,
            "data_dir = \"/var/lib/markaz/hub\"",
        ),
    ] {
        let text = std::fs::read_to_string(r.join("lib/systemd/system").join(unit))?;
        let exec = format!("ExecStart=/usr/bin/markaz {sub} --config /etc/markaz/{sub}.toml");
        for needed in [
            exec.as_str(),
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "LimitNOFILE=65536",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/markaz",
            "User=markaz",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(needed)),
                "{unit} lacks {needed}"
            );
        }
        assert!(
            config.contains(data_dir),
            "{unit}: {data_dir} not in its config"
        );
    }
    let node_unit = std::fs::read_to_string(r.join("lib/systemd/system/markaz-node.service"))?;
    assert!(node_unit.contains("SupplementaryGroups=dialout"));
    Ok(())
}
