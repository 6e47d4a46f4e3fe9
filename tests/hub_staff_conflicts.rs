//! The data the hub and a center share, as real `markaz` processes (a hub and the midan
//! node on loopback, mutual TLS):
//!
//! - staff accounts: an account created at the center appears at the hub after a sync
//!   (with its permissions, and a password hash the hub never shows); a grant, a
//!   revocation and a deactivation made at the hub reach the center at its next sync and
//!   take effect there (the permission is refused, the login is refused, and the
//!   center's admin cannot lift the hub's deactivation);
//! - conflicts: a portal case cancelled at the hub with a reason while the center hands
//!   it over is a conflict at both ends; an operator resolves it at the hub with a
//!   reason; after the center's next sync both ends read the same status and show the
//!   resolution, and neither lists it as unresolved any more;
//! - the electronic services center: a portal case sent by post is followed at the hub
//!   to its hand-over to the post with a tracking number.

use anyhow::{Context, Result, ensure};
use markaz_e2e::{Api, HubProcess, NodeProcess, citizen_json};
use serde_json::{Value, json};

const PW: &str = "rana-long-password";
const NID: &str = "03000000001";

async fn sync(node: &NodeProcess, admin: &Api) -> Result<()> {
    let r = node
        .sync_now(admin)
        .await
        .with_context(|| format!("node log:\n{}", node.log()))?;
    ensure!(r["result"] == "ok", "sync: {r}");
    Ok(())
}

fn staff_of<'a>(list: &'a Value, user: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|s| s["username"] == user)
}

#[tokio::test]
async fn staff_accounts_sync_both_ways_and_the_hub_decides_what_it_owns() -> Result<()> {
    let hub = HubProcess::start(&["midan"]).await?;
    let node = NodeProcess::start_synced("midan", &hub).await?;
    let admin = node.login_admin().await?;
    admin
        .create_staff(
            "rana",
            PW,
            &["clerk", "reception"],
            &[("justice", "2099-12-31")],
        )
        .await?;
    let rana = Api::login(&node.base_url, "rana", PW).await?;
    let (s, b) = rana
        .post("/citizens", citizen_json(NID, "0944000001"))
        .await?;
    ensure!(s == 201 || s == 200, "citizen: {s} {b}");
    sync(&node, &admin).await?;

    // The account created at the center is at the hub, with its permission.
    let list = hub.get("/staff?center=midan").await?;
    let r = staff_of(&list, "rana").context(format!("rana at the hub: {list}"))?;
    ensure!(r["center"] == "midan" && r["active"] == true, "{r}");
    ensure!(r["roles"] == json!(["clerk", "reception"]), "{r}");
    ensure!(r["has_password"] == true, "{r}");
    ensure!(
        !r.to_string().contains("argon2"),
        "the hub never shows a hash: {r}"
    );
    let perms = r["permissions"].as_array().context("permissions")?;
    ensure!(
        perms
            .iter()
            .any(|p| p["authority"] == "justice" && p["expires_on"] == "2099-12-31"),
        "{r}"
    );
    // The bootstrap admin is there too (accounts made before this sync).
    ensure!(staff_of(&list, "admin").is_some(), "{list}");

    // A grant at the hub reaches the center.
    let (s, b) = hub
        .api(
            "POST",
            "/staff/midan/rana/permissions",
            Some(json!({"authority": "civil_affairs", "expires_on": "2099-06-30"})),
        )
        .await?;
    ensure!(s == 200, "grant at the hub: {s} {b}");
    sync(&node, &admin).await?;
    let (s, b) = admin.get("/staff/rana").await?;
    ensure!(s == 200, "{b}");
    ensure!(
        b["permissions"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["authority"] == "civil_affairs")),
        "the hub's grant at the center: {b}"
    );

    // A revocation at the hub takes effect at the center: the permission is refused.
    let (s, b) = rana
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record"}),
        )
        .await?;
    ensure!(s == 201, "before the revocation: {s} {b}");
    let (s, b) = hub
        .api("DELETE", "/staff/midan/rana/permissions/justice", None)
        .await?;
    ensure!(s == 200, "revoke at the hub: {s} {b}");
    sync(&node, &admin).await?;
    let (s, b) = rana
        .post(
            "/cases",
            json!({"national_id": NID, "service": "criminal_record"}),
        )
        .await?;
    ensure!(s == 403, "after the revocation: {s} {b}");
    ensure!(b["error"]["code"] == "permission_missing", "{b}");

    // A deactivation at the hub: the session ends and the login is refused, and the
    // center's admin cannot lift it.
    let (s, b) = hub
        .api("POST", "/staff/midan/rana/deactivate", None)
        .await?;
    ensure!(
        s == 200 && b["hub_active"] == false && b["active"] == false,
        "{s} {b}"
    );
    sync(&node, &admin).await?;
    let (s, _) = rana.get("/auth/me").await?;
    ensure!(s == 401, "rana's session after the hub's deactivation: {s}");
    ensure!(
        Api::login(&node.base_url, "rana", PW).await.is_err(),
        "rana logged in after the hub deactivated her"
    );
    let (s, b) = admin
        .post("/staff/rana/active", json!({"active": true}))
        .await?;
    ensure!(s == 200, "{s} {b}");
    ensure!(
        b["active"] == false && b["deactivated_at_hub"] == true,
        "the center's switch does not lift the hub's: {b}"
    );
    ensure!(Api::login(&node.base_url, "rana", PW).await.is_err());
    // The hub reactivates: she logs in again with her own password.
    let (s, b) = hub.api("POST", "/staff/midan/rana/activate", None).await?;
    ensure!(s == 200, "{s} {b}");
    sync(&node, &admin).await?;
    Api::login(&node.base_url, "rana", PW)
        .await
        .context("rana after the hub reactivated her")?;

    // A deactivation at the center is its own: it reaches the hub as the center's switch.
    let (s, b) = admin
        .post("/staff/rana/active", json!({"active": false}))
        .await?;
    ensure!(s == 200, "{s} {b}");
    sync(&node, &admin).await?;
    let r = hub.get("/staff/midan/rana").await?;
    ensure!(
        r["center_active"] == false && r["hub_active"] == true && r["active"] == false,
        "{r}"
    );
    Ok(())
}

#[tokio::test]
async fn a_conflict_resolved_at_the_hub_reads_the_same_at_both_ends() -> Result<()> {
    let hub = HubProcess::start(&["midan"]).await?;
    let node = NodeProcess::start_synced("midan", &hub).await?;
    let admin = node.login_admin().await?;
    admin
        .create_staff(
            "rana",
            PW,
            &["clerk", "reception"],
            &[("justice", "2099-12-31")],
        )
        .await?;
    let desk = Api::login(&node.base_url, "rana", PW).await?;
    let portal_nid = "09000000007";
    let intake = json!({
        "citizen": citizen_json(portal_nid, "0955123457"),
        "service": "criminal_record",
        "payment": {"reference": "EP-E2E-7", "bank": "commercial_bank"},
        "delivery": {"mode": "pickup", "center": "midan"}
    });
    let (s, created) = hub.api("POST", "/portal/cases", Some(intake)).await?;
    ensure!(s == 201, "portal intake: {s} {created}");
    let no = created["case_no"].as_str().context("case_no")?.to_string();
    sync(&node, &admin).await?;

    // The center works the case to ready and hands it over, not yet synced...
    for step in ["start", "ready"] {
        let (s, b) = desk
            .post(&format!("/cases/{no}/transitions"), json!({"action": step}))
            .await?;
        ensure!(s == 200, "{step}: {s} {b}");
    }
    let (s, b) = desk
        .post(
            &format!("/cases/{no}/transitions"),
            json!({"action": "deliver", "receiver_national_id": portal_nid}),
        )
        .await?;
    ensure!(s == 200 && b["status"] == "delivered", "deliver: {s} {b}");
    // ...while the electronic services center cancels it with a reason.
    let (s, b) = hub
        .api(
            "POST",
            &format!("/cases/{no}/actions"),
            Some(json!({"action": "cancel", "reason": "طلب المواطن الإلغاء عبر البوابة"})),
        )
        .await?;
    ensure!(
        s == 200 && b["status"] == "cancelled",
        "cancel at the hub: {s} {b}"
    );
    // A cancellation without a reason is refused.
    let (s, b) = hub
        .api(
            "POST",
            &format!("/cases/{no}/actions"),
            Some(json!({"action": "cancel", "reason": "  "})),
        )
        .await?;
    ensure!(s == 409 || s == 422, "{s} {b}");
    sync(&node, &admin).await?;

    // Both ends see the conflict, unresolved, and read the same status.
    let conflicts = hub.get("/conflicts").await?;
    let c = conflicts
        .as_array()
        .and_then(|a| a.iter().find(|c| c["case_no"] == no.as_str()))
        .context(format!("the conflict at the hub: {conflicts}"))?
        .clone();
    ensure!(c["resolution"].is_null(), "{c}");
    let mut outcomes: Vec<String> = c["outcomes"]
        .as_array()
        .context("outcomes")?
        .iter()
        .filter_map(|o| o.as_str().map(String::from))
        .collect();
    outcomes.sort();
    ensure!(outcomes == ["cancelled", "delivered"], "{c}");
    let (s, at_node) = desk.get("/conflicts").await?;
    ensure!(s == 200, "{at_node}");
    ensure!(
        at_node
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["case_no"] == no.as_str())),
        "the conflict at the center: {at_node}"
    );
    let hub_case = hub.get(&format!("/portal/cases/{no}")).await?;
    let (_, node_case) = desk.get(&format!("/cases/{no}")).await?;
    ensure!(
        hub_case["status"] == node_case["status"] && node_case["status"] == "delivered",
        "before the resolution, the hand-over came first: {hub_case} vs {node_case}"
    );

    // Resolving needs one of the two outcomes and a reason.
    let (s, b) = hub
        .api(
            "POST",
            &format!("/cases/{no}/actions"),
            Some(json!({"action": "resolve", "outcome": "ready", "reason": "x"})),
        )
        .await?;
    ensure!(s == 409, "an outcome outside the conflict: {s} {b}");
    // The operator lets the cancellation stand (the fee is refunded, the document
    // withdrawn): the status changes from what the fold gave, at both ends.
    let reason = "أعيد الرسم للمواطن وسُحبت الوثيقة";
    let (s, b) = hub
        .api(
            "POST",
            &format!("/cases/{no}/actions"),
            Some(json!({"action": "resolve", "outcome": "cancelled", "reason": reason})),
        )
        .await?;
    ensure!(s == 200 && b["status"] == "cancelled", "resolve: {s} {b}");
    sync(&node, &admin).await?;

    // Both ends agree, and show the resolution.
    let (s, node_case) = desk.get(&format!("/cases/{no}")).await?;
    ensure!(s == 200, "{node_case}");
    ensure!(node_case["status"] == "cancelled", "{node_case}");
    ensure!(
        node_case["conflict"]["resolution"]["reason"] == reason
            && node_case["conflict"]["resolution"]["outcome"] == "cancelled",
        "the resolution at the center: {node_case}"
    );
    ensure!(
        node_case["events"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["kind"]["kind"] == "resolved" || e["kind"] == "resolved")),
        "the resolution is an event of the case: {node_case}"
    );
    let hub_case = hub.get(&format!("/portal/cases/{no}")).await?;
    ensure!(
        hub_case["status"] == "cancelled" && hub_case["resolved"] == true,
        "{hub_case}"
    );
    let (_, open) = desk.get("/conflicts").await?;
    ensure!(
        open.as_array().is_some_and(|a| a.is_empty()),
        "nothing unresolved at the center: {open}"
    );
    let (_, all) = desk.get("/conflicts?all=true").await?;
    ensure!(
        all.as_array().is_some_and(|a| a
            .iter()
            .any(|c| c["case_no"] == no.as_str() && c["resolution"]["reason"] == reason)),
        "{all}"
    );
    let conflicts = hub.get("/conflicts").await?;
    ensure!(
        conflicts.as_array().is_some_and(|a| a
            .iter()
            .any(|c| c["case_no"] == no.as_str() && c["resolution"]["outcome"] == "cancelled")),
        "{conflicts}"
    );
    Ok(())
}

#[tokio::test]
async fn the_electronic_services_center_follows_a_post_case_to_the_post() -> Result<()> {
    let hub = HubProcess::start(&["midan"]).await?;
    let intake = json!({
        "citizen": citizen_json("09000000008", "0955123458"),
        "service": "criminal_record",
        "payment": {"reference": "EP-E2E-8", "bank": "bemo"},
        "delivery": {"mode": "post", "address": "دمشق - المزة - جادة 14"}
    });
    let (s, created) = hub.api("POST", "/portal/cases", Some(intake)).await?;
    ensure!(s == 201, "portal intake: {s} {created}");
    let no = created["case_no"].as_str().context("case_no")?.to_string();
    let path = format!("/cases/{no}/actions");
    // Not ready yet: posting is refused, naming the state.
    let (s, b) = hub
        .api(
            "POST",
            &path,
            Some(json!({"action": "post", "tracking": "RR123456789SY"})),
        )
        .await?;
    ensure!(
        s == 409 && b["error"]["code"] == "illegal_transition",
        "{s} {b}"
    );
    for step in ["start", "ready"] {
        let (s, b) = hub
            .api("POST", &path, Some(json!({"action": step})))
            .await?;
        ensure!(s == 200, "{step}: {s} {b}");
    }
    let (s, b) = hub
        .api(
            "POST",
            &path,
            Some(json!({"action": "post", "tracking": "RR123456789SY"})),
        )
        .await?;
    ensure!(s == 200 && b["status"] == "posted", "{s} {b}");
    ensure!(b["tracking"] == "RR123456789SY", "{b}");
    let list = hub.get("/portal/cases?status=posted").await?;
    ensure!(
        list.as_array()
            .is_some_and(|a| a.iter().any(|c| c["case_no"] == no.as_str())),
        "{list}"
    );
    // A posted case cannot be cancelled any more.
    let (s, b) = hub
        .api(
            "POST",
            &path,
            Some(json!({"action": "cancel", "reason": "late"})),
        )
        .await?;
    ensure!(s == 409, "{s} {b}");
    Ok(())
}
