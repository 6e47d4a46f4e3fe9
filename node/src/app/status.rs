//! The technician's status board: the latest state of link, modem, power and sync.
//! Each panel is fed by the task that owns that device or loop through a watch channel;
//! readers never wait on a device. A panel nobody feeds reads "not configured".
//!
//! The panels are typed values ([`LinkPanel`], [`ModemPanel`], [`PowerPanel`],
//! [`SyncPanel`]): only the edges turn them into something else — `api::status` into
//! the JSON of `GET /api/v1/status`, `web::technician` into sentences and figures.

use tokio::sync::watch;

pub use crate::devices::link::LinkPanel;
pub use crate::devices::modem::ModemPanel;
pub use crate::devices::power::PowerPanel;
pub use crate::sync::SyncPanel;

#[derive(Clone)]
pub struct StatusBoard {
    pub link: watch::Sender<Option<LinkPanel>>,
    pub modem: watch::Sender<Option<ModemPanel>>,
    pub power: watch::Sender<Option<PowerPanel>>,
    pub sync: watch::Sender<Option<SyncPanel>>,
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
#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    pub link: PanelView<LinkPanel>,
    pub modem: PanelView<ModemPanel>,
    pub power: PanelView<PowerPanel>,
    pub sync: PanelView<SyncPanel>,
}

/// One panel: nobody feeds it (no such device on this node), or its latest state.
#[derive(Debug, Clone)]
pub enum PanelView<T> {
    NotConfigured,
    Live { data: T },
}

impl<T> PanelView<T> {
    /// The panel's data, if it is fed.
    pub fn live(&self) -> Option<&T> {
        match self {
            PanelView::NotConfigured => None,
            PanelView::Live { data } => Some(data),
        }
    }
}

fn view<T: Clone>(tx: &watch::Sender<Option<T>>) -> PanelView<T> {
    match &*tx.borrow() {
        None => PanelView::NotConfigured,
        Some(v) => PanelView::Live { data: v.clone() },
    }
}

impl StatusBoard {
    pub fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot {
            link: view(&self.link),
            modem: view(&self.modem),
            power: view(&self.power),
            sync: view(&self.sync),
        }
    }
}
