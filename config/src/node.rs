//! The center node's configuration: what `markaz node --config FILE` reads.
//!
//! Every field has a default, so an empty file is a valid configuration that runs a
//! demo center. Unknown keys are refused (`deny_unknown_fields` on every table), so a
//! typo never silently falls back to a default. The defaults are written out, with
//! their meaning, in `docs/CONFIG.md`; keep the two in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::values::{
    CenterId, Digits, GroupId, GroupLetter, HhMm, HhMmRange, HostPort, HttpsUrl, Lang, LogFilter,
    LogFormat, PhoneNumber, ReceiptPrefix, TimeZoneName,
};

fn parse<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    // Only called on the literal defaults below, which the unit tests check.
    s.parse().expect("built-in default is valid")
}

/// The whole node configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// `[center]`: who this center is.
    pub center: CenterConfig,
    /// `[server]`: the HTTP server.
    pub server: ServerConfig,
    /// `[storage]`: the SQLite database.
    pub storage: StorageConfig,
    /// `[auth]`: staff sessions and the first admin account.
    pub auth: AuthConfig,
    /// `[queue]`: the turn system and its service groups.
    pub queue: QueueConfig,
    /// `[[counters]]`: the front desks. Absent or empty means four counters serving
    /// every group.
    // Field-level default: an absent list must stay empty until `fill_defaults`, which
    // knows the configured groups (the struct default would bring the built-in ones).
    #[serde(default)]
    pub counters: Vec<CounterConfig>,
    /// `[logging]`.
    pub logging: LoggingConfig,
    /// `[sync]`: replication with the hub.
    pub sync: SyncConfig,
    /// `[link]`: uplink health probes and failover to the modem.
    pub link: LinkConfig,
    /// `[modem]`: the 3G modem (SMS and backup uplink).
    pub modem: ModemConfig,
    /// `[power]`: batteries, inverter, generator and the shutdown policy.
    pub power: PowerConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[backup]`: the daily backup of the database.
    pub backup: BackupConfig,
    /// `[kiosk]`: the self-service ticket kiosk.
    pub kiosk: KioskConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let mut cfg = Self {
            center: CenterConfig::default(),
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            queue: QueueConfig::default(),
            counters: Vec::new(),
            logging: LoggingConfig::default(),
            sync: SyncConfig::default(),
            link: LinkConfig::default(),
            modem: ModemConfig::default(),
            power: PowerConfig::default(),
            metrics: MetricsConfig::default(),
            backup: BackupConfig::default(),
            kiosk: KioskConfig::default(),
        };
        cfg.fill_defaults();
        cfg
    }
}

impl NodeConfig {
    /// The number of counters created when the file lists none.
    pub const DEFAULT_COUNTER_COUNT: u8 = 4;

    /// Fills the defaults that depend on other settings: with no counters configured,
    /// four counters serving every group; a counter with no groups serves every group.
    /// The loader calls this; call it again after editing `queue.groups` by hand if
    /// you rely on these defaults.
    pub fn fill_defaults(&mut self) {
        let all: Vec<GroupId> = self.queue.groups.iter().map(|g| g.id.clone()).collect();
        if self.counters.is_empty() {
            self.counters = (1..=Self::DEFAULT_COUNTER_COUNT)
                .map(|number| CounterConfig {
                    number,
                    groups: all.clone(),
                })
                .collect();
        }
        for counter in &mut self.counters {
            if counter.groups.is_empty() {
                counter.groups = all.clone();
            }
        }
    }

    /// The queue group with this id.
    pub fn group(&self, id: &GroupId) -> Option<&QueueGroupConfig> {
        self.queue.groups.iter().find(|g| &g.id == id)
    }
}

/// `[center]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CenterConfig {
    /// Slug that names the center everywhere (certificates, sync, receipts). Default `demo`.
    #[serde(deserialize_with = "crate::values::center_id")]
    pub id: CenterId,
    /// Arabic name shown on pages and tickets.
    pub name_ar: String,
    /// English name.
    pub name_en: String,
    /// Receipt numbers are `<prefix>-<sequence>`. Default `DMO`.
    pub receipt_prefix: ReceiptPrefix,
    /// Local time zone for the day boundary of tickets and statistics. Default `Asia/Damascus`.
    pub timezone: TimeZoneName,
    /// Digits on screens and tickets. Default `arabic-indic`.
    pub digits: Digits,
    /// Lang of the pages before a user picks one. Default `ar`.
    pub default_language: Lang,
    /// Where alerts for the technician go by SMS (E.164). Default: none, no alert SMS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub technician_phone: Option<PhoneNumber>,
}

impl Default for CenterConfig {
    fn default() -> Self {
        Self {
            id: parse("demo"),
            name_ar: "مركز خدمة المواطن".to_owned(),
            name_en: "Citizen Service Center".to_owned(),
            receipt_prefix: parse("DMO"),
            timezone: parse("Asia/Damascus"),
            digits: Digits::ArabicIndic,
            default_language: Lang::Ar,
            technician_phone: None,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port the HTTP server listens on. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Largest accepted request body; larger gets 413. Default 65536.
    pub max_body_bytes: u64,
    /// A request taking longer is answered 408/503. Default 30.
    pub request_timeout_secs: u32,
    /// Open connections in total (lowered to fit the open-file limit). Default 1024.
    pub max_connections: u32,
    /// Open connections from one client address. Default 64.
    pub max_connections_per_client: u32,
    /// Time to receive a request's headers (and between keep-alive requests). Default 10.
    pub header_read_timeout_secs: u32,
    /// `[server.tls]`: serve the pages and the API over HTTPS on the LAN. Default: none,
    /// plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsConfig>,
}

/// `[server.tls]`: HTTPS for the clerks' terminals, with a certificate from
/// `markaz pki lan`. With it, `server.listen` speaks only HTTPS and cookies are `Secure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The LAN certificate (PEM), `lan/<center>/cert.pem` of `markaz pki lan`. Required.
    pub cert: PathBuf,
    /// Its private key (PEM), `lan/<center>/key.pem`. Required.
    pub key: PathBuf,
    /// A plain-HTTP listener that only redirects to the HTTPS one (a clerk who types the
    /// address without `https://`). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_listen: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 65_536,
            request_timeout_secs: 30,
            max_connections: 1024,
            max_connections_per_client: 64,
            header_read_timeout_secs: 10,
            tls: None,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the database and generated files. Default `/var/lib/markaz`.
    pub data_dir: PathBuf,
    /// How long a reader waits on a locked database. Default 5000.
    pub busy_timeout_ms: u32,
    /// Most write requests committed in one transaction. Default 256.
    pub group_commit_max_batch: u32,
    /// Below this free space (MiB) on the data disk the node alerts the technician and
    /// stops storing low-value data (power samples, statistics), keeping the room for
    /// citizens' cases. Default 512; 0 turns the guard off.
    pub min_free_mb: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/markaz"),
            busy_timeout_ms: 5000,
            group_commit_max_batch: 256,
            min_free_mb: 512,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A session ends this long after login. Default 480 (8 hours).
    pub session_ttl_minutes: u32,
    /// A session ends after this long without a request. Default 60.
    pub session_idle_minutes: u32,
    /// Failed logins allowed per user within the window. Default 5.
    pub login_max_attempts: u32,
    /// Window for counting failed logins. Default 300.
    pub login_window_secs: u32,
    /// User name of the admin account created on first start. Default `admin`.
    pub initial_admin_user: String,
    /// Its password. Default: none, the node generates one and prints it once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_admin_password: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_minutes: 480,
            session_idle_minutes: 60,
            login_max_attempts: 5,
            login_window_secs: 300,
            initial_admin_user: "admin".to_owned(),
            initial_admin_password: None,
        }
    }
}

/// `[queue]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// When both classes wait, call up to this many priority tickets (elderly,
    /// disabled, pregnant)… Default 2.
    pub priority_weight: u32,
    /// …per this many normal tickets. Default 1.
    pub normal_weight: u32,
    /// A called ticket not answered within this time may be marked no-show. Default 5.
    pub no_show_after_minutes: u32,
    /// `[[queue.groups]]`: service groups, each with its ticket letter. Default: the
    /// five groups of the Damascus centers (A judicial, B civil, C real estate,
    /// D finance, E pickup).
    pub groups: Vec<QueueGroupConfig>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            priority_weight: 2,
            normal_weight: 1,
            no_show_after_minutes: 5,
            groups: QueueGroupConfig::defaults(),
        }
    }
}

/// `[[queue.groups]]`: one service group and its ticket series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueGroupConfig {
    /// Group id, referenced by counters and services (required).
    pub id: GroupId,
    /// Ticket letter, unique per center (required).
    pub letter: GroupLetter,
    /// Arabic name shown on the ticket and display (required).
    pub name_ar: String,
    /// English name (required).
    pub name_en: String,
    /// Target waiting time; longer waits are flagged on the supervisor page. Default 20.
    #[serde(default = "default_target_wait")]
    pub target_wait_minutes: u32,
}

fn default_target_wait() -> u32 {
    20
}

impl QueueGroupConfig {
    /// The default groups: the service groups of `shared/domain.md` plus document pickup.
    pub fn defaults() -> Vec<Self> {
        [
            ("judicial", 'A', "السجل العدلي", "Judicial record"),
            ("civil", 'B', "الأحوال المدنية", "Civil registry"),
            ("real_estate", 'C', "السجل العقاري", "Real estate"),
            ("finance", 'D', "المالية", "Finance"),
            ("pickup", 'E', "تسليم الوثائق", "Document pickup"),
        ]
        .into_iter()
        .map(|(id, letter, name_ar, name_en)| Self {
            id: parse(id),
            letter: GroupLetter::try_from(letter).expect("built-in default is valid"),
            name_ar: name_ar.to_owned(),
            name_en: name_en.to_owned(),
            target_wait_minutes: default_target_wait(),
        })
        .collect()
    }
}

/// `[[counters]]`: one front desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterConfig {
    /// Desk number shown on the display, 1..=99, unique (required).
    pub number: u8,
    /// Ids of the `[[queue.groups]]` this desk calls tickets from. Default (absent or
    /// empty): every group.
    #[serde(default)]
    pub groups: Vec<GroupId>,
}

/// `[logging]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// `pretty` or `json`. Default `pretty`.
    pub format: LogFormat,
    /// A tracing filter, like `info` or `info,markaz_node=debug`. Default `info`.
    /// The `RUST_LOG` environment variable overrides it.
    pub level: LogFilter,
    /// A log file instead of stderr (the journal), rotated by size. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The log file is rotated before it grows past this. Default 10485760 (10 MiB).
    pub file_max_bytes: u64,
    /// Rotated files kept (`node.log.1` … `node.log.N`). Default 5.
    pub file_keep: u32,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: parse("info"),
            file: None,
            file_max_bytes: 10 * 1024 * 1024,
            file_keep: 5,
        }
    }
}

/// `[sync]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Replicate with the hub. Default false.
    pub enabled: bool,
    /// The hub's sync endpoint: a one-hub shorthand of `hub_urls`; set one of the two.
    /// Default (neither set) `https://127.0.0.1:8443`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<HttpsUrl>,
    /// The hub's sync endpoints, tried in order; the node stays with the one that
    /// answers (several hub processes on one PostgreSQL database). Default: none, so
    /// `hub_url` alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hub_urls: Vec<HttpsUrl>,
    /// CA certificate (PEM) that signed the hub's certificate. Required when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// This center's client certificate (PEM). Required when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// This center's private key (PEM). Required when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// Pause between sync rounds when there is nothing new. Default 30.
    pub interval_secs: u32,
    /// Upper bound of one push/pull batch before compression. Default 1 MiB (1048576):
    /// over 3G, fewer round trips matter more than what a cut mid-batch re-sends.
    pub batch_max_bytes: u64,
}

impl SyncConfig {
    /// The hub endpoints in the order they are tried: `hub_urls`, or `hub_url` alone, or
    /// the default `https://127.0.0.1:8443`.
    pub fn hubs(&self) -> Vec<HttpsUrl> {
        match (&self.hub_url, self.hub_urls.is_empty()) {
            (_, false) => self.hub_urls.clone(),
            (Some(one), true) => vec![one.clone()],
            (None, true) => vec![parse("https://127.0.0.1:8443")],
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            hub_url: None,
            hub_urls: Vec::new(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            interval_secs: 30,
            batch_max_bytes: 1_048_576,
        }
    }
}

/// How traffic reaches the internet when the modem is the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModemRoute {
    /// TCP through the modem's own AT socket commands (no PPP needed).
    #[default]
    AtSocket,
    /// Through an OS network interface the modem provides (e.g. `ppp0`).
    OsRoute,
}

/// `[link]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// `host:port` targets for TCP-connect probes over the main link. Default
    /// `["127.0.0.1:8443"]`.
    pub probe_targets: Vec<HostPort>,
    /// Pause between probe rounds, in seconds, fractions allowed. Default 0.5.
    pub probe_interval_secs: Secs,
    /// A probe not connected within this time failed (seconds, at most the interval).
    /// Default 0.5.
    pub probe_timeout_secs: Secs,
    /// Consecutive failed rounds before the main link counts as down. Default 10.
    pub down_after: u32,
    /// Consecutive good rounds before it counts as up again. Default 5.
    pub up_after: u32,
    /// Once up again, stay on the modem this long before failing back. Default 60.
    pub failback_hold_secs: u32,
    /// `at-socket` or `os-route`. Default `at-socket`.
    pub modem_route: ModemRoute,
    /// Interface used with `os-route`. Default `ppp0`.
    pub os_route_interface: String,
    /// Alert the technician when the main link is down this long. Default 30.
    pub alert_after_down_minutes: u32,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            probe_targets: vec![parse("127.0.0.1:8443")],
            probe_interval_secs: Secs(0.5),
            probe_timeout_secs: Secs(0.5),
            down_after: 10,
            up_after: 5,
            failback_hold_secs: 60,
            modem_route: ModemRoute::AtSocket,
            os_route_interface: "ppp0".to_owned(),
            alert_after_down_minutes: 30,
        }
    }
}

/// A span of time in seconds as the file writes it: whole (`1`, `10`) or fractional
/// (`0.5`). The loader's rules refuse values that are not finite or out of range, so
/// the [`Secs::duration`] of a loaded config is exact. Compared bit for bit, which keeps
/// the config `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secs(pub f64);

impl Secs {
    /// The number of seconds as written.
    pub fn get(self) -> f64 {
        self.0
    }

    /// As a [`Duration`]; zero for a value the rules refuse (negative, NaN, infinite).
    pub fn duration(self) -> Duration {
        Duration::try_from_secs_f64(self.0).unwrap_or(Duration::ZERO)
    }
}

impl PartialEq for Secs {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Secs {}

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The AT command family a modem speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModemDialect {
    /// Quectel UC20 / UC15 / EC2x (`AT+QIOPEN` sockets).
    #[default]
    QuectelUc20,
}

/// `[modem]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModemConfig {
    /// Drive a modem. Default false.
    pub enabled: bool,
    /// Serial port of the modem's AT interface. Default `/dev/ttyUSB2`.
    pub port: String,
    /// Serial speed. Default 115200.
    pub baud: u32,
    /// AT dialect. Default `quectel-uc20`.
    pub dialect: ModemDialect,
    /// Access point name of the SIM's operator. Default empty (operator default).
    pub apn: String,
    /// APN user name. Default empty.
    pub apn_user: String,
    /// APN password. Default empty.
    pub apn_password: String,
    /// Pause between signal/registration polls. Default 30.
    pub poll_interval_secs: u32,
    /// An AT command without a final answer in this time timed out. Default 5000.
    pub command_timeout_ms: u32,
    /// Time allowed for one SMS submission. Default 60.
    pub sms_timeout_secs: u32,
    /// Consecutive timeouts after which the modem is reset. Default 10.
    pub hung_after_timeouts: u32,
    /// Send SMS (case ready, alerts). Default true.
    pub sms_enabled: bool,
    /// Most data bytes (up + down) per local day over the modem uplink; then only SMS
    /// (0: no data over the modem). Default 20000000.
    pub daily_byte_budget: u64,
}

impl Default for ModemConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            port: "/dev/ttyUSB2".to_owned(),
            baud: 115_200,
            dialect: ModemDialect::QuectelUc20,
            apn: String::new(),
            apn_user: String::new(),
            apn_password: String::new(),
            poll_interval_secs: 30,
            command_timeout_ms: 5000,
            sms_timeout_secs: 60,
            hung_after_timeouts: 10,
            sms_enabled: true,
            daily_byte_budget: 20_000_000,
        }
    }
}

/// `[power]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerConfig {
    /// Pause between stored power samples. Default 60.
    pub sample_interval_secs: u32,
    /// Power samples older than this are deleted. Default 90.
    pub retention_days: u32,
    /// Command run for a clean shutdown at critical battery. Default `systemctl poweroff`.
    pub shutdown_command: String,
    /// `[power.thresholds]`
    pub thresholds: PowerThresholds,
    /// `[[power.vedirect]]`: Victron VE.Direct devices. Default none.
    pub vedirect: Vec<VeDirectConfig>,
    /// `[power.inverter]`: a Voltronic/Axpert-style inverter.
    pub inverter: InverterConfig,
    /// `[power.generator]`: a generator controller over Modbus RTU.
    pub generator: GeneratorConfig,
}

impl Default for PowerConfig {
    fn default() -> Self {
        Self {
            sample_interval_secs: 60,
            retention_days: 90,
            shutdown_command: "systemctl poweroff".to_owned(),
            thresholds: PowerThresholds::default(),
            vedirect: Vec::new(),
            inverter: InverterConfig::default(),
            generator: GeneratorConfig::default(),
        }
    }
}

/// `[power.thresholds]`: battery levels that raise alerts and, at critical, shut down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerThresholds {
    /// Low state of charge (alert). Default 30.
    pub low_soc_percent: u8,
    /// Critical state of charge (clean shutdown). Default 15; must be below low.
    pub critical_soc_percent: u8,
    /// Low battery voltage in millivolts (alert). Default 23500.
    pub low_battery_mv: u32,
    /// Critical battery voltage (clean shutdown). Default 22800; must be below low.
    pub critical_battery_mv: u32,
}

impl Default for PowerThresholds {
    fn default() -> Self {
        Self {
            low_soc_percent: 30,
            critical_soc_percent: 15,
            low_battery_mv: 23_500,
            critical_battery_mv: 22_800,
        }
    }
}

/// What a VE.Direct device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VeDirectRole {
    /// A solar charge controller (SmartSolar/BlueSolar MPPT).
    Mppt,
    /// A battery monitor (BMV/SmartShunt): the source of state of charge.
    Bmv,
}

/// `[[power.vedirect]]`: one VE.Direct device on its own serial port (19200 baud, fixed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VeDirectConfig {
    /// Serial port (required).
    pub port: String,
    /// `mppt` or `bmv` (required).
    pub role: VeDirectRole,
}

/// `[power.inverter]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InverterConfig {
    /// Poll the inverter. Default false.
    pub enabled: bool,
    /// Serial port. Required when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Serial speed. Default 2400.
    pub baud: u32,
    /// Pause between QPIGS polls. Default 5.
    pub poll_interval_secs: u32,
}

impl Default for InverterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            port: None,
            baud: 2400,
            poll_interval_secs: 5,
        }
    }
}

/// What the generator policy does when the battery monitor stops answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMonitorLost {
    /// Leave the generator as it is.
    #[default]
    Keep,
    /// Start it (safe for the batteries, costs fuel).
    Start,
    /// Stop it.
    Stop,
}

/// `[power.generator]`: auto start/stop by battery state of charge, Venus OS style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Read the controller. Default false.
    pub enabled: bool,
    /// Serial port of the RS-485 adapter. Required when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Serial speed. Default 9600.
    pub baud: u32,
    /// Modbus slave id of the controller, 1..=247. Default 1.
    pub slave_id: u8,
    /// Controller family whose register map is the starting point. Default `deep-sea`.
    pub controller: ControllerFamily,
    /// A start command is tried this many times (with doubling pauses) before the
    /// technician is alerted. Default 3.
    pub start_attempts: u32,
    /// Pause after the first failed start command, doubled after each. Default 10.
    pub start_retry_secs: u32,
    /// After an accepted start, the engine must read "running" within this. Default 90.
    pub start_confirm_secs: u32,
    /// Start and stop the generator automatically (otherwise only monitor). Default false.
    pub auto_start: bool,
    /// Start when state of charge falls to this. Default 35.
    pub start_soc_percent: u8,
    /// Stop when it rises to this. Default 90; must be above start.
    pub stop_soc_percent: u8,
    /// Once started, run at least this long. Default 30.
    pub min_run_minutes: u32,
    /// Daily window with the quiet thresholds below. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<HhMmRange>,
    /// Start threshold during quiet hours. Default 20.
    pub quiet_start_soc_percent: u8,
    /// Stop threshold during quiet hours. Default 60; must be above quiet start.
    pub quiet_stop_soc_percent: u8,
    /// `keep`, `start` or `stop` when the battery monitor is lost. Default `keep`.
    pub on_monitor_lost: OnMonitorLost,
    /// Also start when the battery voltage is at or below this, mV. Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_battery_mv: Option<u32>,
    /// Stop that start at or above this voltage, mV. Default 26400; above the start.
    pub stop_battery_mv: u32,
    /// The voltage must stay low this long first. Default 0.
    pub battery_mv_minutes: u32,
    /// Also start when the battery discharges at or above this current, A. Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_discharge_amps: Option<u32>,
    /// Stop that start at or below this discharge current, A. Default 10; below the start.
    pub stop_discharge_amps: u32,
    /// The current must stay high this long first. Default 10.
    pub discharge_minutes: u32,
    /// Also start when the load is at or above this, W. Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_load_watts: Option<u32>,
    /// Stop that start at or below this load, W. Default 1000; below the start.
    pub stop_load_watts: u32,
    /// The load must stay high this long first. Default 5.
    pub load_minutes: u32,
    /// Weekly test run on this day (`monday` … `sunday`). Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_run_day: Option<String>,
    /// Local time the test run starts, `"HH:MM"`. Default `"10:00"`.
    pub test_run_time: String,
    /// How long the test run lasts. Default 15.
    pub test_run_minutes: u32,
    /// `[power.generator.registers]`: the controller's Modbus register map.
    pub registers: GeneratorRegisters,
    /// `[power.generator.control]`: the start/stop method, if not the preset's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlConfig>,
}

/// The days `test_run_day` accepts, Monday first.
pub(crate) const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl GeneratorConfig {
    /// The test run's day as an ISO 8601 weekday number (1 = Monday … 7 = Sunday), or
    /// `None` when off (a config that loaded has a valid day).
    pub fn test_run_weekday(&self) -> Option<i8> {
        let day = self.test_run_day.as_deref()?;
        WEEKDAYS
            .iter()
            .position(|d| d.eq_ignore_ascii_case(day))
            .and_then(|i| i8::try_from(i + 1).ok())
    }

    /// The test run's start time, `None` if `test_run_time` is not `"HH:MM"`.
    pub fn test_run_start(&self) -> Option<HhMm> {
        let (h, m) = self.test_run_time.split_once(':')?;
        let two_digits = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(h) || !two_digits(m) {
            return None;
        }
        HhMm::new(h.parse().ok()?, m.parse().ok()?)
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            port: None,
            baud: 9600,
            slave_id: 1,
            controller: ControllerFamily::DeepSea,
            start_attempts: 3,
            start_retry_secs: 10,
            start_confirm_secs: 90,
            auto_start: false,
            start_soc_percent: 35,
            stop_soc_percent: 90,
            min_run_minutes: 30,
            quiet_hours: None,
            quiet_start_soc_percent: 20,
            quiet_stop_soc_percent: 60,
            on_monitor_lost: OnMonitorLost::Keep,
            start_battery_mv: None,
            stop_battery_mv: 26_400,
            battery_mv_minutes: 0,
            start_discharge_amps: None,
            stop_discharge_amps: 10,
            discharge_minutes: 10,
            start_load_watts: None,
            stop_load_watts: 1000,
            load_minutes: 5,
            test_run_day: None,
            test_run_time: "10:00".to_owned(),
            test_run_minutes: 15,
            registers: GeneratorRegisters::default(),
            control: None,
        }
    }
}

/// `[power.generator] controller`: the family whose register map is the starting point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControllerFamily {
    /// Deep Sea (GenComm).
    #[default]
    DeepSea,
    /// SmartGen HGM series.
    Smartgen,
    /// Datakom D-500.
    Datakom,
}

/// A Modbus table, as the config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModbusTable {
    /// Holding registers (read/write words).
    #[default]
    Holding,
    /// Input registers (read-only words).
    Input,
    /// Coils (read/write bits).
    Coil,
    /// Discrete inputs (read-only bits).
    Discrete,
}

impl ModbusTable {
    /// Whether a master may write it.
    pub fn writable(self) -> bool {
        matches!(self, Self::Holding | Self::Coil)
    }
    /// Whether it holds bits.
    pub fn is_bit(self) -> bool {
        matches!(self, Self::Coil | Self::Discrete)
    }
}

/// Word order of a 32-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WordOrderName {
    /// High word at the lower address.
    #[default]
    HighFirst,
    /// Low word at the lower address.
    LowFirst,
}

/// Where one value lives: a bare integer moves the preset's value to that address
/// (keeping its table, scale and format); a table describes it whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PointConfig {
    /// `fuel_percent = 1027`.
    Address(u16),
    /// `fuel_percent = { table = "input", address = 30, scale = 0.1 }`.
    Full(PointTable),
}

/// A value described whole; unset fields take the plain defaults (holding, one word,
/// unsigned, high word first, scale 1), not the preset's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointTable {
    /// Table. Default `holding`.
    #[serde(default)]
    pub table: ModbusTable,
    /// Zero-based address as sent on the wire.
    pub address: u16,
    /// The value in the key's unit is `raw × scale`. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<RegisterScale>,
    /// Two's complement. Default false.
    #[serde(default)]
    pub signed: bool,
    /// 1, or 2 for a 32-bit value in this register and the next. Default 1.
    #[serde(default = "one")]
    pub words: u8,
    /// `high-first` or `low-first`, for `words = 2`. Default `high-first`.
    #[serde(default)]
    pub word_order: WordOrderName,
}

/// A register scale as an exact fraction `num / den` (0.1 is 1/10), parsed once from
/// a positive TOML number with at most six decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegisterScale {
    /// Numerator, > 0.
    pub num: i64,
    /// Denominator, a power of ten.
    pub den: i64,
}

impl RegisterScale {
    /// 1.
    pub const ONE: Self = Self { num: 1, den: 1 };

    /// The exact fraction of `v`, if positive, finite and with at most six decimals.
    pub fn from_f64(v: f64) -> Option<Self> {
        if !v.is_finite() || v <= 0.0 || v > 1e9 {
            return None;
        }
        let mut den: i64 = 1;
        while den <= 1_000_000 {
            let n = v * den as f64;
            if (n - n.round()).abs() < 1e-6 {
                let num = n.round() as i64;
                return (num > 0).then_some(Self { num, den });
            }
            den *= 10;
        }
        None
    }
}

impl Serialize for RegisterScale {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.num as f64 / self.den as f64)
    }
}

impl<'de> Deserialize<'de> for RegisterScale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Self::from_f64(v).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{v} is not a usable scale: use a positive number with at most six decimals, \
                 e.g. 0.1 for a value in tenths"
            ))
        })
    }
}

fn one() -> u8 {
    1
}

impl<'de> Deserialize<'de> for PointConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PointConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a register address or a table like { table = \"input\", address = 30 }",
                )
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PointConfig, E> {
                u16::try_from(v).map(PointConfig::Address).map_err(|_| {
                    E::invalid_value(serde::de::Unexpected::Signed(v), &"an address, 0 to 65535")
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PointConfig, E> {
                u16::try_from(v).map(PointConfig::Address).map_err(|_| {
                    E::invalid_value(
                        serde::de::Unexpected::Unsigned(v),
                        &"an address, 0 to 65535",
                    )
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<PointConfig, A::Error> {
                PointTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(PointConfig::Full)
            }
        }
        d.deserialize_any(V)
    }
}

/// `[power.generator.registers]`: where the controller keeps each value; every key
/// optional, overriding the `controller` preset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorRegisters {
    /// Fuel level, %.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_percent: Option<PointConfig>,
    /// Starter battery, V (`battery_decivolts` is the older name).
    #[serde(skip_serializing_if = "Option::is_none", alias = "battery_decivolts")]
    pub battery_volts: Option<PointConfig>,
    /// Engine state (a bit: 1 = running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_state: Option<PointConfig>,
    /// Engine run time, s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_time_seconds: Option<PointConfig>,
    /// Number of starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts: Option<PointConfig>,
    /// Generator frequency, Hz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_hz: Option<PointConfig>,
    /// Mains frequency, Hz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mains_hz: Option<PointConfig>,
    /// Older form of `[power.generator.control]` with `method = "key"`: the control
    /// register pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<u16>,
    /// Older form: key for remote start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_key: Option<u16>,
    /// Older form: key for remote stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_key: Option<u16>,
    /// Older form: key back to auto mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_key: Option<u16>,
}

impl GeneratorRegisters {
    /// The values with their key names.
    pub fn points(&self) -> [(&'static str, Option<&PointConfig>); 7] {
        [
            ("fuel_percent", self.fuel_percent.as_ref()),
            ("battery_volts", self.battery_volts.as_ref()),
            ("engine_state", self.engine_state.as_ref()),
            ("run_time_seconds", self.run_time_seconds.as_ref()),
            ("starts", self.starts.as_ref()),
            ("generator_hz", self.generator_hz.as_ref()),
            ("mains_hz", self.mains_hz.as_ref()),
        ]
    }
}

/// How the controller is started and stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlMethod {
    /// `[key, 65535 - key]` to `register` and the next.
    Key,
    /// Coils written on.
    Coils,
    /// A register written `pulse_value`, then 0.
    Pulse,
    /// Separate start and stop registers.
    Registers,
}

/// `[power.generator.control]`: replaces the preset's start/stop method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `key`, `coils`, `pulse` or `registers`.
    pub method: ControlMethod,
    /// The table written; `holding` for key, pulse and registers, `coil` for coils
    /// (the default follows the method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<ModbusTable>,
    /// key: first of the two control registers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<u16>,
    /// key: start key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_key: Option<u16>,
    /// key: stop key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_key: Option<u16>,
    /// key: auto-mode key (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_key: Option<u16>,
    /// coils: start coil.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_coil: Option<u16>,
    /// coils: stop coil (without it, the start coil is written off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_coil: Option<u16>,
    /// pulse, registers: start register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_register: Option<u16>,
    /// pulse, registers: stop register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_register: Option<u16>,
    /// registers: written to the start register. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_value: Option<u16>,
    /// registers: written to the stop register. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_value: Option<u16>,
    /// pulse: value of the pulse. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulse_value: Option<u16>,
    /// pulse: how long the value is held before 0 is written, ms. Default 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulse_ms: Option<u32>,
}

/// `[metrics]` (node and hub): the Prometheus endpoint `/metrics`.
///
/// Without `listen` it is served on the main listener; without `token_file` only to
/// clients on the same machine (loopback), so a default install shows nothing to the
/// center's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`. Default true.
    pub enabled: bool,
    /// A separate address for `/metrics` only (a VPN or management interface, say);
    /// then the main listener does not serve it. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// A file holding a bearer token (first line) that a scraper must send
    /// (`Authorization: Bearer …`); then any client address may read. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            token_file: None,
        }
    }
}

/// `[backup]`: a daily online backup of the database into `folder` (a USB disk, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Run the daily backup. Default false.
    pub enabled: bool,
    /// Where backups go (required when enabled). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<PathBuf>,
    /// Local time of the daily backup, `HH:MM`. Default `02:30`.
    pub time: HhMm,
    /// Backups kept in `folder`; older ones are deleted. Default 7.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            folder: None,
            time: parse("02:30"),
            keep: 7,
        }
    }
}

/// `[kiosk]`: the self-service ticket kiosk (a touch screen at the entrance, `/kiosk`).
///
/// A kiosk has no keyboard and nobody logs in at it: it is authorised by a key that an
/// administrator puts in `key_file` and in the kiosk browser's start address
/// (`/kiosk?key=…`, once; the browser keeps it as a cookie). Without `key_file` the
/// kiosk page is off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KioskConfig {
    /// A file whose first line is the kiosk key (at least 32 characters). Default: none
    /// (no kiosk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}
