//! Config → hardware settings: the one place where `[modem]`, `[link]` and `[power]`
//! become the plain settings structs the drivers take. Pure; a config that loaded is
//! valid, so nothing here can fail.
//!
//! Values the config does not expose keep the drivers' defaults (reset settle time,
//! stale timeouts, the policy's hysteresis), except where the node knows better: the
//! generator's command wait and the policy's monitor-lost delay follow the sample
//! interval.

use std::path::PathBuf;
use std::time::Duration;

use jiff::SignedDuration;
use jiff::civil::{Time, Weekday};
use markaz_config::NodeConfig;
use markaz_config::{
    ControlConfig, ControlMethod, ControllerFamily, ModbusTable, PointConfig, PointTable,
    RegisterScale, WordOrderName,
};
use markaz_config::{OnMonitorLost, VeDirectRole};
use markaz_hardware::link::{LinkSettings, Thresholds as LinkThresholds};
use markaz_hardware::modem::ModemSettings;
use markaz_hardware::power::driver::{
    GeneratorSettings, InverterSettings, StartSettings, VeDirectSettings,
};
use markaz_hardware::power::generator::{
    Control, GeneratorMap, Point, Preset, Scale, Table, WordOrder,
};
use markaz_hardware::power::policy::{
    AutoStart, MonitorLostRule, PolicySettings, QuietHours, StartConditions, TestRun,
    Thresholds as PowerThresholds, Trigger,
};

/// The modem driver's settings, or `None` when `[modem] enabled = false`.
pub fn modem(cfg: &NodeConfig) -> Option<ModemSettings> {
    let m = &cfg.modem;
    if !m.enabled {
        return None;
    }
    let mut s = ModemSettings::new(PathBuf::from(&m.port));
    s.baud = m.baud;
    s.apn = m.apn.clone();
    s.apn_user = m.apn_user.clone();
    s.apn_password = m.apn_password.clone();
    s.poll_interval = Duration::from_secs(u64::from(m.poll_interval_secs));
    s.command_timeout = Duration::from_millis(u64::from(m.command_timeout_ms));
    s.sms_timeout = Duration::from_secs(u64::from(m.sms_timeout_secs));
    s.hung_after_timeouts = m.hung_after_timeouts;
    Some(s)
}

/// The link monitor's settings (always: the primary link is probed on every node).
pub fn link(cfg: &NodeConfig) -> LinkSettings {
    let l = &cfg.link;
    let mut s = LinkSettings::new(l.probe_targets.iter().map(|t| t.to_string()).collect());
    s.interval = l.probe_interval_secs.duration();
    s.timeout = l.probe_timeout_secs.duration();
    s.thresholds = LinkThresholds {
        down_after: l.down_after.max(1),
        up_after: l.up_after.max(1),
    };
    s.failback_hold = Duration::from_secs(u64::from(l.failback_hold_secs));
    s
}

/// How long the primary link may be down before the technician is alerted.
pub fn link_alert_after(cfg: &NodeConfig) -> Duration {
    Duration::from_secs(u64::from(cfg.link.alert_after_down_minutes) * 60)
}

/// One VE.Direct port per `[[power.vedirect]]`, with its role.
pub fn vedirect(cfg: &NodeConfig) -> Vec<(VeDirectRole, VeDirectSettings)> {
    cfg.power
        .vedirect
        .iter()
        .map(|v| (v.role, VeDirectSettings::new(PathBuf::from(&v.port))))
        .collect()
}

/// The inverter poller's settings, when enabled.
pub fn inverter(cfg: &NodeConfig) -> Option<InverterSettings> {
    let i = &cfg.power.inverter;
    let port = i.port.as_deref().filter(|_| i.enabled)?;
    let mut s = InverterSettings::new(PathBuf::from(port));
    s.baud = i.baud;
    s.poll_every = Duration::from_secs(u64::from(i.poll_interval_secs));
    // Stale after four missed polls, never sooner than the driver's default.
    s.stale_after = s.stale_after.max(s.poll_every * 4);
    Some(s)
}

/// The generator poller's settings (register map included), when enabled.
pub fn generator(cfg: &NodeConfig) -> Option<GeneratorSettings> {
    let g = &cfg.power.generator;
    let port = g.port.as_deref().filter(|_| g.enabled)?;
    let mut s = GeneratorSettings::new(PathBuf::from(port));
    s.baud = g.baud;
    s.map = generator_map(g);
    s.start = StartSettings {
        attempts: g.start_attempts.max(1),
        retry_after: Duration::from_secs(u64::from(g.start_retry_secs)),
        confirm_within: Duration::from_secs(u64::from(g.start_confirm_secs)),
    };
    Some(s)
}

/// The register map: the `controller` preset, with each value the file sets and its
/// control method in place of the preset's.
pub fn generator_map(g: &markaz_config::GeneratorConfig) -> GeneratorMap {
    let mut map = GeneratorMap::preset(match g.controller {
        ControllerFamily::DeepSea => Preset::DeepSea,
        ControllerFamily::Smartgen => Preset::SmartGen,
        ControllerFamily::Datakom => Preset::Datakom,
    });
    map.slave = g.slave_id;
    let r = &g.registers;
    let slots: [(&Option<PointConfig>, &mut Option<Point>); 7] = [
        (&r.fuel_percent, &mut map.fuel_percent),
        (&r.battery_volts, &mut map.battery_volts),
        (&r.engine_state, &mut map.engine_state),
        (&r.run_time_seconds, &mut map.run_time_seconds),
        (&r.starts, &mut map.starts),
        (&r.generator_hz, &mut map.generator_hz),
        (&r.mains_hz, &mut map.mains_hz),
    ];
    for (given, slot) in slots {
        match given {
            None => {}
            Some(PointConfig::Address(a)) => {
                *slot = Some(slot.map_or(Point::holding(*a), |p| Point { address: *a, ..p }));
            }
            Some(PointConfig::Full(t)) => *slot = Some(point(t)),
        }
    }
    if let Some(c) = &g.control {
        map.control = control(c);
    } else if r.control.is_some()
        || r.start_key.is_some()
        || r.stop_key.is_some()
        || r.auto_key.is_some()
    {
        // The older keys in [power.generator.registers]: a key method over the
        // preset's (or GenComm's) values.
        let (register, start, stop, auto) = match map.control {
            Control::Key {
                register,
                start,
                stop,
                auto,
            } => (register, start, stop, auto),
            _ => (4104, 35732, 35733, Some(35701)),
        };
        map.control = Control::Key {
            register: r.control.unwrap_or(register),
            start: r.start_key.unwrap_or(start),
            stop: r.stop_key.unwrap_or(stop),
            auto: r.auto_key.or(auto),
        };
    }
    map
}

fn point(t: &PointTable) -> Point {
    let scale = t.scale.unwrap_or(RegisterScale::ONE);
    Point {
        table: match t.table {
            ModbusTable::Holding => Table::Holding,
            ModbusTable::Input => Table::Input,
            ModbusTable::Coil => Table::Coil,
            ModbusTable::Discrete => Table::Discrete,
        },
        address: t.address,
        words: t.words,
        signed: t.signed,
        order: match t.word_order {
            WordOrderName::HighFirst => WordOrder::HighFirst,
            WordOrderName::LowFirst => WordOrder::LowFirst,
        },
        scale: Scale {
            num: scale.num,
            den: scale.den,
        },
    }
}

/// A checked `[power.generator.control]` (required fields present).
fn control(c: &ControlConfig) -> Control {
    match c.method {
        ControlMethod::Key => Control::Key {
            register: c.register.unwrap_or(4104),
            start: c.start_key.unwrap_or(35732),
            stop: c.stop_key.unwrap_or(35733),
            auto: c.auto_key,
        },
        ControlMethod::Coils => Control::Coils {
            start: c.start_coil.unwrap_or(0),
            stop: c.stop_coil,
        },
        ControlMethod::Pulse => Control::Pulse {
            start: c.start_register.unwrap_or(0),
            stop: c.stop_register.unwrap_or(0),
            value: c.pulse_value.unwrap_or(1),
            hold: Duration::from_millis(u64::from(c.pulse_ms.unwrap_or(500))),
        },
        ControlMethod::Registers => Control::Registers {
            start: c.start_register.unwrap_or(0),
            start_value: c.start_value.unwrap_or(1),
            stop: c.stop_register.unwrap_or(0),
            stop_value: c.stop_value.unwrap_or(1),
        },
    }
}

/// The generator's start conditions besides the state of charge (`None` where off).
pub fn start_conditions(g: &markaz_config::GeneratorConfig) -> StartConditions {
    let mins = |m: u32| SignedDuration::from_secs(i64::from(m) * 60);
    let test_run = match (g.test_run_weekday(), g.test_run_start()) {
        (Some(day), Some(at)) => Some(TestRun {
            weekday: Weekday::from_monday_one_offset(day).unwrap_or(Weekday::Monday),
            at: Time::new(
                i8::try_from(at.minute_of_day() / 60).unwrap_or(0),
                i8::try_from(at.minute_of_day() % 60).unwrap_or(0),
                0,
                0,
            )
            .unwrap_or(Time::midnight()),
            duration: mins(g.test_run_minutes),
        }),
        _ => None,
    };
    StartConditions {
        battery_voltage: g.start_battery_mv.map(|start| Trigger {
            start,
            stop: g.stop_battery_mv,
            after: mins(g.battery_mv_minutes),
        }),
        discharge_current: g.start_discharge_amps.map(|start| Trigger {
            start: start.saturating_mul(1000),
            stop: g.stop_discharge_amps.saturating_mul(1000),
            after: mins(g.discharge_minutes),
        }),
        load: g.start_load_watts.map(|start| Trigger {
            start,
            stop: g.stop_load_watts,
            after: mins(g.load_minutes),
        }),
        test_run,
    }
}

/// Time between stored power samples.
pub fn sample_interval(cfg: &NodeConfig) -> Duration {
    Duration::from_secs(u64::from(cfg.power.sample_interval_secs.max(1)))
}

/// The power policy: thresholds, generator auto-start (only with a generator that is
/// enabled and set to `auto_start`), quiet hours in the center's time zone.
pub fn policy(cfg: &NodeConfig) -> PolicySettings {
    let p = &cfg.power;
    let t = &p.thresholds;
    let thresholds = PowerThresholds {
        low_soc_percent: t.low_soc_percent,
        critical_soc_percent: t.critical_soc_percent,
        low_mv: t.low_battery_mv,
        critical_mv: t.critical_battery_mv,
        ..PowerThresholds::default()
    };
    let g = &p.generator;
    let hhmm = |m: u16| {
        Time::new(
            i8::try_from(m / 60).unwrap_or(0),
            i8::try_from(m % 60).unwrap_or(0),
            0,
            0,
        )
        .unwrap_or(Time::midnight())
    };
    let auto_start = (g.enabled && g.auto_start).then(|| AutoStart {
        start_soc_percent: g.start_soc_percent,
        stop_soc_percent: g.stop_soc_percent,
        quiet_start_soc_percent: g.quiet_start_soc_percent,
        quiet_stop_soc_percent: g.quiet_stop_soc_percent,
        quiet_hours: g.quiet_hours.map(|q| QuietHours {
            from: hhmm(q.start.minute_of_day()),
            to: hhmm(q.end.minute_of_day()),
        }),
        tz: cfg.center.timezone.time_zone(),
        min_run: SignedDuration::from_secs(i64::from(g.min_run_minutes) * 60),
        start_timeout: SignedDuration::from_mins(5),
        on_monitor_lost: match g.on_monitor_lost {
            OnMonitorLost::Keep => MonitorLostRule::KeepRunning,
            OnMonitorLost::Start => MonitorLostRule::Start,
            OnMonitorLost::Stop => MonitorLostRule::Stop,
        },
        conditions: start_conditions(g),
    });
    // Lost after five missed samples, and never sooner than two minutes.
    let lost_after = (i64::from(p.sample_interval_secs) * 5).max(120);
    PolicySettings {
        thresholds,
        auto_start,
        monitor_lost_after: SignedDuration::from_secs(lost_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml: &str) -> NodeConfig {
        markaz_config::parse_node(toml, "test.toml").expect("valid config")
    }

    #[test]
    fn modem_is_off_by_default_and_mapped_when_enabled() {
        assert!(modem(&NodeConfig::default()).is_none());
        let c = cfg(
            "[modem]\nenabled = true\nport = \"/dev/ttyUSB3\"\nbaud = 9600\napn = \"net\"\n\
             poll_interval_secs = 7\ncommand_timeout_ms = 1500\nsms_timeout_secs = 20\n\
             hung_after_timeouts = 3\n",
        );
        let m = modem(&c).expect("enabled");
        assert_eq!(m.port, PathBuf::from("/dev/ttyUSB3"));
        assert_eq!(m.baud, 9600);
        assert_eq!(m.apn, "net");
        assert_eq!(m.poll_interval, Duration::from_secs(7));
        assert_eq!(m.command_timeout, Duration::from_millis(1500));
        assert_eq!(m.sms_timeout, Duration::from_secs(20));
        assert_eq!(m.hung_after_timeouts, 3);
    }

    #[test]
    fn link_probes_the_configured_targets_with_the_hysteresis() {
        let c = cfg(
            "[link]\nprobe_targets = [\"10.0.0.1:443\", \"hub.example.org:8443\"]\n\
             probe_interval_secs = 3\nprobe_timeout_secs = 2\ndown_after = 2\nup_after = 4\n\
             failback_hold_secs = 0\nalert_after_down_minutes = 15\n",
        );
        let l = link(&c);
        assert_eq!(l.targets, ["10.0.0.1:443", "hub.example.org:8443"]);
        assert_eq!(l.interval, Duration::from_secs(3));
        assert_eq!(l.timeout, Duration::from_secs(2));
        assert_eq!(l.thresholds.down_after, 2);
        assert_eq!(l.thresholds.up_after, 4);
        assert_eq!(l.failback_hold, Duration::ZERO);
        assert_eq!(link_alert_after(&c), Duration::from_secs(900));

        let c = cfg("[link]\nprobe_interval_secs = 0.5\nprobe_timeout_secs = 0.3\n");
        let l = link(&c);
        assert_eq!(l.interval, Duration::from_millis(500));
        assert_eq!(l.timeout, Duration::from_millis(300));
    }

    #[test]
    fn power_devices_and_the_register_map_come_from_config() {
        let c = cfg(
            "[[power.vedirect]]\nport = \"/dev/ttyUSB0\"\nrole = \"mppt\"\n\
             [[power.vedirect]]\nport = \"/dev/ttyUSB1\"\nrole = \"bmv\"\n\
             [power.inverter]\nenabled = true\nport = \"/dev/ttyS1\"\npoll_interval_secs = 10\n\
             [power.generator]\nenabled = true\nport = \"/dev/ttyS2\"\nslave_id = 7\n\
             auto_start = true\nquiet_hours = \"22:00-06:30\"\nmin_run_minutes = 45\n\
             on_monitor_lost = \"start\"\n\
             [power.generator.registers]\nfuel_percent = 100\ncontrol = 200\nstart_key = 11\n",
        );
        let v = vedirect(&c);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0, VeDirectRole::Bmv);
        assert_eq!(v[1].1.port, PathBuf::from("/dev/ttyUSB1"));
        assert_eq!(v[1].1.baud, 19_200);
        let i = inverter(&c).expect("inverter");
        assert_eq!(i.poll_every, Duration::from_secs(10));
        assert!(i.stale_after >= Duration::from_secs(40));
        let g = generator(&c).expect("generator");
        assert_eq!(g.map.slave, 7);
        assert_eq!(
            g.map.fuel_percent,
            Some(Point::holding(100)),
            "an address keeps the preset's format"
        );
        assert_eq!(
            g.map.control,
            Control::Key {
                register: 200,
                start: 11,
                stop: 35733,
                auto: Some(35701)
            }
        );
        let p = policy(&c);
        let auto = p.auto_start.expect("auto start");
        assert_eq!(auto.min_run, SignedDuration::from_mins(45));
        assert_eq!(auto.on_monitor_lost, MonitorLostRule::Start);
        let q = auto.quiet_hours.expect("quiet hours");
        assert_eq!(
            (q.from, q.to),
            (Time::constant(22, 0, 0, 0), Time::constant(6, 30, 0, 0))
        );
        assert_eq!(p.thresholds.low_soc_percent, 30);
        assert_eq!(p.thresholds.critical_soc_percent, 15);
    }

    #[test]
    fn no_devices_and_no_auto_start_by_default() {
        let c = NodeConfig::default();
        assert!(vedirect(&c).is_empty());
        assert!(inverter(&c).is_none());
        assert!(generator(&c).is_none());
        assert!(policy(&c).auto_start.is_none());
        assert_eq!(sample_interval(&c), Duration::from_secs(60));
        assert_eq!(
            start_conditions(&c.power.generator),
            StartConditions::default(),
            "every extra start condition is off by default"
        );
    }

    const AUTO: &str = "[[power.vedirect]]\nport = \"/dev/ttyUSB1\"\nrole = \"bmv\"\n\
         [power.generator]\nenabled = true\nport = \"/dev/ttyS2\"\nauto_start = true\n";

    #[test]
    fn generator_start_conditions_come_from_config() {
        let c = cfg(&format!(
            "{AUTO}start_battery_mv = 23500\nstop_battery_mv = 26000\nbattery_mv_minutes = 2\n\
             start_discharge_amps = 60\nstop_discharge_amps = 5\n\
             start_load_watts = 3000\nstop_load_watts = 800\nload_minutes = 7\n\
             test_run_day = \"friday\"\ntest_run_time = \"09:30\"\ntest_run_minutes = 20\n"
        ));
        let auto = policy(&c).auto_start.expect("auto start");
        let k = auto.conditions;
        assert_eq!(
            k.battery_voltage,
            Some(Trigger {
                start: 23_500,
                stop: 26_000,
                after: SignedDuration::from_mins(2)
            })
        );
        assert_eq!(
            k.discharge_current,
            Some(Trigger {
                start: 60_000,
                stop: 5_000,
                after: SignedDuration::from_mins(10)
            })
        );
        assert_eq!(
            k.load,
            Some(Trigger {
                start: 3_000,
                stop: 800,
                after: SignedDuration::from_mins(7)
            })
        );
        assert_eq!(
            k.test_run,
            Some(TestRun {
                weekday: Weekday::Friday,
                at: Time::constant(9, 30, 0, 0),
                duration: SignedDuration::from_mins(20)
            })
        );
    }

    #[test]
    fn bad_generator_start_conditions_are_refused_with_their_keys() {
        for (extra, key) in [
            ("start_battery_mv = 27000\n", "start_battery_mv"),
            ("start_load_watts = 500\n", "start_load_watts"),
            ("start_discharge_amps = 10\n", "start_discharge_amps"),
            ("test_run_day = \"someday\"\n", "test_run_day"),
            ("test_run_time = \"9:30\"\n", "test_run_time"),
            ("test_run_minutes = 0\n", "test_run_minutes"),
        ] {
            let err =
                markaz_config::parse_node(&format!("{AUTO}{extra}"), "t.toml").expect_err(extra);
            assert!(err.to_string().contains(key), "{extra}: {err}");
        }
    }
}
