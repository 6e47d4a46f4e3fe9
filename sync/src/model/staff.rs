//! Staff accounts, their roles and their per-authority permissions.
//!
//! Two separate checks guard every action: the role policy ([`Role::allows`]) says what
//! kind of work an account may do at all (issue tickets, serve a counter, see reports…);
//! the permission check ([`can_process`]) says whether it may process a service of a
//! given authority today. Permissions are opened by the ministries after training and
//! expire; the check is a pure function of the member, the authority and the date, so it
//! holds at an offline center exactly as at the hub.

use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::catalog::Authority;

/// A job at the center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Reception,
    Clerk,
    Supervisor,
    Technician,
    Admin,
}

/// What the API guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    IssueTicket,
    RegisterCitizen,
    ServeCounter,
    CreateCase,
    AdvanceCase,
    TakePayment,
    ViewCases,
    ViewReports,
    ManageStaff,
    ViewTechnical,
    TechnicalActions,
    ViewDisplay,
}

impl Capability {
    pub const ALL: [Capability; 12] = [
        Capability::IssueTicket,
        Capability::RegisterCitizen,
        Capability::ServeCounter,
        Capability::CreateCase,
        Capability::AdvanceCase,
        Capability::TakePayment,
        Capability::ViewCases,
        Capability::ViewReports,
        Capability::ManageStaff,
        Capability::ViewTechnical,
        Capability::TechnicalActions,
        Capability::ViewDisplay,
    ];
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Reception,
        Role::Clerk,
        Role::Supervisor,
        Role::Technician,
        Role::Admin,
    ];

    /// The serde / SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reception => "reception",
            Role::Clerk => "clerk",
            Role::Supervisor => "supervisor",
            Role::Technician => "technician",
            Role::Admin => "admin",
        }
    }

    pub fn name_ar(self) -> &'static str {
        match self {
            Role::Reception => "استقبال",
            Role::Clerk => "موظف نافذة",
            Role::Supervisor => "مشرف",
            Role::Technician => "فني",
            Role::Admin => "مدير النظام",
        }
    }

    /// The role policy.
    /// - reception: tickets, citizen registration and look-up, case look-up, display;
    /// - clerk (front desk): serve a counter, register citizens, create, advance and take
    ///   payment for cases (subject to authority permissions), see cases, display;
    /// - supervisor (policy and oversight): see cases and reports, display;
    /// - technician: the technical pages and safe actions, display;
    /// - admin: everything.
    pub fn allows(self, cap: Capability) -> bool {
        use Capability as C;
        match self {
            Role::Admin => true,
            Role::Reception => matches!(
                cap,
                C::IssueTicket | C::RegisterCitizen | C::ViewCases | C::ViewDisplay
            ),
            Role::Clerk => matches!(
                cap,
                C::ServeCounter
                    | C::RegisterCitizen
                    | C::CreateCase
                    | C::AdvanceCase
                    | C::TakePayment
                    | C::ViewCases
                    | C::ViewDisplay
            ),
            Role::Supervisor => matches!(cap, C::ViewCases | C::ViewReports | C::ViewDisplay),
            Role::Technician => {
                matches!(cap, C::ViewTechnical | C::TechnicalActions | C::ViewDisplay)
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown role spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}' (expected reception, clerk, supervisor, technician or admin)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// Whether any of `roles` allows `cap`.
pub fn roles_allow(roles: &[Role], cap: Capability) -> bool {
    roles.iter().any(|r| r.allows(cap))
}

/// Permission to use one authority's system, valid through `expires_on` (inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub authority: Authority,
    pub expires_on: Date,
}

/// A staff account as the domain sees it (no password: that is the node's business).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMember {
    pub username: String,
    pub full_name: String,
    pub roles: Vec<Role>,
    pub permissions: Vec<Permission>,
    pub active: bool,
}

impl StaffMember {
    /// Whether one of the member's roles allows `cap` (an inactive account allows nothing).
    pub fn allows(&self, cap: Capability) -> bool {
        self.active && roles_allow(&self.roles, cap)
    }
}

/// Why a member may not process a service of an authority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("account '{username}' is deactivated")]
    Inactive { username: String },
    #[error("'{username}' has no permission for the {} system", authority.name_en())]
    NoPermission {
        username: String,
        authority: Authority,
    },
    #[error("'{username}''s permission for the {} system expired on {expired_on}", authority.name_en())]
    Expired {
        username: String,
        authority: Authority,
        expired_on: Date,
    },
}

impl PermissionError {
    /// Stable machine code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            PermissionError::Inactive { .. } => "account_inactive",
            PermissionError::NoPermission { .. } => "no_permission",
            PermissionError::Expired { .. } => "permission_expired",
        }
    }

    pub fn message_ar(&self) -> String {
        match self {
            PermissionError::Inactive { username } => format!("الحساب '{username}' معطّل"),
            PermissionError::NoPermission {
                username,
                authority,
            } => {
                format!("لا يملك '{username}' صلاحية على نظام {}", authority.name_ar())
            }
            PermissionError::Expired {
                username,
                authority,
                expired_on,
            } => {
                format!(
                    "انتهت صلاحية '{username}' على نظام {} بتاريخ {expired_on}",
                    authority.name_ar()
                )
            }
        }
    }
}

/// Whether `member` may create or advance a case of `authority` on `today`: the account is
/// active and holds a permission for the authority that has not expired (the expiry day
/// itself still counts). Of several permissions for one authority the latest expiry wins.
pub fn can_process(
    member: &StaffMember,
    authority: Authority,
    today: Date,
) -> Result<(), PermissionError> {
    let username = member.username.clone();
    if !member.active {
        return Err(PermissionError::Inactive { username });
    }
    let latest = member
        .permissions
        .iter()
        .filter(|p| p.authority == authority)
        .map(|p| p.expires_on)
        .max();
    match latest {
        None => Err(PermissionError::NoPermission {
            username,
            authority,
        }),
        Some(expires_on) if expires_on < today => Err(PermissionError::Expired {
            username,
            authority,
            expired_on: expires_on,
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn clerk(perms: Vec<Permission>) -> StaffMember {
        StaffMember {
            username: "rana".into(),
            full_name: "رنا الخطيب".into(),
            roles: vec![Role::Clerk],
            permissions: perms,
            active: true,
        }
    }

    #[test]
    fn permission_valid_through_expiry_day() {
        let m = clerk(vec![Permission {
            authority: Authority::CivilAffairs,
            expires_on: date(2026, 6, 30),
        }]);
        assert_eq!(
            can_process(&m, Authority::CivilAffairs, date(2026, 6, 30)),
            Ok(())
        );
        let err = can_process(&m, Authority::CivilAffairs, date(2026, 7, 1)).unwrap_err();
        assert_eq!(err.code(), "permission_expired");
        assert!(err.to_string().contains("2026-06-30"));
        let err = can_process(&m, Authority::Justice, date(2026, 1, 1)).unwrap_err();
        assert_eq!(
            err,
            PermissionError::NoPermission {
                username: "rana".into(),
                authority: Authority::Justice
            }
        );
        assert!(err.message_ar().contains("وزارة العدل"));
    }

    #[test]
    fn latest_grant_wins_and_inactive_refuses() {
        let mut m = clerk(vec![
            Permission {
                authority: Authority::Justice,
                expires_on: date(2025, 1, 1),
            },
            Permission {
                authority: Authority::Justice,
                expires_on: date(2027, 1, 1),
            },
        ]);
        assert_eq!(
            can_process(&m, Authority::Justice, date(2026, 1, 1)),
            Ok(())
        );
        m.active = false;
        assert_eq!(
            can_process(&m, Authority::Justice, date(2026, 1, 1))
                .unwrap_err()
                .code(),
            "account_inactive"
        );
        assert!(!m.allows(Capability::CreateCase));
    }

    #[test]
    fn role_policy() {
        use Capability as C;
        for cap in Capability::ALL {
            assert!(Role::Admin.allows(cap));
        }
        assert!(Role::Reception.allows(C::IssueTicket));
        assert!(!Role::Reception.allows(C::CreateCase));
        assert!(!Role::Reception.allows(C::ServeCounter));
        assert!(
            Role::Clerk.allows(C::ServeCounter)
                && Role::Clerk.allows(C::TakePayment)
                && Role::Clerk.allows(C::AdvanceCase)
        );
        assert!(!Role::Clerk.allows(C::ViewReports) && !Role::Clerk.allows(C::ManageStaff));
        assert!(Role::Supervisor.allows(C::ViewReports) && Role::Supervisor.allows(C::ViewCases));
        assert!(
            !Role::Supervisor.allows(C::CreateCase) && !Role::Supervisor.allows(C::ManageStaff)
        );
        assert!(Role::Technician.allows(C::TechnicalActions));
        assert!(!Role::Technician.allows(C::ViewCases));
        for r in Role::ALL {
            assert!(r.allows(C::ViewDisplay));
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            if r != Role::Admin {
                assert!(!r.allows(C::ManageStaff), "{r}");
            }
        }
        assert!(roles_allow(
            &[Role::Reception, Role::Technician],
            C::ViewTechnical
        ));
        assert!("boss".parse::<Role>().is_err());
    }

    #[test]
    fn staff_serde() {
        let m = clerk(vec![Permission {
            authority: Authority::RealEstateDirectorate,
            expires_on: date(2026, 12, 31),
        }]);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["roles"][0], "clerk");
        assert_eq!(
            json["permissions"][0]["authority"],
            "real_estate_directorate"
        );
        assert_eq!(json["permissions"][0]["expires_on"], "2026-12-31");
        assert_eq!(serde_json::from_value::<StaffMember>(json).unwrap(), m);
    }
}
