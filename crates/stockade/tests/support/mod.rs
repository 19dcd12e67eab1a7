//! What every end-to-end test file of the binary shares: whether the tests run as root, and a
//! skip with a printed reason where they do not (CI runs as root).

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Returns from the test, with a printed reason, unless it runs as root.
macro_rules! need_root {
    () => {
        need_root!("these tests need root (CI runs as root)")
    };
    ($why:expr) => {
        if !crate::support::is_root() {
            eprintln!("skipped: {}", $why);
            return;
        }
    };
}
