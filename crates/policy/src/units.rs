//! Human sizes and durations ("512M", "90s", "1h30m") as they appear in policies and flags.
//! Parsing lives here so that the TOML file and the command line accept exactly the same forms.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A byte count written as `1024`, `64K`, `512M`, `2G` or `1T` (binary multiples; `KiB`/`MB` spellings accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?} (expected e.g. 512M, 2G)"))?;
        let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            _ => return Err(format!("invalid size {s:?} (unit must be K, M, G or T)")),
        };
        let v = n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))?;
        if v == 0 {
            return Err(format!("size {s:?} must be greater than zero"));
        }
        Ok(Size(v))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        for (u, m) in [("T", 1u64 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
            if v.is_multiple_of(m) {
                return write!(f, "{}{}", v / m, u);
            }
        }
        write!(f, "{v}")
    }
}

/// A duration written as `90s`, `30m`, `1h30m`, `500ms` or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid duration {s:?} (expected e.g. 90s, 30m, 1h30m)");
        let t = s.trim();
        if t.is_empty() {
            return Err(bad());
        }
        if let Ok(secs) = t.parse::<u64>() {
            return Ok(Dur(Duration::from_secs(secs)));
        }
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let d = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if d == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..d].parse().map_err(|_| bad())?;
            rest = &rest[d..];
            let u = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let part = match &rest[..u] {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
                "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
                "d" => Duration::from_secs(n.checked_mul(86400).ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            total = total.checked_add(part).ok_or_else(bad)?;
            rest = &rest[u..];
        }
        if total.is_zero() {
            return Err(format!("duration {s:?} must be greater than zero"));
        }
        Ok(Dur(total))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    N(u64),
                    S(String),
                }
                match Raw::deserialize(d)? {
                    Raw::N(n) => n.to_string().parse().map_err(serde::de::Error::custom),
                    Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
                }
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}
serde_via_str!(Size);
serde_via_str!(Dur);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("512M".parse::<Size>().unwrap().0, 512 << 20);
        assert_eq!("2GiB".parse::<Size>().unwrap().0, 2 << 30);
        assert_eq!("4096".parse::<Size>().unwrap().0, 4096);
        assert!("2X".parse::<Size>().is_err());
        assert!("0".parse::<Size>().is_err());
        assert!("M".parse::<Size>().is_err());
        assert!("99999999999T".parse::<Size>().is_err());
        assert_eq!(Size(3 << 30).to_string(), "3G");
    }

    #[test]
    fn durations() {
        assert_eq!("90s".parse::<Dur>().unwrap().0, Duration::from_secs(90));
        assert_eq!("1h30m".parse::<Dur>().unwrap().0, Duration::from_secs(5400));
        assert_eq!("250ms".parse::<Dur>().unwrap().0, Duration::from_millis(250));
        assert_eq!("7".parse::<Dur>().unwrap().0, Duration::from_secs(7));
        for bad in ["", "s", "10x", "1h-3m", "0s", "m5"] {
            assert!(bad.parse::<Dur>().is_err(), "{bad}");
        }
    }
}
