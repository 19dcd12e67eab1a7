//! What a job did, recorded from outside its reach: the versioned job report, and (as it grows)
//! the events, detections and baselines built on it.

pub mod report;

pub use report::{JobReport, REPORT_VERSION};
