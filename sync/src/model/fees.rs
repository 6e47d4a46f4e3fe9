//! The fee schedule: per service, the source authority's fee and the center's surcharge
//! (indirect costs: ink, communications, paper), each with the decision that set it and
//! the date it takes effect.
//!
//! [`FeeSchedule::fee_for`] picks, for each part, the latest component effective on or
//! before the case's date. The resulting [`Fee`] is frozen on the case at intake, so a
//! later change of the schedule never changes what a citizen was charged.

use std::collections::BTreeMap;

use jiff::civil::{Date, date};
use serde::{Deserialize, Serialize};

use super::money::Money;

/// One amount, the decision that set it, and the day it takes effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeComponent {
    pub amount: Money,
    pub decision: String,
    pub effective_from: Date,
}

/// The history of one service's fees. Order does not matter; the lookup picks by date.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFees {
    pub authority: Vec<FeeComponent>,
    pub surcharge: Vec<FeeComponent>,
}

/// Per service code, its fee history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    pub services: BTreeMap<String, ServiceFees>,
}

/// The fee charged for one case, frozen on it at intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fee {
    pub authority: Money,
    pub surcharge: Money,
    pub total: Money,
    pub authority_decision: String,
    pub surcharge_decision: String,
}

/// Why no fee can be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("no fees are set for service '{service}'")]
    UnknownService { service: String },
    #[error("no authority fee for service '{service}' is in effect on {date}")]
    NoAuthorityFee { service: String, date: Date },
    #[error("no center surcharge for service '{service}' is in effect on {date}")]
    NoSurcharge { service: String, date: Date },
    #[error("fee total for service '{service}' overflows")]
    Overflow { service: String },
}

impl FeeError {
    /// Stable machine code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            FeeError::UnknownService { .. } => "fee_unknown_service",
            FeeError::NoAuthorityFee { .. } => "fee_not_in_effect",
            FeeError::NoSurcharge { .. } => "surcharge_not_in_effect",
            FeeError::Overflow { .. } => "fee_overflow",
        }
    }

    /// The same message in Arabic.
    pub fn message_ar(&self) -> String {
        match self {
            FeeError::UnknownService { service } => format!("لا توجد رسوم محددة للخدمة '{service}'"),
            FeeError::NoAuthorityFee { service, date } => {
                format!("لا يوجد رسم للجهة المصدرة للخدمة '{service}' نافذ بتاريخ {date}")
            }
            FeeError::NoSurcharge { service, date } => {
                format!("لا يوجد بدل خدمة للمركز للخدمة '{service}' نافذ بتاريخ {date}")
            }
            FeeError::Overflow { service } => format!("مجموع رسوم الخدمة '{service}' كبير جداً"),
        }
    }
}

/// The component in effect on `on`: the latest `effective_from <= on`. Ties (two
/// decisions effective the same day) go to the later one in the list, i.e. the one
/// added last.
fn in_effect(components: &[FeeComponent], on: Date) -> Option<&FeeComponent> {
    components
        .iter()
        .enumerate()
        .filter(|(_, c)| c.effective_from <= on)
        .max_by_key(|(i, c)| (c.effective_from, *i))
        .map(|(_, c)| c)
}

impl FeeSchedule {
    /// The fee for `service_code` on `on` (the case's intake date).
    pub fn fee_for(&self, service_code: &str, on: Date) -> Result<Fee, FeeError> {
        let service = service_code.to_string();
        let fees = self
            .services
            .get(service_code)
            .ok_or_else(|| FeeError::UnknownService {
                service: service.clone(),
            })?;
        let auth = in_effect(&fees.authority, on).ok_or_else(|| FeeError::NoAuthorityFee {
            service: service.clone(),
            date: on,
        })?;
        let sur = in_effect(&fees.surcharge, on).ok_or_else(|| FeeError::NoSurcharge {
            service: service.clone(),
            date: on,
        })?;
        let total = auth
            .amount
            .checked_add(sur.amount)
            .ok_or(FeeError::Overflow { service })?;
        Ok(Fee {
            authority: auth.amount,
            surcharge: sur.amount,
            total,
            authority_decision: auth.decision.clone(),
            surcharge_decision: sur.decision.clone(),
        })
    }

    /// Records a new authority fee for a service (e.g. a ministry's new tariff).
    pub fn add_authority_fee(&mut self, service_code: &str, component: FeeComponent) {
        self.services
            .entry(service_code.to_string())
            .or_default()
            .authority
            .push(component);
    }

    /// Records a new center surcharge for a service (a governorate council decision).
    pub fn add_surcharge(&mut self, service_code: &str, component: FeeComponent) {
        self.services
            .entry(service_code.to_string())
            .or_default()
            .surcharge
            .push(component);
    }

    /// The service codes among `codes` that have no complete fee on `on`: a check for
    /// the catalog and schedule documents to agree.
    pub fn missing<'a>(&self, codes: impl IntoIterator<Item = &'a str>, on: Date) -> Vec<String> {
        codes
            .into_iter()
            .filter(|c| self.fee_for(c, on).is_err())
            .map(str::to_string)
            .collect()
    }
}

/// Plausible fees for the 17 catalog services (amounts in SYP). Authority fees follow
/// each authority's tariff decision; center surcharges were set by the governorate
/// council in 2023 and raised from 2025-07-01.
pub fn default_fee_schedule() -> FeeSchedule {
    // (service, authority fee SYP, authority decision, surcharge 2023 SYP, surcharge 2025 SYP)
    const JUSTICE: &str = "قرار وزير العدل رقم 1840 لعام 2023";
    const CIVIL: &str = "قرار وزير الداخلية رقم 1172 لعام 2023";
    const REAL_ESTATE: &str = "قرار المدير العام للمصالح العقارية رقم 53 لعام 2024";
    const FINANCE: &str = "قرار وزير المالية رقم 2208 لعام 2023";
    let rows: [(&str, i64, &str, i64, i64); 17] = [
        ("criminal_record", 5_000, JUSTICE, 2_000, 3_000),
        ("individual_statement", 2_500, CIVIL, 1_500, 2_000),
        ("birth_statement", 2_500, CIVIL, 1_500, 2_000),
        ("death_statement", 2_500, CIVIL, 1_500, 2_000),
        ("marriage_statement", 2_500, CIVIL, 1_500, 2_000),
        ("divorce_statement", 2_500, CIVIL, 1_500, 2_000),
        ("not_employed_statement", 3_000, CIVIL, 1_500, 2_000),
        ("civil_extract", 3_000, CIVIL, 1_500, 2_500),
        ("temporary_registry", 4_000, CIVIL, 2_000, 2_500),
        ("re_extract", 10_000, REAL_ESTATE, 3_000, 4_000),
        ("cadastral_plan", 15_000, REAL_ESTATE, 4_000, 5_000),
        ("owners_chain", 12_000, REAL_ESTATE, 3_000, 4_000),
        ("ownership_statement", 8_000, REAL_ESTATE, 3_000, 4_000),
        ("property_description", 8_000, REAL_ESTATE, 3_000, 4_000),
        ("certified_copy", 12_000, REAL_ESTATE, 3_000, 4_000),
        ("tax_clearance_individual", 5_000, FINANCE, 2_000, 3_000),
        ("tax_clearance_company", 25_000, FINANCE, 4_000, 6_000),
    ];
    let syp = |v: i64| Money::from_syp(v).unwrap_or(Money::ZERO);
    let mut s = FeeSchedule::default();
    for (code, auth, decision, sur_old, sur_new) in rows {
        s.add_authority_fee(
            code,
            FeeComponent {
                amount: syp(auth),
                decision: decision.into(),
                effective_from: date(2024, 1, 1),
            },
        );
        s.add_surcharge(
            code,
            FeeComponent {
                amount: syp(sur_old),
                decision: "قرار مجلس المحافظة رقم 31 لعام 2023".into(),
                effective_from: date(2024, 1, 1),
            },
        );
        s.add_surcharge(
            code,
            FeeComponent {
                amount: syp(sur_new),
                decision: "قرار مجلس المحافظة رقم 12 لعام 2025".into(),
                effective_from: date(2025, 7, 1),
            },
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalog::default_catalog;

    fn comp(syp: i64, decision: &str, from: Date) -> FeeComponent {
        FeeComponent {
            amount: Money::from_syp(syp).unwrap(),
            decision: decision.into(),
            effective_from: from,
        }
    }

    #[test]
    fn default_schedule_covers_the_catalog() {
        let s = default_fee_schedule();
        let catalog = default_catalog();
        assert!(
            s.missing(catalog.iter().map(|c| c.code.as_str()), date(2026, 3, 1))
                .is_empty()
        );
        assert_eq!(s.services.len(), 17);
        assert!(catalog.iter().all(|c| s.services.contains_key(&c.code)));
    }

    #[test]
    fn picks_the_latest_component_in_effect() {
        let s = default_fee_schedule();
        let before = s.fee_for("criminal_record", date(2025, 6, 30)).unwrap();
        assert_eq!(before.authority, Money::from_syp(5_000).unwrap());
        assert_eq!(before.surcharge, Money::from_syp(2_000).unwrap());
        assert_eq!(before.total, Money::from_syp(7_000).unwrap());
        assert_eq!(
            before.surcharge_decision,
            "قرار مجلس المحافظة رقم 31 لعام 2023"
        );
        let on = s.fee_for("criminal_record", date(2025, 7, 1)).unwrap();
        assert_eq!(on.surcharge, Money::from_syp(3_000).unwrap());
        assert_eq!(on.total, Money::from_syp(8_000).unwrap());
        assert_eq!(on.surcharge_decision, "قرار مجلس المحافظة رقم 12 لعام 2025");
    }

    #[test]
    fn order_of_history_does_not_matter() {
        let mut s = FeeSchedule::default();
        s.add_authority_fee("x", comp(300, "c", date(2026, 1, 1)));
        s.add_authority_fee("x", comp(100, "a", date(2024, 1, 1)));
        s.add_authority_fee("x", comp(200, "b", date(2025, 1, 1)));
        s.add_surcharge("x", comp(10, "s", date(2024, 1, 1)));
        assert_eq!(
            s.fee_for("x", date(2025, 12, 31))
                .unwrap()
                .authority_decision,
            "b"
        );
        assert_eq!(
            s.fee_for("x", date(2026, 1, 1)).unwrap().authority_decision,
            "c"
        );
        assert_eq!(
            s.fee_for("x", date(2024, 1, 1)).unwrap().total,
            Money::from_syp(110).unwrap()
        );
    }

    #[test]
    fn refuses_what_it_cannot_price() {
        let mut s = FeeSchedule::default();
        assert_eq!(
            s.fee_for("x", date(2026, 1, 1)),
            Err(FeeError::UnknownService {
                service: "x".into()
            })
        );
        s.add_authority_fee("x", comp(100, "a", date(2026, 1, 1)));
        assert!(matches!(
            s.fee_for("x", date(2025, 12, 31)),
            Err(FeeError::NoAuthorityFee { .. })
        ));
        assert!(matches!(
            s.fee_for("x", date(2026, 1, 1)),
            Err(FeeError::NoSurcharge { .. })
        ));
        s.add_surcharge(
            "x",
            FeeComponent {
                amount: Money::from_piastres(i64::MAX).unwrap(),
                decision: "big".into(),
                effective_from: date(2026, 1, 1),
            },
        );
        assert!(matches!(
            s.fee_for("x", date(2026, 1, 1)),
            Err(FeeError::Overflow { .. })
        ));
        assert!(
            !FeeError::Overflow {
                service: "x".into()
            }
            .message_ar()
            .is_empty()
        );
    }

    #[test]
    fn frozen_fee_survives_a_schedule_change() {
        let mut s = default_fee_schedule();
        let frozen = s.fee_for("re_extract", date(2026, 2, 1)).unwrap();
        let json = serde_json::to_string(&frozen).unwrap();
        s.add_surcharge(
            "re_extract",
            comp(
                9_000,
                "قرار مجلس المحافظة رقم 4 لعام 2026",
                date(2026, 1, 1),
            ),
        );
        let back: Fee = serde_json::from_str(&json).unwrap();
        assert_eq!(back, frozen);
        assert_ne!(s.fee_for("re_extract", date(2026, 2, 1)).unwrap(), frozen);
    }

    #[test]
    fn schedule_round_trips_through_json() {
        let s = default_fee_schedule();
        let back: FeeSchedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
