//! The input of a mass revocation (`ocsp-origin revoke --serials FILE`): one
//! certificate a line, as a CA assembles it from its issuance records when a
//! key, an intermediate or a validation method turns out bad and millions of
//! certificates must go within days.
//!
//! ```text
//! # serial [reason [time]]; blank lines and # comments are skipped
//! 0A1B2C3D                                  (--reason, --at or now)
//! 0A1B2C3E keyCompromise                    (--at or now)
//! 0A1B2C3F superseded 2026-11-01T12:00:00Z
//! ```
//!
//! The whole file is checked before anything is written, so a typo on line
//! 900,000 does not leave a half-done revocation behind: [`parse`] returns
//! every certificate or the bad lines, each named `FILE:LINE`.

use std::collections::HashMap;

use super::input::{parse_reason, parse_time};
use crate::ocsp::{RevocationReason, Serial};
use crate::ops::db::Revocation;

/// How many bad lines one error names (the rest are counted).
const ERRORS_NAMED: usize = 10;

/// Reads `text` (the file `name`): every line's serial, reason (the line's,
/// else `default_reason`) and time (the line's, else `default_at`). A serial
/// listed twice is an error (one of the two lines is probably not what was
/// meant), as is a file without any serial.
pub fn parse(
    text: &str,
    name: &str,
    default_reason: Option<RevocationReason>,
    default_at: u64,
    baseline: bool,
) -> Result<Vec<Revocation>, String> {
    let now = crate::clock::unix_now();
    let mut out = Vec::new();
    let mut seen: HashMap<Serial, usize> = HashMap::new();
    let mut errors = Vec::new();
    let mut bad = 0usize;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let content = line.split('#').next().unwrap_or("");
        if content.trim().is_empty() {
            continue;
        }
        let line = parse_line(content, default_reason, default_at)
            .and_then(|r| super::input::check_revocation(baseline, r.reason, r.at, now).map(|()| r));
        match line {
            Ok(r) => match seen.insert(r.serial, n) {
                Some(first) => {
                    bad += 1;
                    errors.push(format!("{name}:{n}: serial {} is also on line {first}", r.serial));
                }
                None => out.push(r),
            },
            Err(e) => {
                bad += 1;
                errors.push(format!("{name}:{n}: {e}"));
            }
        }
    }
    if bad > 0 {
        errors.truncate(ERRORS_NAMED);
        if bad > ERRORS_NAMED {
            errors.push(format!("… and {} more bad lines", bad - ERRORS_NAMED));
        }
        errors.push(format!("{name}: {bad} bad line(s); nothing was revoked"));
        return Err(errors.join("\n"));
    }
    if out.is_empty() {
        return Err(format!("{name}: no serials in the file; nothing was revoked"));
    }
    Ok(out)
}

/// One non-blank line, comment removed: `SERIAL [REASON [TIME]]`.
fn parse_line(
    line: &str,
    default_reason: Option<RevocationReason>,
    default_at: u64,
) -> Result<Revocation, String> {
    let mut words = line.split_whitespace();
    let serial = words.next().unwrap_or_default();
    let serial = Serial::from_hex(serial).map_err(|e| format!("serial {serial:?}: {e}"))?;
    let reason = match words.next() {
        Some(r) => parse_reason(r).map_err(|e| match parse_time(r) {
            Some(_) => format!("{r:?} is a time; the reason comes first (SERIAL REASON TIME)"),
            None => e,
        })?,
        None => default_reason
            .ok_or_else(|| format!("no reason for serial {serial}, and no --reason for lines without one"))?,
    };
    let at = match words.next() {
        Some(t) => parse_time(t).ok_or_else(|| {
            format!("cannot read {t:?} as a time (2026-11-01T12:00:00Z, 261101120000Z or Unix seconds)")
        })?,
        None => default_at,
    };
    if let Some(extra) = words.next() {
        return Err(format!("unexpected {extra:?} after the time (SERIAL [REASON [TIME]])"));
    }
    Ok(Revocation { serial, reason, at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use RevocationReason::*;

    fn serial(h: &str) -> Serial {
        Serial::from_hex(h).unwrap()
    }

    #[test]
    fn lines_take_their_own_reason_and_time_or_the_defaults() {
        let text = "# mass revocation 2026-11\n\n0A1B\n0a1c keyCompromise  # this one leaked\n\
                    \t0x0A1D   superseded 2026-11-01T12:00:00Z\n0A1E cessationOfOperation 1700000000\n";
        let got = parse(text, "f", Some(Unspecified), 42, false).unwrap();
        assert_eq!(
            got,
            vec![
                Revocation { serial: serial("0A1B"), reason: Unspecified, at: 42 },
                Revocation { serial: serial("0A1C"), reason: KeyCompromise, at: 42 },
                Revocation { serial: serial("0A1D"), reason: Superseded, at: 1_793_534_400 },
                Revocation { serial: serial("0A1E"), reason: CessationOfOperation, at: 1_700_000_000 },
            ]
        );
    }

    #[test]
    fn every_line_with_a_reason_needs_no_default() {
        let got = parse("01 certificateHold\n02 keyCompromise\n", "f", None, 1, false).unwrap();
        assert_eq!(got.len(), 2);
        let e = parse("01 certificateHold\n02\n03\n", "f", None, 1, false).unwrap_err();
        assert!(e.starts_with("f:2: no reason for serial 02, and no --reason"), "{e}");
        assert!(e.contains("f:3: no reason for serial 03"), "{e}");
        assert!(e.ends_with("f: 2 bad line(s); nothing was revoked"), "{e}");
    }

    #[test]
    fn bad_lines_are_named_with_their_line_number() {
        let cases = [
            ("zz keyCompromise", "f:1: serial \"zz\""),
            ("01 notAReason", "f:1: unknown reason \"notAReason\""),
            ("01 2026-11-01T12:00:00Z", "f:1: \"2026-11-01T12:00:00Z\" is a time; the reason comes first"),
            ("01 superseded yesterday", "f:1: cannot read \"yesterday\" as a time"),
            ("01 superseded 1700000000 extra", "f:1: unexpected \"extra\""),
            ("01\n02\n0x01 superseded", "f:3: serial 01 is also on line 1"),
        ];
        for (text, want) in cases {
            let e = parse(text, "f", Some(Unspecified), 0, false).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn many_bad_lines_are_counted_not_all_named() {
        let text: String = (0..25).map(|i| format!("{i:02X} nope\n")).collect();
        let e = parse(&text, "f", None, 0, false).unwrap_err();
        assert_eq!(e.lines().count(), ERRORS_NAMED + 2, "{e}");
        assert!(e.contains("… and 15 more bad lines") && e.contains("25 bad line(s)"), "{e}");
    }

    #[test]
    fn a_file_without_serials_is_refused() {
        let e = parse("# nothing yet\n\n", "f", Some(Unspecified), 0, false).unwrap_err();
        assert_eq!(e, "f: no serials in the file; nothing was revoked");
    }

    /// Under the Baseline Requirements a line revoking for a reason the BR
    /// forbids, or at a time in the future, is a bad line, named.
    #[test]
    fn baseline_lines_are_checked() {
        let e =
            parse("01 keyCompromise\n02 certificateHold\n03 superseded 99999999999\n", "f", None, 1, true)
                .unwrap_err();
        assert!(e.contains("f:2: reason certificateHold is not one the Baseline Requirements allow"), "{e}");
        assert!(e.contains("f:3: revocation time 99999999999 is in the future"), "{e}");
        assert!(e.contains("nothing was revoked"), "{e}");
        assert_eq!(parse("01 keyCompromise\n", "f", None, 1, true).unwrap().len(), 1);
    }
}
