//! The CronJob controller: starts a Job from `spec.jobTemplate` at each time the cron schedule
//! names (in `spec.timeZone`), honouring `suspend`, `startingDeadlineSeconds` and the
//! concurrency policy; keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`; and
//! deletes the oldest finished Jobs beyond the history limits.
//!
//! `Schedule` reads and steps schedules as robfig/cron's standard parser does (the one upstream
//! uses): five fields or an `@` descriptor, `?` for `*`, an optional `TZ=`/`CRON_TZ=` prefix.
//! `history_to_delete`, `track_jobs` and `decide` are the pure decisions; `reconcile` carries
//! them out through the API and asks to be woken at the next scheduled time. Job names are
//! derived from the scheduled minute, so a create that finds the Job already there means it
//! was made before. A reconcile reads the CronJob's own Jobs from the Job informer's
//! controller-owner index.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};

use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::api_errors::{is_status, namespace_terminating, not_found, settle_status_write};
use crate::events::{EventRecorder, EventType};
use crate::informers::{Indexes, Informer};
use crate::pods;
use crate::{ControllerContext, ReconcileError};

/// The annotation on a Job holding the time it was scheduled for (RFC 3339, in the CronJob's
/// time zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Padding added to the wake-up at the next scheduled time, against clock skew (upstream's).
const NEXT_SCHEDULE_DELTA: SignedDuration = SignedDuration::from_millis(100);

/// More missed start times than this is reported as a warning (upstream's limit).
const TOO_MANY_MISSED: i64 = 100;

// ---------------------------------------------------------------------------------------------
// Schedules

/// Marks a day-of-month or day-of-week field written as `*` or `?`, which makes the two day
/// fields combine with AND instead of OR.
const STAR: u64 = 1 << 63;

const MONTH_NAMES: &[(&str, i64)] = &[
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
];

const DAY_NAMES: &[(&str, i64)] = &[
    ("sun", 0),
    ("mon", 1),
    ("tue", 2),
    ("wed", 3),
    ("thu", 4),
    ("fri", 5),
    ("sat", 6),
];

/// A parsed cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: ScheduleKind,
}

#[derive(Debug, Clone)]
enum ScheduleKind {
    /// Field bit sets, evaluated in a time zone.
    Fields {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
        tz: TimeZone,
    },
    /// `@every <duration>`: a fixed delay in whole seconds.
    Every(i64),
}

fn has(bits: u64, value: i8) -> bool {
    (0..64).contains(&value) && bits & (1 << value) != 0
}

fn range_bits(start: i64, end: i64, step: i64) -> u64 {
    let mut bits = 0;
    let mut i = start;
    while i <= end {
        bits |= 1 << i;
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    bits
}

fn parse_number(expr: &str) -> Result<i64, String> {
    let n: i64 = expr.parse().map_err(|_| {
        format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    Ok(n)
}

fn parse_number_or_name(expr: &str, names: &[(&str, i64)]) -> Result<i64, String> {
    let lower = expr.to_ascii_lowercase();
    match names.iter().find(|(n, _)| *n == lower) {
        Some((_, v)) => Ok(*v),
        None => parse_number(expr),
    }
}

/// One comma-separated part of a field: `*`, `?`, `n`, `a-b`, each optionally `/step`.
fn parse_range(expr: &str, min: i64, max: i64, names: &[(&str, i64)]) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (start, end, extra) = (min, max, STAR);
    } else {
        start = parse_number_or_name(low_and_high[0], names)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_number_or_name(low_and_high[1], names)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_number(range_and_step[1])?;
            if single {
                end = max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(range_bits(start, end, step) | extra)
}

fn parse_field(field: &str, min: i64, max: i64, names: &[(&str, i64)]) -> Result<u64, String> {
    field.split(',').try_fold(0, |bits, part| {
        Ok(bits | parse_range(part, min, max, names)?)
    })
}

/// A Go duration (`1h30m`, `90s`, `1.5h`) in nanoseconds, with Go's error wording.
fn parse_go_duration(text: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(format!("time: unknown unit {other:?} in duration {text:?}")),
        };
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            let digits = frac_part.len().min(30) as u32;
            let frac: i128 = frac_part[..digits as usize]
                .parse()
                .map_err(|_| invalid())?;
            value += frac * scale / 10i128.pow(digits);
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as i128 {
            return Err(invalid());
        }
        rest = after;
    }
    Ok(if negative { -total } else { total })
}

/// A time zone by IANA name, as Go's `time.LoadLocation` reads it (`""` and `UTC` are UTC,
/// `Local` is this machine's zone).
pub fn load_time_zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        "Local" => Ok(TimeZone::system()),
        _ => TimeZone::get(name).map_err(|_| format!("unknown time zone {name}")),
    }
}

impl Schedule {
    /// Parses a standard schedule, evaluated in `tz` unless it starts with `TZ=`/`CRON_TZ=`.
    pub fn parse(spec: &str, tz: TimeZone) -> Result<Schedule, String> {
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut spec = spec;
        let mut tz = tz;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let eq = spec.find('=').unwrap_or(0);
            let Some(space) = spec.find(' ') else {
                return Err(format!("provided bad location {}", &spec[eq + 1..]));
            };
            let name = &spec[eq + 1..space];
            tz = load_time_zone(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
            spec = spec[space..].trim();
        }
        if spec.starts_with('@') {
            return Self::descriptor(spec, tz);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        Ok(Schedule {
            kind: ScheduleKind::Fields {
                minute: parse_field(fields[0], 0, 59, &[])?,
                hour: parse_field(fields[1], 0, 23, &[])?,
                dom: parse_field(fields[2], 1, 31, &[])?,
                month: parse_field(fields[3], 1, 12, MONTH_NAMES)?,
                dow: parse_field(fields[4], 0, 6, DAY_NAMES)?,
                tz,
            },
        })
    }

    fn descriptor(spec: &str, tz: TimeZone) -> Result<Schedule, String> {
        let all = |min, max| range_bits(min, max, 1) | STAR;
        let (minute, hour, dom, month, dow) = match spec {
            "@yearly" | "@annually" => (1, 1, 1 << 1, 1 << 1, all(0, 6)),
            "@monthly" => (1, 1, 1 << 1, all(1, 12), all(0, 6)),
            "@weekly" => (1, 1, all(1, 31), all(1, 12), 1),
            "@daily" | "@midnight" => (1, 1, all(1, 31), all(1, 12), all(0, 6)),
            "@hourly" => (1, all(0, 23), all(1, 31), all(1, 12), all(0, 6)),
            _ => {
                let Some(duration) = spec.strip_prefix("@every ") else {
                    return Err(format!("unrecognized descriptor: {spec}"));
                };
                let nanos = parse_go_duration(duration)
                    .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                let seconds = (nanos / 1_000_000_000).max(1) as i64;
                return Ok(Schedule {
                    kind: ScheduleKind::Every(seconds),
                });
            }
        };
        Ok(Schedule {
            kind: ScheduleKind::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
                tz,
            },
        })
    }

    /// The first scheduled time strictly after `after`, or `None` when there is none within
    /// five years (an impossible date such as 30 February).
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            ScheduleKind::Every(seconds) => {
                Timestamp::from_second(after.as_second().checked_add(*seconds)?).ok()
            }
            ScheduleKind::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
                tz,
            } => {
                let found = next_in_fields([*minute, *hour, *dom, *month, *dow], tz, after)?;
                (found > after).then_some(found)
            }
        }
    }
}

/// Steps forward field by field (month, day, hour, minute) in the zone's wall clock, as robfig
/// does: hours and minutes advance in absolute time, so a wall-clock time skipped by a DST
/// change does not run that day, and one repeated by it runs twice.
fn next_in_fields(fields: [u64; 5], tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
    let [minute, hour, dom, month, dow] = fields;
    let day_matches = |t: &Zoned| {
        let in_month = has(dom, t.day());
        let in_week = has(dow, t.weekday().to_sunday_zero_offset());
        if dom & STAR != 0 || dow & STAR != 0 {
            in_month && in_week
        } else {
            in_month || in_week
        }
    };
    let plus = |t: &Zoned, seconds: i64| t.checked_add(SignedDuration::from_secs(seconds)).ok();
    let mut t = Timestamp::from_second(after.as_second().checked_add(1)?)
        .ok()?
        .to_zoned(tz.clone());
    let mut truncated = false;
    let year_limit = t.year() + 5;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !has(month, t.month()) {
            if !truncated {
                truncated = true;
                t = t.date().first_of_month().to_zoned(tz.clone()).ok()?;
            }
            t = t.checked_add(1.month()).ok()?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(&t) {
            if !truncated {
                truncated = true;
                t = t.date().to_zoned(tz.clone()).ok()?;
            }
            t = t.checked_add(1.day()).ok()?;
            // A DST change at midnight can leave the day starting at another hour: go to its
            // first hour, but never back into the previous day (when midnight was skipped).
            let h = i64::from(t.hour());
            if h != 0 {
                let adjusted = plus(&t, if h > 12 { (24 - h) * 3600 } else { -h * 3600 })?;
                if h > 12 || adjusted.day() == t.day() {
                    t = adjusted;
                }
            }
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !has(hour, t.hour()) {
            if !truncated {
                truncated = true;
                t = plus(&t, -(i64::from(t.minute()) * 60 + i64::from(t.second())))?;
            }
            t = plus(&t, 3600)?;
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(minute, t.minute()) {
            if !truncated {
                truncated = true;
                t = plus(&t, -i64::from(t.second()))?;
            }
            t = plus(&t, 60)?;
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        if t.second() != 0 {
            // Only second 0 is scheduled: go to the next minute and look again.
            truncated = true;
            t = plus(&t, 60 - i64::from(t.second()))?;
            continue 'wrap;
        }
        return Some(t.timestamp());
    }
}

// ---------------------------------------------------------------------------------------------
// Schedule times

/// How many start times were missed since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than a hundred.
    Many,
}

/// The most recent start time that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The last schedule time, the creation time, or the starting deadline, whichever counts.
    pub earliest: Timestamp,
    /// The latest scheduled time in (earliest, now], if any.
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

/// The latest scheduled time after `since` (the last schedule time, else the creation time)
/// that is not after `now`; with a starting deadline, times older than `now - deadline` do not
/// count. Misses are counted by the interval between the next two times, not one by one.
pub fn most_recent_schedule_time(
    schedule: &Schedule,
    since: Timestamp,
    now: Timestamp,
    starting_deadline_seconds: Option<i64>,
) -> Result<Due, String> {
    let mut earliest = since;
    if let Some(deadline) = starting_deadline_seconds
        && let Ok(cutoff) = now.checked_sub(SignedDuration::from_secs(deadline))
        && cutoff > earliest
    {
        earliest = cutoff;
    }
    let mut due = Due {
        earliest,
        most_recent: None,
        missed: Missed::None,
    };
    let too_close = || "time difference between two schedules is less than 1 second".to_owned();
    let t1 = schedule.next(earliest).ok_or_else(too_close)?;
    let t2 = schedule.next(t1).ok_or_else(too_close)?;
    if now < t1 {
        return Ok(due);
    }
    if now < t2 {
        due.most_recent = Some(t1);
        return Ok(due);
    }
    let interval = t2.as_second() - t1.as_second();
    if interval < 1 {
        return Err(too_close());
    }
    let elapsed = t1.duration_until(now).as_secs();
    let missed = elapsed / interval + 1;
    // Start one interval before the estimated last miss and step forward from there, so
    // irregular schedules (`30 6-16/4 * * 1-5`) still land on the true latest time.
    let mut t = t1
        .checked_add(SignedDuration::from_secs((missed - 2) * interval))
        .map_err(|e| e.to_string())?;
    while let Some(next) = schedule.next(t).filter(|n| *n <= now) {
        due.most_recent = Some(next);
        t = next;
    }
    due.missed = if missed > TOO_MANY_MISSED {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok(due)
}

/// How long until the next scheduled time after the last one that is due (plus a little
/// padding), measured from `now`.
pub fn next_schedule_delay(
    schedule: &Schedule,
    since: Timestamp,
    now: Timestamp,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(schedule, since, now, None) {
        Err(_) => now,
        Ok(Due {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(Due {
            earliest,
            missed: Missed::None,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    let at = schedule.next(from)?.checked_add(NEXT_SCHEDULE_DELTA).ok()?;
    Some(Duration::try_from(now.duration_until(at)).unwrap_or(Duration::ZERO))
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// The name of the Job for `scheduled`: the CronJob's name and the scheduled Unix minute.
pub fn job_name(cron_job_name: &str, scheduled: Timestamp) -> String {
    format!("{cron_job_name}-{}", scheduled.as_second().div_euclid(60))
}

/// `t` in RFC 3339 in `tz`, `Z` for a zero offset (Go's `time.RFC3339`).
fn rfc3339_in(t: Timestamp, tz: TimeZone) -> String {
    let zoned = t.to_zoned(tz);
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job the CronJob starts for `scheduled`.
pub fn job_for(cron_job: &CronJob, scheduled: Timestamp) -> Job {
    let spec = cron_job.spec.clone().unwrap_or_default();
    let template_meta = spec.job_template.metadata.unwrap_or_default();
    let tz = spec
        .time_zone
        .as_deref()
        .and_then(|name| load_time_zone(name).ok())
        .unwrap_or(TimeZone::UTC);
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.to_owned(),
        rfc3339_in(scheduled, tz),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cron_job.name_any(), scheduled)),
            namespace: cron_job.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(
                "batch/v1",
                "CronJob",
                &cron_job.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: spec.job_template.spec,
        status: None,
    }
}

/// `Complete` or `Failed` when the Job has finished.
pub fn finished_condition(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// The finished Jobs to delete to keep within the history limits: the oldest by start time
/// (never-started last, then by name) beyond each limit.
pub fn history_to_delete<'a>(spec: &CronJobSpec, jobs: &'a [Arc<Job>]) -> Vec<&'a Arc<Job>> {
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    let mut doomed = Vec::new();
    for (outcome, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| finished_condition(j) == Some(outcome))
            .collect();
        let surplus = finished.len().saturating_sub(limit.max(0) as usize);
        finished.sort_by(|a, b| {
            let (sa, sb) = (start(a), start(b));
            sa.is_none()
                .cmp(&sb.is_none())
                .then(sa.cmp(&sb))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        doomed.extend(finished.into_iter().take(surplus));
    }
    doomed
}

/// An event to record on the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: String) -> Self {
        Note {
            warning: false,
            reason,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Self {
        Note {
            warning: true,
            reason,
            message,
        }
    }
}

/// What the owned Jobs say about the active list.
#[derive(Debug, Default)]
pub struct Tracking {
    /// The active list without the Jobs that have finished.
    pub active: Vec<ObjectReference>,
    /// The latest completion time of a successful Job.
    pub last_successful: Option<Timestamp>,
    pub notes: Vec<Note>,
    /// Active entries with no Job in the cache, to be looked up before they are dropped.
    pub unseen: Vec<ObjectReference>,
}

/// Brings the active list in line with the owned Jobs: finished ones leave it, successful
/// ones advance the last successful time, running ones the controller does not know about
/// are reported (not adopted, as upstream does).
pub fn track_jobs(status: &CronJobStatus, jobs: &[Arc<Job>]) -> Tracking {
    let mut tracking = Tracking {
        active: status.active.clone().unwrap_or_default(),
        last_successful: status.last_successful_time.as_ref().map(|t| t.0),
        ..Tracking::default()
    };
    for job in jobs {
        let uid = job.metadata.uid.as_deref();
        let listed = tracking.active.iter().any(|r| r.uid.as_deref() == uid);
        let finished = finished_condition(job);
        match finished {
            None if !listed => tracking.notes.push(Note::warning(
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.name_any()
                ),
            )),
            Some(outcome) if listed => {
                tracking.active.retain(|r| r.uid.as_deref() != uid);
                tracking.notes.push(Note::normal(
                    "SawCompletedJob",
                    format!("Saw completed job: {}, status: {outcome}", job.name_any()),
                ));
            }
            Some("Complete") => {
                let completed = job
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0);
                if completed > tracking.last_successful {
                    tracking.last_successful = completed;
                }
            }
            _ => {}
        }
    }
    tracking.unseen = tracking
        .active
        .iter()
        .filter(|r| !jobs.iter().any(|j| j.metadata.uid == r.uid))
        .cloned()
        .collect();
    tracking
}

/// What to do about the schedule now.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Nothing now; look again after this long (`None`: only when something changes).
    Wait(Option<Duration>),
    /// Start the Job for `scheduled`, first deleting the `replace`d active Jobs; then look
    /// again after `then`.
    Start {
        scheduled: Timestamp,
        replace: Vec<ObjectReference>,
        then: Option<Duration>,
    },
}

#[derive(Debug, PartialEq)]
pub struct Decision {
    pub notes: Vec<Note>,
    pub next: Next,
}

/// Decides whether a Job is due for `cron_job`, whose status (after tracking its Jobs) is
/// `status`. `local` is the zone of schedules without a time zone.
pub fn decide(
    cron_job: &CronJob,
    status: &CronJobStatus,
    now: Timestamp,
    local: &TimeZone,
) -> Decision {
    let mut notes = Vec::new();
    let next = decide_next(cron_job, status, now, local, &mut notes);
    Decision { notes, next }
}

fn decide_next(
    cron_job: &CronJob,
    status: &CronJobStatus,
    now: Timestamp,
    local: &TimeZone,
    notes: &mut Vec<Note>,
) -> Next {
    let Some(spec) = cron_job.spec.as_ref() else {
        return Next::Wait(None);
    };
    let mut zone = local.clone();
    if let Some(name) = spec.time_zone.as_deref() {
        match load_time_zone(name) {
            Ok(tz) => zone = tz,
            Err(e) => {
                notes.push(Note::warning(
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                ));
                return Next::Wait(None);
            }
        }
    }
    if spec.suspend == Some(true) {
        return Next::Wait(None);
    }
    if spec.schedule.contains("TZ") {
        notes.push(Note::warning(
            "UnsupportedSchedule",
            format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see \
                 https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more \
                 details",
                spec.schedule
            ),
        ));
        zone = local.clone();
    }
    let schedule = match Schedule::parse(&spec.schedule, zone) {
        Ok(s) => s,
        Err(e) => {
            notes.push(Note::warning(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return Next::Wait(None);
        }
    };
    let since = status
        .last_schedule_time
        .as_ref()
        .or(cron_job.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    let due = match most_recent_schedule_time(&schedule, since, now, spec.starting_deadline_seconds)
    {
        Ok(due) => due,
        Err(e) => {
            notes.push(Note::warning(
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return Next::Wait(None);
        }
    };
    let later = next_schedule_delay(&schedule, since, now);
    let Some(scheduled) = due.most_recent else {
        return Next::Wait(later);
    };
    if due.missed == Missed::Many {
        notes.push(Note::warning(
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or \
             check clock skew"
                .into(),
        ));
    }
    let too_late = spec.starting_deadline_seconds.is_some_and(|deadline| {
        scheduled
            .checked_add(SignedDuration::from_secs(deadline))
            .is_ok_and(|end| end < now)
    });
    if too_late {
        notes.push(Note::warning(
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
            ),
        ));
        return Next::Wait(later);
    }
    let active = status.active.as_deref().unwrap_or_default();
    let name = job_name(&cron_job.name_any(), scheduled);
    let already = active.iter().any(|r| {
        r.name.as_deref() == Some(name.as_str()) && r.namespace == cron_job.metadata.namespace
    }) || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
    if already {
        return Next::Wait(later);
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        notes.push(Note::normal(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is \
             Forbid"
                .into(),
        ));
        return Next::Wait(later);
    }
    Next::Start {
        scheduled,
        replace: if policy == "Replace" {
            active.to_vec()
        } else {
            Vec::new()
        },
        then: next_schedule_delay(&schedule, scheduled, now),
    }
}

// ---------------------------------------------------------------------------------------------
// The controller

/// The state shared by reconciles.
pub struct CronJobContext {
    pub ctx: ControllerContext,
    /// The Jobs by controller (a CronJob's own).
    pub jobs: Indexes<Job>,
    pub recorder: EventRecorder,
    /// The zone of schedules without `spec.timeZone` (upstream: the controller's local zone).
    pub local: TimeZone,
}

pub fn run(
    ctx: ControllerContext,
    cron_jobs: &mut Informer<CronJob>,
    jobs: &mut Informer<Job>,
) -> impl std::future::Future<Output = ()> + use<> {
    let state = Arc::new(CronJobContext {
        recorder: ctx.recorder("cronjob-controller"),
        ctx,
        jobs: jobs.indexes(),
        local: TimeZone::system(),
    });
    let controller = Controller::for_shared_stream(cron_jobs.subscribe(), cron_jobs.store())
        .owns_shared_stream(jobs.subscribe());
    async move {
        controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await
    }
}

fn error_policy(_obj: Arc<CronJob>, err: &ReconcileError, _ctx: Arc<CronJobContext>) -> Action {
    crate::retry_after_failure("cronjob reconcile failed", err)
}

/// The message of an API error (what Go's `err.Error()` shows), else the error itself.
fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn action_of(reason: &str) -> &'static str {
    match reason {
        "SuccessfulCreate" | "FailedCreate" => "Create",
        "SuccessfulDelete" | "FailedDelete" => "Delete",
        _ => "Sync",
    }
}

impl CronJobContext {
    async fn note(&self, reference: &ObjectReference, note: Note) {
        let type_ = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.recorder
            .record(
                reference,
                type_,
                note.reason,
                action_of(note.reason),
                note.message,
            )
            .await;
    }

    /// Deletes a Job and its pods (in the background). A Job already gone counts as deleted.
    async fn delete_job(
        &self,
        api: &Api<Job>,
        name: &str,
        uid: Option<String>,
    ) -> Result<(), kube::Error> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn drop_active(status: &mut CronJobStatus, uid: Option<&str>) {
    if let Some(active) = status.active.as_mut() {
        active.retain(|r| r.uid.as_deref() != uid);
    }
}

async fn reconcile(
    obj: Arc<CronJob>,
    state: Arc<CronJobContext>,
) -> Result<Action, ReconcileError> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let client = state.ctx.client.clone();
    let cron_api: Api<CronJob> = Api::namespaced(client.clone(), &namespace);
    let job_api: Api<Job> = Api::namespaced(client, &namespace);
    let uid = obj.metadata.uid.clone();
    let jobs: Vec<Arc<Job>> = uid
        .as_deref()
        .map(|uid| state.jobs.controlled_by(uid))
        .unwrap_or_default()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();

    // A running Job missing from the active list may have been added by a status write the
    // cache has not seen yet: read the CronJob afresh before calling it unexpected.
    let listed = |cj: &CronJob, job: &Job| {
        cj.status
            .as_ref()
            .and_then(|s| s.active.as_ref())
            .is_some_and(|a| a.iter().any(|r| r.uid == job.metadata.uid))
    };
    let mut cron_job = (*obj).clone();
    if jobs
        .iter()
        .any(|j| finished_condition(j).is_none() && !listed(&cron_job, j))
    {
        match cron_api.get(&name).await {
            Ok(fresh) if fresh.metadata.uid == uid => cron_job = fresh,
            Ok(_) => return Ok(Action::await_change()),
            Err(e) if not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    let reference = cron_job.object_ref(&());
    let spec = cron_job.spec.clone().unwrap_or_default();
    let before = cron_job.status.clone().unwrap_or_default();
    let mut status = before.clone();
    let mut failure: Option<ReconcileError> = None;

    for job in history_to_delete(&spec, &jobs) {
        let job_name = job.name_any();
        match state
            .delete_job(&job_api, &job_name, job.metadata.uid.clone())
            .await
        {
            Ok(()) => {
                drop_active(&mut status, job.metadata.uid.as_deref());
                let note = Note::normal("SuccessfulDelete", format!("Deleted job {job_name}"));
                state.note(&reference, note).await;
            }
            Err(e) => {
                let note = Note::warning(
                    "FailedDelete",
                    format!("Deleted job: {}", error_message(&e)),
                );
                state.note(&reference, note).await;
            }
        }
    }

    let tracking = track_jobs(&status, &jobs);
    status.active = Some(tracking.active);
    status.last_successful_time = tracking.last_successful.map(Time);
    for note in tracking.notes {
        state.note(&reference, note).await;
    }
    // Not in the cache is not yet gone: ask the API server before dropping an active entry.
    for missing in tracking.unseen {
        let missing_name = missing.name.clone().unwrap_or_default();
        match job_api.get(&missing_name).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {
                drop_active(&mut status, missing.uid.as_deref());
                let note = Note::normal(
                    "MissingJob",
                    format!("Active job went missing: {missing_name}"),
                );
                state.note(&reference, note).await;
            }
            Err(e) => {
                failure.get_or_insert(e.into());
            }
        }
    }

    let mut action = Action::await_change();
    if failure.is_none() && cron_job.metadata.deletion_timestamp.is_none() {
        let decision = decide(&cron_job, &status, Timestamp::now(), &state.local);
        for note in decision.notes {
            state.note(&reference, note).await;
        }
        match decision.next {
            Next::Wait(after) => action = after.map_or_else(Action::await_change, Action::requeue),
            Next::Start {
                scheduled,
                replace,
                then,
            } => {
                for old in replace {
                    let old_name = old.name.clone().unwrap_or_default();
                    match state.delete_job(&job_api, &old_name, old.uid.clone()).await {
                        Ok(()) => {
                            drop_active(&mut status, old.uid.as_deref());
                            let note =
                                Note::normal("SuccessfulDelete", format!("Deleted job {old_name}"));
                            state.note(&reference, note).await;
                        }
                        Err(e) => {
                            let note = Note::warning(
                                "FailedDelete",
                                format!("Deleted job: {}", error_message(&e)),
                            );
                            state.note(&reference, note).await;
                            failure = Some(ReconcileError::Retry(format!(
                                "could not replace job {namespace}/{old_name}"
                            )));
                            break;
                        }
                    }
                }
                if failure.is_none() {
                    failure = start_job(
                        &state,
                        &job_api,
                        &cron_job,
                        &reference,
                        scheduled,
                        &mut status,
                    )
                    .await
                    .err();
                    action = then.map_or_else(Action::await_change, Action::requeue);
                }
            }
        }
    }

    write_status(&cron_api, &obj, &before, &status).await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(action),
    }
}

/// Creates the Job for `scheduled` and lists it as active. A Job of that name already there
/// and owned by this CronJob was created by an earlier reconcile whose status write was lost.
async fn start_job(
    state: &CronJobContext,
    job_api: &Api<Job>,
    cron_job: &CronJob,
    reference: &ObjectReference,
    scheduled: Timestamp,
    status: &mut CronJobStatus,
) -> Result<(), ReconcileError> {
    let job = job_for(cron_job, scheduled);
    let name = job.name_any();
    let created = match job_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            state
                .note(
                    reference,
                    Note::normal("SuccessfulCreate", format!("Created job {name}")),
                )
                .await;
            created
        }
        Err(e) if is_status(&e, 409) => {
            let existing = job_api.get(&name).await?;
            let ours = pods::controller_of(&existing.metadata)
                .is_some_and(|r| Some(&r.uid) == cron_job.metadata.uid.as_ref());
            let listed = status
                .active
                .iter()
                .flatten()
                .any(|r| r.uid == existing.metadata.uid);
            if !ours || listed {
                return Ok(());
            }
            info!(job = %name, "job already exists");
            existing
        }
        Err(e) if namespace_terminating(&e) => return Err(e.into()),
        Err(e) => {
            let note = Note::warning(
                "FailedCreate",
                format!("Error creating job: {}", error_message(&e)),
            );
            state.note(reference, note).await;
            return Err(e.into());
        }
    };
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(created.object_ref(&()));
    status.last_schedule_time = Some(Time(scheduled));
    Ok(())
}

async fn write_status(
    api: &Api<CronJob>,
    cron_job: &CronJob,
    before: &CronJobStatus,
    after: &CronJobStatus,
) -> Result<(), ReconcileError> {
    let active = after.active.clone().unwrap_or_default();
    let unchanged = before.active.clone().unwrap_or_default() == active
        && before.last_schedule_time == after.last_schedule_time
        && before.last_successful_time == after.last_successful_time;
    if unchanged {
        return Ok(());
    }
    let name = cron_job.name_any();
    let patch = json!({"metadata": {"resourceVersion": cron_job.resource_version()}, "status": {
        "active": if active.is_empty() { None } else { Some(active) },
        "lastScheduleTime": after.last_schedule_time,
        "lastSuccessfulTime": after.last_successful_time,
    }});
    let written = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    Ok(settle_status_write(written)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus, JobTemplateSpec};
    use std::collections::BTreeMap;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("test timestamp")
    }

    fn utc(spec: &str) -> Schedule {
        Schedule::parse(spec, TimeZone::UTC).expect("test schedule")
    }

    fn cron_job(schedule: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("backup".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(at("2024-05-01T10:00:00Z"))),
                ..ObjectMeta::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                concurrency_policy: Some("Allow".into()),
                suspend: Some(false),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(1),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "backup".into())])),
                        annotations: Some(BTreeMap::from([("team".into(), "ops".into())])),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                },
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }

    fn job(name: &str, outcome: Option<&str>, started: Option<&str>) -> Arc<Job> {
        let conditions = outcome.map(|o| {
            vec![JobCondition {
                type_: o.into(),
                status: "True".into(),
                ..JobCondition::default()
            }]
        });
        Arc::new(Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(JobStatus {
                conditions,
                start_time: started.map(|s| Time(at(s))),
                completion_time: outcome.and(started).map(|s| Time(at(s))),
                ..JobStatus::default()
            }),
        })
    }

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("batch/v1".into()),
            kind: Some("Job".into()),
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    fn status(active: &[&str], last: Option<&str>) -> CronJobStatus {
        CronJobStatus {
            active: Some(active.iter().map(|n| reference(n)).collect()),
            last_schedule_time: last.map(|t| Time(at(t))),
            last_successful_time: None,
        }
    }

    #[test]
    fn huge_steps_parse_without_overflowing() {
        let every_hour_at_one = utc("1/9223372036854775807 * * * *");
        let next = every_hour_at_one.next(at("2026-01-01T00:00:00Z"));
        assert_eq!(
            next.map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T00:01:00Z")
        );
    }

    #[test]
    fn steps_and_descriptors_give_the_next_time() {
        let every_five = utc("*/5 * * * *");
        assert_eq!(
            every_five.next(at("2024-05-01T10:02:30Z")),
            Some(at("2024-05-01T10:05:00Z"))
        );
        assert_eq!(
            every_five.next(at("2024-05-01T10:05:00Z")),
            Some(at("2024-05-01T10:10:00Z"))
        );
        let hourly = utc("@hourly");
        assert_eq!(
            hourly.next(at("2024-05-01T10:00:00Z")),
            Some(at("2024-05-01T11:00:00Z"))
        );
        assert_eq!(
            hourly.next(at("2024-12-31T23:59:59Z")),
            Some(at("2025-01-01T00:00:00Z"))
        );
        assert_eq!(
            utc("@every 90s").next(at("2024-05-01T10:00:00.5Z")),
            Some(at("2024-05-01T10:01:30Z"))
        );
        assert_eq!(
            utc("0 9 * JAN mon-fri").next(at("2024-05-01T00:00:00Z")),
            Some(at("2025-01-01T09:00:00Z"))
        );
        assert_eq!(utc("0 0 30 2 *").next(at("2024-05-01T00:00:00Z")), None);
    }

    #[test]
    fn days_of_month_and_week_combine_with_or_unless_one_is_a_star() {
        // 2024-09-01 is a Sunday; the 6th a Friday.
        let from = at("2024-09-01T00:00:00Z");
        assert_eq!(
            utc("0 0 13 * 5").next(from),
            Some(at("2024-09-06T00:00:00Z"))
        );
        assert_eq!(
            utc("0 0 ? * 5").next(from),
            Some(at("2024-09-06T00:00:00Z"))
        );
        assert_eq!(
            utc("0 0 13 * *").next(from),
            Some(at("2024-09-13T00:00:00Z"))
        );
        // `*/1` still counts as a star: the day of month alone decides.
        assert_eq!(
            utc("0 0 13 * */1").next(from),
            Some(at("2024-09-13T00:00:00Z"))
        );
    }

    #[test]
    fn schedules_run_in_their_time_zone_across_dst() {
        let new_york = TimeZone::get("America/New_York").expect("tzdb");
        let nine = Schedule::parse("0 9 * * *", new_york.clone()).expect("schedule");
        // EST (UTC-5) before 10 March 2024, EDT (UTC-4) from then.
        assert_eq!(
            nine.next(at("2024-03-09T00:00:00Z")),
            Some(at("2024-03-09T14:00:00Z"))
        );
        assert_eq!(
            nine.next(at("2024-03-09T14:00:00Z")),
            Some(at("2024-03-10T13:00:00Z"))
        );
        // 02:30 does not exist on 10 March: that day is skipped.
        let half_past_two = Schedule::parse("30 2 * * *", new_york).expect("schedule");
        assert_eq!(
            half_past_two.next(at("2024-03-10T05:00:00Z")),
            Some(at("2024-03-11T06:30:00Z"))
        );
        // 01:30 happens twice on 3 November (EDT, then EST): it runs twice.
        let half_past_one = Schedule::parse(
            "30 1 * * *",
            TimeZone::get("America/New_York").expect("tzdb"),
        )
        .expect("schedule");
        let first = half_past_one.next(at("2024-11-03T04:00:00Z"));
        assert_eq!(first, Some(at("2024-11-03T05:30:00Z")));
        let second = first.and_then(|t| half_past_one.next(t));
        assert_eq!(second, Some(at("2024-11-03T06:30:00Z")));
        assert_eq!(
            second.and_then(|t| half_past_one.next(t)),
            Some(at("2024-11-04T06:30:00Z"))
        );
        // Chile skips midnight on 8 September 2024 (00:00 -04 becomes 01:00 -03): that day
        // still runs, at its first hour.
        let santiago = TimeZone::get("America/Santiago").expect("tzdb");
        let daily_at_three = Schedule::parse("0 3 8 9 *", santiago).expect("schedule");
        assert_eq!(
            daily_at_three.next(at("2024-09-01T00:00:00Z")),
            Some(at("2024-09-08T06:00:00Z"))
        );
        // A TZ= prefix overrides the default zone.
        assert_eq!(
            utc("TZ=Asia/Kolkata 0 9 * * *").next(at("2024-05-01T00:00:00Z")),
            Some(at("2024-05-01T03:30:00Z"))
        );
    }

    #[test]
    fn malformed_schedules_are_rejected_with_robfig_wording() {
        let err = |s: &str| Schedule::parse(s, TimeZone::UTC).err().unwrap_or_default();
        assert_eq!(
            err("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(
            err("61 * * * *"),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(err("@often"), "unrecognized descriptor: @often");
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert!(err("@every 5x").contains("unknown unit"));
        assert!(err("TZ=Mars/Base 0 * * * *").starts_with("provided bad location Mars/Base"));
    }

    #[test]
    fn the_most_recent_missed_time_is_found_and_misses_counted() {
        let minutely = utc("* * * * *");
        let since = at("2024-05-01T10:00:00Z");
        let none = most_recent_schedule_time(&minutely, since, at("2024-05-01T10:00:30Z"), None);
        assert_eq!(none.map(|d| d.most_recent), Ok(None));
        let one = most_recent_schedule_time(&minutely, since, at("2024-05-01T10:01:30Z"), None)
            .expect("due");
        assert_eq!(
            (one.most_recent, one.missed),
            (Some(at("2024-05-01T10:01:00Z")), Missed::None)
        );
        let few = most_recent_schedule_time(&minutely, since, at("2024-05-01T10:07:30Z"), None)
            .expect("due");
        assert_eq!(
            (few.most_recent, few.missed),
            (Some(at("2024-05-01T10:07:00Z")), Missed::Few)
        );
        let many = most_recent_schedule_time(&minutely, since, at("2024-05-01T13:00:10Z"), None)
            .expect("due");
        assert_eq!(
            (many.most_recent, many.missed),
            (Some(at("2024-05-01T13:00:00Z")), Missed::Many)
        );
        // Irregular schedule: the latest time is exact, not an interval estimate.
        let irregular = utc("30 6-16/4 * * 1-5");
        let due = most_recent_schedule_time(
            &irregular,
            at("2024-05-06T00:00:00Z"),
            at("2024-05-09T12:00:00Z"),
            None,
        )
        .expect("due");
        assert_eq!(due.most_recent, Some(at("2024-05-09T10:30:00Z")));
    }

    #[test]
    fn the_starting_deadline_drops_runs_that_are_too_late() {
        let minutely = utc("*/5 * * * *");
        let since = at("2024-05-01T10:00:00Z");
        let now = at("2024-05-01T10:07:30Z");
        let tight = most_recent_schedule_time(&minutely, since, now, Some(60)).expect("due");
        assert_eq!(tight.most_recent, None);
        let loose = most_recent_schedule_time(&minutely, since, now, Some(200)).expect("due");
        assert_eq!(loose.most_recent, Some(at("2024-05-01T10:05:00Z")));

        let mut cj = cron_job("*/5 * * * *");
        if let Some(spec) = cj.spec.as_mut() {
            spec.starting_deadline_seconds = Some(60);
        }
        let decision = decide(&cj, &CronJobStatus::default(), now, &TimeZone::UTC);
        // Woken at 10:10:00.1 for the next run instead.
        assert_eq!(
            decision.next,
            Next::Wait(Some(Duration::from_millis(150_100)))
        );
        assert!(decision.notes.is_empty());
    }

    #[test]
    fn too_many_misses_warn_but_still_run_the_latest() {
        let cj = cron_job("* * * * *");
        let decision = decide(
            &cj,
            &CronJobStatus::default(),
            at("2024-05-02T10:00:30Z"),
            &TimeZone::UTC,
        );
        assert_eq!(decision.notes[0].reason, "TooManyMissedTimes");
        assert!(matches!(
            decision.next,
            Next::Start { scheduled, .. } if scheduled == at("2024-05-02T10:00:00Z")
        ));
    }

    #[test]
    fn jobs_are_named_by_scheduled_minute_and_carry_the_template() {
        let scheduled = at("2024-01-01T00:00:00Z");
        assert_eq!(job_name("backup", scheduled), "backup-28401120");
        let mut cj = cron_job("@hourly");
        if let Some(spec) = cj.spec.as_mut() {
            spec.time_zone = Some("Europe/Berlin".into());
        }
        let job = job_for(&cj, scheduled);
        assert_eq!(job.metadata.name.as_deref(), Some("backup-28401120"));
        let labels = job.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("backup"));
        let annotations = job.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.get("team").map(String::as_str), Some("ops"));
        assert_eq!(
            annotations
                .get(SCHEDULED_TIMESTAMP_ANNOTATION)
                .map(String::as_str),
            Some("2024-01-01T01:00:00+01:00")
        );
        let owner = &job.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "cj-uid", Some(true))
        );
        // Without a time zone the annotation is in UTC.
        let utc_job = job_for(&cron_job("@hourly"), scheduled);
        assert_eq!(
            utc_job
                .metadata
                .annotations
                .unwrap_or_default()
                .get(SCHEDULED_TIMESTAMP_ANNOTATION)
                .map(String::as_str),
            Some("2024-01-01T00:00:00Z")
        );
    }

    fn with_policy(policy: &str) -> CronJob {
        let mut cj = cron_job("*/5 * * * *");
        if let Some(spec) = cj.spec.as_mut() {
            spec.concurrency_policy = Some(policy.into());
        }
        cj
    }

    #[test]
    fn concurrency_policies_decide_around_running_jobs() {
        let now = at("2024-05-01T10:10:05Z");
        let running = status(&["backup-28575965"], Some("2024-05-01T10:05:00Z"));
        let due = at("2024-05-01T10:10:00Z");

        let allow = decide(&with_policy("Allow"), &running, now, &TimeZone::UTC);
        assert_eq!(
            allow.next,
            Next::Start {
                scheduled: due,
                replace: vec![],
                then: Some(Duration::from_millis(295_100)),
            }
        );

        let forbid = decide(&with_policy("Forbid"), &running, now, &TimeZone::UTC);
        assert_eq!(forbid.notes[0].reason, "JobAlreadyActive");
        assert!(matches!(forbid.next, Next::Wait(Some(_))));
        let idle = status(&[], Some("2024-05-01T10:05:00Z"));
        let forbid_idle = decide(&with_policy("Forbid"), &idle, now, &TimeZone::UTC);
        assert!(matches!(forbid_idle.next, Next::Start { .. }));

        let replace = decide(&with_policy("Replace"), &running, now, &TimeZone::UTC);
        assert!(matches!(
            replace.next,
            Next::Start { ref replace, .. } if replace == &[reference("backup-28575965")]
        ));

        // The Job for 10:10 is already listed (its status write raced this read).
        let listed = status(&["backup-28575970"], Some("2024-05-01T10:05:00Z"));
        let again = decide(&with_policy("Allow"), &listed, now, &TimeZone::UTC);
        assert!(matches!(again.next, Next::Wait(Some(_))));

        // The run for 10:10 already happened.
        let done = status(&["backup-28575970"], Some("2024-05-01T10:10:00Z"));
        let again = decide(&with_policy("Allow"), &done, now, &TimeZone::UTC);
        assert!(matches!(again.next, Next::Wait(Some(_))));
    }

    #[test]
    fn suspended_or_misconfigured_cron_jobs_do_not_run() {
        let now = at("2024-05-01T10:10:05Z");
        let mut suspended = cron_job("*/5 * * * *");
        if let Some(spec) = suspended.spec.as_mut() {
            spec.suspend = Some(true);
        }
        let d = decide(&suspended, &CronJobStatus::default(), now, &TimeZone::UTC);
        assert_eq!(
            d,
            Decision {
                notes: vec![],
                next: Next::Wait(None)
            }
        );

        let mut bad_zone = cron_job("*/5 * * * *");
        if let Some(spec) = bad_zone.spec.as_mut() {
            spec.time_zone = Some("Mars/Olympus".into());
        }
        let d = decide(&bad_zone, &CronJobStatus::default(), now, &TimeZone::UTC);
        assert_eq!(d.notes[0].reason, "UnknownTimeZone");
        assert_eq!(d.next, Next::Wait(None));

        let d = decide(
            &cron_job("every day"),
            &CronJobStatus::default(),
            now,
            &TimeZone::UTC,
        );
        assert_eq!(d.notes[0].reason, "UnparseableSchedule");
        assert_eq!(
            d.notes[0].message,
            "unparseable schedule: \"every day\" : expected exactly 5 fields, found 2: [every day]"
        );
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let jobs = vec![
            job("ok-1", Some("Complete"), Some("2024-05-01T10:01:00Z")),
            job("ok-4", Some("Complete"), Some("2024-05-01T10:04:00Z")),
            job("ok-2", Some("Complete"), Some("2024-05-01T10:02:00Z")),
            job("ok-3", Some("Complete"), Some("2024-05-01T10:03:00Z")),
            job("ok-never", Some("Complete"), None),
            job("bad-1", Some("Failed"), Some("2024-05-01T10:01:00Z")),
            job("bad-2", Some("Failed"), Some("2024-05-01T10:02:00Z")),
            job("running", None, Some("2024-05-01T09:00:00Z")),
        ];
        let spec = cron_job("* * * * *").spec.unwrap_or_default();
        let names: Vec<String> = history_to_delete(&spec, &jobs)
            .iter()
            .map(|j| j.name_any())
            .collect();
        assert_eq!(names, ["ok-1", "ok-2", "bad-1"]);
        let unlimited = CronJobSpec {
            successful_jobs_history_limit: None,
            failed_jobs_history_limit: None,
            ..spec
        };
        assert!(history_to_delete(&unlimited, &jobs).is_empty());
    }

    #[test]
    fn the_active_list_follows_the_jobs() {
        let jobs = vec![
            job("done", Some("Complete"), Some("2024-05-01T10:05:00Z")),
            job(
                "old-success",
                Some("Complete"),
                Some("2024-05-01T09:00:00Z"),
            ),
            job("running", None, None),
            job("stray", None, None),
        ];
        let before = status(&["done", "running", "vanished"], None);
        let t = track_jobs(&before, &jobs);
        let names: Vec<_> = t.active.iter().filter_map(|r| r.name.clone()).collect();
        assert_eq!(names, ["running", "vanished"]);
        assert_eq!(
            t.notes,
            [
                Note::normal(
                    "SawCompletedJob",
                    "Saw completed job: done, status: Complete".into()
                ),
                Note::warning(
                    "UnexpectedJob",
                    "Saw a job that the controller did not create or forgot: stray".into()
                ),
            ]
        );
        assert_eq!(t.unseen, [reference("vanished")]);
        // `done` only counts as a success once it has left the active list (as upstream).
        assert_eq!(t.last_successful, Some(at("2024-05-01T09:00:00Z")));
        let next_round = track_jobs(
            &CronJobStatus {
                active: Some(t.active),
                ..CronJobStatus::default()
            },
            &jobs,
        );
        assert_eq!(next_round.last_successful, Some(at("2024-05-01T10:05:00Z")));
    }
}
