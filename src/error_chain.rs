//! An error with its causes on one line, for job records and logs (`reqwest`'s "error sending
//! request" says nothing until its causes follow). No dependencies: every stage may use it.

/// The error with its causes, `a: b: c`, for job records and logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = e.source();
    }
    text
}
