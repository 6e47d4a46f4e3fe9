//! The live event bus behind the SSE streams: ticket called, case ready, and the like.
//! Publishing never blocks; a slow subscriber loses old events (it is told how many) and
//! keeps receiving new ones.

use serde::Serialize;
use tokio::sync::broadcast;

/// One live event. `public` events carry no personal data and may reach the
/// waiting-room display without a login.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    TicketCalled {
        ticket: String,
        counter: u32,
        group: String,
        recall: bool,
        at: String,
    },
    TicketIssued {
        ticket: String,
        group: String,
        waiting: u32,
    },
    /// A group's line changed other than by an issue or a call (transfer, serve later,
    /// an undone no-show): live pages refresh their counts.
    QueueChanged {
        group: String,
        waiting: u32,
    },
    CaseReady {
        case_no: String,
        service: String,
    },
    CaseUpdated {
        case_no: String,
        status: String,
    },
}

impl LiveEvent {
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            LiveEvent::TicketCalled { .. }
                | LiveEvent::TicketIssued { .. }
                | LiveEvent::QueueChanged { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::TicketCalled { .. } => "ticket_called",
            LiveEvent::TicketIssued { .. } => "ticket_issued",
            LiveEvent::QueueChanged { .. } => "queue_changed",
            LiveEvent::CaseReady { .. } => "case_ready",
            LiveEvent::CaseUpdated { .. } => "case_updated",
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<LiveEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: LiveEvent) {
        // No subscribers is fine: nobody is watching.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }
}
