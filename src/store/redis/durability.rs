//! `--durability wait-replicas=N[,timeout-ms=T]`: a write answers only once N replicas have it.
//!
//! Redis replicates asynchronously, so a write the primary acknowledged can vanish when a
//! replica is promoted. With this option every write script is followed, in the same pipeline
//! (one network round trip), by `WAIT N T`; fewer acknowledgements make the call UNAVAILABLE,
//! and the caller's idempotent retry completes it.

use std::fmt;

/// How many replicas must have a write before it is answered, and how long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    pub replicas: u32,
    pub timeout_ms: u64,
}

impl Durability {
    /// Parses `wait-replicas=N[,timeout-ms=T]`; `default_timeout_ms` when T is not given. The
    /// error is one line naming what is wrong.
    pub fn parse(text: &str, default_timeout_ms: u64) -> Result<Durability, String> {
        let mut replicas = None;
        let mut timeout_ms = default_timeout_ms;
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not KEY=VALUE"))?;
            let number = |what: &str| {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{what}: `{value}` is not a whole number"))
            };
            match key {
                "wait-replicas" => {
                    let n = number("wait-replicas")?;
                    if !(1..=16).contains(&n) {
                        return Err(format!("wait-replicas: {n} is not 1-16"));
                    }
                    replicas = Some(n as u32);
                }
                "timeout-ms" => {
                    timeout_ms = number("timeout-ms")?;
                    if timeout_ms == 0 {
                        return Err("timeout-ms: 0 would wait forever".into());
                    }
                }
                other => return Err(format!("unknown setting `{other}`")),
            }
        }
        let replicas = replicas.ok_or("wait-replicas=N is required")?;
        Ok(Durability {
            replicas,
            timeout_ms,
        })
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wait-replicas={},timeout-ms={}",
            self.replicas, self.timeout_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_problem() {
        assert_eq!(
            Durability::parse("wait-replicas=1", 120),
            Ok(Durability {
                replicas: 1,
                timeout_ms: 120
            })
        );
        assert_eq!(
            Durability::parse("wait-replicas=2,timeout-ms=50", 120)
                .unwrap()
                .to_string(),
            "wait-replicas=2,timeout-ms=50"
        );
        for bad in [
            "",
            "wait-replicas=0",
            "timeout-ms=5",
            "wait-replicas=x",
            "nope=1",
        ] {
            assert!(Durability::parse(bad, 100).is_err(), "{bad}");
        }
    }
}
