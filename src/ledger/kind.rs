//! The four metered generation kinds.

use std::fmt;

/// What a generation produces. Images are counted per image, videos per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    CharacterImage,
    LocationImage,
    FirstFrame,
    Video,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 4] = [
        Kind::CharacterImage,
        Kind::LocationImage,
        Kind::FirstFrame,
        Kind::Video,
    ];

    /// The stable id used in the catalog, the store and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CharacterImage => "character_image",
            Kind::LocationImage => "location_image",
            Kind::FirstFrame => "first_frame",
            Kind::Video => "video",
        }
    }

    /// Parses the stable id back.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether `quantity` counts video seconds (otherwise images).
    pub fn is_video(self) -> bool {
        self == Kind::Video
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("audio"), None);
    }
}
