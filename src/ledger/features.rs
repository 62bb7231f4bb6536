//! Why a plan refuses a generation. Features come from the plan alone; credits never unlock them.

use std::fmt;

/// Which feature of the plan refused the generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenialReason {
    /// The plan does not include the model.
    Model { model: String },
    /// The video is longer than the plan allows.
    VideoSeconds { seconds: u32, max_seconds: u32 },
    /// The account already runs as many generations as the plan allows.
    ConcurrentHolds { open_holds: u32, max_holds: u32 },
}

/// A refusal by the plan, with the cheapest plan that would allow the generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The plan the account is on.
    pub plan: String,
    /// The cheapest plan that would allow it, if any does.
    pub needs: Option<String>,
    /// What was refused.
    pub reason: DenialReason,
}

impl Denial {
    /// Short machine-readable reason, for metrics and error details.
    pub fn code(&self) -> &'static str {
        match self.reason {
            DenialReason::Model { .. } => "model",
            DenialReason::VideoSeconds { .. } => "video_seconds",
            DenialReason::ConcurrentHolds { .. } => "concurrent_holds",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = &self.plan;
        match &self.reason {
            DenialReason::Model { model } => match &self.needs {
                Some(needs) => write!(
                    f,
                    "model `{model}` needs plan `{needs}`; account is on `{plan}`"
                ),
                None => write!(f, "model `{model}` is in no plan; account is on `{plan}`"),
            },
            DenialReason::VideoSeconds {
                seconds,
                max_seconds,
            } => {
                write!(
                    f,
                    "a {seconds} s video is longer than plan `{plan}` allows ({max_seconds} s)"
                )?;
                match &self.needs {
                    Some(needs) => write!(f, "; it needs plan `{needs}`"),
                    None => write!(f, "; no plan allows it"),
                }
            }
            DenialReason::ConcurrentHolds {
                open_holds,
                max_holds,
            } => {
                write!(
                    f,
                    "account already runs {open_holds} generations, the most plan `{plan}` \
                     allows at once ({max_holds}); wait for one to finish"
                )?;
                match &self.needs {
                    Some(needs) => write!(f, " or move to plan `{needs}`"),
                    None => Ok(()),
                }
            }
        }
    }
}
