//! The hub's pages for conflicts, staff and permissions and the electronic services
//! center, driven through the operator router in-process as a browser would: each page
//! renders (Arabic and English), each form writes only with the session's CSRF token,
//! each write is in the audit log with its operator, roles outside a page are refused,
//! and markup in any field these pages show comes out escaped.

use crate::rig;

use axum::http::{Method, StatusCode, header};
use markaz_hub::casework::{self, HubAction};
use markaz_hub::operators::Role;
use markaz_hub::portal::{self, EPayment, PortalIntake};
use markaz_hub::storage::{HubDb, HubDocs};
use markaz_hub::web::{self, WebOptions};
use markaz_sync::docs;
use markaz_sync::model::case::{Bank, CaseEvent, CaseEventKind, Delivery};
use markaz_sync::model::catalog::Authority;
use markaz_sync::model::citizen::CitizenInput;
use markaz_sync::model::staff::{Permission, Role as StaffRole, StaffMember};
use rig::{PASSWORD, Rig};
use serde_json::Value;

/// Where the pages' requests come from.
const FROM: [u8; 4] = [10, 0, 0, 9];
const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";

/// A browser's session: its cookie and the CSRF token its pages carry.
struct Browser {
    cookie: String,
    csrf: String,
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlenc(k), urlenc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Rig {
    /// A JSON API call with the role's token.
    async fn api(&self, role: Role, path: &str) -> anyhow::Result<Value> {
        let auth = format!("Bearer {}", self.token(role));
        let (s, _, b) = self
            .send(FROM, Method::GET, path, &[("authorization", &auth)], None)
            .await?;
        anyhow::ensure!(s == StatusCode::OK, "GET {path}: {s} {b}");
        Ok(serde_json::from_str(&b)?)
    }

    /// Logs the operator of `role` in through the login form.
    async fn login_as(&self, role: Role) -> anyhow::Result<Browser> {
        let body = format!("username=op-{role}&password={}", urlenc(PASSWORD));
        let (s, h, b) = self
            .send(
                FROM,
                Method::POST,
                "/login",
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(body),
            )
            .await?;
        anyhow::ensure!(s == StatusCode::SEE_OTHER, "login {role}: {s} {b}");
        let cookie = h
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(web::SESSION_COOKIE))
            .map(|c| c.split(';').next().unwrap_or("").to_string())
            .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
        // Any page's form carries the CSRF token.
        let (_, _, html) = self
            .send(FROM, Method::GET, "/account", &[("cookie", &cookie)], None)
            .await?;
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .ok_or_else(|| anyhow::anyhow!("no CSRF token on /account"))?
            .to_string();
        Ok(Browser { cookie, csrf })
    }

    async fn page(&self, b: &Browser, path: &str) -> anyhow::Result<(StatusCode, String)> {
        let (s, _, html) = self
            .send(FROM, Method::GET, path, &[("cookie", &b.cookie)], None)
            .await?;
        Ok((s, html))
    }

    /// Submits a form (with the session's CSRF token unless `csrf` is false): (status,
    /// where it redirects, body).
    async fn submit(
        &self,
        b: &Browser,
        path: &str,
        fields: &[(&str, &str)],
        csrf: bool,
    ) -> anyhow::Result<(StatusCode, String, String)> {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if csrf {
            all.push(("csrf", &b.csrf));
        }
        let (s, h, body) = self
            .send(
                FROM,
                Method::POST,
                path,
                &[
                    ("cookie", &b.cookie),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                Some(form(&all)),
            )
            .await?;
        let to = h
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((s, to, body))
    }

    /// The audit log's kinds of `operator`, newest first.
    async fn audit_kinds(&self, operator: &str) -> anyhow::Result<Vec<(String, Value)>> {
        let rows = self
            .api(
                Role::Oversight,
                &format!("/api/v1/audit?operator={operator}"),
            )
            .await?;
        Ok(rows
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r["kind"].as_str().unwrap_or_default().to_string(), r))
            .collect())
    }
}

fn citizen(nid: &str, address: &str) -> CitizenInput {
    CitizenInput {
        national_id: nid.into(),
        full_name: "ريم الحسن".into(),
        father_name: "أحمد".into(),
        mother_name: "سلمى".into(),
        birth_date: "1990-01-01".into(),
        birth_place: "دمشق".into(),
        phone: "0933123456".into(),
        address: address.into(),
    }
}

/// A service of the default catalog without required fields.
fn simple_service() -> String {
    markaz_sync::model::catalog::default_catalog()
        .into_iter()
        .find(|s| s.fields.iter().all(|f| !f.required))
        .expect("a service without required fields")
        .code
}

fn intake(db: &mut HubDb, nid: &str, delivery: Delivery) -> String {
    let p = PortalIntake {
        citizen: citizen(nid, "دمشق"),
        service: simple_service(),
        fields: Default::default(),
        payment: EPayment {
            reference: format!("EP-{nid}"),
            bank: Bank::CommercialBank,
        },
        delivery,
    };
    portal::intake(db, &p, jiff::Timestamp::now())
        .expect("intake")
        .case_no
}

/// A portal case for pickup at midan, cancelled at the hub (as `by`) while midan
/// delivered it: a conflict.
fn conflicted_case(db: &mut HubDb, nid: &str, by: &str) -> String {
    let no = intake(
        db,
        nid,
        Delivery::Pickup {
            center: "midan".parse().expect("center"),
        },
    );
    casework::act(
        db,
        &no,
        &HubAction::Cancel {
            reason: "the citizen asked".into(),
        },
        by,
        jiff::Timestamp::now(),
    )
    .expect("cancel");
    let (id, _) = casework::find_case(db, &no).expect("case");
    let now = jiff::Timestamp::now();
    let hlc = db.tick_hlc(u64::try_from(now.as_millisecond()).unwrap_or(0));
    let delivered = CaseEvent {
        kind: CaseEventKind::Delivered {
            receiver: nid.parse().expect("national id"),
        },
        actor: "clerk".into(),
        desk: None,
        at: now,
        hlc,
    };
    db.hub_edit(&id, &mut |d| docs::append_case_event(d, &delivered))
        .expect("delivered");
    no
}

fn staff_member(name: &str) -> StaffMember {
    StaffMember {
        username: "rana".into(),
        full_name: name.into(),
        roles: vec![StaffRole::Clerk],
        permissions: vec![Permission {
            authority: Authority::Justice,
            expires_on: jiff::civil::date(2099, 12, 31),
        }],
        active: true,
    }
}

#[tokio::test]
async fn each_page_renders_and_each_form_writes_with_csrf_audited() -> anyhow::Result<()> {
    let mut conflict = String::new();
    let rig = Rig::new(WebOptions::default(), |db| {
        portal::put_staff(db, &"midan".parse().expect("center"), &staff_member("رنا"))
            .expect("staff");
        conflict = conflicted_case(db, "01020304001", "op-eservices");
    })?;

    // Staff and permissions.
    let staff = rig.login_as(Role::Staff).await?;
    for lang in ["ar", "en"] {
        let (s, html) = rig.page(&staff, &format!("/staff?lang={lang}")).await?;
        assert_eq!(s, StatusCode::OK, "{html}");
        assert!(html.contains("staff-midan-rana"), "{html}");
        assert!(html.contains(&format!("lang=\"{lang}\"")), "{html}");
    }
    let grant = [("authority", "civil_affairs"), ("expires_on", "2099-01-31")];
    let (s, _, _) = rig
        .submit(&staff, "/staff/midan/rana/grant", &grant, false)
        .await?;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a form without CSRF writes nothing"
    );
    let (s, to, body) = rig
        .submit(&staff, "/staff/midan/rana/grant", &grant, true)
        .await?;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(to, "/staff?center=midan&done=permission_granted");
    let (s, to, _) = rig
        .submit(
            &staff,
            "/staff/midan/rana/revoke",
            &[("authority", "justice")],
            true,
        )
        .await?;
    assert_eq!(
        (s, to.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/staff?center=midan&done=permission_revoked"
        )
    );
    let (s, _, _) = rig
        .submit(&staff, "/staff/midan/rana/active", &[("active", "0")], true)
        .await?;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let row = rig.api(Role::Staff, "/api/v1/staff/midan/rana").await?;
    assert_eq!(row["hub_active"], false, "{row}");
    assert_eq!(row["active"], false, "{row}");
    let perms = row["permissions"].as_array().cloned().unwrap_or_default();
    let of = |a: &str| perms.iter().find(|p| p["authority"] == a).cloned();
    assert_eq!(
        of("civil_affairs").expect("granted")["expires_on"],
        "2099-01-31"
    );
    assert!(
        of("justice").expect("revoked")["expires_on"].is_null(),
        "{row}"
    );
    let (_, html) = rig
        .page(&staff, "/staff?center=midan&done=staff_deactivated")
        .await?;
    assert!(html.contains("id=\"flash\""), "{html}");
    // A bad date is refused with the form again, nothing written.
    let (s, _, html) = rig
        .submit(
            &staff,
            "/staff/midan/rana/grant",
            &[("authority", "justice"), ("expires_on", "tomorrow")],
            true,
        )
        .await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("id=\"error\""), "{html}");
    let kinds = rig.audit_kinds("op-staff").await?;
    for kind in ["staff.grant", "staff.revoke", "staff.hub_deactivate"] {
        let (_, entry) = kinds
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("{kind} not audited: {kinds:?}"));
        assert_eq!(entry["center"], "midan");
        assert_eq!(entry["address"], "10.0.0.9");
        assert!(
            !entry["before"].is_null() && !entry["after"].is_null(),
            "{entry}"
        );
    }

    // Electronic services: a case by post entered through the form, worked to the post.
    let es = rig.login_as(Role::Eservices).await?;
    let (s, html) = rig.page(&es, "/eservices").await?;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(&conflict), "{html}");
    let service = simple_service();
    let mut enter = vec![
        ("national_id", "01020304002"),
        ("full_name", "سامر الخطيب"),
        ("father_name", "محمد"),
        ("mother_name", "هدى"),
        ("birth_date", "1985-05-05"),
        ("birth_place", "حلب"),
        ("phone", "0944111222"),
        ("address", "حلب"),
        ("service", service.as_str()),
        ("reference", "EP-778899"),
        ("bank", "al_baraka"),
        ("mode", "post"),
        ("center", "midan"),
        ("postal_address", "حلب، شارع بارون ٣"),
    ];
    let (s, to, body) = rig.submit(&es, "/eservices", &enter, true).await?;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let path = to.split('?').next().unwrap_or_default().to_string();
    assert!(path.starts_with("/eservices/WEB-"), "{to}");
    let case_no = path.trim_start_matches("/eservices/").to_string();
    for (action, extra) in [
        ("start", None),
        ("ready", None),
        ("post", Some(("tracking", "RR123456789SY"))),
    ] {
        let mut fields = vec![("action", action)];
        fields.extend(extra);
        let (s, to, body) = rig
            .submit(&es, &format!("{path}/action"), &fields, true)
            .await?;
        assert_eq!(s, StatusCode::SEE_OTHER, "{action}: {body}");
        assert_eq!(to, format!("{path}?done=case_updated"));
    }
    for lang in ["ar", "en"] {
        let (s, html) = rig.page(&es, &format!("{path}?lang={lang}")).await?;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("RR123456789SY"), "{html}");
    }
    let one = rig
        .api(Role::Eservices, &format!("/api/v1/portal/cases/{case_no}"))
        .await?;
    assert_eq!(one["status"], "posted", "{one}");
    assert_eq!(one["tracking"], "RR123456789SY", "{one}");
    // A posted case takes no more stages.
    let (s, _, html) = rig
        .submit(&es, &format!("{path}/action"), &[("action", "start")], true)
        .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{html}");
    // A case for pickup at a chosen center, then cancelled with a reason.
    enter.retain(|(k, _)| *k != "mode" && *k != "national_id");
    enter.push(("mode", "pickup"));
    enter.push(("national_id", "01020304003"));
    let (s, to, body) = rig.submit(&es, "/eservices", &enter, true).await?;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let pickup = to.split('?').next().unwrap_or_default().to_string();
    let (s, _, html) = rig
        .submit(
            &es,
            &format!("{pickup}/action"),
            &[("action", "cancel"), ("reason", "")],
            true,
        )
        .await?;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reason is required: {html}"
    );
    let (s, _, _) = rig
        .submit(
            &es,
            &format!("{pickup}/action"),
            &[("action", "cancel"), ("reason", "طلب المواطن الإلغاء")],
            true,
        )
        .await?;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let pickup_no = pickup.trim_start_matches("/eservices/");
    let one = rig
        .api(
            Role::Oversight,
            &format!("/api/v1/portal/cases/{pickup_no}"),
        )
        .await?;
    assert_eq!(one["status"], "cancelled", "{one}");
    assert_eq!(one["delivery"]["center"], "midan", "{one}");
    // Input the API refuses is refused here, with the form again and what was typed.
    let bad: Vec<(&str, &str)> = enter
        .iter()
        .map(|(k, v)| {
            if *k == "national_id" {
                (*k, "12")
            } else {
                (*k, *v)
            }
        })
        .collect();
    let (s, _, html) = rig.submit(&es, "/eservices", &bad, true).await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("EP-778899"), "the form keeps what was typed");
    let kinds = rig.audit_kinds("op-eservices").await?;
    for kind in [
        "portal.case",
        "case.start",
        "case.ready",
        "case.post",
        "case.cancel",
    ] {
        assert!(kinds.iter().any(|(k, _)| k == kind), "{kind}: {kinds:?}");
    }

    // Conflicts: the operator chooses the outcome with a reason.
    let ov = rig.login_as(Role::Oversight).await?;
    for lang in ["ar", "en"] {
        let (s, html) = rig.page(&ov, &format!("/conflicts?lang={lang}")).await?;
        assert_eq!(s, StatusCode::OK);
        assert!(
            html.contains(&format!("/conflicts/{conflict}/resolve")),
            "{html}"
        );
    }
    let resolve = format!("/conflicts/{conflict}/resolve");
    let (s, _, html) = rig
        .submit(
            &ov,
            &resolve,
            &[("outcome", "delivered"), ("reason", " ")],
            true,
        )
        .await?;
    assert_eq!(s, StatusCode::CONFLICT, "a reason is required: {html}");
    let (s, _, _) = rig
        .submit(
            &ov,
            &resolve,
            &[("outcome", "delivered"), ("reason", "سُلّمت فعلاً")],
            false,
        )
        .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, to, body) = rig
        .submit(
            &ov,
            &resolve,
            &[("outcome", "delivered"), ("reason", "سُلّمت فعلاً")],
            true,
        )
        .await?;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(to, "/conflicts?done=resolved");
    let rows = rig.api(Role::Oversight, "/api/v1/conflicts").await?;
    let row = rows
        .as_array()
        .and_then(|a| a.iter().find(|r| r["case_no"] == conflict.as_str()))
        .cloned()
        .expect("the conflict is listed");
    assert_eq!(row["resolution"]["outcome"], "delivered", "{row}");
    assert_eq!(row["resolution"]["actor"], "op-oversight", "{row}");
    assert_eq!(row["status"], "delivered", "{row}");
    let (_, html) = rig.page(&ov, "/conflicts?lang=en").await?;
    assert!(
        html.contains("سُلّمت فعلاً") && html.contains("op-oversight"),
        "{html}"
    );
    let kinds = rig.audit_kinds("op-oversight").await?;
    let (_, entry) = kinds
        .iter()
        .find(|(k, _)| k == "case.resolve")
        .expect("the resolution is audited");
    assert_eq!(entry["before"]["status"], "cancelled", "{entry}");
    assert_eq!(entry["after"]["case"]["status"], "delivered", "{entry}");

    // Roles outside a page are refused, on the page and on its forms.
    let net = rig.login_as(Role::Network).await?;
    for path in ["/staff", "/eservices", path.as_str(), "/conflicts"] {
        let (s, _) = rig.page(&net, path).await?;
        assert_eq!(s, StatusCode::FORBIDDEN, "network {path}");
    }
    let (s, _) = rig.page(&staff, "/conflicts").await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = rig
        .submit(
            &ov,
            &format!("{pickup}/action"),
            &[("action", "start")],
            true,
        )
        .await?;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "oversight follows portal cases, works none"
    );
    let (s, _, _) = rig.submit(&ov, "/eservices", &enter, true).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = rig
        .submit(&es, "/staff/midan/rana/active", &[("active", "1")], true)
        .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let catalog = rig.login_as(Role::Catalog).await?;
    let (s, _, _) = rig
        .submit(
            &catalog,
            &resolve,
            &[("outcome", "cancelled"), ("reason", "x")],
            true,
        )
        .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    Ok(())
}

/// Both payloads in every field these pages show — a staff member's name, a postal
/// address, a tracking number, a cancellation's reason, a resolution's reason and
/// operator, and everything the intake form echoes back — come out escaped.
#[tokio::test]
async fn markup_in_any_field_of_these_pages_comes_out_escaped() -> anyhow::Result<()> {
    let mut cases = Vec::new();
    let rig = Rig::new(WebOptions::default(), |db| {
        let center = "midan".parse().expect("center");
        portal::put_staff(db, &center, &staff_member(&format!("{SCRIPT}{IMG}"))).expect("staff");
        for (i, p) in [SCRIPT, IMG].iter().enumerate() {
            let no = intake(
                db,
                &format!("0102030401{i}"),
                Delivery::Post {
                    address: (*p).into(),
                },
            );
            for a in [
                HubAction::Start,
                HubAction::Ready,
                HubAction::Post {
                    tracking: (*p).into(),
                },
            ] {
                casework::act(db, &no, &a, p, jiff::Timestamp::now()).expect("stage");
            }
            cases.push(no);
            let c = conflicted_case(db, &format!("0102030402{i}"), p);
            casework::act(
                db,
                &c,
                &HubAction::Resolve {
                    outcome: markaz_sync::model::case::CaseStatus::Delivered,
                    reason: (*p).into(),
                },
                p,
                jiff::Timestamp::now(),
            )
            .expect("resolve");
            let open = conflicted_case(db, &format!("0102030403{i}"), p);
            cases.push(open);
        }
    })?;
    let admin = rig.login_as(Role::Admin).await?;
    let mut paths = vec![
        "/staff".to_string(),
        "/staff?center=midan".to_string(),
        "/conflicts".to_string(),
        "/eservices".to_string(),
        format!("/eservices?status={}", urlenc(SCRIPT)),
    ];
    paths.extend(cases.iter().map(|c| format!("/eservices/{c}")));
    for path in &paths {
        for lang in ["ar", "en"] {
            let sep = if path.contains('?') { '&' } else { '?' };
            let (s, html) = rig.page(&admin, &format!("{path}{sep}lang={lang}")).await?;
            assert_eq!(s, StatusCode::OK, "{path}: {html}");
            assert!(!html.contains(SCRIPT), "{path}: {html}");
            assert!(!html.contains("<img src=x"), "{path}: {html}");
        }
    }
    let (_, html) = rig
        .page(&admin, &format!("/eservices/{}", cases[0]))
        .await?;
    assert!(
        html.contains("&lt;script&gt;"),
        "the payload is shown, escaped: {html}"
    );
    // The intake form echoes what was typed when refused.
    let fields: Vec<(&str, &str)> = [
        "national_id",
        "full_name",
        "father_name",
        "mother_name",
        "birth_date",
        "birth_place",
        "phone",
        "address",
        "service",
        "reference",
        "bank",
        "mode",
        "center",
        "postal_address",
    ]
    .iter()
    .map(|k| (*k, IMG))
    .chain([("f.x.y", SCRIPT)])
    .collect();
    let (s, _, html) = rig.submit(&admin, "/eservices", &fields, true).await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        !html.contains(SCRIPT) && !html.contains("<img src=x"),
        "{html}"
    );
    Ok(())
}
