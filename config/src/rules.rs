//! Checks on values that the types alone cannot express: ranges, settings required by
//! another setting, and consistency between keys (thresholds in order, counter groups
//! that exist, no duplicate counter numbers, letters or serial ports).
//!
//! Every rule reports through the [`Checker`], which places the problem on the line of
//! the key it names; all rules run, so the user sees every problem at once.

use std::collections::HashMap;
use std::path::Path;

use crate::hub::HubConfig;
use crate::loader::{Checker, KeyPath};
use crate::node::{NodeConfig, VeDirectRole};
use crate::suggest::closest;

/// Serial speeds accepted for `baud` keys.
const BAUDS: [u32; 11] = [
    1200, 2400, 4800, 9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600,
];

const MIB: u64 = 1024 * 1024;

fn kp(s: &str) -> KeyPath {
    KeyPath::dotted(s)
}

fn baud(c: &mut Checker<'_>, path: &str, value: u32) {
    if !BAUDS.contains(&value) {
        let list: Vec<String> = BAUDS.iter().map(u32::to_string).collect();
        c.bad(
            &kp(path),
            format!("{value} is not a standard serial speed"),
            Some(format!("use one of {}", list.join(", "))),
        );
    }
}

/// A span in seconds: finite and within `lo..=hi`. Returns whether it is.
fn seconds(c: &mut Checker<'_>, path: &KeyPath, value: f64, lo: f64, hi: f64) -> bool {
    if !value.is_finite() {
        c.bad(
            path,
            format!("{value} is not a number of seconds, use {lo} to {hi}"),
            None,
        );
        return false;
    }
    let before = value >= lo && value <= hi;
    c.range(path, value, lo, hi);
    before
}

fn required_path(c: &mut Checker<'_>, path: &str, value: Option<&Path>, cause: &str) {
    let because = format!("{cause} = true");
    match value {
        None => c.missing(&kp(path), &kp(cause), &because),
        Some(p) if p.as_os_str().is_empty() => c.bad(&kp(path), "must not be empty", None),
        Some(_) => {}
    }
}

/// Rules for a node file.
pub(crate) fn node(cfg: &NodeConfig, c: &mut Checker<'_>) {
    center(cfg, c);
    logging(&cfg.logging, c);
    server_storage_auth(cfg, c);
    queue(cfg, c);
    counters(cfg, c);
    sync_and_link(cfg, c);
    modem(cfg, c);
    power(cfg, c);
    serial_ports(cfg, c);
    backup_and_metrics(cfg, c);
}

fn backup_and_metrics(cfg: &NodeConfig, c: &mut Checker<'_>) {
    c.range(
        &kp("storage.min_free_mb"),
        cfg.storage.min_free_mb,
        0,
        1_048_576,
    );
    let b = &cfg.backup;
    if b.enabled {
        required_path(c, "backup.folder", b.folder.as_deref(), "backup.enabled");
    }
    c.range(&kp("backup.keep"), b.keep, 1, 365);
    metrics(&cfg.metrics, c);
    if cfg
        .kiosk
        .key_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        c.bad(&kp("kiosk.key_file"), "must not be empty", None);
    }
    // Port 0 (any free port, in tests) on both is two listeners, not one.
    if cfg.metrics.listen == Some(cfg.server.listen) && cfg.server.listen.port() != 0 {
        c.bad(
            &kp("metrics.listen"),
            format!("metrics.listen is server.listen ({})", cfg.server.listen),
            Some("leave metrics.listen out to serve /metrics on the main listener".to_owned()),
        );
    }
}

fn metrics(m: &crate::node::MetricsConfig, c: &mut Checker<'_>) {
    if m.token_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        c.bad(&kp("metrics.token_file"), "must not be empty", None);
    }
}

/// `[server.tls]`: both files given, readable and of the right kind (when files are
/// checked), and a redirect listener that is not the HTTPS one.
fn server_tls(
    tls: &crate::node::ServerTlsConfig,
    listen: std::net::SocketAddr,
    c: &mut Checker<'_>,
) {
    for (key, file, marker, what) in [
        (
            "server.tls.cert",
            &tls.cert,
            "BEGIN CERTIFICATE",
            "the LAN certificate (`lan/<center>/cert.pem` of `markaz pki lan`)",
        ),
        (
            "server.tls.key",
            &tls.key,
            "PRIVATE KEY",
            "its private key (`lan/<center>/key.pem` of `markaz pki lan`)",
        ),
    ] {
        if file.as_os_str().is_empty() {
            c.bad(&kp(key), "must not be empty", None);
        } else {
            c.readable_file(&kp(key), file, marker, what);
        }
    }
    if let Some(r) = tls.redirect_listen
        && r.port() != 0
        && r.port() == listen.port()
    {
        c.bad(
            &kp("server.tls.redirect_listen"),
            format!("{r} has the port of server.listen ({listen})"),
            Some("the redirect to HTTPS needs a port of its own, 80 say".to_owned()),
        );
    }
}

fn center(cfg: &NodeConfig, c: &mut Checker<'_>) {
    c.non_empty(&kp("center.name_ar"), &cfg.center.name_ar);
    c.non_empty(&kp("center.name_en"), &cfg.center.name_en);
}

fn server_storage_auth(cfg: &NodeConfig, c: &mut Checker<'_>) {
    let s = &cfg.server;
    c.range(
        &kp("server.max_body_bytes"),
        s.max_body_bytes,
        1024,
        64 * MIB,
    );
    c.range(
        &kp("server.request_timeout_secs"),
        s.request_timeout_secs,
        1,
        3600,
    );
    c.range(&kp("server.max_connections"), s.max_connections, 16, 65536);
    c.range(
        &kp("server.max_connections_per_client"),
        s.max_connections_per_client,
        1,
        s.max_connections.max(1),
    );
    c.range(
        &kp("server.header_read_timeout_secs"),
        s.header_read_timeout_secs,
        1,
        300,
    );
    if let Some(tls) = &s.tls {
        server_tls(tls, s.listen, c);
    }

    let st = &cfg.storage;
    if st.data_dir.as_os_str().is_empty() {
        c.bad(&kp("storage.data_dir"), "must not be empty", None);
    }
    c.range(
        &kp("storage.busy_timeout_ms"),
        st.busy_timeout_ms,
        1,
        600_000,
    );
    c.range(
        &kp("storage.group_commit_max_batch"),
        st.group_commit_max_batch,
        1,
        65_536,
    );

    let a = &cfg.auth;
    c.range(
        &kp("auth.session_ttl_minutes"),
        a.session_ttl_minutes,
        1,
        10_080,
    );
    c.range(
        &kp("auth.session_idle_minutes"),
        a.session_idle_minutes,
        1,
        10_080,
    );
    if a.session_idle_minutes > a.session_ttl_minutes {
        c.bad_either(
            &[
                &kp("auth.session_idle_minutes"),
                &kp("auth.session_ttl_minutes"),
            ],
            format!(
                "session_idle_minutes ({}) is above session_ttl_minutes ({})",
                a.session_idle_minutes, a.session_ttl_minutes
            ),
            Some("the idle limit must not exceed the session lifetime".to_owned()),
        );
    }
    c.range(&kp("auth.login_max_attempts"), a.login_max_attempts, 1, 100);
    c.range(
        &kp("auth.login_window_secs"),
        a.login_window_secs,
        1,
        86_400,
    );
    let user = &a.initial_admin_user;
    if user.is_empty() || user.chars().count() > 32 || user.chars().any(char::is_whitespace) {
        c.bad(
            &kp("auth.initial_admin_user"),
            format!("`{user}` is not a user name: use 1 to 32 characters without spaces"),
            None,
        );
    }
    if let Some(pw) = &a.initial_admin_password
        && pw.chars().count() < 8
    {
        c.bad(
            &kp("auth.initial_admin_password"),
            "shorter than 8 characters",
            Some("leave the key out to have the node generate a strong password".to_owned()),
        );
    }
}

fn queue(cfg: &NodeConfig, c: &mut Checker<'_>) {
    let q = &cfg.queue;
    c.range(&kp("queue.priority_weight"), q.priority_weight, 1, 100);
    c.range(&kp("queue.normal_weight"), q.normal_weight, 1, 100);
    c.range(
        &kp("queue.no_show_after_minutes"),
        q.no_show_after_minutes,
        1,
        240,
    );
    if q.groups.is_empty() {
        c.bad(
            &kp("queue.groups"),
            "no service groups: the queue needs at least one",
            Some(
                "add a `[[queue.groups]]` table, or leave the key out for the defaults".to_owned(),
            ),
        );
    }
    let mut ids = HashMap::new();
    let mut letters = HashMap::new();
    for (i, g) in q.groups.iter().enumerate() {
        let at = kp("queue.groups").index(i);
        if let Some(first) = ids.insert(g.id.clone(), i) {
            c.bad(
                &at.key("id"),
                format!(
                    "duplicate group id `{}`, already used by queue.groups[{first}]",
                    g.id
                ),
                None,
            );
        }
        if let Some(first) = letters.insert(g.letter, i) {
            c.bad(
                &at.key("letter"),
                format!(
                    "duplicate ticket letter `{}`, already used by group `{}`",
                    g.letter, q.groups[first].id
                ),
                Some("each group needs its own letter so tickets are unambiguous".to_owned()),
            );
        }
        c.non_empty(&at.key("name_ar"), &g.name_ar);
        c.non_empty(&at.key("name_en"), &g.name_en);
        c.range(
            &at.key("target_wait_minutes"),
            g.target_wait_minutes,
            1,
            1440,
        );
    }
}

fn counters(cfg: &NodeConfig, c: &mut Checker<'_>) {
    let known: Vec<&str> = cfg.queue.groups.iter().map(|g| g.id.as_str()).collect();
    let mut numbers = HashMap::new();
    for (i, counter) in cfg.counters.iter().enumerate() {
        let at = kp("counters").index(i);
        c.range(&at.key("number"), counter.number, 1, 99);
        if let Some(first) = numbers.insert(counter.number, i) {
            c.bad(
                &at.key("number"),
                format!(
                    "duplicate counter number {}, already used by counters[{first}]",
                    counter.number
                ),
                None,
            );
        }
        for (j, group) in counter.groups.iter().enumerate() {
            if !known.contains(&group.as_str()) {
                let hint = match closest(group.as_str(), known.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("known groups: {}", known.join(", ")),
                };
                c.bad_given(
                    &at.key("groups").index(j),
                    &[&kp("queue.groups")],
                    format!("no queue group has the id `{group}`"),
                    Some(hint),
                );
            }
        }
    }
}

fn sync_and_link(cfg: &NodeConfig, c: &mut Checker<'_>) {
    let s = &cfg.sync;
    if s.enabled {
        let because = "sync.enabled";
        required_path(c, "sync.ca_cert", s.ca_cert.as_deref(), because);
        required_path(c, "sync.client_cert", s.client_cert.as_deref(), because);
        required_path(c, "sync.client_key", s.client_key.as_deref(), because);
    }
    if c.is_set(&kp("sync.hub_urls")) {
        if c.is_set(&kp("sync.hub_url")) {
            c.bad(
                &kp("sync.hub_url"),
                "set either `hub_url` or `hub_urls`, not both",
                Some("put every hub address in `hub_urls`, in the order to try them".to_owned()),
            );
        }
        if s.hub_urls.is_empty() {
            c.bad(
                &kp("sync.hub_urls"),
                "the list is empty: give at least one hub address",
                None,
            );
        }
        for (i, url) in s.hub_urls.iter().enumerate() {
            if s.hub_urls[..i].contains(url) {
                c.bad(
                    &kp("sync.hub_urls").index(i),
                    format!("`{url}` is listed twice"),
                    None,
                );
            }
        }
    }
    c.range(&kp("sync.interval_secs"), s.interval_secs, 1, 86_400);
    c.range(
        &kp("sync.batch_max_bytes"),
        s.batch_max_bytes,
        4096,
        64 * MIB,
    );

    let l = &cfg.link;
    if l.probe_targets.is_empty() {
        c.bad(
            &kp("link.probe_targets"),
            "no probe targets: the link monitor needs at least one host:port",
            Some(
                "the hub's address is a good target, like `[\"hub.example.org:8443\"]`".to_owned(),
            ),
        );
    }
    // Fractions of a second are allowed; below 0.1 s probing would only load the link.
    let interval_ok = seconds(
        c,
        &kp("link.probe_interval_secs"),
        l.probe_interval_secs.get(),
        0.1,
        3600.0,
    );
    let timeout_ok = seconds(
        c,
        &kp("link.probe_timeout_secs"),
        l.probe_timeout_secs.get(),
        0.1,
        3600.0,
    );
    if interval_ok && timeout_ok && l.probe_timeout_secs.get() > l.probe_interval_secs.get() {
        c.bad_either(
            &[
                &kp("link.probe_timeout_secs"),
                &kp("link.probe_interval_secs"),
            ],
            format!(
                "probe_timeout_secs ({}) is above probe_interval_secs ({})",
                l.probe_timeout_secs, l.probe_interval_secs
            ),
            Some("a probe must finish before the next round starts".to_owned()),
        );
    }
    c.range(&kp("link.down_after"), l.down_after, 1, 100);
    c.range(&kp("link.up_after"), l.up_after, 1, 100);
    c.range(
        &kp("link.failback_hold_secs"),
        l.failback_hold_secs,
        0,
        86_400,
    );
    if l.modem_route == crate::node::ModemRoute::OsRoute {
        c.non_empty(&kp("link.os_route_interface"), &l.os_route_interface);
    }
    c.range(
        &kp("link.alert_after_down_minutes"),
        l.alert_after_down_minutes,
        1,
        10_080,
    );
}

fn modem(cfg: &NodeConfig, c: &mut Checker<'_>) {
    let m = &cfg.modem;
    if m.enabled {
        c.non_empty(&kp("modem.port"), &m.port);
    }
    baud(c, "modem.baud", m.baud);
    c.range(
        &kp("modem.poll_interval_secs"),
        m.poll_interval_secs,
        1,
        3600,
    );
    c.range(
        &kp("modem.command_timeout_ms"),
        m.command_timeout_ms,
        100,
        300_000,
    );
    c.range(&kp("modem.sms_timeout_secs"), m.sms_timeout_secs, 1, 600);
    c.range(
        &kp("modem.hung_after_timeouts"),
        m.hung_after_timeouts,
        1,
        1000,
    );
}

fn power(cfg: &NodeConfig, c: &mut Checker<'_>) {
    let p = &cfg.power;
    c.range(
        &kp("power.sample_interval_secs"),
        p.sample_interval_secs,
        1,
        3600,
    );
    c.range(&kp("power.retention_days"), p.retention_days, 1, 3650);
    c.non_empty(&kp("power.shutdown_command"), &p.shutdown_command);

    let t = &p.thresholds;
    c.range(
        &kp("power.thresholds.low_soc_percent"),
        t.low_soc_percent,
        0,
        100,
    );
    c.range(
        &kp("power.thresholds.critical_soc_percent"),
        t.critical_soc_percent,
        0,
        100,
    );
    if t.critical_soc_percent >= t.low_soc_percent {
        c.bad_either(
            &[
                &kp("power.thresholds.critical_soc_percent"),
                &kp("power.thresholds.low_soc_percent"),
            ],
            format!(
                "critical_soc_percent ({}) must be below low_soc_percent ({})",
                t.critical_soc_percent, t.low_soc_percent
            ),
            Some("the low alert comes first, the critical shutdown after it".to_owned()),
        );
    }
    c.range(
        &kp("power.thresholds.low_battery_mv"),
        t.low_battery_mv,
        1000,
        100_000,
    );
    c.range(
        &kp("power.thresholds.critical_battery_mv"),
        t.critical_battery_mv,
        1000,
        100_000,
    );
    if t.critical_battery_mv >= t.low_battery_mv {
        c.bad_either(
            &[
                &kp("power.thresholds.critical_battery_mv"),
                &kp("power.thresholds.low_battery_mv"),
            ],
            format!(
                "critical_battery_mv ({}) must be below low_battery_mv ({})",
                t.critical_battery_mv, t.low_battery_mv
            ),
            Some("the low alert comes first, the critical shutdown after it".to_owned()),
        );
    }

    let mut bmv_seen = None;
    for (i, v) in p.vedirect.iter().enumerate() {
        let at = kp("power.vedirect").index(i);
        c.non_empty(&at.key("port"), &v.port);
        if v.role == VeDirectRole::Bmv {
            if let Some(first) = bmv_seen {
                c.bad(
                    &at.key("role"),
                    format!("a second battery monitor; power.vedirect[{first}] is one already"),
                    Some(
                        "state of charge comes from one monitor; make the others `mppt`".to_owned(),
                    ),
                );
            }
            bmv_seen.get_or_insert(i);
        }
    }

    let inv = &p.inverter;
    if inv.enabled {
        required_text(
            c,
            "power.inverter.port",
            inv.port.as_deref(),
            "power.inverter.enabled",
        );
    }
    baud(c, "power.inverter.baud", inv.baud);
    c.range(
        &kp("power.inverter.poll_interval_secs"),
        inv.poll_interval_secs,
        1,
        3600,
    );

    let g = &p.generator;
    if g.enabled {
        required_text(
            c,
            "power.generator.port",
            g.port.as_deref(),
            "power.generator.enabled",
        );
    }
    if g.auto_start && !g.enabled {
        c.bad_given(
            &kp("power.generator.auto_start"),
            &[&kp("power.generator.enabled")],
            "auto_start needs power.generator.enabled = true",
            None,
        );
    }
    if g.auto_start && g.enabled && bmv_seen.is_none() && !inv.enabled {
        c.bad_given(
            &kp("power.generator.auto_start"),
            &[
                &kp("power.generator.enabled"),
                &kp("power.vedirect"),
                &kp("power.inverter"),
            ],
            "auto_start needs a state-of-charge source",
            Some(
                "add a `[[power.vedirect]]` with role = \"bmv\", or enable [power.inverter]"
                    .to_owned(),
            ),
        );
    }
    baud(c, "power.generator.baud", g.baud);
    c.range(&kp("power.generator.slave_id"), g.slave_id, 1, 247);
    c.range(
        &kp("power.generator.start_soc_percent"),
        g.start_soc_percent,
        0,
        100,
    );
    c.range(
        &kp("power.generator.stop_soc_percent"),
        g.stop_soc_percent,
        0,
        100,
    );
    if g.start_soc_percent >= g.stop_soc_percent {
        c.bad_either(
            &[
                &kp("power.generator.start_soc_percent"),
                &kp("power.generator.stop_soc_percent"),
            ],
            format!(
                "start_soc_percent ({}) must be below stop_soc_percent ({})",
                g.start_soc_percent, g.stop_soc_percent
            ),
            None,
        );
    }
    c.range(
        &kp("power.generator.quiet_start_soc_percent"),
        g.quiet_start_soc_percent,
        0,
        100,
    );
    c.range(
        &kp("power.generator.quiet_stop_soc_percent"),
        g.quiet_stop_soc_percent,
        0,
        100,
    );
    if g.quiet_start_soc_percent >= g.quiet_stop_soc_percent {
        c.bad_either(
            &[
                &kp("power.generator.quiet_start_soc_percent"),
                &kp("power.generator.quiet_stop_soc_percent"),
            ],
            format!(
                "quiet_start_soc_percent ({}) must be below quiet_stop_soc_percent ({})",
                g.quiet_start_soc_percent, g.quiet_stop_soc_percent
            ),
            None,
        );
    }
    c.range(
        &kp("power.generator.min_run_minutes"),
        g.min_run_minutes,
        0,
        1440,
    );
    generator_conditions(g, c);
    c.range(
        &kp("power.generator.start_attempts"),
        g.start_attempts,
        1,
        20,
    );
    c.range(
        &kp("power.generator.start_retry_secs"),
        g.start_retry_secs,
        1,
        3600,
    );
    c.range(
        &kp("power.generator.start_confirm_secs"),
        g.start_confirm_secs,
        5,
        3600,
    );
    generator_map(g, c);
}

/// The register map: each value readable as described, the control method complete
/// and writing only what a master can write.
fn generator_map(g: &crate::node::GeneratorConfig, c: &mut Checker<'_>) {
    use crate::node::{ControlMethod, PointConfig};
    let registers = kp("power.generator.registers");
    for (name, point) in g.registers.points() {
        let Some(PointConfig::Full(p)) = point else {
            continue;
        };
        let at = registers.key(name);
        if p.table.is_bit() {
            let table = if p.table.writable() {
                "coil"
            } else {
                "discrete input"
            };
            for (key, set) in [
                (
                    "scale",
                    p.scale
                        .is_some_and(|s| s != crate::node::RegisterScale::ONE),
                ),
                ("words", p.words != 1),
                ("signed", p.signed),
            ] {
                if set {
                    c.bad(
                        &at.key(key),
                        format!("a {table} is one bit: it has no {key}"),
                        Some(
                            "read a scaled or wide value from a holding or input register"
                                .to_owned(),
                        ),
                    );
                }
            }
        } else {
            c.range(&at.key("words"), p.words, 1, 2);
            if p.words == 2 && p.address == u16::MAX {
                c.bad(
                    &at.key("address"),
                    "65535 has no next register for the second word",
                    None,
                );
            }
        }
    }
    let legacy = [
        ("control", g.registers.control),
        ("start_key", g.registers.start_key),
        ("stop_key", g.registers.stop_key),
        ("auto_key", g.registers.auto_key),
    ];
    if g.control.is_some() {
        for (name, v) in legacy {
            if v.is_some() {
                c.bad_given(
                    &registers.key(name),
                    &[&kp("power.generator.control")],
                    "set both here and in [power.generator.control]",
                    Some("keep the control in [power.generator.control] only".to_owned()),
                );
            }
        }
    }
    if g.registers.control == Some(u16::MAX) {
        c.bad(
            &registers.key("control"),
            "65535 has no next register; the key pair spans two registers",
            None,
        );
    }
    let Some(ctl) = &g.control else {
        return;
    };
    let at = kp("power.generator.control");
    let method = match ctl.method {
        ControlMethod::Key => "key",
        ControlMethod::Coils => "coils",
        ControlMethod::Pulse => "pulse",
        ControlMethod::Registers => "registers",
    };
    let because = format!("method = \"{method}\"");
    let method_key = at.key("method");
    let wanted_table = if ctl.method == ControlMethod::Coils {
        crate::node::ModbusTable::Coil
    } else {
        crate::node::ModbusTable::Holding
    };
    if let Some(t) = ctl.table {
        if !t.writable() {
            c.bad(
                &at.key("table"),
                format!(
                    "{} are read-only: a controller cannot be commanded through them",
                    if t.is_bit() {
                        "discrete inputs"
                    } else {
                        "input registers"
                    }
                ),
                Some(format!(
                    "method \"{method}\" writes {}",
                    if wanted_table.is_bit() {
                        "coils"
                    } else {
                        "holding registers"
                    }
                )),
            );
        } else if t != wanted_table {
            c.bad_given(
                &at.key("table"),
                &[&method_key],
                format!(
                    "method \"{method}\" cannot write a {}",
                    if t.is_bit() {
                        "coil"
                    } else {
                        "holding register"
                    }
                ),
                Some(if wanted_table.is_bit() {
                    "coils take method = \"coils\"".to_owned()
                } else {
                    "a coil takes method = \"coils\"; registers take key, pulse or registers"
                        .to_owned()
                }),
            );
        }
    }
    let fields: [(&str, Option<u16>, &[ControlMethod]); 10] = [
        ("register", ctl.register, &[ControlMethod::Key]),
        ("start_key", ctl.start_key, &[ControlMethod::Key]),
        ("stop_key", ctl.stop_key, &[ControlMethod::Key]),
        ("auto_key", ctl.auto_key, &[ControlMethod::Key]),
        ("start_coil", ctl.start_coil, &[ControlMethod::Coils]),
        ("stop_coil", ctl.stop_coil, &[ControlMethod::Coils]),
        (
            "start_register",
            ctl.start_register,
            &[ControlMethod::Pulse, ControlMethod::Registers],
        ),
        (
            "stop_register",
            ctl.stop_register,
            &[ControlMethod::Pulse, ControlMethod::Registers],
        ),
        ("start_value", ctl.start_value, &[ControlMethod::Registers]),
        ("stop_value", ctl.stop_value, &[ControlMethod::Registers]),
    ];
    for (name, value, used_by) in fields {
        if value.is_some() && !used_by.contains(&ctl.method) {
            c.bad_given(
                &at.key(name),
                &[&method_key],
                format!("not used by method \"{method}\""),
                None,
            );
        }
    }
    for (name, value) in [
        ("pulse_value", ctl.pulse_value.is_some()),
        ("pulse_ms", ctl.pulse_ms.is_some()),
    ] {
        if value && ctl.method != ControlMethod::Pulse {
            c.bad_given(
                &at.key(name),
                &[&method_key],
                format!("not used by method \"{method}\""),
                None,
            );
        }
    }
    let required: &[(&str, Option<u16>)] = match ctl.method {
        ControlMethod::Key => &[
            ("register", ctl.register),
            ("start_key", ctl.start_key),
            ("stop_key", ctl.stop_key),
        ],
        ControlMethod::Coils => &[("start_coil", ctl.start_coil)],
        ControlMethod::Pulse | ControlMethod::Registers => &[
            ("start_register", ctl.start_register),
            ("stop_register", ctl.stop_register),
        ],
    };
    for (name, value) in required {
        if value.is_none() {
            c.missing(&at.key(name), &method_key, &because);
        }
    }
    if ctl.method == ControlMethod::Key {
        if ctl.register == Some(u16::MAX) {
            c.bad(
                &at.key("register"),
                "65535 has no next register; the key pair spans two registers",
                None,
            );
        }
        let keys = [
            ("start_key", ctl.start_key),
            ("stop_key", ctl.stop_key),
            ("auto_key", ctl.auto_key),
        ];
        for (i, (name, value)) in keys.iter().enumerate() {
            let Some(value) = value else { continue };
            if let Some((other, _)) = keys[..i].iter().find(|(_, v)| *v == Some(*value)) {
                c.bad_given(
                    &at.key(name),
                    &[&at.key(other)],
                    format!("{value} is also {other}; each control key must differ"),
                    None,
                );
            }
        }
    }
    if ctl.method == ControlMethod::Coils
        && ctl.start_coil.is_some()
        && ctl.start_coil == ctl.stop_coil
    {
        c.bad(
            &at.key("stop_coil"),
            "the stop coil must differ from the start coil",
            Some("leave stop_coil out to stop by writing the start coil off".to_owned()),
        );
    }
    if let Some(ms) = ctl.pulse_ms {
        c.range(&at.key("pulse_ms"), ms, 50, 10_000);
    }
    if ctl.pulse_value == Some(0) {
        c.bad(&at.key("pulse_value"), "a pulse of 0 presses nothing", None);
    }
}

/// The start conditions besides the state of charge: each stop threshold on the far side
/// of its start, delays within a day, a valid test-run day and time.
fn generator_conditions(g: &crate::node::GeneratorConfig, c: &mut Checker<'_>) {
    let g_kp = |k: &str| kp("power.generator").key(k);
    for (key, minutes) in [
        ("battery_mv_minutes", g.battery_mv_minutes),
        ("discharge_minutes", g.discharge_minutes),
        ("load_minutes", g.load_minutes),
    ] {
        c.range(&g_kp(key), minutes, 0, 1440);
    }
    c.range(&g_kp("test_run_minutes"), g.test_run_minutes, 1, 600);
    c.range(&g_kp("stop_battery_mv"), g.stop_battery_mv, 1, 100_000);
    if let Some(start) = g.start_battery_mv {
        c.range(&g_kp("start_battery_mv"), start, 1, 100_000);
        if start >= g.stop_battery_mv {
            c.bad_either(
                &[&g_kp("start_battery_mv"), &g_kp("stop_battery_mv")],
                format!(
                    "start_battery_mv ({start}) must be below stop_battery_mv ({})",
                    g.stop_battery_mv
                ),
                None,
            );
        }
    }
    for (start_key, stop_key, start, stop) in [
        (
            "start_discharge_amps",
            "stop_discharge_amps",
            g.start_discharge_amps,
            g.stop_discharge_amps,
        ),
        (
            "start_load_watts",
            "stop_load_watts",
            g.start_load_watts,
            g.stop_load_watts,
        ),
    ] {
        c.range(&g_kp(stop_key), stop, 0, 1_000_000);
        if let Some(start) = start {
            c.range(&g_kp(start_key), start, 1, 1_000_000);
            if start <= stop {
                c.bad_either(
                    &[&g_kp(start_key), &g_kp(stop_key)],
                    format!("{start_key} ({start}) must be above {stop_key} ({stop})"),
                    None,
                );
            }
        }
    }
    if g.test_run_day.is_some() && g.test_run_weekday().is_none() {
        c.bad(
            &g_kp("test_run_day"),
            "not a day of the week",
            Some(format!("use one of {}", crate::node::WEEKDAYS.join(", "))),
        );
    }
    if g.test_run_start().is_none() {
        c.bad(
            &g_kp("test_run_time"),
            format!("invalid time `{}`", g.test_run_time),
            Some("use `HH:MM` in 24-hour time, like `10:00`".to_owned()),
        );
    }
}

fn required_text(c: &mut Checker<'_>, path: &str, value: Option<&str>, cause: &str) {
    let because = format!("{cause} = true");
    match value {
        None => c.missing(&kp(path), &kp(cause), &because),
        Some(v) => c.non_empty(&kp(path), v),
    }
}

/// Two devices cannot share a serial port.
fn serial_ports(cfg: &NodeConfig, c: &mut Checker<'_>) {
    let p = &cfg.power;
    let mut users: Vec<(KeyPath, &str)> = Vec::new();
    if cfg.modem.enabled {
        users.push((kp("modem.port"), &cfg.modem.port));
    }
    for (i, v) in p.vedirect.iter().enumerate() {
        users.push((kp("power.vedirect").index(i).key("port"), &v.port));
    }
    if let (true, Some(port)) = (p.inverter.enabled, &p.inverter.port) {
        users.push((kp("power.inverter.port"), port));
    }
    if let (true, Some(port)) = (p.generator.enabled, &p.generator.port) {
        users.push((kp("power.generator.port"), port));
    }
    for (i, (path, port)) in users.iter().enumerate() {
        if port.is_empty() {
            continue;
        }
        if let Some((first, _)) = users[..i].iter().find(|(_, other)| other == port) {
            c.bad_given(
                path,
                &[first],
                format!("serial port `{port}` is already used by {first}"),
                Some("each device needs its own port".to_owned()),
            );
        }
    }
}

/// Rules for a hub file.
pub(crate) fn hub(cfg: &HubConfig, c: &mut Checker<'_>) {
    hub_storage_files(cfg, c);
    logging(&cfg.logging, c);
    let h = &cfg.hub;
    metrics(&cfg.metrics, c);
    if let Some(l) = cfg
        .metrics
        .listen
        .filter(|l| l.port() != 0 && (*l == h.listen || *l == h.web_listen))
    {
        c.bad(
            &kp("metrics.listen"),
            format!("metrics.listen ({l}) is already the sync or web listener"),
            Some("leave metrics.listen out to serve /metrics on the web listener".to_owned()),
        );
    }
    if h.data_dir.as_os_str().is_empty() {
        c.bad(&kp("hub.data_dir"), "must not be empty", None);
    }
    if h.listen == h.web_listen {
        c.bad_either(
            &[&kp("hub.web_listen"), &kp("hub.listen")],
            format!("listen and web_listen are both {}", h.listen),
            Some("the sync endpoint and the web pages need different ports".to_owned()),
        );
    }
    for (key, value) in [
        ("hub.ca_cert", &h.ca_cert),
        ("hub.server_cert", &h.server_cert),
        ("hub.server_key", &h.server_key),
        ("hub.crl", &h.crl),
    ] {
        if value.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            c.bad(
                &kp(key),
                "must not be empty; leave the key out for the default",
                None,
            );
        }
    }
    c.range(
        &kp("hub.max_body_bytes"),
        h.max_body_bytes,
        1024,
        1024 * MIB,
    );
    c.range(&kp("hub.sync_log_days"), h.sync_log_days, 1, 3660);
    hub_storage(&cfg.storage, c);
}

/// Rules of `[storage]` in a hub file: PostgreSQL needs its URL; its keys mean nothing to
/// SQLite, so setting them there is a mistake worth saying. TLS: the hub never encrypts
/// without verifying, so `sslmode=prefer|require` needs `ca_cert`, and TLS files with
/// `sslmode=disable` would be ignored.
fn hub_storage(s: &crate::hub::HubStorage, c: &mut Checker<'_>) {
    use crate::hub::StorageEngine;
    use crate::values::PgSslMode;
    const TLS_KEYS: [&str; 3] = [
        "storage.ca_cert",
        "storage.client_cert",
        "storage.client_key",
    ];
    match s.engine {
        StorageEngine::Postgres => {
            if s.url.is_none() {
                c.missing(
                    &kp("storage.url"),
                    &kp("storage.engine"),
                    "`storage.engine` is \"postgres\"",
                );
            }
            for (key, value) in [
                ("storage.password_file", &s.password_file),
                ("storage.ca_cert", &s.ca_cert),
                ("storage.client_cert", &s.client_cert),
                ("storage.client_key", &s.client_key),
            ] {
                if value.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                    c.bad(&kp(key), "must not be empty; leave the key out", None);
                }
            }
            c.range(&kp("storage.pool_size"), s.pool_size, 1, 64);
            let mode = s.url.as_ref().and_then(|u| u.sslmode());
            match mode {
                Some(m @ (PgSslMode::Prefer | PgSslMode::Require)) if s.ca_cert.is_none() => {
                    c.bad_given(
                        &kp("storage.url"),
                        &[&kp("storage.ca_cert")],
                        format!(
                            "`sslmode={}` needs `storage.ca_cert` to verify the server",
                            m.as_str()
                        ),
                        Some(
                            "set `ca_cert` in `[storage]` to the CA that signed the \
                             PostgreSQL server's certificate; Markaz does not encrypt \
                             without verifying"
                                .to_owned(),
                        ),
                    );
                }
                Some(PgSslMode::Disable) => {
                    for key in TLS_KEYS {
                        if c.is_set(&kp(key)) {
                            c.bad_given(
                                &kp(key),
                                &[&kp("storage.url")],
                                "not used: the URL says `sslmode=disable`",
                                Some(
                                    "remove the key, or use `sslmode=require` in the URL"
                                        .to_owned(),
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
            match (&s.client_cert, &s.client_key) {
                (Some(_), None) => c.missing(
                    &kp("storage.client_key"),
                    &kp("storage.client_cert"),
                    "`storage.client_cert` is set",
                ),
                (None, Some(_)) => c.missing(
                    &kp("storage.client_cert"),
                    &kp("storage.client_key"),
                    "`storage.client_key` is set",
                ),
                _ => {}
            }
            if s.client_cert.is_some() && s.ca_cert.is_none() {
                c.bad_given(
                    &kp("storage.client_cert"),
                    &[&kp("storage.ca_cert")],
                    "a client certificate is only sent over TLS, which needs `storage.ca_cert`",
                    None,
                );
            }
        }
        StorageEngine::Sqlite => {
            for key in ["storage.url", "storage.password_file"]
                .into_iter()
                .chain(TLS_KEYS)
            {
                if c.is_set(&kp(key)) {
                    c.bad_given(
                        &kp(key),
                        &[&kp("storage.engine")],
                        "only used with `engine = \"postgres\"`",
                        Some(
                            "set `engine = \"postgres\"` in `[storage]`, or remove the key"
                                .to_owned(),
                        ),
                    );
                }
            }
        }
    }
}

/// `[logging]`, the same table in both files.
fn logging(l: &crate::LoggingConfig, c: &mut Checker<'_>) {
    if l.file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        c.bad(&kp("logging.file"), "must not be empty", None);
    }
    c.range(
        &kp("logging.file_max_bytes"),
        l.file_max_bytes,
        4096,
        1 << 40,
    );
    c.range(&kp("logging.file_keep"), l.file_keep, 0, 1000);
}

/// With PostgreSQL, the files `[storage]` names must be there and readable on this
/// machine, when files are checked (a file read from disk: `markaz hub --config`,
/// `check-config`; relative paths from the working directory, as the hub opens them).
fn hub_storage_files(cfg: &HubConfig, c: &mut Checker<'_>) {
    let s = &cfg.storage;
    if s.engine != crate::hub::StorageEngine::Postgres {
        return;
    }
    for (key, value, marker, what) in [
        (
            "storage.password_file",
            &s.password_file,
            "",
            "the file holding the role's password",
        ),
        (
            "storage.ca_cert",
            &s.ca_cert,
            "CERTIFICATE",
            "the CA certificate (PEM) that signed the server's",
        ),
        (
            "storage.client_cert",
            &s.client_cert,
            "CERTIFICATE",
            "the client certificate (PEM)",
        ),
        (
            "storage.client_key",
            &s.client_key,
            "PRIVATE KEY",
            "the client certificate's key (PEM)",
        ),
    ] {
        if let Some(path) = value.as_ref() {
            c.readable_file(&kp(key), path, marker, what);
        }
    }
}
