//! Following the sign-outs other instances publish on the session store's
//! channel, to close this instance's sockets of those sessions at once.
//!
//! A message missed (while a lost subscription is being restored) costs only
//! that promptness: those sockets close when the token they were opened with
//! expires, and the page's reconnection is refused by the store's key.

use std::time::Duration;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use redis::aio::PubSub;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Where sign-outs are published: the session id in hex.
pub const CHANNEL: &str = "timecho:signed-out";
/// How long restoring the subscription may take per attempt.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_millis(500);
/// Waits between attempts to restore a lost subscription, doubling up to the longest.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(250);
const RESUBSCRIBE_LONGEST: Duration = Duration::from_secs(5);

/// The sign-outs every instance publishes, followed by this one.
pub struct SignOuts {
    pub(super) client: redis::Client,
    pub(super) subscription: PubSub,
    pub(super) shown: String,
    pub(super) failures: Counter,
}

impl SignOuts {
    /// Calls `signed_out` with each session id signed out on any instance,
    /// until `stop`. A lost subscription is restored, with waits that grow
    /// to [`RESUBSCRIBE_LONGEST`]; it is logged when lost and when back.
    pub async fn follow(self, signed_out: impl Fn(&[u8; 16]), stop: CancellationToken) {
        let SignOuts {
            client,
            mut subscription,
            shown,
            failures,
        } = self;
        loop {
            let mut messages = subscription.on_message();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    message = messages.next() => match message {
                        Some(m) => {
                            if let Some(session) = session_id(m.get_payload_bytes()) {
                                signed_out(&session);
                            }
                        }
                        None => break,
                    },
                }
            }
            drop(messages);
            failures.inc();
            warn!(
                store = %shown,
                "session store subscription lost; until it is back, sockets of sessions signed \
                 out elsewhere close when their token expires"
            );
            let mut wait = RESUBSCRIBE_FIRST;
            subscription = loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                match tokio::time::timeout(SUBSCRIBE_DEADLINE, subscribe(&client)).await {
                    Ok(Ok(subscription)) => break subscription,
                    _ => {
                        failures.inc();
                        wait = (wait * 2).min(RESUBSCRIBE_LONGEST);
                    }
                }
            };
            info!(store = %shown, "following sign-outs on the session store again");
        }
    }
}

pub async fn subscribe(client: &redis::Client) -> redis::RedisResult<PubSub> {
    let mut subscription = client.get_async_pubsub().await?;
    subscription.subscribe(CHANNEL).await?;
    Ok(subscription)
}

pub fn hex(session: &[u8; 16]) -> String {
    session.iter().map(|b| format!("{b:02x}")).collect()
}

/// A session id as [`hex`] writes it; `None` for anything else.
fn session_id(text: &[u8]) -> Option<[u8; 16]> {
    let text = std::str::from_utf8(text).ok()?;
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_session_in_hex_and_nothing_else_passes() {
        let id = [0xab, 0x01, 0, 0xff, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0x10];
        assert_eq!(session_id(hex(&id).as_bytes()), Some(id));
        for bad in [
            "",
            "ab",
            &"zz".repeat(16),
            &"ab".repeat(17),
            "+1ab0000000000000000000000000000",
        ] {
            assert_eq!(session_id(bad.as_bytes()), None, "{bad}");
        }
    }
}
