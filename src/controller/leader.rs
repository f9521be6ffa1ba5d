//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: acquire a free or
//! expired Lease, renew it every retry period, give up leadership at once when it cannot be
//! renewed within the renew deadline, and release it on shutdown. Updates use the Lease's
//! resourceVersion, so two candidates can never both win a round.
//!
//! Why not a crate: `kube-lease-manager` (0.13, on our kube 5) is the maintained one, but when
//! it cannot reach the API server its watch loop backs off and keeps reporting the lock as
//! held, so a replica cut off from the API server goes on acting past the Lease's expiry while
//! another takes it over; its durations are also whole seconds. `kube-leader-election` (0.44)
//! is on kube 4 and leaves renewal timing to the caller. Giving up at the renew deadline, before
//! anyone else may take the Lease, is the property CONTRACT section 19 rests on, so the elector
//! stays ours (about 250 lines, tested against the stateful API server).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Timing of the election (controller-runtime's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free, or its holder stopped renewing: take it over.
    TakeOver,
    /// Another candidate holds it.
    Wait,
}

/// Pure: the step for a Lease seen at `now_ms`.
pub fn decide(
    lease: Option<&LeaseSpec>,
    me: &str,
    now_ms: i64,
    default_duration: Duration,
) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == me {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::TakeOver;
    }
    let duration_ms = spec
        .lease_duration_seconds
        .map_or(default_duration.as_millis() as i64, |s| i64::from(s) * 1000);
    let renewed_ms = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map_or(0, |t| t.0.as_millisecond());
    if renewed_ms + duration_ms < now_ms {
        Step::TakeOver
    } else {
        Step::Wait
    }
}

fn now() -> (i64, MicroTime) {
    let t = jiff::Timestamp::now();
    (t.as_millisecond(), MicroTime(t))
}

/// A candidate for one Lease.
#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
    ) -> Self {
        Self::on(Api::namespaced(client, namespace), name, identity, timing)
    }

    /// A candidate for the Lease `name` of `api`'s namespace.
    pub fn on(api: Api<Lease>, name: &str, identity: &str, timing: LeaseTiming) -> Self {
        Self {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
        }
    }

    /// One round: returns whether we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        self.round(current).await
    }

    /// One round on the Lease as just read (`None`: it does not exist); the update is a
    /// compare-and-swap on what was read.
    pub async fn round(&self, current: Option<Lease>) -> Result<bool, kube::Error> {
        let (now_ms, now) = now();
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let duration = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(15);
        match decide(spec, &self.identity, now_ms, self.timing.lease_duration) {
            Step::Wait => Ok(false),
            Step::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(duration),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            step @ (Step::Renew | Step::TakeOver) => {
                let Some(mut lease) = current else {
                    return Ok(false);
                };
                let spec = lease.spec.get_or_insert_with(Default::default);
                if step == Step::TakeOver {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(duration);
                spec.renew_time = Some(now);
                // The resourceVersion in `lease` makes this a compare-and-swap.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Gives the Lease up (shutdown), so that a successor need not wait for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now().1);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }

    /// Campaigns until `stop`, publishing leadership on `leader`. Leadership is
    /// dropped at once when renewal fails past the renew deadline; on stop the Lease is
    /// released if held.
    pub async fn run(self, leader: watch::Sender<bool>, stop: CancellationToken) {
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            let held = match self.try_acquire_or_renew().await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "leader election: cannot reach the Lease");
                    false
                }
            };
            let now = tokio::time::Instant::now();
            if held {
                last_renewed = Some(now);
            }
            // Keep leading through brief failures, up to the renew deadline.
            let leading = held
                || (*leader.borrow()
                    && last_renewed
                        .is_some_and(|t| now.duration_since(t) < self.timing.renew_deadline));
            if leading != *leader.borrow() {
                if leading {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                } else {
                    tracing::warn!(lease = %self.name, identity = %self.identity, "lost the leadership: stopped writing status and publishing");
                    last_renewed = None;
                }
                let _ = leader.send(leading);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry_period) => {}
                () = stop.cancelled() => break,
            }
        }
        if *leader.borrow() {
            let _ = leader.send(false);
            match self.release().await {
                Ok(()) => tracing::info!(lease = %self.name, "released the Lease"),
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "cannot release the Lease")
                }
            }
        }
    }
}

/// Starts the leader election (one Lease, or one per shard) as a critical task, when asked
/// for; without it this instance leads and holds every shard. A shadow's Leases are its own
/// (`<name>-shadow`): it never takes the main instance's.
pub fn elect(
    client: &kube::Client,
    options: &super::ControllerOptions,
    namespace: &str,
    (leader_tx, shards_tx): (
        watch::Sender<bool>,
        watch::Sender<wva_actors::shards::ShardFilter>,
    ),
    stop: &CancellationToken,
    critical: &mut super::tasks::Critical,
) {
    let Some((lease, identity, timing)) = options.leader_election.clone() else {
        return;
    };
    let lease = if options.shadow {
        format!("{lease}-shadow")
    } else {
        lease
    };
    if options.shards > 1 {
        // Nothing is held until the first round says so.
        let _ = shards_tx.send(wva_actors::shards::ShardFilter {
            shards: options.shards,
            held: Default::default(),
        });
        let coordinator = super::shards::Coordinator {
            leases: kube::Api::namespaced(client.clone(), namespace),
            id: lease,
            identity,
            shards: options.shards,
            timing,
        };
        critical.spawn(
            "leader-election",
            coordinator.run(shards_tx, leader_tx, stop.clone()),
        );
    } else {
        let elector = Elector::new(client.clone(), namespace, &lease, &identity, timing);
        critical.spawn("leader-election", elector.run(leader_tx, stop.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_ms: i64, duration_s: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: Some(MicroTime(
                jiff::Timestamp::from_millisecond(renewed_ms).expect("time"),
            )),
            lease_duration_seconds: Some(duration_s),
            ..Default::default()
        }
    }

    #[test]
    fn steps() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "me", 0, d), Step::Create);
        assert_eq!(
            decide(Some(&lease(Some("me"), 0, 15)), "me", 1_000, d),
            Step::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), 10_000, 15)), "me", 20_000, d),
            Step::Wait
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), 10_000, 15)), "me", 25_001, d),
            Step::TakeOver,
            "expired"
        );
        assert_eq!(
            decide(Some(&lease(None, 10_000, 15)), "me", 10_001, d),
            Step::TakeOver,
            "released"
        );
    }
}
