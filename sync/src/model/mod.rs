//! Domain value types and rules shared by node and hub: identifiers, money, the service
//! catalog and fee schedule, citizen profiles, the case lifecycle and staff permissions.
//!
//! Everything here is pure (no IO, no clock, no storage): values can only be built valid,
//! state machines return typed errors, and the same functions run at a center, at the hub
//! and in tests. Field errors are reported all at once as [`FieldError`]s with English and
//! Arabic messages.

pub mod case;
pub mod catalog;
pub mod citizen;
pub mod fees;
pub mod ids;
pub mod money;
pub mod staff;

pub use case::{
    Bank, CaseAction, CaseEvent, CaseEventKind, CaseStatus, Conflict, Delivery, Derived,
    IllegalTransition, Payment, TransitionFault, apply, derive,
};
pub use catalog::{
    Authority, FieldError, FieldKind, FieldSpec, Service, ServiceGroup, default_catalog,
    find_service, validate_fields,
};
pub use citizen::{CitizenInput, CitizenProfile};
pub use fees::{Fee, FeeComponent, FeeError, FeeSchedule, default_fee_schedule};
pub use ids::{CaseNo, CenterId, IdError, NationalId, PhoneNumber, ReceiptNo};
pub use money::{Money, MoneyError};
pub use staff::{Capability, Permission, PermissionError, Role, StaffMember, can_process};
