//! How many WebSocket sessions each sign-in holds open, so that one sign-in
//! (a leaked token, a script gone wrong) cannot take every `--max-websockets`
//! slot and lock out everyone else.
//!
//! The table holds a sign-in only while it has a session open: the last one
//! to close removes it, so the table is never larger than the sessions open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::signin::Holder;

/// The sign-in has as many sessions open as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyForOne;

pub struct PerUser {
    open: Mutex<HashMap<Holder, usize>>,
    max: usize,
}

/// One open session of a sign-in; dropping it gives the place back.
pub struct UserSlot {
    table: Arc<PerUser>,
    holder: Holder,
}

impl PerUser {
    pub fn new(max: usize) -> Arc<PerUser> {
        Arc::new(PerUser {
            open: Mutex::new(HashMap::new()),
            max: max.max(1),
        })
    }

    /// A place for one more session of `holder`, if it has one left.
    pub fn take(self: &Arc<Self>, holder: &Holder) -> Result<UserSlot, TooManyForOne> {
        let mut open = self.lock();
        let count = open.entry(holder.clone()).or_insert(0);
        if *count >= self.max {
            return Err(TooManyForOne);
        }
        *count += 1;
        Ok(UserSlot {
            table: self.clone(),
            holder: holder.clone(),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Holder, usize>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn holders(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        if let Some(count) = open.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Holder {
        Holder::User(name.to_owned())
    }

    #[test]
    fn each_sign_in_gets_its_own_share_and_the_table_empties_as_sessions_close() {
        let table = PerUser::new(2);
        let a1 = table.take(&user("ada")).unwrap();
        let a2 = table.take(&user("ada")).unwrap();
        assert_eq!(table.take(&user("ada")).err(), Some(TooManyForOne));
        // Others, and each token apart, are not held up by ada.
        let _alan = table.take(&user("alan")).unwrap();
        let _t1 = table.take(&Holder::Token([1; 32])).unwrap();
        let _t2 = table.take(&Holder::Token([2; 32])).unwrap();
        assert_eq!(table.holders(), 4);
        drop(a1);
        let a3 = table
            .take(&user("ada"))
            .expect("a closed session frees a place");
        drop((a2, a3));
        assert_eq!(table.holders(), 3, "ada's entry goes with her last session");
    }

    #[test]
    fn a_refused_sign_in_leaves_no_entry_behind() {
        let table = PerUser::new(1);
        let slot = table.take(&user("ada")).unwrap();
        assert!(table.take(&user("ada")).is_err());
        drop(slot);
        assert_eq!(table.holders(), 0);
    }
}
