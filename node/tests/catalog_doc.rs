//! The hub's catalog document drives what a center offers: a service the hub added and
//! its fee are offered after a restart, offline, from the document stored on disk — not
//! only right after the sync that brought them.

use markaz_config::NodeConfig;
use markaz_node::app::Clock;
use markaz_sync::docs::{self as sync_docs, DocId};
use markaz_sync::model::catalog::default_catalog;
use markaz_sync::model::fees::{FeeComponent, ServiceFees};
use markaz_sync::model::money::Money;

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.storage.data_dir = dir.join("data");
    cfg.auth.initial_admin_password = Some("admin-password-1".into());
    cfg
}

#[tokio::test]
async fn a_restarted_node_offers_the_hubs_services_and_fees() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let now: jiff::Timestamp = "2026-11-29T06:00:00Z".parse().unwrap();
    let day = jiff::civil::date(2026, 11, 1);

    let mut added = default_catalog()[0].clone();
    added.code = "well_permit".into();
    added.name_en = "Well drilling permit".into();
    added.name_ar = "رخصة حفر بئر".into();
    let mut renamed = default_catalog()[1].clone();
    renamed.name_en = "Renamed at the hub".into();
    let fees = ServiceFees {
        authority: vec![FeeComponent {
            amount: Money::from_syp(25_000).unwrap(),
            decision: "قرار رقم 9 لعام 2026".into(),
            effective_from: day,
        }],
        surcharge: vec![FeeComponent {
            amount: Money::from_syp(5_000).unwrap(),
            decision: "قرار المجلس رقم 3 لعام 2026".into(),
            effective_from: day,
        }],
    };

    {
        let app = markaz_node::center::open(&cfg, Clock::manual(now))
            .await
            .unwrap();
        assert!(app.service("well_permit").is_err(), "not built in");
        let (a, r, f) = (added.clone(), renamed.clone(), fees.clone());
        app.db
            .writer
            .write(move |tx| {
                tx.docs
                    .create(tx.conn, &DocId::catalog(), |doc| {
                        sync_docs::write_service(doc, &a)?;
                        sync_docs::write_service(doc, &r)?;
                        sync_docs::write_fees(doc, &a.code, &f)
                    })
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap();
    }

    let app = markaz_node::center::open(&cfg, Clock::manual(now))
        .await
        .unwrap();
    let svc = app
        .service("well_permit")
        .expect("the hub's new service is offered");
    assert_eq!(svc.name_en, "Well drilling permit");
    assert_eq!(
        app.service(&renamed.code).unwrap().name_en,
        "Renamed at the hub"
    );
    // Every built-in service the document does not mention is still offered.
    assert_eq!(app.catalog().len(), default_catalog().len() + 1);
    let fee = app
        .fees()
        .fee_for("well_permit", jiff::civil::date(2026, 11, 29))
        .expect("its fee is known after the restart");
    assert_eq!(fee.authority, Money::from_syp(25_000).unwrap());
    assert_eq!(fee.surcharge, Money::from_syp(5_000).unwrap());
    // The built-in services keep their fees.
    for s in default_catalog() {
        app.fees()
            .fee_for(&s.code, jiff::civil::date(2026, 11, 29))
            .unwrap_or_else(|e| panic!("{}: {e}", s.code));
    }
}
