//! `GET /api/v1/status`: the typed status panels ([`crate::app::status`]) written as
//! JSON. Field names are the API's (snake_case, documented in docs/openapi.json); the
//! technician page writes the same panels in words instead (`web::technician`).

use markaz_hardware::link::{LinkHealth, ProbeResult};
use markaz_hardware::modem::status::Registration;
use markaz_hardware::power::model::Source;
use markaz_hardware::power::start::StartPhase;
use serde_json::{Value, json};

use crate::app::status::{LinkPanel, ModemPanel, PanelView, PowerPanel, StatusSnapshot};
use crate::devices::link::{reason_text, uplink_name};
use crate::devices::modem::{reg_name, sim_name, state_name};
use crate::devices::power::{engine_name, level_name, mode_name, reason_name, source_name};

fn view<T>(p: &PanelView<T>, data: impl Fn(&T) -> Value) -> Value {
    match p {
        PanelView::NotConfigured => json!({"state": "not_configured"}),
        PanelView::Live { data: d } => json!({"state": "live", "data": data(d)}),
    }
}

/// Every panel, as `panels` of the status answer.
pub fn panels(s: &StatusSnapshot) -> Value {
    json!({
        "link": view(&s.link, link),
        "modem": view(&s.modem, modem),
        "power": view(&s.power, power),
        "sync": view(&s.sync, |p| serde_json::to_value(p).unwrap_or(Value::Null)),
    })
}

/// The `link` panel.
pub fn link(p: &LinkPanel) -> Value {
    let s = &p.status;
    let primary = match s.primary {
        LinkHealth::Up { failures } => json!({"state": "up", "failed_rounds": failures}),
        LinkHealth::Down { successes } => json!({"state": "down", "good_rounds": successes}),
        LinkHealth::Unknown => json!({"state": "unknown"}),
    };
    json!({
        "uplink": uplink_name(s.uplink),
        "why": s.last_change.map(|c| reason_text(c.reason)),
        "primary": primary,
        "primary_down_since": p.primary_down_since.map(|t| t.to_string()),
        "last_probe": s.last_probe.map(|p| match p {
            ProbeResult::Success => "success",
            ProbeResult::Failure => "failure",
        }),
        "probe_targets": p.targets,
        "modem_registered": s.modem_registered,
        "last_change": s.last_change.map(|c| json!({
            "from": uplink_name(c.from),
            "to": uplink_name(c.to),
            "reason": reason_text(c.reason),
        })),
    })
}

/// The `modem` panel.
pub fn modem(p: &ModemPanel) -> Value {
    let s = &p.status;
    let reg = |r: &Option<Registration>| {
        r.map(|r| json!({"status": reg_name(r.status), "lac": r.lac, "cell": r.ci, "act": r.act}))
    };
    json!({
        "port": p.port,
        "state": state_name(s.state),
        "sim": sim_name(&s.sim),
        "signal": s.signal.map(|sig| json!({
            "rssi": sig.rssi,
            "dbm": sig.dbm(),
            "bars": sig.bars(),
        })),
        "registration": {
            "circuit": reg(&s.registration_cs),
            "packet": reg(&s.registration_ps),
        },
        "operator": s.operator.as_ref().and_then(|o| o.name.clone()),
        "network_time": s.network_time.map(|t| json!({
            "network": t.network.to_string(),
            "read_at": t.read_at.to_string(),
            "skew_seconds": t.read_at.as_second() - t.network.as_second(),
        })),
        "last_ok": s.last_ok.map(|t| t.to_string()),
        "consecutive_timeouts": s.consecutive_timeouts,
        "last_error": s.last_error,
        "readings_stale": p.readings_stale(),
    })
}

/// Where the last generator start stands: `starting`, `retrying` (with the failed
/// attempt's reason), `waiting_for_run`, `running`, or `start_failed` with the reason.
pub fn start_phase(p: &StartPhase) -> Value {
    match p {
        StartPhase::Sending { attempt } => json!({"state": "starting", "attempt": attempt}),
        StartPhase::Retrying { attempt, reason } => {
            json!({"state": "retrying", "attempt": attempt, "reason": reason})
        }
        StartPhase::Confirming => json!({"state": "waiting_for_run"}),
        StartPhase::Running => json!({"state": "running"}),
        StartPhase::Failed(f) => json!({"state": "start_failed", "reason": f.to_string()}),
    }
}

/// The `power` panel.
pub fn power(p: &PowerPanel) -> Value {
    let s = p.sample.as_ref();
    let devices: Vec<Value> = p
        .devices
        .iter()
        .map(|d| {
            let mut v = json!({
                "kind": d.kind.name(),
                "port": d.port,
                "stale": d.stale,
                "updated_at": d.updated_at.map(|t| t.to_string()),
                "port_error": d.port_error,
            });
            let o = v.as_object_mut().expect("an object");
            match d.kind {
                crate::devices::power::DeviceKind::Mppt
                | crate::devices::power::DeviceKind::Bmv => {
                    o.insert("bad_checksums".into(), json!(d.bad_frames));
                }
                crate::devices::power::DeviceKind::Inverter => {
                    o.insert("mode".into(), json!(d.mode.map(mode_name)));
                    o.insert("bad_crc".into(), json!(d.bad_frames));
                    o.insert("timeouts".into(), json!(d.timeouts));
                }
                crate::devices::power::DeviceKind::Generator => {
                    o.insert("errors".into(), json!(d.errors));
                }
            }
            v
        })
        .collect();
    let generator = match &p.generator {
        Some(g) => {
            let r = g.reading.as_ref();
            json!({
                "running": r.is_some_and(|r| r.running()),
                "engine": r.and_then(|r| r.engine).map(engine_name),
                "fuel_percent": r.and_then(|r| r.fuel_percent),
                "run_hours": r.and_then(|r| r.run_seconds).map(|s| f64::from(s) / 3600.0),
                "starts": r.and_then(|r| r.starts),
                "requested_by_policy": g.requested_by_policy,
                "start_reason": g.start_reason.map(reason_name),
                "last_test_run": g.last_test_run.map(|d| d.to_string()),
                "start": g.start.as_ref().map(start_phase),
                "stale": g.stale,
            })
        }
        None => Value::Null,
    };
    json!({
        "level": level_name(p.level),
        "source": s.map(|s| source_name(s.source)),
        "soc_percent": s.and_then(|s| s.soc_percent),
        "battery_v": s.and_then(|s| s.battery_mv).map(|mv| f64::from(mv) / 1000.0),
        "pv_w": s.and_then(|s| s.pv_w),
        "pv": {
            "mppt_w": p.pv.mppt_w,
            "inverter_w": p.pv.inverter_w,
            "total_w": p.pv.total_w,
        },
        "inverter_mode": p.inverter_mode.map(mode_name),
        "load_w": s.and_then(|s| s.load_w),
        "grid_available": s.and_then(|s| s.grid_available),
        "generator": generator,
        "fuel_percent": s.and_then(|s| s.fuel_percent),
        "bulk_sync_deferred": p.bulk_sync_deferred,
        "monitor_lost": p.monitor_lost,
        "last_alert": p.last_alert.map(|(a, at)| json!({"alert": a, "at": at.to_string()})),
        "today": p.today.as_ref().map(|t| json!({
            "date": t.date.to_string(),
            "pv_wh": t.pv_wh,
            "min_soc": t.min_soc,
            "hours": {
                "grid": t.hours_on(Source::Grid),
                "solar": t.hours_on(Source::Solar),
                "battery": t.hours_on(Source::Battery),
                "generator": t.hours_on(Source::Generator),
            },
            "generator_starts": t.generator_starts,
            "outages": t.outages.len(),
        })),
        "sample_at": s.map(|s| s.at.to_string()),
        "no_fresh_device": p.no_fresh_device,
        "stale_fields": p.stale_fields().iter().map(|f| f.name()).collect::<Vec<_>>(),
        "devices": devices,
    })
}
