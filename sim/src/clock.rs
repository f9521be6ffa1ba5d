//! The virtual time of the simulation running on this thread, for log lines: a simulation's
//! log should say when, in the run, something happened, not when the host printed it. Each
//! run keeps its actors on one thread (its actix system), so a thread-local clock is exact
//! even when a frontier runs several simulations at once.

use std::cell::Cell;

thread_local! {
    static NOW_MS: Cell<Option<i64>> = const { Cell::new(None) };
}

/// Sets this thread's virtual time (Unix milliseconds); `None` when no run is going on.
pub fn set(now_ms: Option<i64>) {
    NOW_MS.with(|c| c.set(now_ms));
}

/// This thread's virtual time, when a simulation runs on it.
pub fn now_ms() -> Option<i64> {
    NOW_MS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_thread_has_its_own_clock() {
        super::set(Some(42));
        assert_eq!(super::now_ms(), Some(42));
        std::thread::spawn(|| assert_eq!(super::now_ms(), None))
            .join()
            .expect("thread");
        super::set(None);
        assert_eq!(super::now_ms(), None);
    }
}
