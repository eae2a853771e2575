//! DefaultPreemption, upstream's PostFilter for a pod that fits on no node: which node to
//! free and which lower-priority pods (victims) to evict there, or why preemption cannot help
//! (the message upstream appends to the FailedScheduling event).
//!
//! Pure: the caller evicts the victims (marking them with [`victim_condition`] first, as
//! upstream does), records [`preempted_note`] on each, and sets the pod's
//! `status.nominatedNodeName`. The feasibility check is the caller's full filter chain, run on
//! a node with some pods taken away ([`NodeInfo::new`] + `add_pod` of the pods kept).
//!
//! Per node (upstream's SelectVictimsOnNode): take away every pod of lower priority; if the
//! pod then fits, give back as many as possible, first those whose eviction would break a
//! PodDisruptionBudget, then the others, each group from the most important down (priority,
//! then earliest start). Nodes are tried in the order given until upstream's candidate count
//! (10% of the nodes where removal can help, at least 100) is reached with at least one
//! candidate that breaks no budget; the node is then picked as `pickOneNodeForPreemption`
//! does.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::core::labels::Selector;

use crate::cache::NodeInfo;
use crate::filters::{self, NodeUsage};

/// Upstream's DefaultPreemptionArgs defaults: how many nodes to dry-run before choosing.
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// A node's reason when no pod on it has a lower priority than the preemptor.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// The reason for nodes whose failure removing pods cannot fix.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const NOT_ELIGIBLE_TERMINATING: &str =
    "not eligible due to a terminating pod on the nominated node.";
/// The condition put on victims before they are deleted.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
pub const PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";
/// The scheduler named in the victim condition when the preemptor names none.
const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// Where the pod goes once `victims` are evicted.
#[derive(Debug, Clone)]
pub struct Preemption {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<Pod>>,
    /// Victims whose eviction breaks a PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// Why preemption does not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoPreemption {
    /// Upstream's PostFilter message (`preemption: …`), empty when there are no nodes at all.
    pub message: String,
    /// Upstream clears the pod's `status.nominatedNodeName` when no node could be freed (but
    /// not when the pod is merely not eligible).
    pub clear_nominated_node: bool,
}

/// The caller's filter chain: Ok, or the reasons the pod does not fit.
pub type Fits<'a> = &'a dyn Fn(&Pod, &NodeInfo) -> Result<(), Vec<String>>;

/// `spec.priority`, 0 when unset.
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Chooses the node and victims for `pod`, which fits nowhere. `can_help` says whether the
/// node's failure may be fixed by removing pods (false for upstream's
/// UnschedulableAndUnresolvable; [`removal_can_help`] covers the filters in `filters`).
pub fn select_victims(
    pod: &Pod,
    nodes: &[NodeInfo],
    pdbs: &[PodDisruptionBudget],
    fits: Fits<'_>,
    can_help: &dyn Fn(&NodeInfo) -> bool,
) -> Result<Preemption, NoPreemption> {
    if let Some(why) = not_eligible(pod, nodes, can_help) {
        return Err(NoPreemption {
            message: format!("preemption: {why}"),
            clear_nominated_node: false,
        });
    }
    if nodes.is_empty() {
        return Err(NoPreemption {
            message: String::new(),
            clear_nominated_node: false,
        });
    }
    let potential: Vec<&NodeInfo> = nodes.iter().filter(|n| can_help(n)).collect();
    let wanted = candidates_wanted(potential.len());
    let budgets: Vec<Budget> = pdbs.iter().map(Budget::new).collect();
    let mut clean: Vec<Preemption> = Vec::new();
    let mut violating: Vec<Preemption> = Vec::new();
    let mut failures: Vec<Vec<String>> = Vec::new();
    for info in potential {
        match victims_on(pod, info, &budgets, fits) {
            Ok(found) if found.pdb_violations == 0 => clean.push(found),
            Ok(found) => violating.push(found),
            Err(reasons) => failures.push(reasons),
        }
        if !clean.is_empty() && clean.len() + violating.len() >= wanted {
            break;
        }
    }
    clean.extend(violating);
    pick_one(clean).ok_or_else(|| NoPreemption {
        message: format!("preemption: {}", fit_error(nodes.len(), &failures)),
        clear_nominated_node: true,
    })
}

/// The FailedScheduling message: the filters' `0/N nodes are available: ….` followed by the
/// preemption message, as upstream joins them.
pub fn failed_scheduling_message(filter_message: &str, why: &NoPreemption) -> String {
    if why.message.is_empty() {
        filter_message.to_owned()
    } else {
        format!("{filter_message} {}", why.message)
    }
}

/// Whether removing pods could make `node` fit `pod` as far as `filters` can tell: false when
/// the pod fails even on the node emptied (name, unschedulable, taints, node affinity, or a
/// request beyond allocatable), which upstream reports as UnschedulableAndUnresolvable.
/// `Too many pods` stays resolvable, as upstream.
pub fn removal_can_help(pod: &Pod, node: &Node) -> bool {
    match filters::check(pod, node, &NodeUsage::default()) {
        Ok(()) => true,
        Err(reasons) => reasons.iter().all(|r| r == "Too many pods"),
    }
}

/// The condition upstream adds to a victim before deleting it.
pub fn victim_condition(preemptor: &Pod) -> PodCondition {
    let scheduler = preemptor
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER);
    PodCondition {
        type_: DISRUPTION_TARGET.to_owned(),
        status: "True".to_owned(),
        reason: Some(PREEMPTION_BY_SCHEDULER.to_owned()),
        message: Some(format!(
            "{scheduler}: preempting to accommodate a higher priority pod"
        )),
        ..PodCondition::default()
    }
}

/// The note of the `Preempted` event (action `Preempting`) recorded on each victim.
pub fn preempted_note(preemptor: &Pod, node: &str) -> String {
    format!(
        "Preempted by pod {} on node {node}",
        preemptor.uid().unwrap_or_default()
    )
}

/// Upstream's PodEligibleToPreemptOthers.
fn not_eligible(
    pod: &Pod,
    nodes: &[NodeInfo],
    can_help: &dyn Fn(&NodeInfo) -> bool,
) -> Option<&'static str> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Some(NOT_ELIGIBLE_NEVER);
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())?;
    let info = nodes
        .iter()
        .find(|n| n.node.metadata.name.as_deref() == Some(nominated))?;
    // A nominated node that no longer can take the pod does not hold it back.
    if !can_help(info) {
        return None;
    }
    let own = priority(pod);
    info.pods
        .iter()
        .any(|p| priority(p) < own && terminating_by_preemption(p))
        .then_some(NOT_ELIGIBLE_TERMINATING)
}

fn terminating_by_preemption(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_none() {
        return false;
    }
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == DISRUPTION_TARGET))
        .is_some_and(|c| c.status == "True" && c.reason.as_deref() == Some(PREEMPTION_BY_SCHEDULER))
}

/// Upstream's calculateNumCandidates.
fn candidates_wanted(potential: usize) -> usize {
    (potential * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(potential)
}

/// `status.startTime`; a pod not started yet counts as starting now, later than any other.
fn started(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
}

/// Sort key putting the most important pod first: higher priority, then started earlier.
fn importance(pod: &Pod) -> (Reverse<i32>, bool, Option<Timestamp>) {
    let start = started(pod);
    (Reverse(priority(pod)), start.is_none(), start)
}

/// A PodDisruptionBudget compiled once per preemption.
struct Budget {
    namespace: String,
    /// None for an empty, missing or malformed selector: it selects nothing.
    selector: Option<Selector>,
    allowed: i32,
    disrupted: BTreeSet<String>,
}

impl Budget {
    fn new(pdb: &PodDisruptionBudget) -> Budget {
        let status = pdb.status.as_ref();
        Budget {
            namespace: pdb.namespace().unwrap_or_default(),
            selector: pdb
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(controllers::pods::controller_selector),
            allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// Splits `pods` (kept in order) into those whose eviction would exceed a budget, counting
/// down each budget's allowance as its pods are taken in turn, and the others.
fn split_by_budget(pods: Vec<Arc<Pod>>, budgets: &[Budget]) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.allowed).collect();
    let mut violating = Vec::new();
    let mut other = Vec::new();
    for pod in pods {
        let labels = pod.labels();
        let mut violates = false;
        if !labels.is_empty() {
            let namespace = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            for (budget, left) in budgets.iter().zip(allowed.iter_mut()) {
                if budget.namespace != namespace
                    || !controllers::pods::selects(budget.selector.as_ref(), labels)
                    || budget.disrupted.contains(&name)
                {
                    continue;
                }
                *left -= 1;
                if *left < 0 {
                    violates = true;
                }
            }
        }
        if violates {
            violating.push(pod);
        } else {
            other.push(pod);
        }
    }
    (violating, other)
}

/// The fewest victims on one node, or the node's reasons (upstream's status) when there are
/// none to take or the pod does not fit even without them.
fn victims_on(
    pod: &Pod,
    info: &NodeInfo,
    budgets: &[Budget],
    fits: Fits<'_>,
) -> Result<Preemption, Vec<String>> {
    let own = priority(pod);
    let (mut potential, kept): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) =
        info.pods.iter().cloned().partition(|p| priority(p) < own);
    if potential.is_empty() {
        return Err(vec![NO_VICTIMS.to_owned()]);
    }
    let mut current = NodeInfo::new(info.node.clone());
    for p in kept {
        current.add_pod(p);
    }
    fits(pod, &current)?;
    potential.sort_by_cached_key(|p| importance(p));
    let (violating, other) = split_by_budget(potential, budgets);
    let mixed = !violating.is_empty() && !other.is_empty();
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (breaks_budget, p) in violating
        .into_iter()
        .map(|p| (true, p))
        .chain(other.into_iter().map(|p| (false, p)))
    {
        let mut trial = current.clone();
        trial.add_pod(p.clone());
        if fits(pod, &trial).is_ok() {
            current = trial;
        } else {
            victims.push(p);
            if breaks_budget {
                pdb_violations += 1;
            }
        }
    }
    if mixed {
        victims.sort_by_cached_key(|p| importance(p));
    }
    if victims.is_empty() {
        // The pod fits with every pod back: nothing to preempt here (upstream: an error).
        return Err(Vec::new());
    }
    Ok(Preemption {
        node: info.node.name_any(),
        victims,
        pdb_violations,
    })
}

/// Upstream's pickOneNodeForPreemption over candidates in trial order: fewest budget
/// violations, lowest highest victim priority, smallest priority sum, fewest victims, latest
/// earliest start among the highest-priority victims, then the first.
fn pick_one(mut pool: Vec<Preemption>) -> Option<Preemption> {
    let criteria: [fn(&Preemption) -> i128; 5] = [
        |c| -(c.pdb_violations as i128),
        |c| -i128::from(c.victims.first().map_or(0, |p| priority(p))),
        |c| {
            -c.victims
                .iter()
                .map(|p| i128::from(priority(p)) + (1i128 << 31))
                .sum::<i128>()
        },
        |c| -(c.victims.len() as i128),
        |c| earliest_top_start(&c.victims),
    ];
    for score in criteria {
        if pool.len() <= 1 {
            break;
        }
        let best = pool.iter().map(score).max()?;
        pool.retain(|c| score(c) == best);
    }
    pool.into_iter().next()
}

/// The earliest start among the victims of the highest priority, in nanoseconds; a victim not
/// started yet counts as starting now (after every recorded start).
fn earliest_top_start(victims: &[Arc<Pod>]) -> i128 {
    let Some(top) = victims.iter().map(|p| priority(p)).max() else {
        return i128::MIN;
    };
    victims
        .iter()
        .filter(|p| priority(p) == top)
        .map(|p| started(p).map_or(i128::MAX, |t| t.as_nanosecond()))
        .min()
        .unwrap_or(i128::MAX)
}

/// `0/N nodes are available: …` for the dry run: each tried node's reasons, the rest as not
/// helpful, counted and sorted as upstream's FitError (on the whole `count reason` text).
fn fit_error(total: usize, failures: &[Vec<String>]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reasons in failures {
        for r in reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let absent = total.saturating_sub(failures.len());
    if absent > 0 {
        *counts.entry(NOT_HELPFUL).or_default() += absent;
    }
    let mut listed: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    listed.sort();
    if listed.is_empty() {
        format!("0/{total} nodes are available:")
    } else {
        format!("0/{total} nodes are available: {}.", listed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::tests::node;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, ResourceRequirements, Taint};
    use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

    fn pod(name: &str, priority: i32, cpu: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                priority: Some(priority),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into()))])),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn started_at(mut p: Pod, at: &str) -> Pod {
        let t: Timestamp = at.parse().expect("timestamp");
        p.status.get_or_insert_with(PodStatus::default).start_time = Some(Time(t));
        p
    }

    fn labelled(mut p: Pod, app: &str) -> Pod {
        p.metadata.labels = Some(BTreeMap::from([("app".to_owned(), app.to_owned())]));
        p
    }

    fn info(name: &str, cpu: &str, pods: Vec<Pod>) -> NodeInfo {
        let mut n = NodeInfo::new(Arc::new(node(name, cpu, "8Gi", "110")));
        for mut p in pods {
            if let Some(spec) = p.spec.as_mut() {
                spec.node_name = Some(name.into());
            }
            n.add_pod(Arc::new(p));
        }
        n
    }

    fn budget(app: &str, allowed: i32) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some(format!("{app}-pdb")),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".to_owned(), app.to_owned())])),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: Some(PodDisruptionBudgetStatus {
                disruptions_allowed: allowed,
                ..PodDisruptionBudgetStatus::default()
            }),
        }
    }

    fn fits(p: &Pod, n: &NodeInfo) -> Result<(), Vec<String>> {
        filters::check(p, &n.node, &n.usage)
    }

    fn helps(p: &Pod) -> impl Fn(&NodeInfo) -> bool + '_ {
        move |n: &NodeInfo| removal_can_help(p, &n.node)
    }

    fn run(
        p: &Pod,
        nodes: &[NodeInfo],
        pdbs: &[PodDisruptionBudget],
    ) -> Result<Preemption, NoPreemption> {
        select_victims(p, nodes, pdbs, &fits, &helps(p))
    }

    fn names(victims: &[Arc<Pod>]) -> Vec<String> {
        victims.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn picks_the_node_whose_victims_have_the_lowest_priority() {
        let nodes = vec![
            info("n1", "2", vec![pod("mid", 100, "2")]),
            info("n2", "2", vec![pod("low", 10, "2")]),
            info("n3", "2", vec![pod("high", 500, "2")]),
        ];
        let got = run(&pod("p", 1000, "1"), &nodes, &[]).expect("preemption");
        assert_eq!(got.node, "n2");
        assert_eq!(names(&got.victims), ["low"]);
        assert_eq!(got.pdb_violations, 0);
    }

    #[test]
    fn reprieves_the_most_important_pods_that_can_stay() {
        let nodes = vec![info(
            "n1",
            "4",
            vec![pod("a", 10, "1"), pod("b", 20, "1"), pod("c", 30, "2")],
        )];
        // Taking everything frees 4 CPU; c (2) and b (1) come back, a cannot.
        let got = run(&pod("p", 1000, "1"), &nodes, &[]).expect("preemption");
        assert_eq!(names(&got.victims), ["a"]);
        // Needing 2 CPU: c comes back first, then neither b nor a fits.
        let got = run(&pod("p", 1000, "2"), &nodes, &[]).expect("preemption");
        assert_eq!(names(&got.victims), ["b", "a"]);
    }

    #[test]
    fn never_evicts_pods_of_equal_or_higher_priority() {
        let nodes = vec![
            info("n1", "2", vec![pod("same", 1000, "2")]),
            info("n2", "2", vec![pod("higher", 2000, "2")]),
        ];
        let err = run(&pod("p", 1000, "1"), &nodes, &[]).expect_err("no victims");
        assert_eq!(
            err.message,
            "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
        assert!(err.clear_nominated_node);
        // Removing the lower one is not enough next to an equal-priority pod.
        let nodes = vec![
            info("n1", "2", vec![pod("same", 1000, "1"), pod("low", 1, "1")]),
            info("n2", "2", vec![pod("higher", 2000, "2")]),
        ];
        let err = run(&pod("p", 1000, "2"), &nodes, &[]).expect_err("does not fit");
        assert_eq!(
            err.message,
            "preemption: 0/2 nodes are available: 1 Insufficient cpu, \
             1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn preemption_policy_never_keeps_other_pods() {
        let nodes = vec![info("n1", "2", vec![pod("low", 10, "2")])];
        let mut p = pod("p", 1000, "1");
        p.spec.as_mut().expect("spec").preemption_policy = Some("Never".into());
        let err = run(&p, &nodes, &[]).expect_err("not eligible");
        assert_eq!(
            err,
            NoPreemption {
                message: "preemption: not eligible due to preemptionPolicy=Never.".into(),
                clear_nominated_node: false,
            }
        );
        assert_eq!(
            failed_scheduling_message("0/1 nodes are available: 1 Insufficient cpu.", &err),
            "0/1 nodes are available: 1 Insufficient cpu. \
             preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn waits_while_victims_on_the_nominated_node_terminate() {
        let mut leaving = pod("leaving", 10, "2");
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        leaving.status = Some(PodStatus {
            conditions: Some(vec![victim_condition(&pod("p", 1000, "1"))]),
            ..PodStatus::default()
        });
        let nodes = vec![
            info("n1", "2", vec![leaving]),
            info("n2", "2", vec![pod("low", 10, "2")]),
        ];
        let mut p = pod("p", 1000, "1");
        p.status = Some(PodStatus {
            nominated_node_name: Some("n1".into()),
            ..PodStatus::default()
        });
        let err = run(&p, &nodes, &[]).expect_err("waiting");
        assert_eq!(
            err.message,
            "preemption: not eligible due to a terminating pod on the nominated node."
        );
        // Nominated elsewhere, the pod preempts again.
        p.status = Some(PodStatus {
            nominated_node_name: Some("n2".into()),
            ..PodStatus::default()
        });
        assert!(run(&p, &nodes, &[]).is_ok());
    }

    #[test]
    fn budget_protected_pods_are_reprieved_first() {
        // Equal priority: web started first so it is the more important one.
        let web = labelled(
            started_at(pod("web", 10, "2"), "2024-01-01T00:00:00Z"),
            "web",
        );
        let db = labelled(started_at(pod("db", 10, "2"), "2024-02-01T00:00:00Z"), "db");
        let nodes = vec![info("n1", "4", vec![web, db])];
        let p = pod("p", 1000, "2");
        let got = run(&p, &nodes, &[]).expect("preemption");
        assert_eq!(names(&got.victims), ["db"]);
        let got = run(&p, &nodes, &[budget("db", 0)]).expect("preemption");
        assert_eq!(names(&got.victims), ["web"]);
        assert_eq!(got.pdb_violations, 0);
        // A budget with room left does not protect.
        let got = run(&p, &nodes, &[budget("db", 1)]).expect("preemption");
        assert_eq!(names(&got.victims), ["db"]);
    }

    #[test]
    fn nodes_without_budget_violations_are_preferred() {
        let nodes = vec![
            info("n1", "2", vec![labelled(pod("db", 1, "2"), "db")]),
            info("n2", "2", vec![labelled(pod("web", 50, "2"), "web")]),
        ];
        let p = pod("p", 1000, "1");
        assert_eq!(run(&p, &nodes, &[]).expect("preemption").node, "n1");
        let got = run(&p, &nodes, &[budget("db", 0)]).expect("preemption");
        assert_eq!(got.node, "n2");
        // With every node breaking a budget the violation still happens, and is counted.
        let got = run(&p, &nodes, &[budget("db", 0), budget("web", 0)]).expect("preemption");
        assert_eq!(got.node, "n1");
        assert_eq!(got.pdb_violations, 1);
    }

    #[test]
    fn ties_go_to_the_smaller_sum_then_fewer_victims_then_later_start() {
        let p = pod("p", 1000, "2");
        // Same highest priority (10): n2's victims sum lower.
        let nodes = vec![
            info("n1", "2", vec![pod("a", 10, "1"), pod("b", 10, "1")]),
            info("n2", "2", vec![pod("c", 10, "1"), pod("d", 5, "1")]),
        ];
        assert_eq!(run(&p, &nodes, &[]).expect("preemption").node, "n2");
        // Same sum and count: the node whose top victims started last.
        let nodes = vec![
            info(
                "n1",
                "2",
                vec![started_at(pod("old", 10, "2"), "2024-01-01T00:00:00Z")],
            ),
            info(
                "n2",
                "2",
                vec![started_at(pod("new", 10, "2"), "2024-06-01T00:00:00Z")],
            ),
            info(
                "n3",
                "2",
                vec![started_at(pod("mid", 10, "2"), "2024-03-01T00:00:00Z")],
            ),
        ];
        let got = run(&p, &nodes, &[]).expect("preemption");
        assert_eq!(
            (got.node.as_str(), names(&got.victims)),
            ("n2", vec!["new".to_owned()])
        );
        // All equal: the first node tried.
        let nodes = vec![
            info("n1", "2", vec![pod("x", 10, "2")]),
            info("n2", "2", vec![pod("y", 10, "2")]),
        ];
        assert_eq!(run(&p, &nodes, &[]).expect("preemption").node, "n1");
    }

    #[test]
    fn nodes_removal_cannot_fix_are_not_helpful() {
        let mut tainted = info("n1", "2", vec![pod("low", 1, "2")]);
        let mut n = (*tainted.node).clone();
        n.spec.get_or_insert_with(Default::default).taints = Some(vec![Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }]);
        tainted.node = Arc::new(n);
        let small = info("n2", "1", vec![pod("low2", 1, "1")]);
        let roomy = info("n3", "4", vec![pod("same", 1000, "4")]);
        let p = pod("p", 1000, "2");
        let err = run(&p, &[tainted, small, roomy], &[]).expect_err("no candidate");
        assert_eq!(
            err.message,
            "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling."
        );
        assert!(err.clear_nominated_node);
        assert_eq!(
            failed_scheduling_message("0/3 nodes are available: 3 Insufficient cpu.", &err),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: \
             1 No preemption victims found for incoming pod, 2 Preemption is not helpful for \
             scheduling."
        );
    }

    #[test]
    fn the_victim_condition_and_event_name_the_preemptor() {
        let p = pod("p", 1000, "1");
        let c = victim_condition(&p);
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()),
            ("DisruptionTarget", "True", Some("PreemptionByScheduler"))
        );
        assert_eq!(
            c.message.as_deref(),
            Some("default-scheduler: preempting to accommodate a higher priority pod")
        );
        assert_eq!(
            preempted_note(&p, "n1"),
            "Preempted by pod uid-p on node n1"
        );
    }

    #[test]
    fn candidate_count_follows_upstream_defaults() {
        assert_eq!(candidates_wanted(3), 3);
        assert_eq!(candidates_wanted(500), 100);
        assert_eq!(candidates_wanted(5000), 500);
    }
}
