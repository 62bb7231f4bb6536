//! The lifecycle of a hold.

use std::fmt;

/// Lifecycle of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldState {
    Held,
    Settled,
    Released,
    Expired,
}

impl HoldState {
    /// The stable id used in the store and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Settled => "settled",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }

    /// Parses the stable id back.
    pub fn parse(s: &str) -> Option<HoldState> {
        [
            HoldState::Held,
            HoldState::Settled,
            HoldState::Released,
            HoldState::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl fmt::Display for HoldState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
