//! The bodies of the fuzz targets, one function per parser that reads outside input.
//!
//! Each function takes arbitrary bytes and drives a parser the way its I/O loop does
//! (the modem's AT engine, the SMS PDU decoder, VE.Direct, the inverter's QPIGS/QMOD
//! replies, the config loader, the sync framing and messages). A panic is the failure libFuzzer
//! reports; where a parser promises more than "no panic" (chunking does not change AT
//! events, frames and batches round-trip) the function asserts that too.
//!
//! `cargo fuzz run <target>` calls these through `fuzz_targets/*.rs`; the node's test
//! `fuzz_corpus` includes this same file and replays every committed corpus input, so the
//! corpus is checked by a plain `cargo test` as well.

use markaz_hardware::modem::at::{AtCommand, AtEngine, Output, Response};
use markaz_hardware::modem::sms;
use markaz_hardware::modem::status::{Operator, Registration, Signal, SimState, parse_cclk};
use markaz_hardware::power::{vedirect, voltronic};
use markaz_sync::frame;
use markaz_sync::protocol::message::{PROTOCOL_VERSION, PushForm};
use markaz_sync::protocol::{Request, Response as SyncResponse};

/// The body of one fuzz target.
pub type Target = fn(&[u8]);

/// Every target, by the name cargo-fuzz knows it (and its corpus folder).
pub const TARGETS: &[(&str, Target)] = &[
    ("at_response", at_response),
    ("sms_pdu", sms_pdu),
    ("vedirect", vedirect),
    ("voltronic", voltronic),
    ("config", config),
    ("sync_frame", sync_frame),
    ("sync_message", sync_message),
];

/// The command the first input byte selects, so one target covers plain, prompt and
/// raw-data exchanges and the status payload parsers.
fn at_command(selector: u8) -> Option<AtCommand> {
    Some(match selector % 8 {
        0 => AtCommand::new("AT+CSQ"),
        1 => AtCommand::new("AT+CREG?"),
        2 => AtCommand::new("AT+COPS?"),
        3 => AtCommand::new("AT+CCLK?"),
        4 => AtCommand::new("AT+CPIN?"),
        5 => AtCommand::with_payload("AT+CMGS=24", b"0011000C91\x1a".to_vec()),
        6 => AtCommand::with_raw_data("AT+QIRD=0,1500", "+QIRD:"),
        _ => return None,
    })
}

/// Runs the status parsers the modem driver applies to a response.
fn parse_status(r: &Response) {
    if let Some(p) = r.info("+CSQ:")
        && let Ok(s) = Signal::parse(p)
    {
        let _ = (s.dbm(), s.bars());
    }
    if let Some(p) = r.info("+CREG:") {
        let _ = Registration::parse(p);
    }
    if let Some(p) = r.info("+COPS:") {
        let _ = Operator::parse(p);
    }
    if let Some(p) = r.info("+CCLK:") {
        let _ = parse_cclk(p);
    }
    if let Some(p) = r.info("+CPIN:") {
        let _ = SimState::parse_cpin(p);
    }
}

fn drain(engine: &mut AtEngine, out: &mut Vec<Output>) {
    while let Some(o) = engine.poll_output() {
        if let Output::Response(r) = &o {
            parse_status(r);
        }
        if let Output::Urc(line) = &o {
            // The driver reads registration and SIM URCs with the same parsers.
            for prefix in ["+CREG:", "+CGREG:"] {
                if let Some(p) = line.strip_prefix(prefix) {
                    let _ = Registration::parse(p.trim());
                }
            }
            if let Some(p) = line.strip_prefix("+CPIN:") {
                let _ = SimState::parse_cpin(p.trim());
            }
        }
        out.push(o);
    }
}

/// The AT engine (`modem::at`) on an arbitrary byte stream: byte 0 picks the command in
/// flight, byte 1 the chunk size; the events must not depend on the chunking.
pub fn at_response(data: &[u8]) {
    let [selector, chunk, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk % 64) + 1;
    let run = |chunk: usize| {
        let mut engine = AtEngine::new();
        if let Some(cmd) = at_command(*selector) {
            engine
                .submit(cmd)
                .expect("a fresh engine accepts a command");
        }
        let mut out = Vec::new();
        for piece in rest.chunks(chunk) {
            engine.feed(piece);
            drain(&mut engine, &mut out);
        }
        engine.timeout();
        drain(&mut engine, &mut out);
        // The engine is usable again after whatever it was fed.
        assert!(!engine.is_busy(), "a timeout ends the command in flight");
        engine
            .submit(AtCommand::new("AT"))
            .expect("an idle engine accepts a command");
        out
    };
    let whole = run(rest.len().max(1));
    let chunked = run(chunk);
    assert_eq!(whole, chunked, "chunking changed the AT engine's events");
}

/// The SMS-SUBMIT PDU decoder (`modem::sms::decode_submit`), on the input as text and on
/// its hex encoding (so the fuzzer reaches past the hex layer).
pub fn sms_pdu(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        decode_pdu(text);
    }
    let hex: String = data.iter().map(|b| format!("{b:02X}")).collect();
    decode_pdu(&hex);
}

fn decode_pdu(hex: &str) {
    if let Ok(part) = sms::decode_submit(hex) {
        let _ = part.to.to_string();
        let joined = sms::join_parts(std::slice::from_ref(&part));
        if part.concat.is_none() {
            assert_eq!(joined.as_deref(), Some(part.text.as_str()));
        }
    }
}

/// The VE.Direct text-protocol parser (`power::vedirect`), fed in chunks (byte 0 gives the
/// chunk size), with every block read as an MPPT or BMV reading.
pub fn vedirect(data: &[u8]) {
    let [chunk, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk % 32) + 1;
    let mut parser = vedirect::Parser::new();
    let mut blocks = Vec::new();
    for piece in rest.chunks(chunk) {
        blocks.extend(parser.feed(piece));
    }
    for block in &blocks {
        let _ = block.get("V");
        let _ = vedirect::Reading::from_block(block);
        let _ = vedirect::MpptReading::from_block(block);
        let _ = vedirect::BmvReading::from_block(block);
    }
    let _ = parser.stats();
    // Whole-stream parsing finds the same blocks.
    let mut whole = vedirect::Parser::new();
    assert_eq!(
        whole.feed(rest),
        blocks,
        "chunking changed the VE.Direct blocks"
    );
}

/// The inverter's reply framing and decoders (`power::voltronic`): the framer, CRC check,
/// QPIGS and QMOD, both on framed lines and on the raw input.
pub fn voltronic(data: &[u8]) {
    let mut framer = voltronic::Framer::new();
    for line in framer.feed(data) {
        if let Ok(d) = voltronic::decode_reply(&line) {
            decode_voltronic_data(d);
        }
    }
    if let Ok(d) = voltronic::decode_reply(data) {
        decode_voltronic_data(d);
    }
    decode_voltronic_data(data);
}

fn decode_voltronic_data(d: &[u8]) {
    if let Ok(q) = voltronic::Qpigs::parse(d) {
        let _ = q.pv_w();
        let _ = q.render();
    }
    if let Ok(m) = voltronic::Mode::parse(d) {
        let _ = m.letter();
    }
}

/// The config loader (`markaz_config::parse_node` / `parse_hub`) on arbitrary UTF-8; the
/// error, with its file:line:column rendering, is formatted too.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match markaz_config::parse_node(text, "fuzz.toml") {
        Ok(cfg) => {
            let _ = format!("{cfg:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match markaz_config::parse_hub(text, "fuzz.toml") {
        Ok(cfg) => {
            let _ = format!("{cfg:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The sync framing (`markaz_sync::frame`): frames and zstd batches from hostile bytes.
/// What decodes must encode back to the same payloads. Bytes that are not a batch are also
/// wrapped in a valid header (magic, length, checksum) so zstd sees them.
pub fn sync_frame(data: &[u8]) {
    if let Ok(frames) = frame::decode_frames(data) {
        let mut again = Vec::new();
        for f in &frames {
            frame::encode_frame(f, &mut again);
        }
        assert_eq!(again, data, "frames re-encode to the same bytes");
    }
    let _ = frame::decode_frame(data);
    if let Ok(version) = frame::batch_version(data) {
        check_batch(data, version);
    }
    // Reach the decompressor: a well-formed header around the input as the body.
    if let [v, a, b, body @ ..] = data {
        let declared = u32::from(u16::from_le_bytes([*a, *b]));
        let mut batch = frame::BATCH_MAGIC.to_vec();
        batch.push(*v);
        batch.extend_from_slice(&declared.to_le_bytes());
        batch.extend_from_slice(&frame::checksum(body).to_le_bytes());
        batch.extend_from_slice(body);
        check_batch(&batch, *v);
    }
}

/// The sync messages both sides decode (`markaz_sync::protocol::message`), both push
/// forms: whatever decodes re-encodes (a request in either push form) to bytes that
/// decode to the same message. The input is tried as a whole message, and — to get past
/// the batch checksum — as the frames of a valid batch: the first byte says how long the
/// JSON header is, the rest is one part (a compact push body, a change, a sync message).
pub fn sync_message(data: &[u8]) {
    check_message(data);
    if let [n, rest @ ..] = data {
        let cut = usize::from(*n).min(rest.len());
        let (header, part) = rest.split_at(cut);
        let mut frames = vec![header];
        if !part.is_empty() {
            frames.push(part);
        }
        check_message(&frame::encode_batch(frames, PROTOCOL_VERSION));
    }
}

fn check_message(bytes: &[u8]) {
    if let Ok(req) = Request::decode(bytes) {
        for form in [PushForm::Framed, PushForm::Compact] {
            let again = Request::decode(&req.encode_with(form));
            assert_eq!(
                again.ok().as_ref(),
                Some(&req),
                "a request re-encodes ({form:?})"
            );
        }
    }
    if let Ok(resp) = SyncResponse::decode(bytes) {
        let again = SyncResponse::decode(&resp.encode());
        assert_eq!(again.ok().as_ref(), Some(&resp), "a response re-encodes");
    }
}

fn check_batch(batch: &[u8], version: u8) {
    if let Ok(payloads) = frame::decode_batch(batch, version) {
        let again = frame::encode_batch(payloads.iter().map(Vec::as_slice), version);
        assert_eq!(
            frame::decode_batch(&again, version).as_ref(),
            Ok(&payloads),
            "a decoded batch re-encodes to the same payloads"
        );
    }
}
