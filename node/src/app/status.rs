//! The technician's status board: the latest state of link, modem, power and sync.
//! Each panel is fed by the task that owns that device or loop through a watch channel;
//! readers never wait on a device. A panel nobody feeds reads "not configured".

use serde::Serialize;
use tokio::sync::watch;

/// The latest state of one subsystem, as JSON for the API and pages; `None` until a
/// supervisor feeds it.
pub type Panel = Option<serde_json::Value>;

#[derive(Clone)]
pub struct StatusBoard {
    pub link: watch::Sender<Panel>,
    pub modem: watch::Sender<Panel>,
    pub power: watch::Sender<Panel>,
    pub sync: watch::Sender<Panel>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self {
            link: watch::Sender::new(None),
            modem: watch::Sender::new(None),
            power: watch::Sender::new(None),
            sync: watch::Sender::new(None),
        }
    }
}

/// A snapshot of every panel.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub link: PanelView,
    pub modem: PanelView,
    pub power: PanelView,
    pub sync: PanelView,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PanelView {
    NotConfigured,
    Live { data: serde_json::Value },
}

impl StatusBoard {
    pub fn snapshot(&self) -> StatusSnapshot {
        let view = |tx: &watch::Sender<Panel>| match &*tx.borrow() {
            None => PanelView::NotConfigured,
            Some(v) => PanelView::Live { data: v.clone() },
        };
        StatusSnapshot {
            link: view(&self.link),
            modem: view(&self.modem),
            power: view(&self.power),
            sync: view(&self.sync),
        }
    }
}
