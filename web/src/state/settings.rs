//! What the page knows of the server's settings, from `GET /api/config`: the
//! longest message it may send, and how the server writes its stamps. Until
//! the answer comes, or when none does (an older gateway), the defaults apply.

use timecho_shared::api::ServerConfig;
use timecho_shared::{StampFormat, DEFAULT_MAX_LINE};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Longer messages are kept but not sent: the gateway would end the
    /// session for them (1009), or the server would refuse the line.
    pub max_message_bytes: usize,
    /// `None` until the server has said; stamps are then read in whichever
    /// built-in format they parse as.
    pub stamp: Option<StampSettings>,
    /// While signed in, ask `/api/session` this often (ms): that renews the
    /// sign-in token, which lasts only a few minutes on its own.
    pub renew_every_ms: Option<u32>,
    /// Which server instance answered (`--instance`), for the status tooltip.
    pub instance: Option<String>,
}

/// The server's stamp layout, and its zone.
#[derive(Debug, Clone, PartialEq)]
pub struct StampSettings {
    /// Format, precision, and whether stamps are in UTC (`format.utc`).
    pub format: StampFormat,
    /// The server's zone east of UTC when it answered; 0 for UTC stamps.
    pub utc_offset_seconds: i32,
}

impl Default for Settings {
    /// The server's defaults (`--max-line`), as far as the page can assume them.
    fn default() -> Self {
        Settings {
            max_message_bytes: DEFAULT_MAX_LINE,
            stamp: None,
            renew_every_ms: None,
            instance: None,
        }
    }
}

impl Settings {
    /// A layout this page cannot read (a newer server's format) leaves the
    /// stamp unknown rather than guessed.
    pub fn from_config(config: &ServerConfig) -> Settings {
        let stamp = config
            .stamp
            .stamp_format()
            .ok()
            .map(|format| StampSettings {
                format,
                utc_offset_seconds: config.stamp.utc_offset_seconds,
            });
        Settings {
            max_message_bytes: config.max_message(),
            stamp,
            renew_every_ms: config
                .renew_every_seconds
                .map(|s| u32::try_from(s.saturating_mul(1000)).unwrap_or(u32::MAX)),
            instance: config.instance.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
