//! What a job did, recorded from outside its reach: the versioned job report, the live monitor
//! (process tree, memory reads, file writes), detections, baselines, and the report's renderers.

pub mod baseline;
pub mod connector;
pub mod detect;
pub mod files;
pub mod live;
pub mod procfs;
pub mod render;
pub mod report;

pub use baseline::{Baseline, BaselineError};
pub use live::{DeniedHook, EgressHook, Mode, Monitor, MonitorConfig, MonitorError, Running, WatchHook};
pub use report::{Blocked, Detection, JobReport, Observed, REPORT_VERSION, Severity};

/// Settles a finished report: every detection its records support (live ones kept), egress
/// byte counts, and in block mode the detection that blocks the job (live or found now).
pub fn finalize(
    report: &mut JobReport,
    baseline: Option<&Baseline>,
    expected_duration_ms: Option<u64>,
    cpu_factor: f64,
) -> Option<Blocked> {
    let ctx = detect::Ctx {
        baseline,
        workspace: report.observed.monitor.as_ref().and_then(|m| m.workspace.clone()),
        expected_duration_ms,
        duration_factor: 2.0,
        cpu_factor,
    };
    report.observed.detections = detect::evaluate(report, &ctx);
    if let Some(events) = report.egress.get("events").and_then(|e| e.as_array()) {
        let sum = |k: &str| {
            events
                .iter()
                .filter_map(|e| e.get(k).and_then(|v| v.as_u64()))
                .sum::<u64>()
        };
        report.resources.bytes_out = Some(sum("bytes_up"));
        report.resources.bytes_in = Some(sum("bytes_down"));
    }
    let info = report.observed.monitor.as_mut()?;
    if info.mode == "block" && info.blocked.is_none() {
        info.blocked = report
            .observed
            .detections
            .iter()
            .find(|d| d.severity >= info.threshold)
            .map(|d| Blocked {
                id: d.id.clone(),
                severity: d.severity,
                explanation: d.explanation.clone(),
                stopped: false,
                at_ms: d.at_ms,
            });
    }
    info.blocked.clone()
}
