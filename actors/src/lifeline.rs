//! Whether the parts every model shares are all still there. The registry, the decision log and
//! the publisher each hold a [`PartGuard`]; when one of them is dropped (a panic in its handler
//! unwinds through it, or it stopped) the lifeline says which. A model's supervisor can be
//! replaced (the registry does it); these cannot be without losing every model's state, so the
//! process that owns them ends non-zero and is restarted from the log (CONTRACT section 19).

use std::sync::Arc;

use tokio::sync::watch;

/// The shared parts' common fate: the first one gone, if any.
#[derive(Debug, Clone)]
pub struct Lifeline(Arc<watch::Sender<Option<&'static str>>>);

impl Default for Lifeline {
    fn default() -> Self {
        Self(Arc::new(watch::channel(None).0))
    }
}

impl Lifeline {
    /// A guard for the part named `part`, to be owned by it.
    pub fn guard(&self, part: &'static str) -> PartGuard {
        PartGuard {
            part,
            line: self.clone(),
        }
    }

    /// The first part gone, if any.
    pub fn lost(&self) -> Option<&'static str> {
        *self.0.borrow()
    }

    /// Resolves with the first part gone.
    pub async fn first_lost(&self) -> &'static str {
        let mut seen = self.0.subscribe();
        let first = seen.wait_for(Option::is_some).await.map(|part| *part);
        match first {
            Ok(part) => part.unwrap_or("a shared part"),
            // The sender lives in `self`: it cannot close while this waits.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Owned by a shared part: its drop is the part's end.
#[derive(Debug)]
pub struct PartGuard {
    part: &'static str,
    line: Lifeline,
}

impl Drop for PartGuard {
    fn drop(&mut self) {
        let part = self.part;
        self.line.0.send_if_modified(|lost| {
            let first = lost.is_none();
            if first {
                *lost = Some(part);
            }
            first
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_part_dropped_is_the_one_named() {
        let line = Lifeline::default();
        let (log, publisher) = (line.guard("decision log"), line.guard("publisher"));
        assert_eq!(line.lost(), None);
        let waiting = tokio::spawn({
            let line = line.clone();
            async move { line.first_lost().await }
        });
        drop(publisher);
        drop(log);
        assert_eq!(waiting.await.expect("joined"), "publisher");
        assert_eq!(line.lost(), Some("publisher"));
    }

    #[test]
    fn a_panic_that_unwinds_through_a_part_drops_its_guard() {
        let line = Lifeline::default();
        let guard = line.guard("registry");
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _owned = guard;
            panic!("a handler fails");
        }));
        assert!(unwound.is_err());
        assert_eq!(line.lost(), Some("registry"));
    }
}
