//! Timestamps as microseconds since the Unix epoch (UTC).
//!
//! Both backends store times as BIGINT microseconds: one encoding, exact ordering, no
//! time-zone or precision surprises between SQLite and PostgreSQL.

use chrono::{DateTime, TimeZone, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

static LAST: AtomicI64 = AtomicI64::new(0);

/// Now, strictly increasing within this process, so runs queued by one host keep FIFO order
/// even when two land in the same microsecond.
pub fn now_us() -> i64 {
    let wall = Utc::now().timestamp_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = wall.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// The instant `us` microseconds after the epoch, as the store's integers are read back;
/// out of chrono's range (never written by the host) reads as the epoch.
pub fn to_datetime(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// `t` as microseconds since the epoch, the encoding the store writes.
pub fn from_datetime(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Serde for `Option<DateTime<Utc>>` as RFC 3339 text, written and read without chrono's
/// formatting machinery: the run snapshots of the change feed carry four timestamps each,
/// and formatting them through chrono's `Display` was a tenth of a scheduler commit.
/// The text is exactly chrono's own (`to_rfc3339_opts(SecondsFormat::AutoSi, true)`, which
/// its serde uses); anything the fast paths do not cover (years outside 0..=9999, leap
/// seconds, offsets other than `Z`) goes through chrono.
pub(crate) mod rfc3339 {
    use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, SecondsFormat, Timelike, Utc};
    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            None => s.serialize_none(),
            Some(t) => {
                let mut buf = [0u8; 32];
                match format(t, &mut buf) {
                    Some(n) => s.serialize_some(std::str::from_utf8(&buf[..n]).expect("ascii")),
                    None => s.serialize_some(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                }
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(TextVisitor).map(Some)
        }
    }

    /// Reads the text where it lies (no copy), as chrono reads it when the fast path cannot.
    struct TextVisitor;

    impl<'de> Visitor<'de> for TextVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            match parse(text) {
                Some(t) => Ok(t),
                None => text.parse::<DateTime<Utc>>().map_err(E::custom),
            }
        }
    }

    fn digits(buf: &mut [u8], mut v: u32) {
        for b in buf.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z` into `buf`; None outside the fast path.
    fn format(t: &DateTime<Utc>, buf: &mut [u8; 32]) -> Option<usize> {
        let year = t.year();
        let nanos = t.nanosecond();
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            return None;
        }
        digits(&mut buf[0..4], year as u32);
        buf[4] = b'-';
        digits(&mut buf[5..7], t.month());
        buf[7] = b'-';
        digits(&mut buf[8..10], t.day());
        buf[10] = b'T';
        digits(&mut buf[11..13], t.hour());
        buf[13] = b':';
        digits(&mut buf[14..16], t.minute());
        buf[16] = b':';
        digits(&mut buf[17..19], t.second());
        let mut n = 19;
        let (width, value) = match nanos {
            0 => (0, 0),
            _ if nanos.is_multiple_of(1_000_000) => (3, nanos / 1_000_000),
            _ if nanos.is_multiple_of(1_000) => (6, nanos / 1_000),
            _ => (9, nanos),
        };
        if width > 0 {
            buf[n] = b'.';
            digits(&mut buf[n + 1..n + 1 + width], value);
            n += 1 + width;
        }
        buf[n] = b'Z';
        Some(n + 1)
    }

    fn number(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32))
    }

    /// The exact shape [`format`] writes (any fraction of 1 to 9 digits); None otherwise.
    fn parse(s: &str) -> Option<DateTime<Utc>> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
            return None;
        }
        let (year, month, day) = (number(&b[0..4])?, number(&b[5..7])?, number(&b[8..10])?);
        let (hour, minute, second) = (number(&b[11..13])?, number(&b[14..16])?, number(&b[17..19])?);
        let nanos = match &b[19..b.len() - 1] {
            [] => 0,
            [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => number(frac)? * 10u32.pow(9 - frac.len() as u32),
            _ => return None,
        };
        // chrono checks the fields (a leap second, `:60`, is left to its own parser).
        let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
        let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
        Some(date.and_time(time).and_utc())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Fast(#[serde(with = "super")] Option<DateTime<Utc>>);
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Chrono(Option<DateTime<Utc>>);

        fn samples() -> Vec<DateTime<Utc>> {
            let mut out = vec![
                DateTime::from_timestamp(0, 0).unwrap(),
                DateTime::from_timestamp(951_782_400, 0).unwrap(),     // 2000-02-29
                DateTime::from_timestamp(4_107_542_399, 0).unwrap(),   // 2100-02-28T23:59:59 (not a leap year)
                DateTime::from_timestamp(-62_167_219_200, 0).unwrap(), // year 0
                DateTime::from_timestamp(253_402_300_799, 999_999_999).unwrap(), // 9999-12-31
                DateTime::from_timestamp(253_402_300_800, 0).unwrap(), // year 10000: chrono's path
                DateTime::from_timestamp(-62_167_219_201, 0).unwrap(), // year -1: chrono's path
                DateTime::from_timestamp(1_700_000_039, 1_999_999_999).unwrap(), // in a leap second
            ];
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for i in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Years 0001 to 9999, before the epoch too.
                let secs = (x % (253_402_300_800 + 62_135_596_800)) as i64 - 62_135_596_800;
                let nanos = match i % 4 {
                    0 => 0,
                    1 => (x >> 40) as u32 % 1000 * 1_000_000,
                    2 => (x >> 32) as u32 % 1_000_000 * 1000,
                    _ => (x >> 32) as u32 % 1_000_000_000,
                };
                out.push(DateTime::from_timestamp(secs, nanos).unwrap());
            }
            out
        }

        #[test]
        fn fast_text_is_exactly_chronos_and_reads_back_the_same_instant() {
            for t in samples() {
                let fast = serde_json::to_string(&Fast(Some(t))).unwrap();
                assert_eq!(fast, serde_json::to_string(&Chrono(Some(t))).unwrap(), "{t:?}");
                assert_eq!(serde_json::from_str::<Fast>(&fast).unwrap(), Fast(Some(t)), "{fast}");
            }
            assert_eq!(serde_json::to_string(&Fast(None)).unwrap(), "null");
            assert_eq!(serde_json::from_str::<Fast>("null").unwrap(), Fast(None));
        }

        #[test]
        fn text_outside_the_fast_shape_is_read_as_chrono_reads_it() {
            for text in [
                "2024-01-02T03:04:05+02:00",
                "2024-01-02 03:04:05Z",
                "2024-01-02T03:04:05.5z",
                "2024-02-30T00:00:00Z",
                "nonsense",
                "2024-13-01T00:00:00Z",
            ] {
                let json = format!("\"{text}\"");
                let fast = serde_json::from_str::<Fast>(&json).map(|f| f.0).map_err(|e| e.to_string());
                let chrono = serde_json::from_str::<Chrono>(&json).map(|c| c.0).map_err(|e| e.to_string());
                assert_eq!(fast.is_ok(), chrono.is_ok(), "{text}: {fast:?} vs {chrono:?}");
                if let (Ok(a), Ok(b)) = (&fast, &chrono) {
                    assert_eq!(a, b, "{text}");
                }
            }
        }
    }
}
