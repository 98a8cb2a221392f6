//! The outbox: the messages the user typed, queued until the socket takes
//! them, put back when a session ends with them in flight, and given up when
//! too long for the server's line or when they keep ending the sessions that
//! carry them.

use std::rc::Rc;

use super::close::Blame;
use super::{Chat, Delivery, Entry, EntryKind, Outgoing, MAX_STRIKES};

impl Chat {
    /// Messages waiting for the socket, oldest first.
    pub fn outbox(&self) -> impl Iterator<Item = (u64, &str)> {
        self.outgoing()
            .filter(|(_, msg)| msg.delivery == Delivery::Queued)
            .map(|(id, msg)| (id, msg.text.as_str()))
    }

    pub fn queued_count(&self) -> usize {
        self.outbox().count()
    }

    fn outgoing(&self) -> impl Iterator<Item = (u64, &Outgoing)> {
        self.entries.iter().filter_map(|e| match &e.kind {
            EntryKind::Sent(msg) => Some((e.id, msg)),
            _ => None,
        })
    }

    pub(super) fn submit(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        let bytes = text.len();
        if bytes <= self.settings.max_message_bytes {
            self.push(EntryKind::Sent(Outgoing::queued(text)));
            return;
        }
        self.push(EntryKind::Sent(Outgoing {
            delivery: Delivery::Undelivered,
            ..Outgoing::queued(text)
        }));
        self.push(self.too_long(bytes));
    }

    pub(super) fn too_long(&self, bytes: usize) -> EntryKind {
        EntryKind::Error(format!(
            "Not sent: the message is {bytes} bytes, and the server takes at most \
             {} in one line.",
            self.settings.max_message_bytes
        ))
    }

    /// Replaces each sent message for which `change` returns a new state,
    /// oldest first.
    pub(super) fn update_outgoing(
        &mut self,
        mut change: impl FnMut(u64, &Outgoing) -> Option<Outgoing>,
    ) {
        for entry in &mut self.entries {
            if let EntryKind::Sent(msg) = &entry.kind {
                if let Some(next) = change(entry.id, msg) {
                    *entry = Rc::new(Entry {
                        id: entry.id,
                        kind: EntryKind::Sent(next),
                    });
                }
            }
        }
    }

    /// Messages in flight when a session ended go back to the outbox, but for
    /// one the close blames: the largest, once it has struck out.
    pub(super) fn settle_in_flight(&mut self, blame: Blame) {
        let strike = u8::from(blame == Blame::Suspects);
        let struck_out = |msg: &Outgoing| match blame {
            Blame::Nobody => false,
            Blame::Largest => true,
            Blame::Suspects => msg.strikes.saturating_add(strike) >= MAX_STRIKES,
        };
        let given_up = self
            .outgoing()
            .filter(|(_, msg)| msg.delivery == Delivery::InFlight && struck_out(msg))
            .max_by_key(|(id, msg)| (msg.text.len(), std::cmp::Reverse(*id)))
            .map(|(id, _)| id);
        self.update_outgoing(|id, msg| {
            (msg.delivery == Delivery::InFlight).then(|| Outgoing {
                delivery: if Some(id) == given_up {
                    Delivery::Undelivered
                } else {
                    Delivery::Queued
                },
                strikes: msg.strikes.saturating_add(strike),
                text: msg.text.clone(),
                sent_at: None,
            })
        });
    }
}
