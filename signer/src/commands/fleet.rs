//! `ota-sign fleet report`: devices per product, release and channel over time, counted from
//! the access logs of the servers that serve the repository (ota-server's format, nginx's
//! `combined`, or any CDN log in that format).
//!
//! Devices send `User-Agent: ota-update/VERSION (PRODUCT; RELEASE; CHANNEL)` and no id, so a
//! device is estimated as a distinct (client address, user agent) pair within a time bucket:
//! devices behind one NAT address that run the same release count once (a lower bound), and a
//! device that changed release within a bucket counts under both releases.

use crate::cli::{FleetCommand, FleetReportArgs};
use crate::exit::UsageError;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// How the device column is estimated (help, text footer and JSON).
const DEVICE_ESTIMATE: &str = "distinct (client address, user agent) pairs per bucket, \
product, release and channel: a lower bound (devices behind one NAT address running the same \
release count once)";

/// Unparsed lines named in the report (the count covers all of them).
const UNPARSED_EXAMPLES: usize = 10;

/// Runs a `fleet` subcommand.
pub fn run(command: FleetCommand) -> Result<()> {
    match command {
        FleetCommand::Report(args) => report(&args),
    }
}

fn report(args: &FleetReportArgs) -> Result<()> {
    let bucket_secs = parse_bucket(&args.bucket)?;
    let mut tally = Tally::new(bucket_secs);
    for path in &args.access_logs {
        let name = path.display().to_string();
        if path == Path::new("-") {
            tally.read(&name, io::stdin().lock())?;
        } else {
            let file =
                File::open(path).with_context(|| format!("cannot open access log {name}"))?;
            tally.read(&name, BufReader::with_capacity(1 << 20, file))?;
        }
    }
    if args.json {
        println!("{}", tally.to_json());
    } else {
        print!("{}", tally.to_text());
    }
    Ok(())
}

/// `--bucket`: whole seconds, at least one (`1h`, `1d`, `10m`, `30s`).
fn parse_bucket(text: &str) -> Result<i64> {
    let bad = || UsageError(format!("--bucket {text:?}: a duration such as 1h, 1d, 10m"));
    let duration = humantime::parse_duration(text).map_err(|_| bad())?;
    if duration.subsec_nanos() != 0 || duration.as_secs() == 0 {
        return Err(bad().into());
    }
    i64::try_from(duration.as_secs()).map_err(|_| bad().into())
}

/// One parsed access log line: what the report needs of it.
#[derive(Debug, PartialEq, Eq)]
struct LogLine {
    /// Client address without the port.
    addr: String,
    /// Seconds since the epoch.
    time: i64,
    /// Body bytes sent (`-` is 0).
    bytes: u64,
    /// The user agent, unescaped; `None` when the line has none (or it is `-`).
    agent: Option<String>,
}

/// Parses `ADDR IDENT USER [TIME] "REQUEST" STATUS BYTES` optionally followed by
/// `"REFERER" "USER-AGENT"` and anything else (ota-server's elapsed time, nginx extras).
fn parse_line(line: &str) -> Option<LogLine> {
    let (addr, rest) = line.split_once(' ')?;
    let (_ident_user, rest) = rest.split_once(" [")?;
    let (time, rest) = rest.split_once("] \"")?;
    // Quoted fields never hold a raw quote: both servers escape it as \x22.
    let (_request, rest) = rest.split_once('"')?;
    let mut fields = rest.trim_start().splitn(3, ' ');
    let status = fields.next()?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = match fields.next()? {
        "-" => 0,
        n => n.parse().ok()?,
    };
    let rest = fields.next().unwrap_or("");
    let agent = if rest.starts_with('"') {
        let (_referer, rest) = quoted(rest)?;
        let (agent, _) = quoted(rest.strip_prefix(' ')?)?;
        Some(unescape(agent)).filter(|a| a != "-")
    } else {
        None
    };
    Some(LogLine {
        addr: client_address(addr),
        time: parse_time(time)?,
        bytes,
        agent,
    })
}

/// `"FIELD" REST` → (FIELD, REST).
fn quoted(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix('"')?.split_once('"')
}

/// `127.0.0.1:40522` and `[::1]:40522` (ota-server) → the address; nginx's bare address as is.
fn client_address(addr: &str) -> String {
    addr.parse::<std::net::SocketAddr>()
        .map_or_else(|_| addr.to_owned(), |a| a.ip().to_string())
}

/// Undoes nginx's `\xHH` escapes (invalid UTF-8 is replaced).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], bytes.get(i + 1), hex) {
            (b'\\', Some(b'x'), Some(h)) if h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 4;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `25/Nov/2026:07:40:00 +0000` → seconds since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    let (stamp, zone) = text.split_once(' ')?;
    let mut parts = stamp.splitn(4, ':');
    let date = parts.next()?;
    let clock: Vec<i64> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [hour, minute, second] = clock[..] else {
        return None;
    };
    let mut date = date.split('/');
    let day: i64 = date.next()?.parse().ok()?;
    let month = date.next()?;
    let year: i64 = date.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = i64::try_from(MONTHS.iter().position(|m| *m == month)? + 1).ok()?;
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset: i64 = zone.get(1..)?.parse().ok().filter(|_| zone.len() == 5)?;
    let offset = sign * ((offset / 100) * 3600 + (offset % 100) * 60);
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// What a device says in its user agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct DeviceAgent {
    product: String,
    release: String,
    channel: String,
}

/// `ota-update/VERSION (PRODUCT; RELEASE; CHANNEL)`; anything else is not a device.
fn parse_agent(agent: &str) -> Option<DeviceAgent> {
    let rest = agent.strip_prefix("ota-update/")?;
    let (_version, rest) = rest.split_once(" (")?;
    let inner = rest.strip_suffix(')')?;
    let mut parts = inner.split("; ");
    let (product, release, channel) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [product, release, channel].iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(DeviceAgent {
        product: product.to_owned(),
        release: release.to_owned(),
        channel: channel.to_owned(),
    })
}

/// One row of the report while counting.
#[derive(Default)]
struct Row {
    requests: u64,
    bytes: u64,
    /// (client address, user agent) pairs seen.
    devices: HashSet<(String, String)>,
}

/// Everything counted over the files read.
struct Tally {
    bucket_secs: i64,
    lines: u64,
    unparsed: u64,
    unparsed_examples: Vec<(String, u64)>,
    device_requests: u64,
    other_requests: u64,
    rows: BTreeMap<(i64, DeviceAgent), Row>,
}

impl Tally {
    fn new(bucket_secs: i64) -> Self {
        Tally {
            bucket_secs,
            lines: 0,
            unparsed: 0,
            unparsed_examples: Vec::new(),
            device_requests: 0,
            other_requests: 0,
            rows: BTreeMap::new(),
        }
    }

    /// Counts every line of one log (`name` for the report).
    fn read(&mut self, name: &str, mut input: impl BufRead) -> Result<()> {
        let mut raw = Vec::with_capacity(512);
        let mut number = 0u64;
        loop {
            raw.clear();
            let n = input
                .read_until(b'\n', &mut raw)
                .with_context(|| format!("cannot read access log {name}"))?;
            if n == 0 {
                return Ok(());
            }
            number += 1;
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            self.lines += 1;
            match parse_line(text) {
                Some(line) => self.count(line),
                None => {
                    self.unparsed += 1;
                    if self.unparsed_examples.len() < UNPARSED_EXAMPLES {
                        self.unparsed_examples.push((name.to_owned(), number));
                    }
                }
            }
        }
    }

    fn count(&mut self, line: LogLine) {
        let Some((agent, device)) = line
            .agent
            .and_then(|a| parse_agent(&a).map(|device| (a, device)))
        else {
            self.other_requests += 1;
            return;
        };
        self.device_requests += 1;
        let bucket = line.time.div_euclid(self.bucket_secs) * self.bucket_secs;
        let row = self.rows.entry((bucket, device)).or_default();
        row.requests += 1;
        row.bytes = row.bytes.saturating_add(line.bytes);
        row.devices.insert((line.addr, agent));
    }

    /// The rows in order: time, product, release (semver order when both parse), channel.
    fn sorted_rows(&self) -> Vec<(&i64, &DeviceAgent, &Row)> {
        let mut rows: Vec<_> = self.rows.iter().map(|((t, d), r)| (t, d, r)).collect();
        rows.sort_by(|a, b| {
            let release = match (
                semver::Version::parse(&a.1.release),
                semver::Version::parse(&b.1.release),
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.1.release.cmp(&b.1.release),
            };
            (a.0, &a.1.product)
                .cmp(&(b.0, &b.1.product))
                .then(release)
                .then(a.1.channel.cmp(&b.1.channel))
        });
        rows
    }

    fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .sorted_rows()
            .into_iter()
            .map(|(bucket, device, row)| {
                json!({
                    "bucket": bucket_time(*bucket),
                    "bucket_unix": bucket,
                    "product": device.product,
                    "release": device.release,
                    "channel": device.channel,
                    "requests": row.requests,
                    "bytes": row.bytes,
                    "devices": row.devices.len(),
                })
            })
            .collect();
        let unparsed: Vec<Value> = self
            .unparsed_examples
            .iter()
            .map(|(file, line)| json!({"file": file, "line": line}))
            .collect();
        json!({
            "bucket_secs": self.bucket_secs,
            "device_estimate": DEVICE_ESTIMATE,
            "lines": self.lines,
            "parsed": self.lines - self.unparsed,
            "unparsed": self.unparsed,
            "unparsed_lines": unparsed,
            "device_requests": self.device_requests,
            "other_requests": self.other_requests,
            "rows": rows,
        })
    }

    fn to_text(&self) -> String {
        let mut table = vec![[
            "bucket (UTC)".to_owned(),
            "product".to_owned(),
            "release".to_owned(),
            "channel".to_owned(),
            "requests".to_owned(),
            "devices".to_owned(),
        ]];
        for (bucket, device, row) in self.sorted_rows() {
            table.push([
                bucket_time(*bucket),
                device.product.clone(),
                device.release.clone(),
                device.channel.clone(),
                row.requests.to_string(),
                row.devices.len().to_string(),
            ]);
        }
        let mut out = format_table(&table);
        if self.rows.is_empty() {
            out.push_str("no requests from ota-update devices\n");
        }
        out.push_str(&format!("devices: {DEVICE_ESTIMATE}\n"));
        out.push_str(&format!(
            "{} lines: {} from ota-update devices, {} other requests, {} not parsed",
            self.lines, self.device_requests, self.other_requests, self.unparsed
        ));
        if let Some((file, line)) = self.unparsed_examples.first() {
            out.push_str(&format!(" (first: {file}:{line})"));
        }
        out.push('\n');
        out
    }
}

/// Columns padded to their widest cell; the two counts right-aligned.
fn format_table(table: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for row in table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i >= 4 {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A bucket's start as RFC 3339 (UTC).
fn bucket_time(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_common_log_format() {
        assert_eq!(
            parse_time("25/Nov/2026:07:40:00 +0000"),
            Some(1_795_592_400)
        );
        assert_eq!(
            parse_time("25/Nov/2026:08:40:00 +0100"),
            Some(1_795_592_400)
        );
        assert_eq!(
            parse_time("25/Nov/2026:02:10:00 -0530"),
            Some(1_795_592_400)
        );
        assert_eq!(parse_time("01/Jan/1970:00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_time("29/Feb/2024:12:00:00 +0000"),
            Some(1_709_208_000)
        );
        for bad in [
            "25/Nov/2026:07:40:00",
            "25/Foo/2026:07:40:00 +0000",
            "25/Nov/2026:24:40:00 +0000",
            "25/Nov/2026:07:40 +0000",
            "25/Nov/2026:07:40:00 0000",
            "",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn both_formats_and_the_old_one() {
        let ours = r#"127.0.0.1:40522 - - [25/Nov/2026:07:40:00 +0000] "GET /timestamp.json HTTP/1.1" 304 0 "-" "ota-update/0.1.0 (acme-router; 1.0.0; stable)" 0.1ms"#;
        let nginx = r#"2001:db8::7 - alice [25/Nov/2026:07:40:00 +0000] "GET /x HTTP/1.1" 200 612 "http://r/" "ota-update/0.1.0 (acme-router; 2.0.0; beta)""#;
        let old = r#"[::1]:5 - - [25/Nov/2026:07:40:00 +0000] "GET /x HTTP/1.1" 404 10 0.3ms"#;
        let line = parse_line(ours).unwrap_or_else(|| panic!("{ours}"));
        assert_eq!(line.addr, "127.0.0.1");
        assert_eq!(line.time, 1_795_592_400);
        assert_eq!(
            line.agent.as_deref(),
            Some("ota-update/0.1.0 (acme-router; 1.0.0; stable)")
        );
        let line = parse_line(nginx).unwrap_or_else(|| panic!("{nginx}"));
        assert_eq!((line.addr.as_str(), line.bytes), ("2001:db8::7", 612));
        let line = parse_line(old).unwrap_or_else(|| panic!("{old}"));
        assert_eq!((line.addr.as_str(), line.agent), ("::1", None));
        for garbage in ["", "hello", "1.2.3.4 - - [x] \"GET / HTTP/1.1\" 200 1"] {
            assert_eq!(parse_line(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn agents_are_unescaped_then_read() {
        assert_eq!(unescape(r"a\x22b\x5Cc\xZZ\x4"), "a\"b\\c\\xZZ\\x4");
        let device = parse_agent("ota-update/0.1.0 (acme-router; 1.0.0; stable)");
        assert_eq!(
            device.map(|d| (d.product, d.release, d.channel)),
            Some(("acme-router".into(), "1.0.0".into(), "stable".into()))
        );
        for other in [
            "curl/8.0",
            "ota-update/0.1.0",
            "ota-update/0.1.0 (acme-router; 1.0.0)",
            "ota-update/0.1.0 (a; b; c; d)",
        ] {
            assert_eq!(parse_agent(other), None, "{other}");
        }
    }

    #[test]
    fn buckets_are_whole_seconds() {
        assert_eq!(parse_bucket("1h").ok(), Some(3600));
        assert_eq!(parse_bucket("1d").ok(), Some(86_400));
        assert!(parse_bucket("0s").is_err());
        assert!(parse_bucket("1.5s").is_err());
        assert!(parse_bucket("soon").is_err());
    }
}
