//! Fitting the connection limits to the descriptors the process may open
//! (RLIMIT_NOFILE): every client is a descriptor, and one accepted past the
//! limit fails with EMFILE before it can be told the server is busy, while new
//! clients (and a balancer's health checks) wait in the backlog. So the
//! limits left to their defaults are derived from the descriptor limit, and
//! limits set by hand that cannot fit are warned about at start-up.

/// Descriptors kept for everything but clients: the listening sockets, the
/// files read at start-up and reload, the runtime's own.
pub const RESERVED: u64 = 64;
/// The limits when the descriptors allow them.
pub const PREFERRED: usize = 10_000;

/// What the listeners of one configuration can hold at once.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// TCP, TLS and unix listeners: `max_connections` each.
    pub line_listeners: usize,
    /// HTTP listeners: `max_websockets` plus `headroom` each.
    pub http_listeners: usize,
    pub headroom: usize,
    /// A WebSocket session also holds its connection to the timestamp server.
    pub gateway: bool,
    /// `--metrics` and `--redirect-http` listeners: `small` each.
    pub small_listeners: usize,
    pub small: usize,
    /// Connections each HTTP listener keeps past its limit for health checks.
    pub probe_slots: usize,
}

/// The limits in force, and what start-up should say about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    pub max_connections: usize,
    pub max_websockets: usize,
    /// Limits set by hand need more descriptors than the process has.
    pub warning: Option<String>,
    /// Defaults were lowered to fit.
    pub lowered: bool,
}

impl Demand {
    /// Descriptors needed with these limits, at most.
    pub fn need(&self, max_connections: usize, max_websockets: usize) -> u64 {
        let sessions = self.http_listeners * (max_websockets + self.headroom + self.probe_slots)
            + if self.gateway { max_websockets } else { 0 };
        (self.line_listeners * max_connections + sessions + self.small_listeners * self.small)
            as u64
            + RESERVED
    }

    /// The limits for a process that may open `limit` descriptors; `None`
    /// for a limit left to its default.
    pub fn fit(&self, limit: u64, connections: Option<usize>, websockets: Option<usize>) -> Fitted {
        let ws_cost = self.http_listeners + usize::from(self.gateway);
        let fixed = self.need(0, 0);
        let room = limit.saturating_sub(fixed) as usize;
        let (max_connections, max_websockets) = match (connections, websockets) {
            (Some(c), Some(w)) => (c, w),
            (Some(c), None) => {
                let left = room.saturating_sub(self.line_listeners * c);
                (c, (left / ws_cost.max(1)).clamp(1, PREFERRED))
            }
            (None, Some(w)) => {
                let left = room.saturating_sub(ws_cost * w);
                ((left / self.line_listeners.max(1)).clamp(1, PREFERRED), w)
            }
            (None, None) => {
                let per_unit = self.line_listeners + ws_cost;
                let each = (room / per_unit.max(1)).clamp(1, PREFERRED);
                (each, each)
            }
        };
        let need = self.need(max_connections, max_websockets);
        let warning = (need > limit).then(|| {
            format!(
                "--max-connections {max_connections} and --max-websockets {max_websockets} \
                 need up to {need} file descriptors, more than this process may open ({limit}); \
                 past the limit new clients wait unanswered instead of being told the server is \
                 busy: raise the limit (LimitNOFILE=, ulimit -n) or lower the limits"
            )
        });
        Fitted {
            lowered: connections.is_none() && max_connections < PREFERRED
                || websockets.is_none() && max_websockets < PREFERRED,
            max_connections,
            max_websockets,
            warning,
        }
    }
}

/// The descriptors this process may open now (the soft RLIMIT_NOFILE).
pub fn limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One TCP listener and the gateway on one HTTP listener, as by default.
    const DEFAULT: Demand = Demand {
        line_listeners: 1,
        http_listeners: 1,
        headroom: 1024,
        gateway: true,
        small_listeners: 0,
        small: 1024,
        probe_slots: 16,
    };

    #[test]
    fn the_defaults_stand_where_the_descriptors_allow_them() {
        let f = DEFAULT.fit(65_536, None, None);
        assert_eq!(
            (f.max_connections, f.max_websockets, f.lowered),
            (10_000, 10_000, false)
        );
        assert_eq!(f.warning, None);
    }

    #[test]
    fn the_defaults_shrink_to_fit_a_smaller_limit() {
        let f = DEFAULT.fit(20_000, None, None);
        assert!(f.lowered && f.warning.is_none(), "{f:?}");
        assert!(DEFAULT.need(f.max_connections, f.max_websockets) <= 20_000);
        assert_eq!(f.max_connections, f.max_websockets);
        assert!(f.max_connections > 6_000, "{f:?}");
    }

    #[test]
    fn a_limit_given_is_kept_and_the_other_takes_what_is_left() {
        let f = DEFAULT.fit(20_000, Some(5_000), None);
        assert_eq!(f.max_connections, 5_000);
        assert!(DEFAULT.need(5_000, f.max_websockets) <= 20_000, "{f:?}");
        assert!(f.warning.is_none());
        let f = DEFAULT.fit(20_000, None, Some(100));
        assert_eq!((f.max_connections, f.max_websockets), (10_000, 100));
    }

    #[test]
    fn limits_given_that_cannot_fit_are_warned_about() {
        let f = DEFAULT.fit(20_000, Some(10_000), Some(10_000));
        assert_eq!((f.max_connections, f.max_websockets), (10_000, 10_000));
        let warning = f.warning.expect("a warning");
        assert!(
            warning.contains("31104") && warning.contains("(20000)"),
            "{warning}"
        );
        assert!(!f.lowered);
    }
}
