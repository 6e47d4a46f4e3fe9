//! The link monitor probing a real TCP target on loopback: cut, failover, failback.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use markaz_hardware::link::{
    ChangeReason, LinkMonitor, LinkSettings, Thresholds, Uplink, UplinkChange,
};
use markaz_hardware::modem::{ModemState, ModemStatus};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

async fn next_change(rx: &mut broadcast::Receiver<UplinkChange>) -> Result<UplinkChange> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .context("no uplink change in time")?
        .context("change channel closed")
}

#[tokio::test]
async fn cut_fails_over_to_modem_and_restore_fails_back_after_hold() -> Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut modem = ModemStatus::starting();
    modem.state = ModemState::Ready;
    let (_modem_tx, modem_rx) = watch::channel(modem);

    let hold = Duration::from_millis(400);
    let mut settings = LinkSettings::new(vec![addr.to_string()]);
    settings.interval = Duration::from_millis(50);
    settings.timeout = Duration::from_millis(200);
    settings.thresholds = Thresholds {
        down_after: 3,
        up_after: 3,
    };
    settings.failback_hold = hold;
    let (monitor, _) = LinkMonitor::spawn(settings, modem_rx, cancel.clone());
    let mut changes = monitor.subscribe();

    // Healthy for a while: no change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(monitor.status().borrow().uplink, Uplink::Primary);
    assert!(changes.try_recv().is_err());

    drop(listener);
    let c = next_change(&mut changes).await?;
    assert_eq!(
        c,
        UplinkChange {
            from: Uplink::Primary,
            to: Uplink::Modem,
            reason: ChangeReason::PrimaryDown { failures: 3 }
        }
    );

    let _listener = TcpListener::bind(addr)
        .await
        .context("while restoring the primary target")?;
    let restored = Instant::now();
    let c = next_change(&mut changes).await?;
    let waited = restored.elapsed();
    assert_eq!((c.from, c.to), (Uplink::Modem, Uplink::Primary));
    assert!(
        matches!(c.reason, ChangeReason::PrimaryRestored { held } if held >= hold),
        "{c:?}"
    );
    // Three good rounds (the first one immediately at best) plus the hold.
    assert!(waited >= hold + Duration::from_millis(100), "{waited:?}");
    assert_eq!(monitor.status().borrow().uplink, Uplink::Primary);
    assert!(changes.try_recv().is_err(), "extra change");
    Ok(())
}

#[tokio::test]
async fn without_a_registered_modem_the_uplink_is_offline() -> Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let (modem_tx, modem_rx) = watch::channel(ModemStatus::starting());
    let mut settings = LinkSettings::new(vec![closed.to_string()]);
    settings.interval = Duration::from_millis(30);
    settings.thresholds = Thresholds {
        down_after: 2,
        up_after: 2,
    };
    let (monitor, _) = LinkMonitor::spawn(settings, modem_rx, cancel.clone());
    let mut changes = monitor.subscribe();
    // The first round decides "offline" without a change.
    let mut status = monitor.status();
    tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| s.uplink == Uplink::Offline),
    )
    .await
    .context("offline in time")??;
    assert!(
        changes.try_recv().is_err(),
        "no change while the state was unknown"
    );
    let mut ready = ModemStatus::starting();
    ready.state = ModemState::Ready;
    modem_tx.send_replace(ready);
    let c = next_change(&mut changes).await?;
    assert_eq!(
        (c.to, c.reason),
        (Uplink::Modem, ChangeReason::ModemRegistered)
    );
    Ok(())
}

#[tokio::test]
async fn at_start_the_uplink_is_unknown_until_the_first_round_decides() -> Result<()> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    // The primary's probe target is closed; the modem is registered.
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let mut modem = ModemStatus::starting();
    modem.state = ModemState::Ready;
    let (_modem_tx, modem_rx) = watch::channel(modem);
    let mut settings = LinkSettings::new(vec![closed.to_string()]);
    settings.interval = Duration::from_millis(50);
    let (monitor, _) = LinkMonitor::spawn(settings, modem_rx, cancel.clone());
    let mut changes = monitor.subscribe();
    assert_eq!(
        monitor.status().borrow().uplink,
        Uplink::Unknown,
        "nothing is assumed before a probe"
    );
    let mut status = monitor.status();
    let s = tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| s.uplink != Uplink::Unknown),
    )
    .await
    .context("a decision in time")??
    .clone();
    assert_eq!(
        s.uplink,
        Uplink::Modem,
        "the first failed round picks the modem"
    );
    assert!(s.last_change.is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        changes.try_recv().is_err(),
        "no false primary → modem change"
    );
    assert_eq!(monitor.status().borrow().uplink, Uplink::Modem);
    Ok(())
}
