//! Which tunnels are ordered to close politely besides a graceful stop's
//! (see `upstream::order` and `frames`): those of a balancer member that
//! takes no new tunnels — set to Drain, Disabled or Stopped by the balancer
//! manager or by a reloaded `status=` — and those of a backend a reload
//! removed (no ProxyPass, `[P]` target or balancer member names its worker
//! any more). Each worker's tunnels close with 1001 at moments spread over
//! half of `GracefulShutdownTimeout`; only tunnels whose frames are
//! followed (`WsgateWebSocketFrames On`) can, the others stay until they
//! end as before.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::server::Shared;
use crate::config::model::balancer::BalancerIdx;
use crate::config::model::{WorkerIdx, DEFAULT_GRACEFUL_SHUTDOWN};
use crate::upstream::{Generation, Limit};

/// Over how long a worker's tunnels spread their closes.
fn spread(generation: &Generation) -> Duration {
    generation
        .config
        .graceful_shutdown
        .unwrap_or(DEFAULT_GRACEFUL_SHUTDOWN)
        / 2
}

/// Gives or takes back each balancer member's order as its state says: a
/// member that takes no new tunnels has the tunnels it holds sent away
/// (once: the order stands while the state lasts, and tunnels that come
/// after it — sticky sessions to a draining member — are not concerned).
/// Called when a configuration is bound and after a balancer-manager
/// change.
pub fn follow_members(shared: &Shared, generation: &Generation) {
    let spread = spread(generation);
    let mut ordered = false;
    for (b, balancer) in generation.config.balancers.iter().enumerate() {
        let states = &generation.balancer(BalancerIdx(b)).members;
        for (member, state) in balancer.members.iter().zip(states) {
            let out = [&state.drain, &state.disabled, &state.stopped]
                .iter()
                .any(|f| f.load(Ordering::Relaxed));
            let limit = &generation.worker_state(member.worker).limit;
            match (out, limit.order.is_given()) {
                (true, false) => {
                    limit.order.give(spread);
                    ordered |= report(limit, &generation.config.worker(member.worker).name, spread);
                }
                (false, true) => limit.order.withdraw(),
                _ => {}
            }
        }
    }
    if ordered {
        shared.parker().wake_ordered();
    }
}

/// After a reload: the workers `old` had and `new` has not have their
/// tunnels sent away.
pub fn follow_reload(shared: &Shared, old: &Generation, new: &Generation) {
    let kept: HashSet<*const Limit> = (0..new.config.workers.len())
        .map(|i| Arc::as_ptr(&new.worker_state(WorkerIdx(i)).limit))
        .collect();
    let spread = spread(new);
    let mut ordered = false;
    for (i, worker) in old.config.workers.iter().enumerate() {
        let limit = &old.worker_state(WorkerIdx(i)).limit;
        if !kept.contains(&Arc::as_ptr(limit)) && !limit.order.is_given() {
            limit.order.give(spread);
            ordered |= report(limit, &worker.name, spread);
        }
    }
    if ordered {
        shared.parker().wake_ordered();
    }
}

/// Says what an order means to an operator; whether it concerns tunnels.
fn report(limit: &Limit, worker: &str, spread: Duration) -> bool {
    let open = limit.tunnels.open.load(Ordering::Relaxed);
    if open > 0 {
        tracing::info!(
            worker,
            tunnels = open,
            "tunnels to a member that takes no new ones, or to a backend no longer configured, \
             close with 1001 within {:.1} s (those without WsgateWebSocketFrames On stay until they end)",
            spread.as_secs_f64()
        );
    }
    open > 0
}
