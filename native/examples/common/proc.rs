//! Reading a process's figures from `/proc` (Linux), shared by the benches.

/// The KiB or count values of `fields` (e.g. `"VmRSS:"`) in `/proc/<pid>/status`; 0 for a
/// field that is missing. `pid` may be `"self"`.
pub fn status(pid: &str, fields: &[&str]) -> Vec<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    fields
        .iter()
        .map(|name| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}
