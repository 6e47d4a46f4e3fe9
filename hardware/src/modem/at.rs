//! Sans-IO AT command engine (3GPP TS 27.007 / 27.005 framing).
//!
//! The engine owns no port and no timer. The I/O loop writes the bytes it is given,
//! feeds every byte read from the device into [`AtEngine::feed`], drains
//! [`AtEngine::poll_output`], and calls [`AtEngine::timeout`] when its own timer for the
//! in-flight command fires.
//!
//! Guarantees:
//! - byte-at-a-time state machine, so how the stream is chunked never changes the
//!   events produced;
//! - echoed command lines (echo on, e.g. right after a reset) are dropped wherever they
//!   appear;
//! - unsolicited result codes are recognised anywhere: before the first response line,
//!   between lines, between a final response and a prompt;
//! - the `>` prompt (no line ending after it) releases the command's payload;
//! - responses carrying raw bytes (`+QIRD: <n>` followed by n bytes) are read by count,
//!   so binary data containing CR/LF or `OK` is never mistaken for framing;
//! - arbitrary input never panics and never grows memory without bound.

use std::collections::VecDeque;

/// Longest line kept; longer runs of bytes without a line ending are dropped as garbage.
const MAX_LINE: usize = 4096;
/// Largest raw data block accepted after a data-prefixed line.
const MAX_RAW: usize = 64 * 1024;

/// Prefixes of unsolicited result codes this crate understands or expects to ignore.
const URC_PREFIXES: &[&str] = &[
    "+QIURC:",
    "+QIOPEN:",
    "+CREG:",
    "+CGREG:",
    "+CEREG:",
    "+CPIN:",
    "+CMTI:",
    "+CMT:",
    "+CDS:",
    "+CUSD:",
    "+CFUN:",
    "+QIND:",
    "+QUSIM:",
    "+CRING:",
    "RING",
    "RDY",
    "POWERED DOWN",
];

/// One AT command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtCommand {
    /// The command line without its terminating CR, e.g. `AT+CSQ`.
    pub line: String,
    /// Bytes sent after the `>` prompt (SMS PDU + Ctrl-Z, socket data).
    pub payload: Option<Vec<u8>>,
    /// Intermediate line prefix after which a count of raw bytes follows (`+QIRD:`).
    pub raw_data_prefix: Option<&'static str>,
}

impl AtCommand {
    /// A plain command with no prompt and no raw data.
    pub fn new(line: impl Into<String>) -> Self {
        Self {
            line: line.into(),
            payload: None,
            raw_data_prefix: None,
        }
    }

    /// A command that waits for `>` and then sends `payload` verbatim.
    pub fn with_payload(line: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            line: line.into(),
            payload: Some(payload),
            raw_data_prefix: None,
        }
    }

    /// A command whose response contains `<prefix> <n>` followed by n raw bytes.
    pub fn with_raw_data(line: impl Into<String>, prefix: &'static str) -> Self {
        Self {
            line: line.into(),
            payload: None,
            raw_data_prefix: Some(prefix),
        }
    }

    /// The information-response prefix of this command: `AT+CSQ` → `+CSQ:`.
    fn response_prefix(&self) -> Option<String> {
        let rest = self.line.get(2..)?;
        if !rest.starts_with('+') {
            return None;
        }
        let end = rest.find(['=', '?']).unwrap_or(rest.len());
        Some(format!("{}:", &rest[..end]))
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    /// `OK`.
    Ok,
    /// `ERROR` (no detail; CMEE off or a syntax error).
    Error,
    /// `+CME ERROR: <n>` (equipment error).
    CmeError(u16),
    /// `+CMS ERROR: <n>` (message service error).
    CmsError(u16),
    /// `SEND OK` after socket data.
    SendOk,
    /// `SEND FAIL` after socket data.
    SendFail,
    /// Another final code (`NO CARRIER`, `BUSY`, a textual CME error …).
    Other(String),
    /// The caller's timer fired before a final response.
    Timeout,
}

/// The complete response to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The command line it answers.
    pub command: String,
    /// Intermediate lines, in order (trimmed).
    pub lines: Vec<String>,
    /// Raw bytes that followed a data-prefixed line, if any.
    pub data: Vec<u8>,
    /// The final result.
    pub result: FinalResult,
}

impl Response {
    /// Whether the command succeeded (`OK` or `SEND OK`).
    pub fn is_ok(&self) -> bool {
        matches!(self.result, FinalResult::Ok | FinalResult::SendOk)
    }

    /// The payload after `prefix` of the first intermediate line that has it, trimmed:
    /// `info("+CSQ:")` on `+CSQ: 20,99` gives `20,99`.
    pub fn info(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    }
}

/// Something the engine has to tell the I/O loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the device.
    Write(Vec<u8>),
    /// The in-flight command finished.
    Response(Response),
    /// An unsolicited result code line.
    Urc(String),
    /// A line that fits nowhere (noise, a late reply after a timeout).
    Discarded(String),
}

/// Why a command could not be submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtError {
    /// Another command is still waiting for its final response.
    #[error("a command is already in flight: {0}")]
    Busy(String),
    /// The command line contains CR, LF or Ctrl-Z, which would break framing.
    #[error("command line contains a framing character")]
    BadCommand,
}

#[derive(Debug)]
struct InFlight {
    cmd: AtCommand,
    prefix: Option<String>,
    lines: Vec<String>,
    data: Vec<u8>,
    prompt_seen: bool,
}

#[derive(Debug)]
enum Rx {
    Line,
    Raw { remaining: usize },
}

/// The AT engine: one command in flight at a time, URCs at any time.
#[derive(Debug)]
pub struct AtEngine {
    line: Vec<u8>,
    rx: Rx,
    skip_lf: bool,
    inflight: Option<InFlight>,
    out: VecDeque<Output>,
}

impl Default for AtEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl AtEngine {
    /// A fresh engine, expecting nothing.
    pub fn new() -> Self {
        Self {
            line: Vec::new(),
            rx: Rx::Line,
            skip_lf: false,
            inflight: None,
            out: VecDeque::new(),
        }
    }

    /// Whether a command is waiting for its final response.
    pub fn is_busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// Starts a command: queues its bytes for writing.
    pub fn submit(&mut self, cmd: AtCommand) -> Result<(), AtError> {
        if let Some(f) = &self.inflight {
            return Err(AtError::Busy(f.cmd.line.clone()));
        }
        if cmd.line.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0x1a)) {
            return Err(AtError::BadCommand);
        }
        let mut bytes = cmd.line.clone().into_bytes();
        bytes.push(b'\r');
        self.out.push_back(Output::Write(bytes));
        self.inflight = Some(InFlight {
            prefix: cmd.response_prefix(),
            cmd,
            lines: Vec::new(),
            data: Vec::new(),
            prompt_seen: false,
        });
        Ok(())
    }

    /// The caller's timer for the in-flight command fired: finish it as timed out.
    ///
    /// A partial line is kept (it may complete later as a URC); a raw block in progress
    /// is abandoned.
    pub fn timeout(&mut self) {
        if let Some(f) = self.inflight.take() {
            self.out.push_back(Output::Response(Response {
                command: f.cmd.line,
                lines: f.lines,
                data: f.data,
                result: FinalResult::Timeout,
            }));
        }
        self.rx = Rx::Line;
    }

    /// Forgets everything buffered and in flight (used after the port is reopened).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The next thing to do or report, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Feeds bytes read from the device.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.feed_byte(b);
        }
    }

    fn feed_byte(&mut self, b: u8) {
        let skip_lf = std::mem::replace(&mut self.skip_lf, false);
        if let Rx::Raw { remaining } = &mut self.rx {
            if skip_lf && b == b'\n' {
                return;
            }
            *remaining -= 1;
            let done = *remaining == 0;
            if let Some(f) = &mut self.inflight {
                f.data.push(b);
            }
            if done {
                self.rx = Rx::Line;
            }
            return;
        }
        match b {
            b'\r' | b'\n' => {
                if b == b'\r' {
                    self.skip_lf = true;
                }
                if !self.line.is_empty() {
                    let line = std::mem::take(&mut self.line);
                    self.on_line(&line);
                }
            }
            b'>' if self.line.is_empty() && self.awaiting_prompt() => {
                if let Some(f) = &mut self.inflight {
                    f.prompt_seen = true;
                    if let Some(p) = &f.cmd.payload {
                        self.out.push_back(Output::Write(p.clone()));
                    }
                }
            }
            _ => {
                if self.line.len() >= MAX_LINE {
                    let line = std::mem::take(&mut self.line);
                    self.out.push_back(Output::Discarded(
                        String::from_utf8_lossy(&line).into_owned(),
                    ));
                }
                self.line.push(b);
            }
        }
    }

    fn awaiting_prompt(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|f| f.cmd.payload.is_some() && !f.prompt_seen)
    }

    fn on_line(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim();
        if line.is_empty() {
            return;
        }
        // Echo: with echo on, the device repeats every command line we send.
        if line.len() >= 2 && line.as_bytes()[..2].eq_ignore_ascii_case(b"AT") {
            return;
        }
        let Some(f) = &mut self.inflight else {
            let out = if is_urc(line) {
                Output::Urc(line.to_owned())
            } else {
                Output::Discarded(line.to_owned())
            };
            self.out.push_back(out);
            return;
        };
        if let Some(result) = final_result(line) {
            let Some(f) = self.inflight.take() else {
                return;
            };
            self.out.push_back(Output::Response(Response {
                command: f.cmd.line,
                lines: f.lines,
                data: f.data,
                result,
            }));
            return;
        }
        let solicited = f.prefix.as_deref().is_some_and(|p| line.starts_with(p));
        if !solicited && is_urc(line) {
            self.out.push_back(Output::Urc(line.to_owned()));
            return;
        }
        if let Some(prefix) = f.cmd.raw_data_prefix
            && let Some(rest) = line.strip_prefix(prefix)
        {
            let n = rest
                .split(',')
                .next()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(0)
                .min(MAX_RAW);
            if n > 0 {
                self.rx = Rx::Raw { remaining: n };
            }
        }
        f.lines.push(line.to_owned());
    }
}

fn is_urc(line: &str) -> bool {
    URC_PREFIXES.iter().any(|p| line.starts_with(p))
}

fn final_result(line: &str) -> Option<FinalResult> {
    let numeric = |prefix: &str, make: fn(u16) -> FinalResult| {
        line.strip_prefix(prefix)
            .map(|rest| match rest.trim().parse::<u16>() {
                Ok(n) => make(n),
                Err(_) => FinalResult::Other(line.to_owned()),
            })
    };
    match line {
        "OK" => Some(FinalResult::Ok),
        "ERROR" => Some(FinalResult::Error),
        "SEND OK" => Some(FinalResult::SendOk),
        "SEND FAIL" => Some(FinalResult::SendFail),
        "NO CARRIER" | "BUSY" | "NO ANSWER" | "NO DIALTONE" => {
            Some(FinalResult::Other(line.to_owned()))
        }
        _ => numeric("+CME ERROR:", FinalResult::CmeError)
            .or_else(|| numeric("+CMS ERROR:", FinalResult::CmsError)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(e: &mut AtEngine) -> Vec<Output> {
        std::iter::from_fn(|| e.poll_output()).collect()
    }

    fn responses(out: &[Output]) -> Vec<&Response> {
        out.iter()
            .filter_map(|o| match o {
                Output::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn simple_command_with_info_line() {
        let mut e = AtEngine::new();
        e.submit(AtCommand::new("AT+CSQ")).unwrap();
        assert_eq!(drain(&mut e), vec![Output::Write(b"AT+CSQ\r".to_vec())]);
        e.feed(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n");
        let out = drain(&mut e);
        let r = responses(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].result, FinalResult::Ok);
        assert_eq!(r[0].info("+CSQ:"), Some("20,99"));
        assert!(!e.is_busy());
    }

    #[test]
    fn echo_is_dropped_and_busy_is_reported() {
        let mut e = AtEngine::new();
        e.submit(AtCommand::new("AT+CPIN?")).unwrap();
        assert!(matches!(
            e.submit(AtCommand::new("AT")),
            Err(AtError::Busy(_))
        ));
        e.feed(b"AT+CPIN?\r\r\n+CPIN: READY\r\n\r\nOK\r\n");
        let out = drain(&mut e);
        let r = responses(&out);
        assert_eq!(r[0].lines, vec!["+CPIN: READY".to_owned()]);
    }

    #[test]
    fn error_codes() {
        for (wire, want) in [
            ("+CME ERROR: 10", FinalResult::CmeError(10)),
            ("+CMS ERROR: 331", FinalResult::CmsError(331)),
            ("ERROR", FinalResult::Error),
            (
                "+CME ERROR: SIM not inserted",
                FinalResult::Other("+CME ERROR: SIM not inserted".into()),
            ),
        ] {
            let mut e = AtEngine::new();
            e.submit(AtCommand::new("AT+CPIN?")).unwrap();
            e.feed(format!("\r\n{wire}\r\n").as_bytes());
            let out = drain(&mut e);
            assert_eq!(responses(&out)[0].result, want, "{wire}");
        }
    }

    #[test]
    fn urcs_anywhere_and_prompt() {
        let mut e = AtEngine::new();
        e.submit(AtCommand::with_payload("AT+CMGS=24", b"00AB\x1a".to_vec()))
            .unwrap();
        drain(&mut e);
        // URC before the prompt; the prompt has no line ending.
        e.feed(b"\r\n+CREG: 1\r\n\r\n> ");
        let out = drain(&mut e);
        assert_eq!(
            out,
            vec![
                Output::Urc("+CREG: 1".into()),
                Output::Write(b"00AB\x1a".to_vec())
            ]
        );
        e.feed(b"\r\n+QIURC: \"recv\",0\r\n\r\n+CMGS: 7\r\n\r\n+CGREG: 2\r\n\r\nOK\r\n");
        let out = drain(&mut e);
        assert_eq!(out[0], Output::Urc("+QIURC: \"recv\",0".into()));
        assert_eq!(out[1], Output::Urc("+CGREG: 2".into()));
        let Output::Response(r) = &out[2] else {
            panic!("{out:?}")
        };
        assert_eq!(r.info("+CMGS:"), Some("7"));
    }

    #[test]
    fn solicited_creg_is_intermediate_and_garbage_without_command_is_discarded() {
        let mut e = AtEngine::new();
        e.feed(b"\r\n\xff\xfe#noise\r\n");
        e.submit(AtCommand::new("AT+CREG?")).unwrap();
        e.feed(b"\r\n+CREG: 2,1,\"1A2B\",\"00C3\"\r\n\r\nOK\r\n");
        let out = drain(&mut e);
        assert!(matches!(&out[0], Output::Discarded(_)));
        let r = responses(&out);
        assert_eq!(r[0].lines, vec!["+CREG: 2,1,\"1A2B\",\"00C3\"".to_owned()]);
    }

    #[test]
    fn raw_data_is_read_by_count() {
        let mut e = AtEngine::new();
        e.submit(AtCommand::with_raw_data("AT+QIRD=0,1500", "+QIRD:"))
            .unwrap();
        e.feed(b"\r\n+QIRD: 8\r\n\r\nOK\r\n>\n\r\nOK\r\n");
        let out = drain(&mut e);
        let r = responses(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].data, b"\r\nOK\r\n>\n");
        assert_eq!(r[0].result, FinalResult::Ok);
    }

    #[test]
    fn timeout_finishes_command_and_late_reply_is_discarded() {
        let mut e = AtEngine::new();
        e.submit(AtCommand::new("AT")).unwrap();
        e.timeout();
        let out = drain(&mut e);
        assert_eq!(responses(&out)[0].result, FinalResult::Timeout);
        e.feed(b"\r\nOK\r\n");
        assert_eq!(drain(&mut e), vec![Output::Discarded("OK".into())]);
        assert!(e.submit(AtCommand::new("AT\r")).is_err());
    }

    /// One exchange: the command, and the device's bytes in reply to it (with echo and
    /// URCs mixed in where the generator put them).
    fn exchange(kind: u8, echo: bool, urc_at: &[bool]) -> (AtCommand, Vec<u8>, FinalResult, usize) {
        let urc = b"\r\n+QIURC: \"recv\",1\r\n".as_slice();
        let mut urc_gaps = urc_at.iter().copied().cycle();
        let mut bytes = Vec::new();
        let mut urcs = 0;
        let mut gap = |bytes: &mut Vec<u8>| {
            if urc_gaps.next().unwrap_or(false) {
                bytes.extend_from_slice(urc);
                urcs += 1;
            }
        };
        let (cmd, lines, result): (AtCommand, Vec<&[u8]>, FinalResult) = match kind % 5 {
            0 => (
                AtCommand::new("AT+CSQ"),
                vec![b"+CSQ: 20,99", b"OK"],
                FinalResult::Ok,
            ),
            1 => (
                AtCommand::new("AT+CPIN?"),
                vec![b"+CME ERROR: 10"],
                FinalResult::CmeError(10),
            ),
            2 => (
                AtCommand::with_payload("AT+CMGS=24", b"00AA\x1a".to_vec()),
                vec![b"+CMGS: 7", b"OK"],
                FinalResult::Ok,
            ),
            3 => (
                AtCommand::with_payload("AT+QISEND=0,3", b"a\r\n".to_vec()),
                vec![b"SEND OK"],
                FinalResult::SendOk,
            ),
            _ => (
                AtCommand::with_raw_data("AT+QIRD=0,1500", "+QIRD:"),
                vec![b"+QIRD: 5\r\nOK\r\n>", b"OK"],
                FinalResult::Ok,
            ),
        };
        gap(&mut bytes);
        if echo {
            bytes.extend_from_slice(cmd.line.as_bytes());
            bytes.push(b'\r');
        }
        if cmd.payload.is_some() {
            gap(&mut bytes);
            bytes.extend_from_slice(b"\r\n> ");
        }
        for l in lines {
            gap(&mut bytes);
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(l);
            bytes.extend_from_slice(b"\r\n");
        }
        gap(&mut bytes);
        let n = urcs;
        (cmd, bytes, result, n)
    }

    /// Runs exchanges one after the other, cutting each reply at `cuts`.
    fn run_script(script: &[(u8, bool, Vec<bool>)], cuts: &[usize]) -> Vec<Output> {
        let mut e = AtEngine::new();
        let mut out = Vec::new();
        for (kind, echo, urc_at) in script {
            let (cmd, bytes, _, _) = exchange(*kind, *echo, urc_at);
            e.submit(cmd).unwrap();
            let mut last = 0;
            for &c in cuts.iter().filter(|c| **c < bytes.len()) {
                if c > last {
                    e.feed(&bytes[last..c]);
                    out.extend(drain(&mut e));
                    last = c;
                }
            }
            e.feed(&bytes[last..]);
            out.extend(drain(&mut e));
        }
        out
    }

    fn script_strategy() -> impl Strategy<Value = Vec<(u8, bool, Vec<bool>)>> {
        proptest::collection::vec(
            (
                any::<u8>(),
                any::<bool>(),
                proptest::collection::vec(any::<bool>(), 1..6),
            ),
            1..8,
        )
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_events(
            script in script_strategy(),
            cuts in proptest::collection::btree_set(0usize..80, 0..20),
        ) {
            let cuts: Vec<usize> = cuts.into_iter().collect();
            let whole = run_script(&script, &[]);
            let chunked = run_script(&script, &cuts);
            prop_assert_eq!(&whole, &chunked);
            // And the events are the right ones: one response per exchange, in order,
            // with its expected result, and every URC reported.
            let rs = responses(&whole);
            prop_assert_eq!(rs.len(), script.len());
            let mut urcs = 0;
            for ((kind, echo, urc_at), r) in script.iter().zip(rs) {
                let (cmd, _, result, n) = exchange(*kind, *echo, urc_at);
                prop_assert_eq!(&r.command, &cmd.line);
                prop_assert_eq!(&r.result, &result);
                if cmd.raw_data_prefix.is_some() {
                    prop_assert_eq!(&r.data, b"OK\r\n>");
                }
                urcs += n;
            }
            let seen = whole.iter().filter(|o| matches!(o, Output::Urc(_))).count();
            prop_assert_eq!(seen, urcs);
            prop_assert!(!whole.iter().any(|o| matches!(o, Output::Discarded(_))));
        }

        #[test]
        fn any_chunking_of_plain_stream_is_identical(data in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..400) {
            let mut a = AtEngine::new();
            let mut b = AtEngine::new();
            a.submit(AtCommand::with_raw_data("AT+QIRD=0,1500", "+QIRD:")).unwrap();
            b.submit(AtCommand::with_raw_data("AT+QIRD=0,1500", "+QIRD:")).unwrap();
            a.feed(&data);
            let cut = cut.min(data.len());
            b.feed(&data[..cut]);
            b.feed(&data[cut..]);
            prop_assert_eq!(drain(&mut a), drain(&mut b));
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut e = AtEngine::new();
            let _ = e.submit(AtCommand::with_payload("AT+CMGS=10", vec![1, 2, 3]));
            e.feed(&data);
            e.timeout();
            e.feed(&data);
            drain(&mut e);
        }
    }
}
