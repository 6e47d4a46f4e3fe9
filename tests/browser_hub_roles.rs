//! Every role of the hub in a real browser (one chromium for the whole binary): each
//! operator logs in on the Arabic login page, opens every page of the role, makes one
//! write on each page of the role that writes (a dated fee and a service edit on the
//! catalog, a permission granted on the staff page, a new operator for the
//! administrator, the own password for everyone; the electronic services operator enters
//! a portal case, cancels it while the center hands it over, and resolves the conflict
//! that follows), is refused the pages outside the role, and leaves Arabic and English screenshots
//! (tests/output/screenshots/hub-role-*.png).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use browser::Browser;
use markaz_e2e::browser;
use markaz_e2e::{Api, HubProcess, NodeProcess};
use serde_json::json;

const ROLES: [&str; 6] = [
    "admin",
    "oversight",
    "catalog",
    "staff",
    "eservices",
    "network",
];

/// Every page (a GET route of the access table, its parameters filled in) and the roles
/// that may open it; an administrator may open all.
const PAGES: &[(&str, &[&str])] = &[
    ("/account", &ROLES),
    ("/centers", &["oversight", "network"]),
    ("/centers/midan", &["oversight", "network"]),
    ("/sync-log", &["oversight", "network"]),
    ("/energy", &["oversight", "network"]),
    ("/oversight", &["oversight"]),
    ("/stats", &["oversight"]),
    ("/audit", &["oversight"]),
    ("/conflicts", &["oversight", "eservices"]),
    ("/catalog", &["catalog", "eservices", "oversight"]),
    (
        "/catalog/services/criminal_record",
        &["catalog", "eservices", "oversight"],
    ),
    ("/catalog/new", &["catalog"]),
    ("/staff", &["staff"]),
    ("/eservices", &["eservices", "oversight"]),
    ("/operators", &[]),
];

/// The pages whose look is kept as screenshots in both languages.
const SHOWN: &[&str] = &[
    "/catalog",
    "/catalog/services/criminal_record",
    "/oversight",
    "/energy",
    "/conflicts",
    "/staff",
    "/eservices",
];

const PASSWORD: &str = "a long enough password";
const NEW_PASSWORD: &str = "another long password";

fn allowed(role: &str, roles: &[&str]) -> bool {
    role == "admin" || roles.contains(&role)
}

fn shot_name(role: &str, page: &str, lang: &str) -> String {
    let page = page.trim_matches('/').replace('/', "-");
    format!("hub-role-{role}-{page}-{lang}")
}

async fn log_in(b: &Browser, base: &str, user: &str, password: &str) -> Result<()> {
    b.goto(&format!("{base}/login")).await?;
    b.fill("#username", user).await?;
    b.fill("#password", password).await?;
    b.click("#login").await?;
    b.wait_until(
        "a page after the login",
        "return location.pathname !== '/login' && document.readyState === 'complete';",
        Duration::from_secs(20),
    )
    .await
    .with_context(|| format!("while logging in as {user}"))
}

/// Opens `path` and says whether the hub refused it (its error page).
async fn refused(b: &Browser, base: &str, path: &str) -> Result<bool> {
    b.goto(&format!("{base}{path}")).await?;
    b.find("h1").await?;
    let h1 = b.text("h1").await?;
    Ok(h1 == "غير مسموح" || h1 == "Not allowed")
}

/// Waits for the page the form's answer leads to (not the page it was sent from, whose
/// flash of an earlier write may still be showing) to confirm it with its flash.
async fn confirmed(b: &Browser, what: &str) -> Result<()> {
    b.wait_until(
        what,
        "return !window.__sent && document.readyState === 'complete' \
         && !!document.querySelector('#flash') && !document.querySelector('#error');",
        Duration::from_secs(20),
    )
    .await
}

async fn submit_and_confirm(b: &Browser, button: &str, what: &str) -> Result<()> {
    b.js("window.__sent = true; return true;").await?;
    b.click(button).await?;
    confirmed(b, what).await
}

async fn sync(node: &NodeProcess, admin: &Api) -> Result<()> {
    let r = node
        .sync_now(admin)
        .await
        .with_context(|| format!("node log:\n{}", node.log()))?;
    ensure!(r["result"] == "ok", "sync: {r}");
    Ok(())
}

/// The electronic services operator's day on the pages: a portal case entered for pickup
/// at midan; midan works it and hands it over before it hears that the operator cancelled
/// it; the conflict shows on `/conflicts` and the operator lets the handover stand.
async fn portal_case_to_a_resolved_conflict(
    b: &Browser,
    base: &str,
    midan: &NodeProcess,
    midan_admin: &Api,
    desk: &Api,
) -> Result<()> {
    let nid = "09000000031";
    b.goto(&format!("{base}/eservices")).await?;
    for (field, value) in [
        ("national_id", nid),
        ("full_name", "سامر الخطيب"),
        ("father_name", "محمد"),
        ("mother_name", "هدى"),
        ("birth_date", "1985-05-05"),
        ("birth_place", "حلب"),
        ("phone", "0944111222"),
        ("address", "دمشق - الميدان"),
    ] {
        b.fill(&format!("#c-{field}"), value).await?;
    }
    b.js(
        "document.querySelector('#service').value = 'criminal_record'; \
          document.querySelector('#pickup-center').value = 'midan'; return true;",
    )
    .await?;
    b.fill("[name='f.criminal_record.purpose']", "عمل").await?;
    b.fill("#reference", "EP-BROWSER-31").await?;
    submit_and_confirm(b, "#enter", "the portal case entered").await?;
    let path = b.path().await?;
    let no = path
        .strip_prefix("/eservices/")
        .with_context(|| format!("the case's page after the intake: {path}"))?
        .to_string();
    ensure!(no.starts_with("WEB-"), "{no}");
    b.screenshot("hub-role-eservices-case-entered-ar").await?;

    // midan receives it, works it to ready and hands it over, not yet synced...
    sync(midan, midan_admin).await?;
    for step in ["start", "ready"] {
        let (s, r) = desk
            .post(&format!("/cases/{no}/transitions"), json!({"action": step}))
            .await?;
        ensure!(s == 200, "{step}: {s} {r}");
    }
    let (s, r) = desk
        .post(
            &format!("/cases/{no}/transitions"),
            json!({"action": "deliver", "receiver_national_id": nid}),
        )
        .await?;
    ensure!(s == 200 && r["status"] == "delivered", "deliver: {s} {r}");

    // ...while the operator cancels it on the case's page, with a reason.
    b.goto(&format!("{base}/eservices/{no}")).await?;
    b.fill("#reason-input", "طلب المواطن الإلغاء عبر البوابة")
        .await?;
    submit_and_confirm(b, "#action-cancel button", "the case cancelled").await?;
    let status = b.text("#status").await?;
    ensure!(status == "ملغاة", "after the cancel: {status}");

    // Once midan syncs, both ends hold both outcomes: the operator resolves it.
    sync(midan, midan_admin).await?;
    b.goto(&format!("{base}/conflicts")).await?;
    b.find(&format!("#conflict-{no}")).await?;
    b.screenshot("hub-role-eservices-conflict-ar").await?;
    b.js(&format!(
        "document.querySelector('#outcome-{no}').value = 'delivered'; return true;"
    ))
    .await?;
    b.fill(&format!("#reason-{no}"), "سُلّمت الوثيقة للمواطن قبل الإلغاء")
        .await?;
    submit_and_confirm(
        b,
        &format!("#conflict-{no} button[type=submit]"),
        "the conflict resolved",
    )
    .await?;
    let resolution = b.text(&format!("#conflict-{no} .resolution")).await?;
    ensure!(!resolution.is_empty(), "the row shows the decision");
    // The center hears the resolution at its next session.
    sync(midan, midan_admin).await?;
    let (s, case) = desk.get(&format!("/cases/{no}")).await?;
    ensure!(
        s == 200
            && case["status"] == "delivered"
            && case["conflict"]["resolution"]["outcome"] == "delivered",
        "the resolution at midan: {s} {case}"
    );
    Ok(())
}

#[tokio::test]
async fn each_role_opens_its_pages_writes_and_is_refused_the_rest() -> Result<()> {
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    let hub = HubProcess::start(&["midan"]).await?;
    let midan = NodeProcess::start_synced("midan", &hub).await?;
    let midan_admin = midan.login_admin().await?;
    midan_admin
        .create_staff(
            "rana",
            PASSWORD,
            &["clerk", "reception"],
            &[("justice", "2099-12-31")],
        )
        .await?;
    let desk = Api::login(&midan.base_url, "rana", PASSWORD).await?;
    let base = hub.web_url.clone();
    // The center's page exists once it has synced.
    let started = std::time::Instant::now();
    while hub.center_row("midan").await?.is_none() {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "midan never synced"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for role in ROLES {
        let (status, body) = hub
            .api(
                "POST",
                "/operators",
                Some(
                    json!({"username": format!("op-{role}"), "full_name": format!("op {role}"),
                    "roles": [role], "password": PASSWORD}),
                ),
            )
            .await?;
        ensure!(status == 201, "{role}: {status} {body}");
    }
    let today: jiff::civil::Date = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Asia/Damascus")?)
        .date();

    for (i, role) in ROLES.iter().enumerate() {
        let user = format!("op-{role}");
        log_in(&b, &base, &user, PASSWORD).await?;
        let dir = b.js("return document.documentElement.dir").await?;
        ensure!(dir == "rtl", "{role}: Arabic first, got {dir}");

        for (page, roles) in PAGES {
            let may = allowed(role, roles);
            let was_refused = refused(&b, &base, page).await?;
            ensure!(
                was_refused != may,
                "{role} on {page}: {}",
                if may { "refused" } else { "not refused" }
            );
            if may && SHOWN.contains(page) {
                b.check_accessibility()
                    .await
                    .with_context(|| format!("{role} on {page}"))?;
                b.screenshot(&shot_name(role, page, "ar")).await?;
            }
        }

        // The catalog's writes: a dated fee with its council decision, and a service edit.
        if allowed(role, &["catalog"]) {
            let page = "/catalog/services/criminal_record";
            b.goto(&format!("{base}{page}")).await?;
            let day = today.checked_add(jiff::Span::new().days(i as i64 + 1))?;
            // A date input types by the browser's locale; its value is the ISO date.
            b.js(&format!(
                "document.querySelector('#effective_from').value = '{day}'; return true;"
            ))
            .await?;
            b.fill("#center_surcharge", "4000").await?;
            b.fill("#council_decision", &format!("قرار مجلس المحافظة {role}"))
                .await?;
            submit_and_confirm(&b, "#add-fee", "the fee added").await?;
            let hist = b.text("#fee-history").await?;
            ensure!(
                hist.contains(&format!("قرار مجلس المحافظة {role}")),
                "{hist}"
            );
            b.fill("#target_hours", &format!("{}", 30 + i)).await?;
            submit_and_confirm(&b, "#save-service", "the service saved").await?;
            // A refused fee reads in the operator's language, in the form.
            b.fill("#center_surcharge", "abc").await?;
            b.fill("#council_decision", "x").await?;
            b.click("#add-fee").await?;
            b.wait_until(
                "the refusal",
                "return !!document.querySelector('#error');",
                Duration::from_secs(20),
            )
            .await?;
            let error = b.text("#error").await?;
            ensure!(error.contains("مبلغ غير صالح"), "{error}");
            let invalid = b
                .js("return document.querySelector('#center_surcharge').getAttribute('aria-invalid')")
                .await?;
            ensure!(invalid == "true", "the field is marked: {invalid}");
            b.screenshot(&format!("hub-role-{role}-catalog-refused-ar"))
                .await?;
        }
        // Staff and permissions: a permission granted to a center's account until a date.
        if allowed(role, &["staff"]) {
            b.goto(&format!("{base}/staff?center=midan")).await?;
            let day = today.checked_add(jiff::Span::new().days(30 + i as i64))?;
            let found = b
                .js(&format!(
                    "const e = document.querySelector('input[name=expires_on]'); \
                     if (!e) return 'none'; e.value = '{day}'; window.__sent = true; \
                     e.form.requestSubmit(); return 'sent';"
                ))
                .await?;
            ensure!(
                found == "sent",
                "{role}: no account of midan on /staff to grant to"
            );
            confirmed(&b, "the permission granted").await?;
        }
        // Electronic services: a portal case entered, cancelled while the center hands
        // it over, and the conflict that follows resolved, all on the pages.
        if *role == "eservices" {
            portal_case_to_a_resolved_conflict(&b, &base, &midan, &midan_admin, &desk).await?;
        }
        if *role == "admin" {
            b.goto(&format!("{base}/operators")).await?;
            b.fill("#new-username", "made-in-browser").await?;
            b.fill("#new-password", PASSWORD).await?;
            b.click("#add-operator input[value=network]").await?;
            submit_and_confirm(&b, "#add", "the operator added").await?;
        }
        // Everyone's own page writes: the password.
        b.goto(&format!("{base}/account")).await?;
        b.fill("#current", PASSWORD).await?;
        b.fill("#new_password", NEW_PASSWORD).await?;
        submit_and_confirm(&b, "#change-password", "the password changed").await?;

        // English: the toggle, then the same pages in English.
        b.click("#lang-toggle").await?;
        b.wait_until(
            "English",
            "return document.documentElement.lang === 'en' && document.documentElement.dir === 'ltr';",
            Duration::from_secs(10),
        )
        .await?;
        b.screenshot(&format!("hub-role-{role}-account-en")).await?;
        for page in SHOWN {
            let roles = PAGES
                .iter()
                .find(|(p, _)| p == page)
                .map(|(_, r)| *r)
                .context("page")?;
            if allowed(role, roles) {
                ensure!(!refused(&b, &base, page).await?, "{role} {page} in English");
                let lang = b.js("return document.documentElement.lang").await?;
                ensure!(lang == "en", "{role} {page}: {lang}");
                b.screenshot(&shot_name(role, page, "en")).await?;
            }
        }
        b.goto(&format!("{base}/account")).await?;
        b.click("#logout")
            .await
            .with_context(|| format!("{role}: logging out"))?;
        b.wait_until(
            "the login page",
            "return location.pathname === '/login';",
            Duration::from_secs(10),
        )
        .await?;
        // The next operator starts from Arabic, as a new browser would.
        b.client.delete_all_cookies().await?;
        // The new password is the one that works now.
        log_in(&b, &base, &user, NEW_PASSWORD).await?;
        ensure!(
            b.path().await? != "/login",
            "{role}: the new password works"
        );
        b.goto(&format!("{base}/account")).await?;
        b.click("#logout")
            .await
            .with_context(|| format!("{role}: logging out after the new password"))?;
        b.wait_until(
            "the login page",
            "return location.pathname === '/login';",
            Duration::from_secs(10),
        )
        .await?;
        b.client.delete_all_cookies().await?;
    }
    let audit = hub.get("/audit?kind=catalog.").await?;
    let n = audit.as_array().map(Vec::len).unwrap_or(0);
    ensure!(
        n == 4,
        "two catalog roles (catalog, admin) wrote a fee and an edit each: {audit}"
    );
    b.close().await?;
    Ok(())
}
