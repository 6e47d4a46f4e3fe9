//! Loader tests: defaults, each class of error with its position and hint, the
//! example files, and arbitrary input.

use super::*;
use proptest::prelude::*;
use std::time::Duration;

fn node_err(text: &str) -> Vec<Problem> {
    match parse_node(text, "t.toml") {
        Ok(cfg) => panic!("expected problems, got {cfg:#?}"),
        Err(e) => e.problems().to_vec(),
    }
}

fn only(problems: Vec<Problem>) -> Problem {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    problems.into_iter().next().unwrap()
}

fn at(p: &Problem) -> (usize, usize) {
    (p.line, p.column)
}

#[test]
fn empty_file_is_the_default_node() {
    let cfg = parse_node("", "empty.toml").unwrap();
    assert_eq!(cfg, NodeConfig::default());
    assert_eq!(cfg.center.id.as_str(), "demo");
    assert_eq!(cfg.counters.len(), 4);
    assert!(cfg.counters.iter().all(|c| c.groups.len() == 5));
    assert_eq!(cfg.queue.groups[4].letter.as_char(), 'E');
    assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(cfg.power.generator.registers.fuel_percent, None);
    assert_eq!(cfg.power.generator.control, None);
}

#[test]
fn defaults_round_trip() {
    let node = NodeConfig::default();
    let text = toml::to_string(&node).unwrap();
    assert_eq!(parse_node(&text, "node.toml").unwrap(), node);

    let hub = HubConfig::default();
    let text = toml::to_string(&hub).unwrap();
    assert_eq!(parse_hub(&text, "hub.toml").unwrap(), hub);
    assert_eq!(parse_hub("[hub]\n", "hub.toml").unwrap(), hub);
}

#[test]
fn a_fully_set_config_round_trips() {
    let mut node =
        parse_node(include_str!("../../docs/examples/midan.toml"), "midan.toml").unwrap();
    node.auth.initial_admin_password = Some("correct horse".into());
    node.power.generator.quiet_hours = Some("21:30-05:00".parse().unwrap());
    let text = toml::to_string(&node).unwrap();
    assert_eq!(parse_node(&text, "again.toml").unwrap(), node);
}

#[test]
fn syntax_error_gives_position() {
    let p = only(node_err("[center]\nid = \"midan\"\nname_en = Midan\n"));
    assert_eq!(p.kind, ProblemKind::Syntax);
    assert_eq!(at(&p), (3, 11));
    assert!(p.message.starts_with("syntax error"), "{}", p.message);
    assert!(
        p.hint.as_deref().unwrap_or("").contains("double quotes"),
        "{p:?}"
    );

    let p = only(node_err(
        "[queue]\npriority_weight = 1\npriority_weight = 2\n",
    ));
    assert_eq!(p.kind, ProblemKind::Syntax);
    assert_eq!(p.line, 3);
}

#[test]
fn unknown_key_suggests_the_near_one() {
    let text = "[center]\nid = \"midan\"\n\n[queue]\nnormal_weight = 1\nprority_weight = 3\n";
    let p = only(node_err(text));
    assert_eq!(p.kind, ProblemKind::UnknownKey);
    assert_eq!(at(&p), (6, 1));
    assert_eq!(p.key_path, "queue.prority_weight");
    assert_eq!(p.message, "unknown key `prority_weight` in [queue]");
    assert_eq!(p.hint.as_deref(), Some("did you mean `priority_weight`?"));
    let shown = parse_node(text, "midan.toml").unwrap_err().to_string();
    assert_eq!(
        shown,
        "midan.toml:6:1: unknown key `prority_weight` in [queue]\n  hint: did you mean `priority_weight`?"
    );
}

#[test]
fn unknown_key_in_the_wrong_section_names_its_home() {
    let p = only(node_err("[queue]\n  listen = \"0.0.0.0:80\"\n"));
    assert_eq!(at(&p), (2, 3));
    assert_eq!(p.hint.as_deref(), Some("`listen` belongs in [server]"));
}

#[test]
fn unknown_section_and_nested_key() {
    let problems = node_err("[centre]\nid = \"x\"\n\n[power.generator.registers]\nfuel = 1027\n");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(at(&problems[0]), (1, 2));
    assert_eq!(problems[0].hint.as_deref(), Some("did you mean `center`?"));
    assert_eq!(problems[1].line, 5);
    assert_eq!(problems[1].key_path, "power.generator.registers.fuel");
    assert_eq!(
        problems[1].message,
        "unknown key `fuel` in [power.generator.registers]"
    );
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let text = "\
[server]
listen = \"0.0.0.0:8080\"
max_body_bytes = \"big\"

[queue]
prority_weight = 2

[logging]
format = \"jsn\"

[[counters]]
number = 1
groups = [\"civil\"]
colour = \"red\"
";
    let problems = node_err(text);
    let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![3, 6, 9, 14], "{problems:#?}");
    assert_eq!(problems[0].kind, ProblemKind::WrongType);
    assert_eq!(problems[1].kind, ProblemKind::UnknownKey);
    assert_eq!(problems[2].kind, ProblemKind::BadValue);
    assert_eq!(problems[3].kind, ProblemKind::UnknownKey);
    assert_eq!(problems[3].key_path, "counters[0].colour");
}

#[test]
fn wrong_type_names_both_types_and_shows_the_default() {
    let p = only(node_err("[server]\nmax_body_bytes = \"64k\"\n"));
    assert_eq!(p.kind, ProblemKind::WrongType);
    assert_eq!(at(&p), (2, 18));
    assert_eq!(p.key_path, "server.max_body_bytes");
    assert_eq!(
        p.message,
        "wrong type for `server.max_body_bytes`: expected a non-negative integer, found a string"
    );
    assert_eq!(
        p.hint.as_deref(),
        Some("for example `max_body_bytes = 65536` (the default)")
    );

    let p = only(node_err("[power.vedirect]\nport = \"/dev/ttyUSB0\"\n"));
    assert_eq!(p.kind, ProblemKind::WrongType);
    assert_eq!(
        p.hint.as_deref(),
        Some("write one `[[power.vedirect]]` table per entry")
    );
}

#[test]
fn out_of_range_integer() {
    let p = only(node_err("[power.thresholds]\nlow_soc_percent = 300\n"));
    assert_eq!(p.kind, ProblemKind::BadValue);
    assert_eq!(at(&p), (2, 19));
    assert!(p.message.contains("300 is out of range"), "{}", p.message);
}

#[test]
fn enum_values_get_did_you_mean() {
    let p = only(node_err("[center]\ndigits = \"western \"\n"));
    assert_eq!(p.kind, ProblemKind::BadValue);
    assert_eq!(at(&p), (2, 10));
    assert_eq!(p.hint.as_deref(), Some("did you mean `western`?"));
    assert!(
        p.message.contains("`arabic-indic`, `western`"),
        "{}",
        p.message
    );
}

#[test]
fn typed_strings_explain_their_format() {
    let problems = node_err(
        "[center]\nid = \"Midan\"\nreceipt_prefix = \"mdn\"\ntimezone = \"Asia/Damscus\"\n\
         technician_phone = \"0944123456\"\n\n[power.generator]\nquiet_hours = \"22-06\"\n",
    );
    let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 8], "{problems:#?}");
    assert!(problems.iter().all(|p| p.kind == ProblemKind::BadValue));
    assert!(
        problems[0].message.contains("invalid center id `Midan`"),
        "{}",
        problems[0].message
    );
    assert!(problems[2].message.contains("did you mean `Asia/Damascus`"));
    assert_eq!(problems[0].column, 6);
    assert_eq!(problems[4].key_path, "power.generator.quiet_hours");
}

/// Issue #19.1: `check-config` accepted `mazzeh-`, which the sync model refuses, so the
/// node started and then failed to write its documents and to sync. The config's center
/// id is the model's type now; a slug the model refuses is refused at its line.
#[test]
fn check_config_refuses_a_center_id_the_model_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mazzeh.toml");
    std::fs::write(&file, "# a center\n[center]\nid = \"mazzeh-\"\n").unwrap();
    let e = check_file(&file).unwrap_err();
    let p = only(e.problems().to_vec());
    assert_eq!(
        (p.kind, p.line, p.key_path.as_str()),
        (ProblemKind::BadValue, 3, "center.id")
    );
    assert!(
        p.message.contains("invalid center id `mazzeh-`"),
        "{}",
        p.message
    );
    assert!(e.to_string().contains("mazzeh.toml:3:"), "{e}");
    for bad in ["a", "Midan", "1abc", "hay--wurud", "midān"] {
        let text = format!("[center]\nid = {bad:?}\n");
        assert_eq!(only(node_err(&text)).line, 2, "{bad}");
    }
    let cfg = parse_node("[center]\nid = \"mazzeh-2\"\n", "t.toml").unwrap();
    let id: markaz_ids::CenterId = cfg.center.id;
    assert_eq!(id, "mazzeh-2".parse::<markaz_ids::CenterId>().unwrap());
}

#[test]
fn socket_address_error_shows_default() {
    let p = only(node_err("[server]\nlisten = \"localhost\"\n"));
    assert_eq!(p.kind, ProblemKind::BadValue);
    assert_eq!(
        p.hint.as_deref(),
        Some("for example `listen = \"0.0.0.0:8080\"` (the default)")
    );
}

#[test]
fn missing_required_key_in_a_list_entry() {
    let problems = node_err("[[counters]]\ngroups = [\"civil\"]\n\n[[counters]]\nnumber = 2\n");
    let p = only(problems);
    assert_eq!(p.kind, ProblemKind::MissingKey);
    assert_eq!(p.line, 1);
    assert_eq!(p.message, "missing key `number` in [counters[0]]");
}

#[test]
fn a_bad_field_in_an_entry_does_not_also_report_it_missing() {
    let text = "[[counters]]\nnumber = \"one\"\n[[counters]]\nnumber = 2\nshape = 1\n";
    let problems = node_err(text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].kind, ProblemKind::WrongType);
    assert_eq!(problems[1].key_path, "counters[1].shape");
    assert_eq!(problems[1].line, 5);
}

#[test]
fn thresholds_in_the_wrong_order_point_at_the_set_key() {
    let p = only(node_err(
        "[power.thresholds]\n# alert early\ncritical_soc_percent = 40\n",
    ));
    assert_eq!(p.kind, ProblemKind::BadValue);
    assert_eq!(at(&p), (3, 24));
    assert_eq!(p.key_path, "power.thresholds.critical_soc_percent");
    assert!(
        p.message.contains("must be below low_soc_percent (30)"),
        "{}",
        p.message
    );
    assert!(p.hint.is_some());

    let p = only(node_err("[power.thresholds]\nlow_battery_mv = 22000\n"));
    assert_eq!(p.key_path, "power.thresholds.low_battery_mv");
    assert_eq!(p.line, 2);
}

#[test]
fn probe_times_take_whole_and_fractional_seconds() {
    // Files written when these were whole seconds still read.
    let cfg = parse_node(
        "[link]\nprobe_interval_secs = 10\nprobe_timeout_secs = 1\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.link.probe_interval_secs.duration(),
        Duration::from_secs(10)
    );
    assert_eq!(
        cfg.link.probe_timeout_secs.duration(),
        Duration::from_secs(1)
    );
    let cfg = parse_node(
        "[link]\nprobe_interval_secs = 0.5\nprobe_timeout_secs = 0.25\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.link.probe_interval_secs.duration(),
        Duration::from_millis(500)
    );
    assert_eq!(
        cfg.link.probe_timeout_secs.duration(),
        Duration::from_millis(250)
    );
}

#[test]
fn probe_times_must_be_finite_sane_and_ordered() {
    let p = only(node_err("[link]\nprobe_interval_secs = 0.05\n"));
    assert_eq!(p.kind, ProblemKind::BadValue);
    assert_eq!(at(&p), (2, 23));
    assert!(
        p.message.contains("0.05 is out of range, use 0.1 to 3600"),
        "{}",
        p.message
    );

    let p = only(node_err("[link]\nprobe_interval_secs = nan\n"));
    assert_eq!(p.key_path, "link.probe_interval_secs");
    assert!(
        p.message.contains("not a number of seconds"),
        "{}",
        p.message
    );

    let p = only(node_err("[link]\nprobe_timeout_secs = -inf\n"));
    assert_eq!(p.key_path, "link.probe_timeout_secs");
    assert!(
        p.message.contains("not a number of seconds"),
        "{}",
        p.message
    );

    let p = only(node_err("[link]\nprobe_interval_secs = -1\n"));
    assert!(p.message.contains("-1 is out of range"), "{}", p.message);

    // The timeout may not outlast the round; the key the file sets is blamed.
    let p = only(node_err(
        "[link]\nprobe_interval_secs = 0.5\nprobe_timeout_secs = 0.75\n",
    ));
    assert_eq!(p.key_path, "link.probe_timeout_secs");
    assert_eq!(p.line, 3);
    assert!(
        p.message
            .contains("probe_timeout_secs (0.75) is above probe_interval_secs (0.5)"),
        "{}",
        p.message
    );

    let p = only(node_err("[link]\nprobe_interval_secs = \"1s\"\n"));
    assert_eq!(p.kind, ProblemKind::WrongType);
}

#[test]
fn counter_rules() {
    let text = "\
[[counters]]
number = 1
groups = [\"civil\"]

[[counters]]
number = 1
groups = [\"civl\", \"judicial\"]

[[counters]]
number = 100
";
    let problems = node_err(text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_eq!(at(&problems[0]), (6, 10));
    assert!(problems[0].message.contains("duplicate counter number 1"));
    assert_eq!(at(&problems[1]), (7, 11));
    assert_eq!(problems[1].key_path, "counters[1].groups[0]");
    assert_eq!(problems[1].hint.as_deref(), Some("did you mean `civil`?"));
    assert_eq!(problems[2].line, 10);
    assert!(problems[2].message.contains("100 is out of range"));
}

#[test]
fn counter_without_groups_serves_all() {
    let cfg = parse_node("[[counters]]\nnumber = 7\n", "t.toml").unwrap();
    assert_eq!(cfg.counters.len(), 1);
    assert_eq!(cfg.counters[0].groups.len(), 5);
}

#[test]
fn duplicate_group_letters_and_ids() {
    let text = "\
[[queue.groups]]
id = \"civil\"
letter = \"A\"
name_ar = \"مدني\"
name_en = \"Civil\"

[[queue.groups]]
id = \"civil\"
letter = \"A\"
name_ar = \"مدني\"
name_en = \"Civil 2\"
";
    let problems = node_err(text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(at(&problems[0]), (8, 6));
    assert!(problems[0].message.contains("duplicate group id `civil`"));
    assert_eq!(at(&problems[1]), (9, 10));
    assert!(problems[1].message.contains("duplicate ticket letter `A`"));
}

#[test]
fn group_letter_must_be_one_capital() {
    let text =
        "[[queue.groups]]\nid = \"civil\"\nletter = \"ab\"\nname_ar = \"م\"\nname_en = \"C\"\n";
    let p = only(node_err(text));
    assert_eq!(at(&p), (3, 10));
    assert!(
        p.message.contains("one uppercase ASCII letter"),
        "{}",
        p.message
    );
}

#[test]
fn enabled_features_need_their_settings() {
    let text = "[sync]\nenabled = true\nca_cert = \"/etc/markaz/ca.pem\"\n\n[power.inverter]\nenabled = true\n";
    let problems = node_err(text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    // Absent keys are placed on their table's header.
    assert_eq!(at(&problems[0]), (1, 2));
    assert_eq!(problems[0].key_path, "sync.client_cert");
    assert_eq!(problems[0].kind, ProblemKind::MissingKey);
    assert_eq!(
        problems[0].message,
        "missing key `sync.client_cert`: it is required when sync.enabled = true"
    );
    assert_eq!(problems[1].key_path, "sync.client_key");
    assert_eq!(problems[2].key_path, "power.inverter.port");
    assert_eq!(problems[2].line, 5);
}

#[test]
fn hub_urls_are_tried_in_order_and_hub_url_is_a_list_of_one() {
    let one = parse_node(
        "[sync]\nhub_url = \"https://hub.example.org:8443\"\n",
        "t.toml",
    )
    .unwrap();
    let urls: Vec<String> = one.sync.hubs().iter().map(|u| u.to_string()).collect();
    assert_eq!(urls, ["https://hub.example.org:8443"]);
    let text = "[sync]\nhub_urls = [\"https://hub-a:8443\", \"https://hub-b:8443\"]\n";
    let two = parse_node(text, "t.toml").unwrap();
    let urls: Vec<String> = two.sync.hubs().iter().map(|u| u.to_string()).collect();
    assert_eq!(urls, ["https://hub-a:8443", "https://hub-b:8443"]);
    let text = toml::to_string(&two).unwrap();
    assert_eq!(parse_node(&text, "again.toml").unwrap(), two);

    // A bad address: placed on the list, naming the address.
    let p = only(node_err(
        "[sync]\nhub_urls = [\"https://hub-a:8443\", \"http://hub-b\"]\n",
    ));
    assert_eq!(at(&p), (2, 12), "{p:#?}");
    assert!(p.message.contains("`http://hub-b`"), "{}", p.message);
    // Both keys, an empty list, a duplicate.
    let p = only(node_err(
        "[sync]\nhub_url = \"https://a\"\nhub_urls = [\"https://b\"]\n",
    ));
    assert_eq!((p.line, p.key_path.as_str()), (2, "sync.hub_url"));
    assert!(p.message.contains("not both"), "{}", p.message);
    let p = only(node_err("[sync]\nhub_urls = []\n"));
    assert_eq!(at(&p), (2, 12));
    assert!(p.message.contains("empty"), "{}", p.message);
    let p = only(node_err(
        "[sync]\nhub_urls = [\"https://a\", \"https://b\", \"https://a\"]\n",
    ));
    assert_eq!(at(&p), (2, 39), "{p:#?}");
    assert!(p.message.contains("listed twice"), "{}", p.message);
}

#[test]
fn shared_serial_port_is_refused() {
    let text = "\
[modem]
enabled = true
port = \"/dev/ttyUSB0\"

[[power.vedirect]]
port = \"/dev/ttyUSB0\"
role = \"bmv\"
";
    let p = only(node_err(text));
    assert_eq!(at(&p), (6, 8));
    assert!(
        p.message.contains("already used by modem.port"),
        "{}",
        p.message
    );
}

#[test]
fn hub_rules_and_detection() {
    let p = match parse_hub(
        "[hub]\nlisten = \"0.0.0.0:9000\"\nweb_listen = \"0.0.0.0:9000\"\n",
        "hub.toml",
    ) {
        Err(e) => only(e.problems().to_vec()),
        Ok(_) => panic!("expected a problem"),
    };
    assert_eq!(p.line, 3);

    let p = match parse_hub("[hub]\nlisten = \"0.0.0.0:9000\"\n[queue]\n", "hub.toml") {
        Err(e) => only(e.problems().to_vec()),
        Ok(_) => panic!("expected a problem"),
    };
    assert_eq!(p.message, "unknown key `queue` at the top level");
    assert_eq!(check_bytes(b"[hub]\n", "h.toml").unwrap(), Kind::Hub);
    assert_eq!(check_bytes(b"", "n.toml").unwrap(), Kind::Node);
    assert_eq!(
        check_bytes(b"hub = 1\n", "n.toml").unwrap_err().problems()[0].kind,
        ProblemKind::UnknownKey
    );
}

#[test]
fn hub_storage_postgres_is_checked_with_positions() {
    let ok = parse_hub(
        "[hub]\n[storage]\nengine = \"postgres\"\nurl = \"postgres://markaz@127.0.0.1:5432/markaz\"\npassword_file = \"/etc/markaz/pg.pass\"\npool_size = 8\n",
        "hub.toml",
    )
    .unwrap();
    assert_eq!(ok.storage.engine, crate::StorageEngine::Postgres);
    assert_eq!(ok.storage.url.as_ref().unwrap().dbname(), "markaz");
    assert_eq!(ok.storage.pool_size, 8);
    assert_eq!(
        parse_hub("[hub]\n", "h.toml").unwrap().storage.engine,
        crate::StorageEngine::Sqlite
    );

    let problems = |text: &str| match parse_hub(text, "hub.toml") {
        Err(e) => e.problems().to_vec(),
        Ok(_) => panic!("expected a problem in {text}"),
    };
    // The URL is required, blamed on the engine line.
    let p = only(problems("[hub]\n[storage]\nengine = \"postgres\"\n"));
    assert_eq!((p.line, p.kind), (2, ProblemKind::MissingKey));
    assert!(p.message.contains("storage.url"), "{}", p.message);
    // A password in the URL: refused at the value, with where it belongs, not echoed.
    let p = only(problems(
        "[hub]\n[storage]\nengine = \"postgres\"\nurl = \"postgres://markaz:hunter2@db/markaz\"\n",
    ));
    assert_eq!((p.line, p.column), (4, 7));
    assert!(
        p.message.contains("password_file") && !p.message.contains("hunter2"),
        "{}",
        p.message
    );
    let p = only(problems(
        "[hub]\n[storage]\nengine = \"postgres\"\nurl = \"postgres://m@db/m\"\npool_size = 0\n",
    ));
    assert_eq!(p.line, 5);
    // PostgreSQL keys with the SQLite engine.
    let p = only(problems("[hub]\n[storage]\npassword_file = \"/etc/p\"\n"));
    assert_eq!(p.line, 3);
    assert!(p.message.contains("postgres"), "{}", p.message);
    let p = only(problems("[hub]\n[storage]\nengine = \"oracle\"\n"));
    assert_eq!(p.line, 3);
    let p = only(problems("[hub]\nsync_log_days = 0\n"));
    assert_eq!(p.line, 2);
}

#[test]
fn hub_storage_tls_is_checked_with_positions() {
    let problems = |text: &str| match parse_hub(text, "hub.toml") {
        Err(e) => e.problems().to_vec(),
        Ok(_) => panic!("expected a problem in {text}"),
    };
    let pg = "[hub]\n[storage]\nengine = \"postgres\"\n";
    // sslmode in the URL, with the CA to verify the server.
    let ok = parse_hub(
        &format!(
            "{pg}url = \"postgres://markaz@db.example:5432/markaz?sslmode=require\"\nca_cert = \"/etc/pg-ca.pem\"\nclient_cert = \"/etc/hub.pem\"\nclient_key = \"/etc/hub.key\"\n"
        ),
        "hub.toml",
    )
    .unwrap();
    let url = ok.storage.url.as_ref().unwrap();
    assert_eq!(url.sslmode(), Some(crate::PgSslMode::Require));
    assert_eq!((url.host(), url.dbname()), ("db.example", "markaz"));
    assert_eq!(
        url.with_dbname("t_1").as_str(),
        "postgres://markaz@db.example:5432/t_1?sslmode=require"
    );
    for (mode, want) in [
        ("disable", crate::PgSslMode::Disable),
        ("prefer", crate::PgSslMode::Prefer),
        ("verify-full", crate::PgSslMode::Require),
    ] {
        let u: PgUrl = format!("postgres://m@db/m?sslmode={mode}").parse().unwrap();
        assert_eq!(u.sslmode(), Some(want));
    }
    assert_eq!(
        "postgres://m@db/m".parse::<PgUrl>().unwrap().sslmode(),
        None
    );

    // require (or prefer) without a CA: nothing to verify the server with; blamed on the URL.
    let p = only(problems(&format!(
        "{pg}url = \"postgres://m@db/m?sslmode=require\"\n"
    )));
    assert_eq!(at(&p), (4, 7));
    assert!(p.message.contains("storage.ca_cert"), "{}", p.message);
    let p = only(problems(&format!(
        "{pg}url = \"postgres://m@db/m?sslmode=prefer\"\n"
    )));
    assert_eq!(at(&p), (4, 7));
    // An unknown or unsupported mode, another parameter: at the value.
    for q in [
        "sslmode=always",
        "sslmode=verify-ca",
        "sslrootcert=/x",
        "sslmode=require&sslmode=disable",
    ] {
        let p = only(problems(&format!("{pg}url = \"postgres://m@db/m?{q}\"\n")));
        assert_eq!(at(&p), (4, 7), "{q}: {}", p.message);
    }
    // TLS files with sslmode=disable would be ignored.
    let p = only(problems(&format!(
        "{pg}url = \"postgres://m@db/m?sslmode=disable\"\nca_cert = \"/etc/ca.pem\"\n"
    )));
    assert_eq!(at(&p), (5, 11));
    assert!(p.message.contains("sslmode=disable"), "{}", p.message);
    // A certificate without its key, and a key without its certificate.
    let p = only(problems(&format!(
        "{pg}url = \"postgres://m@db/m\"\nca_cert = \"/ca.pem\"\nclient_cert = \"/c.pem\"\n"
    )));
    assert_eq!((p.line, p.kind), (2, ProblemKind::MissingKey));
    assert!(p.message.contains("storage.client_key"), "{}", p.message);
    let p = only(problems(&format!(
        "{pg}url = \"postgres://m@db/m\"\nca_cert = \"/ca.pem\"\nclient_key = \"/c.key\"\n"
    )));
    assert_eq!((p.line, p.kind), (2, ProblemKind::MissingKey));
    assert!(p.message.contains("storage.client_cert"), "{}", p.message);
    // TLS keys mean nothing to SQLite.
    let p = only(problems("[hub]\n[storage]\nca_cert = \"/etc/ca.pem\"\n"));
    assert_eq!(at(&p), (3, 11));
    assert!(p.message.contains("postgres"), "{}", p.message);
}

#[test]
fn hub_storage_files_must_exist_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n(not parsed here)\n").unwrap();
    let missing = dir.path().join("client.key");
    let text = format!(
        "[hub]\n[storage]\nengine = \"postgres\"\nurl = \"postgres://m@db/m?sslmode=require\"\nca_cert = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
        ca.display().to_string(),
        ca.display().to_string(),
        missing.display().to_string()
    );
    // As text (an example, a test) the files are not opened.
    parse_hub(&text, "hub.toml").unwrap();
    // As a file of this machine (check-config, the hub's start) they are.
    let file = dir.path().join("hub.toml");
    std::fs::write(&file, &text).unwrap();
    let e = check_file(&file).unwrap_err();
    let p = only(e.problems().to_vec());
    assert_eq!(at(&p), (7, 14));
    assert!(
        p.message.contains("cannot read") && p.message.contains("client.key"),
        "{}",
        p.message
    );
    assert!(e.to_string().contains("hub.toml:7:14"), "{e}");
    std::fs::write(&missing, "key\n").unwrap();
    let e = check_file(&file).unwrap_err();
    assert!(e.to_string().contains("holds no `PRIVATE KEY`"), "{e}");
    std::fs::write(&missing, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    assert_eq!(check_file(&file).unwrap(), Kind::Hub);
    assert!(load_hub(&file).is_ok());
}

#[test]
fn hub_postgres_example_is_valid() {
    let cfg = parse_hub(
        include_str!("../../docs/examples/hub-postgres.toml"),
        "hub-postgres.toml",
    )
    .unwrap();
    assert_eq!(cfg.storage.engine, crate::StorageEngine::Postgres);
}

#[test]
fn hub_paths_default_under_data_dir() {
    let hub = parse_hub(
        "[hub]\ndata_dir = \"/srv/hub\"\nca_cert = \"/etc/ca.pem\"\n",
        "h",
    )
    .unwrap();
    assert_eq!(hub.hub.ca_cert_path(), Path::new("/etc/ca.pem"));
    assert_eq!(
        hub.hub.server_key_path(),
        Path::new("/srv/hub/tls/server.key")
    );
}

#[test]
fn example_files_pass() {
    let midan = parse_node(include_str!("../../docs/examples/midan.toml"), "midan.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(midan.center.id.as_str(), "midan");
    assert_eq!(midan.counters.len(), 12);
    let serving = |n: u8| -> Vec<&str> {
        let c = midan.counters.iter().find(|c| c.number == n).unwrap();
        c.groups.iter().map(GroupId::as_str).collect()
    };
    assert_eq!(serving(1), ["civil"]);
    assert_eq!(serving(5), ["judicial"]);
    assert_eq!(serving(9), ["real_estate"]);
    assert_eq!(serving(10), ["finance"]);
    assert_eq!(serving(12), ["pickup", "civil"]);
    assert!(midan.modem.enabled && midan.sync.enabled);
    assert!(midan.power.inverter.enabled && midan.power.generator.enabled);
    assert_eq!(midan.power.vedirect.len(), 2);

    parse_hub(include_str!("../../docs/examples/hub.toml"), "hub.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    parse_node(include_str!("../../docs/examples/demo.toml"), "demo.toml")
        .unwrap_or_else(|e| panic!("{e}"));

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
    assert_eq!(check_file(dir.join("midan.toml")).unwrap(), Kind::Node);
    assert_eq!(check_file(dir.join("hub.toml")).unwrap(), Kind::Hub);
    assert_eq!(check_file(dir.join("demo.toml")).unwrap(), Kind::Node);
}

#[test]
fn unreadable_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_node(dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("absent.toml: cannot read the file"));
}

#[test]
fn load_node_reads_a_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[queue]\nno_show_after_minutes = 0\n").unwrap();
    let e = load_node(&path).unwrap_err();
    let p = &e.problems()[0];
    assert_eq!(p.file, path.display().to_string());
    assert_eq!(at(p), (2, 25));
    assert!(matches!(
        check_file(&path),
        Err(ConfigError::Invalid { .. })
    ));
}

#[test]
fn invalid_utf8_is_reported_at_its_position() {
    let p = only(
        parse_node_bytes(b"[center]\nname_en = \"\xff\"\n", "t.toml", false)
            .unwrap_err()
            .problems()
            .to_vec(),
    );
    assert_eq!(p.kind, ProblemKind::Encoding);
    assert_eq!(at(&p), (2, 12));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_node_bytes(&bytes, "fuzz.toml", false);
        let _ = parse_hub_bytes(&bytes, "fuzz.toml", false);
        let _ = check_bytes(&bytes, "fuzz.toml");
    }

    #[test]
    fn toml_like_text_never_panics(text in "(\\[{1,2}[a-z.]{0,20}\\]{0,2}\n|[a-z_]{1,12} = (\"[^\"\n]{0,10}\"|-?[0-9]{1,6}|true|\\[\"?[a-z0-9]{0,5}\"?\\]|\\{[a-z]{0,3} = 1\\})\n){0,12}") {
        if let Err(e) = parse_node(&text, "fuzz.toml") {
            for p in e.problems() {
                prop_assert!(p.line >= 1 && p.column >= 1);
                prop_assert!(p.line <= text.lines().count() + 1);
            }
        }
    }

    #[test]
    fn mutated_example_never_panics(pos in 0usize..4000, byte in any::<u8>()) {
        let mut bytes = include_bytes!("../../docs/examples/midan.toml").to_vec();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        let _ = parse_node_bytes(&bytes, "midan.toml", false);
    }
}

/// Every key of the schema, as (table path, key): leaves of a fully set configuration.
fn schema_keys(value: &toml::Table, section: &str, out: &mut Vec<(String, String)>) {
    for (k, v) in value {
        let here = if section.is_empty() {
            k.clone()
        } else {
            format!("{section}.{k}")
        };
        match v {
            toml::Value::Table(t) => schema_keys(t, &here, out),
            toml::Value::Array(a) if matches!(a.first(), Some(toml::Value::Table(_))) => {
                if let Some(toml::Value::Table(t)) = a.first() {
                    schema_keys(t, &here, out);
                }
            }
            _ => out.push((section.to_owned(), k.clone())),
        }
    }
}

fn documented(doc: &str, section: &str, key: &str) -> bool {
    let headings = [format!("### `[{section}]`"), format!("### `[[{section}]]`")];
    let Some(start) = headings.iter().find_map(|h| doc.find(h.as_str())) else {
        return false;
    };
    let body = &doc[start + 4..];
    let body = &body[..body.find("\n### ").unwrap_or(body.len())];
    body.contains(&format!("| `{key}` |"))
}

#[test]
fn config_md_lists_every_key() {
    let doc = include_str!("../../docs/CONFIG.md");
    let (node_doc, hub_doc) = doc.split_once("# Hub file").expect("a hub part");

    let mut node =
        parse_node(include_str!("../../docs/examples/midan.toml"), "midan.toml").unwrap();
    node.auth.initial_admin_password = Some("correct horse".into());
    node.server.tls = parse_node(
        include_str!("../../docs/examples/midan-https.toml"),
        "midan-https.toml",
    )
    .unwrap()
    .server
    .tls;
    let mut keys = Vec::new();
    schema_keys(&toml::Table::try_from(&node).unwrap(), "", &mut keys);
    let mut hub = parse_hub(include_str!("../../docs/examples/hub.toml"), "hub.toml").unwrap();
    hub.hub.crl = Some("/etc/crl.pem".into());
    let mut hub_keys = Vec::new();
    schema_keys(&toml::Table::try_from(&hub).unwrap(), "", &mut hub_keys);
    let pg = parse_hub(
        include_str!("../../docs/examples/hub-postgres.toml"),
        "hub-postgres.toml",
    )
    .unwrap();
    schema_keys(&toml::Table::try_from(&pg).unwrap(), "", &mut hub_keys);
    assert!(keys.len() > 90, "{}", keys.len());

    let missing: Vec<String> = keys
        .iter()
        .filter(|(s, k)| !documented(node_doc, s, k))
        .chain(hub_keys.iter().filter(|(s, k)| !documented(hub_doc, s, k)))
        .map(|(s, k)| format!("{s}.{k}"))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/CONFIG.md: {missing:?}"
    );
}

#[test]
fn config_md_error_samples_are_real() {
    let doc = include_str!("../../docs/CONFIG.md");
    let mut samples = 0;
    for block in doc.split("```toml\n").skip(1) {
        let Some((file, rest)) = block.split_once("\n```") else {
            continue;
        };
        let Some(output) = rest.split("$ markaz check-config midan.toml\n").nth(1) else {
            continue;
        };
        let output = output.split("\n```").next().unwrap_or("");
        let shown = parse_node(file, "midan.toml").unwrap_err().to_string();
        assert_eq!(shown, output, "sample {samples} in docs/CONFIG.md differs");
        samples += 1;
    }
    assert_eq!(samples, 2);
}

#[test]
fn wrong_types_are_named_in_plain_words() {
    let cases = [
        (
            "[server]\nlisten = 5\n",
            "expected an address string like \"0.0.0.0:8080\", found an integer",
        ),
        (
            "[storage]\ndata_dir = 5\n",
            "expected a string, found an integer",
        ),
        (
            "[sync]\nenabled = \"yes\"\n",
            "expected true or false, found a string",
        ),
        (
            "[center]\nid = 1979-05-27\n",
            "expected a string, found a date or time",
        ),
        (
            "[modem]\napn = [\"a\"]\n",
            "expected a string, found an array",
        ),
        (
            "[power]\nthresholds = 3\n",
            "expected a table, found an integer",
        ),
        (
            "[power.generator]\nbaud = 9600.0\n",
            "expected an integer from 0 to 4294967295, found a number",
        ),
    ];
    for (text, expected) in cases {
        let p = only(node_err(text));
        assert_eq!(p.kind, ProblemKind::WrongType, "{text}");
        assert!(p.message.ends_with(expected), "{text}: {}", p.message);
        assert_eq!(p.line, 2, "{text}");
    }
}

#[test]
fn byte_order_mark_and_crlf_are_accepted() {
    let cfg = parse_node_bytes(
        b"\xEF\xBB\xBF[center]\r\nid = \"midan\"\r\n",
        "win.toml",
        false,
    )
    .unwrap();
    assert_eq!(cfg.center.id.as_str(), "midan");
    let p = only(
        parse_node_bytes(
            b"\xEF\xBB\xBF[center]\r\nidd = \"midan\"\r\n",
            "win.toml",
            false,
        )
        .unwrap_err()
        .problems()
        .to_vec(),
    );
    assert_eq!(at(&p), (2, 1));
}

#[test]
fn rules_also_run_beside_schema_problems() {
    let text = "\
[queue]
prority_weight = 2

[power.thresholds]
critical_soc_percent = 40
";
    let problems = node_err(text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].kind, ProblemKind::UnknownKey);
    assert_eq!(problems[1].kind, ProblemKind::BadValue);
    assert_eq!(problems[1].line, 5);
}

#[test]
fn rules_stay_silent_about_keys_taken_out() {
    // `low_soc_percent` has the wrong type; judging `critical_soc_percent` against
    // the default low (30) would be a second, misleading error.
    let p = only(node_err(
        "[power.thresholds]\nlow_soc_percent = \"10\"\ncritical_soc_percent = 35\n",
    ));
    assert_eq!(p.kind, ProblemKind::WrongType);

    // A wrongly typed cert path is not reported again as missing.
    let p = only(node_err(
        "[sync]\nenabled = true\nca_cert = 5\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n",
    ));
    assert_eq!(p.kind, ProblemKind::WrongType);

    // Counters are not checked against the default groups when the file's own
    // groups were refused.
    let text = "[queue]\ngroups = 5\n\n[[counters]]\nnumber = 1\ngroups = [\"passports\"]\n";
    let p = only(node_err(text));
    assert_eq!(p.key_path, "queue.groups");

    // The generator's auto-start is not judged with `enabled` at its default.
    let p = only(node_err(
        "[[power.vedirect]]\nport = \"/dev/ttyUSB0\"\nrole = \"bmv\"\n\
         [power.generator]\nenabled = \"yes\"\nport = \"/dev/ttyUSB3\"\nauto_start = true\n",
    ));
    assert_eq!(p.key_path, "power.generator.enabled");
}

#[test]
fn rules_wait_when_a_list_entry_was_dropped() {
    // The counter without a number is dropped; checking groups or numbers of the
    // others would misnumber them, so only the schema problem is shown.
    let text =
        "[[counters]]\ngroups = [\"civil\"]\n[[counters]]\nnumber = 2\ngroups = [\"nope\"]\n";
    let p = only(node_err(text));
    assert_eq!(p.kind, ProblemKind::MissingKey);
}

#[test]
fn generator_maps_that_cannot_work_are_refused_where_they_are_written() {
    // A coil with a scale, a discrete input with two words: bits have no format.
    let problems = node_err(
        "[power.generator.registers]\n\
         fuel_percent = { table = \"coil\", address = 3, scale = 0.1 }\n\
         engine_state = { table = \"discrete\", address = 4, words = 2 }\n",
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(
        problems[0].key_path,
        "power.generator.registers.fuel_percent.scale"
    );
    assert_eq!(at(&problems[0]), (2, 55));
    assert!(
        problems[0].message.contains("a coil is one bit"),
        "{}",
        problems[0]
    );
    assert_eq!(
        problems[1].key_path,
        "power.generator.registers.engine_state.words"
    );
    assert_eq!(problems[1].line, 3);

    // Commanding through an input register.
    let p = only(node_err(
        "[power.generator.control]\nmethod = \"registers\"\ntable = \"input\"\n\
         start_register = 10\nstop_register = 11\n",
    ));
    assert_eq!(p.key_path, "power.generator.control.table");
    assert_eq!(at(&p), (3, 9));
    assert!(p.message.contains("input registers are read-only"), "{p}");
    assert!(p.to_string().starts_with("t.toml:3:9: "), "{p}");

    // A coil method with no start coil, a key field under another method.
    let problems = node_err("[power.generator.control]\nmethod = \"coils\"\nstart_key = 5\n");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p.key_path == "power.generator.control.start_key"
                && p.message.contains("not used by method \"coils\""))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.key_path == "power.generator.control.start_coil"
                && p.kind == ProblemKind::MissingKey)
    );

    // A scale that is not a positive number; an address past 65535.
    let problems = node_err(
        "[power.generator.registers]\nfuel_percent = { address = 3, scale = -1 }\nstarts = 70000\n",
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].message.contains("not a usable scale"),
        "{}",
        problems[0]
    );
    assert_eq!(problems[1].line, 3);

    // The older control keys beside a control section.
    let p = only(node_err(
        "[power.generator.registers]\ncontrol = 4104\n[power.generator.control]\nmethod = \"key\"\nregister = 4104\nstart_key = 1\nstop_key = 2\n",
    ));
    assert_eq!(p.key_path, "power.generator.registers.control");
}

#[test]
fn generator_maps_that_work_load() {
    let cfg = parse_node(
        "[power.generator]\ncontroller = \"datakom\"\n\
         [power.generator.registers]\n\
         fuel_percent = { table = \"input\", address = 30, scale = 0.1, signed = true }\n\
         run_time_seconds = { address = 40, words = 2, word_order = \"low-first\", scale = 3600 }\n\
         engine_state = { table = \"discrete\", address = 2 }\n\
         [power.generator.control]\nmethod = \"pulse\"\nstart_register = 5\nstop_register = 6\npulse_ms = 300\n",
        "t.toml",
    )
    .unwrap();
    let g = &cfg.power.generator;
    assert_eq!(g.controller, ControllerFamily::Datakom);
    let Some(PointConfig::Full(f)) = &g.registers.fuel_percent else {
        panic!("{:?}", g.registers.fuel_percent)
    };
    assert_eq!(f.scale, Some(RegisterScale { num: 1, den: 10 }));
    assert_eq!(f.table, ModbusTable::Input);
    let Some(PointConfig::Full(r)) = &g.registers.run_time_seconds else {
        panic!()
    };
    assert_eq!((r.words, r.word_order), (2, WordOrderName::LowFirst));
    assert_eq!(
        g.control.as_ref().map(|c| c.method),
        Some(ControlMethod::Pulse)
    );
    // The older name of the battery key still loads.
    let cfg = parse_node(
        "[power.generator.registers]\nbattery_decivolts = 1029\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.power.generator.registers.battery_volts,
        Some(PointConfig::Address(1029))
    );
}

/// `[server.tls]` in `dir` pointing at `cert` and `key` (names inside `dir`).
fn tls_file(dir: &std::path::Path, cert: &str, key: &str) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"0.0.0.0:443\"\n\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join(cert).display(),
            dir.join(key).display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_https_example_parses_and_its_files_are_checked_on_disk() {
    let text = include_str!("../../docs/examples/midan-https.toml");
    let cfg = parse_node(text, "midan-https.toml").unwrap_or_else(|e| panic!("{e}"));
    let tls = cfg.server.tls.expect("[server.tls]");
    assert_eq!(tls.key, std::path::Path::new("/etc/markaz/lan/key.pem"));
    assert_eq!(tls.redirect_listen, Some("0.0.0.0:80".parse().unwrap()));
    // Checked as a file, on a machine without those files: refused at the keys.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
    if !std::path::Path::new("/etc/markaz/lan/cert.pem").exists() {
        let e = check_file(dir.join("midan-https.toml")).unwrap_err();
        let lines: Vec<usize> = e.problems().iter().map(|p| p.line).collect();
        assert_eq!(lines, [14, 15], "{e}");
    }
}

#[test]
fn a_missing_tls_key_file_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let path = tls_file(dir.path(), "cert.pem", "absent-key.pem");
    let e = check_file(&path).unwrap_err();
    let p = only(e.problems().to_vec());
    assert_eq!(p.key_path, "server.tls.key");
    assert_eq!(at(&p), (6, 7));
    assert_eq!(p.file, path.display().to_string());
    assert!(p.message.contains("absent-key.pem"), "{}", p.message);
    assert!(
        e.to_string()
            .starts_with(&format!("{}:6:7: ", path.display())),
        "{e}"
    );
    assert!(load_node(&path).is_err(), "the node refuses it too");

    // The key given as the certificate: the wrong file.
    std::fs::write(
        dir.path().join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let path = tls_file(dir.path(), "key.pem", "key.pem");
    let p = only(check_file(&path).unwrap_err().problems().to_vec());
    assert_eq!(p.key_path, "server.tls.cert");
    assert!(p.message.contains("BEGIN CERTIFICATE"), "{}", p.message);

    let path = tls_file(dir.path(), "cert.pem", "key.pem");
    assert_eq!(check_file(&path).unwrap(), Kind::Node);
    let tls = load_node(&path).unwrap().server.tls.unwrap();
    assert_eq!(tls.redirect_listen, None);
}

#[test]
fn tls_needs_both_files_and_a_redirect_port_of_its_own() {
    let p = only(node_err("[server.tls]\ncert = \"/c.pem\"\n"));
    assert_eq!(p.kind, ProblemKind::MissingKey);
    assert!(p.message.contains("`key`"), "{}", p.message);
    let p = only(node_err(
        "[server]\nlisten = \"0.0.0.0:443\"\n[server.tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nredirect_listen = \"0.0.0.0:443\"\n",
    ));
    assert_eq!(p.key_path, "server.tls.redirect_listen");
    assert_eq!(at(&p), (6, 19));
    let p = only(node_err("[server.tls]\ncert = \"\"\nkey = \"/k.pem\"\n"));
    assert_eq!(p.key_path, "server.tls.cert");
}
