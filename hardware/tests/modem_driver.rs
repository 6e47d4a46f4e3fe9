//! The modem driver against the emulator on a real pseudo-terminal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use markaz_hardware::modem::emulator::{self, EmulatorHandle, Hang};
use markaz_hardware::modem::sms::PhoneNumber;
use markaz_hardware::modem::status::{RegStatus, SimState};
use markaz_hardware::modem::{
    ModemHandle, ModemSettings, ModemState, ModemStatus, Quectel, SmsSendError,
};
use tokio_util::sync::CancellationToken;

/// A driver and an emulator wired through a pty, with short timeouts.
struct Rig {
    emu: EmulatorHandle,
    modem: ModemHandle,
    cancel: CancellationToken,
}

impl Rig {
    async fn start() -> Result<Self> {
        Self::start_with(|_| {}, |_| {}).await
    }

    async fn start_with(
        knobs: impl FnOnce(&EmulatorHandle),
        settings: impl FnOnce(&mut ModemSettings),
    ) -> Result<Self> {
        let cancel = CancellationToken::new();
        let (emu, _) = emulator::start(cancel.clone()).context("while starting the emulator")?;
        emu.set_pace(None);
        knobs(&emu);
        let mut s = ModemSettings::new(emu.path());
        s.poll_interval = Duration::from_millis(300);
        s.command_timeout = Duration::from_millis(500);
        s.sms_timeout = Duration::from_secs(2);
        s.hung_after_timeouts = 3;
        s.reset_settle = Duration::from_millis(200);
        s.resets_before_dead = 2;
        s.dead_retry_interval = Duration::from_secs(60);
        s.pdp_timeout = Duration::from_secs(2);
        s.connect_timeout = Duration::from_secs(3);
        settings(&mut s);
        let (modem, _) = ModemHandle::spawn(s, Arc::new(Quectel), cancel.clone());
        Ok(Self { emu, modem, cancel })
    }

    async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&ModemStatus) -> bool,
    ) -> Result<ModemStatus> {
        let mut rx = self.modem.status();
        let got = match tokio::time::timeout(limit, rx.wait_for(|s| pred(s))).await {
            Ok(Ok(s)) => Some(s.clone()),
            Ok(Err(_)) => bail!("driver stopped while waiting for {what}"),
            Err(_) => None,
        };
        match got {
            Some(s) => Ok(s),
            None => bail!(
                "timed out waiting for {what}; last status {:?}",
                *rx.borrow()
            ),
        }
    }

    async fn ready(&self) -> Result<ModemStatus> {
        self.wait_for("Ready", Duration::from_secs(8), |s| {
            s.state == ModemState::Ready
        })
        .await
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn syria() -> PhoneNumber {
    PhoneNumber::parse("+963944123456").expect("valid number")
}

#[tokio::test]
async fn init_and_status() -> Result<()> {
    let rig = Rig::start().await?;
    let s = rig.ready().await?;
    assert_eq!(s.sim, SimState::Ready);
    let signal = s.signal.context("signal")?;
    assert_eq!(signal.dbm(), Some(-73));
    assert_eq!(signal.bars(), 5);
    assert_eq!(s.registration_cs.map(|r| r.status), Some(RegStatus::Home));
    assert_eq!(s.registration_ps.and_then(|r| r.lac), Some(0x1A2B));
    assert_eq!(s.operator.and_then(|o| o.name).as_deref(), Some("SYRIATEL"));
    let nt = s.network_time.context("network time")?;
    let skew = (nt.network.as_second() - nt.read_at.as_second()).abs();
    assert!(skew <= 2, "network time skew {skew}s");
    assert!(s.last_ok.is_some());
    let cmds = rig.emu.commands();
    for c in ["ATE0", "AT+CMEE=1", "AT+CMGF=0"] {
        assert!(cmds.iter().any(|x| x == c), "{c} not sent: {cmds:?}");
    }
    rig.emu.set_signal(5);
    assert!(rig.modem.poll_now().await);
    let s = rig.modem.status().borrow().clone();
    assert_eq!(s.signal.and_then(|x| x.dbm()), Some(-103));
    assert_eq!(s.signal.map(|x| x.bars()), Some(2));
    Ok(())
}

#[tokio::test]
async fn missing_sim_is_reported_and_refuses_sms() -> Result<()> {
    let rig = Rig::start_with(|e| e.set_sim_present(false), |_| {}).await?;
    let s = rig
        .wait_for("NoSim", Duration::from_secs(5), |s| {
            s.state == ModemState::NoSim
        })
        .await?;
    assert_eq!(s.sim, SimState::Missing);
    let err = rig.modem.send_sms(&syria(), "hello").await.unwrap_err();
    assert!(matches!(err, SmsSendError::Unavailable(_)), "{err:?}");
    rig.emu.set_sim_present(true);
    rig.modem.poll_now().await;
    rig.ready().await?;
    Ok(())
}

#[tokio::test]
async fn registration_loss_by_urc() -> Result<()> {
    // Polls are far apart: only the URC can explain a quick change.
    let rig = Rig::start_with(|_| {}, |s| s.poll_interval = Duration::from_secs(60)).await?;
    rig.ready().await?;
    rig.emu.set_registration(0, true);
    let s = rig
        .wait_for("NotRegistered", Duration::from_secs(2), |s| {
            s.state == ModemState::NotRegistered
        })
        .await?;
    assert_eq!(
        s.registration_cs.map(|r| r.status),
        Some(RegStatus::NotRegistered)
    );
    rig.emu.set_registration(5, true);
    let s = rig.ready().await?;
    assert_eq!(
        s.registration_ps.map(|r| r.status),
        Some(RegStatus::Roaming)
    );
    Ok(())
}

#[tokio::test]
async fn registration_loss_by_poll() -> Result<()> {
    let rig = Rig::start().await?;
    rig.ready().await?;
    rig.emu.set_registration(2, false);
    let s = rig
        .wait_for("NotRegistered", Duration::from_secs(3), |s| {
            s.state == ModemState::NotRegistered
        })
        .await?;
    assert_eq!(
        s.registration_cs.map(|r| r.status),
        Some(RegStatus::Searching)
    );
    Ok(())
}

#[tokio::test]
async fn hang_is_cured_by_reset() -> Result<()> {
    let rig = Rig::start().await?;
    rig.ready().await?;
    rig.emu.set_hang(Hang::UntilReset);
    rig.wait_for("Resetting", Duration::from_secs(5), |s| {
        s.state == ModemState::Resetting
    })
    .await?;
    let s = rig.ready().await?;
    assert!(rig.emu.resets() >= 1);
    assert_eq!(s.consecutive_timeouts, 0);
    // Echo came back on with the reset; the driver turned it off again and works.
    let refs = rig.modem.send_sms(&syria(), "back").await?;
    assert_eq!(refs.len(), 1);
    Ok(())
}

#[tokio::test]
async fn hang_forever_is_dead_with_reason() -> Result<()> {
    let rig = Rig::start().await?;
    rig.ready().await?;
    rig.emu.set_hang(Hang::Forever);
    let s = rig
        .wait_for("Dead", Duration::from_secs(15), |s| {
            s.state == ModemState::Dead
        })
        .await?;
    let reason = s.last_error.context("a dead modem says why")?;
    assert!(reason.contains("no answer"), "{reason}");
    let err = rig.modem.send_sms(&syria(), "x").await.unwrap_err();
    assert!(matches!(err, SmsSendError::Unavailable(_)), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn arabic_sms_single_and_concatenated() -> Result<()> {
    let rig = Rig::start().await?;
    rig.ready().await?;
    let short = "مرحبا";
    let long = "مرحبا، وثيقتك جاهزة للاستلام من مركز خدمة المواطن في الميدان. يرجى إحضار الهوية الشخصية والإيصال.";
    assert_eq!(rig.modem.send_sms(&syria(), short).await?.len(), 1);
    assert_eq!(rig.modem.send_sms(&syria(), long).await?.len(), 2);
    let parts = rig.emu.sent_sms();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].cmgs_len, 24);
    assert_eq!(
        parts[0].hex,
        "0011000C916993442143650008AA0A06450631062D06280627"
    );
    assert_eq!(
        rig.emu.sent_messages(),
        vec![(syria(), short.to_owned()), (syria(), long.to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn cms_error_is_returned_with_its_code() -> Result<()> {
    let rig = Rig::start().await?;
    rig.ready().await?;
    rig.emu.fail_next_sms(332);
    let err = rig.modem.send_sms(&syria(), "hello").await.unwrap_err();
    assert_eq!(err, SmsSendError::Cms(332));
    assert!(rig.emu.sent_sms().is_empty());
    rig.modem.send_sms(&syria(), "hello").await?;
    assert_eq!(rig.emu.sent_messages(), vec![(syria(), "hello".to_owned())]);
    Ok(())
}

#[tokio::test]
async fn garbled_and_slow_replies_are_tolerated() -> Result<()> {
    let rig = Rig::start_with(
        |e| {
            e.set_garbled(true);
            e.set_reply_delay(Duration::from_millis(60));
        },
        |_| {},
    )
    .await?;
    rig.ready().await?;
    rig.modem.send_sms(&syria(), "noisy line").await?;
    for _ in 0..3 {
        assert!(rig.modem.poll_now().await);
    }
    let s = rig.modem.status().borrow().clone();
    assert_eq!(s.state, ModemState::Ready);
    assert_eq!(s.consecutive_timeouts, 0);
    assert_eq!(rig.emu.resets(), 0);
    assert_eq!(
        rig.emu.sent_messages(),
        vec![(syria(), "noisy line".to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn not_configured_handle_refuses_everything() -> Result<()> {
    let modem = ModemHandle::not_configured();
    assert_eq!(modem.status().borrow().state, ModemState::NotConfigured);
    assert!(matches!(
        modem.send_sms(&syria(), "x").await,
        Err(SmsSendError::Unavailable(_))
    ));
    assert!(modem.connect("127.0.0.1", 1).await.is_err());
    Ok(())
}
