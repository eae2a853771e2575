//! Lease-based leader election (coordination.k8s.io/v1 `Lease`), as client-go's: one holder
//! at a time; the holder renews `renewTime` every retry period; anyone may take a lease whose
//! holder has not renewed it for `leaseDurationSeconds`. Writes are compare-and-swap on the
//! lease's resourceVersion, so two candidates never both win.
//!
//! Owns only the Lease protocol; what runs while leading is the caller's.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tracing::{info, warn};

use crate::api_errors::is_status;

/// Timing of an election (kube-controller-manager's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone)]
pub struct LeaseTiming {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate for one lease.
pub struct LeaseLock {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub timing: LeaseTiming,
}

/// What a candidate does next, given the lease as it stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or its holder let it expire: take it.
    TakeOver,
    /// Someone else holds it; look again after this long.
    Wait(Duration),
}

/// Decides the next step for `identity` at `now`.
pub fn next_step(
    lease: Option<&Lease>,
    identity: &str,
    now: Timestamp,
    timing: &LeaseTiming,
) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::TakeOver;
    }
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(timing.lease_duration);
    let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
    match renewed {
        None => Step::TakeOver,
        Some(renewed) => {
            let expires = renewed
                .checked_add(jiff::SignedDuration::try_from(duration).unwrap_or_default())
                .unwrap_or(renewed);
            if expires <= now {
                Step::TakeOver
            } else {
                let left = now.duration_until(expires);
                Step::Wait(
                    Duration::try_from(left)
                        .unwrap_or(timing.retry_period)
                        .min(timing.retry_period),
                )
            }
        }
    }
}

/// The lease written by a step (`Create`, `Renew` or `TakeOver`).
pub fn written_lease(
    current: Option<&Lease>,
    step: &Step,
    name: &str,
    identity: &str,
    now: Timestamp,
    timing: &LeaseTiming,
) -> Lease {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let mut spec = lease.spec.take().unwrap_or_else(LeaseSpec::default);
    let now = MicroTime(now);
    match step {
        Step::Create => {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(0);
        }
        Step::TakeOver => {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        Step::Renew | Step::Wait(_) => {}
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(timing.lease_duration.as_secs() as i32);
    spec.renew_time = Some(now);
    lease.spec = Some(spec);
    lease
}

impl LeaseLock {
    /// One attempt to acquire or renew. Returns whether we hold the lease afterwards, or how
    /// long to wait before looking again.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let now = Timestamp::now();
        let step = next_step(current.as_ref(), &self.identity, now, &self.timing);
        if let Step::Wait(_) = step {
            return Ok(false);
        }
        let lease = written_lease(
            current.as_ref(),
            &step,
            &self.name,
            &self.identity,
            now,
            &self.timing,
        );
        let written = match step {
            Step::Create => self.api.create(&PostParams::default(), &lease).await,
            _ => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => {
                if step != Step::Renew {
                    info!(lease = %self.name, identity = %self.identity, "acquired the lease");
                }
                Ok(true)
            }
            // Someone else wrote first.
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Campaigns until this candidate holds the lease, then runs `work` while renewing it.
    /// Returns when the work ends or when the lease could not be renewed within the renew
    /// deadline (the work is dropped then, which stops it).
    pub async fn run_while_leading<F>(&self, work: F) -> anyhow::Result<()>
    where
        F: Future<Output = anyhow::Result<()>>,
    {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(lease = %self.name, error = %e, "could not read the lease"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
        let renew = async {
            let mut last_renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(self.timing.retry_period).await;
                match self.try_acquire_or_renew().await {
                    Ok(true) => last_renewed = tokio::time::Instant::now(),
                    Ok(false) => return anyhow::anyhow!("lost the lease {}", self.name),
                    Err(e) => warn!(lease = %self.name, error = %e, "renewing the lease failed"),
                }
                if last_renewed.elapsed() > self.timing.renew_deadline {
                    return anyhow::anyhow!(
                        "could not renew the lease {} within {:?}",
                        self.name,
                        self.timing.renew_deadline
                    );
                }
            }
        };
        tokio::select! {
            result = work => result,
            lost = renew => Err(lost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed: Timestamp) -> Lease {
        written_lease(
            None,
            &Step::Create,
            "l",
            holder,
            renewed,
            &LeaseTiming::default(),
        )
    }

    #[test]
    fn a_missing_lease_is_created_and_our_own_renewed() {
        let t = LeaseTiming::default();
        let now = Timestamp::now();
        assert_eq!(next_step(None, "a", now, &t), Step::Create);
        assert_eq!(
            next_step(Some(&held_by("a", now)), "a", now, &t),
            Step::Renew
        );
    }

    #[test]
    fn another_holders_live_lease_is_waited_for_and_an_expired_one_taken() {
        let t = LeaseTiming::default();
        let renewed = Timestamp::now();
        let lease = held_by("a", renewed);
        let soon = renewed + jiff::SignedDuration::from_secs(5);
        assert!(matches!(
            next_step(Some(&lease), "b", soon, &t),
            Step::Wait(_)
        ));
        let later = renewed + jiff::SignedDuration::from_secs(15);
        assert_eq!(next_step(Some(&lease), "b", later, &t), Step::TakeOver);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let t = LeaseTiming::default();
        let now = Timestamp::now();
        let lease = held_by("a", now);
        let taken = written_lease(Some(&lease), &Step::TakeOver, "l", "b", now, &t);
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(1));
        let renewed = written_lease(Some(&lease), &Step::Renew, "l", "a", now, &t);
        assert_eq!(renewed.spec.unwrap().lease_transitions, Some(0));
    }
}
