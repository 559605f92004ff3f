//! How an error reads on one line, with its causes: every message of the process that
//! shows an error (the command line's last line, the log, the status, troubleshoot) is
//! made here. reqwest, rustls and io errors put the useful part in their sources, so the
//! causes are joined with `: `; a cause whose text its error already shows is left out.

use std::error::Error;

/// `error` and its causes on one line.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    labelled(error, |_| None)
}

/// [`one_line`], with `label` put before each cause it names (the command line marks
/// configuration errors so).
pub fn labelled(
    error: &(dyn Error + 'static),
    label: impl Fn(&(dyn Error + 'static)) -> Option<&'static str>,
) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if text.is_empty() || !text.contains(&cause_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(label(cause).unwrap_or(""));
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach MCAS")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn causes_are_joined_and_repeats_left_out() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(one_line(&Outer(refused())), "cannot reach MCAS: refused");
        assert_eq!(
            one_line(&Repeats(refused())),
            "error sending request: refused"
        );
        let marked = labelled(&Outer(refused()), |e| e.is::<Outer>().then_some("oh: "));
        assert_eq!(marked, "oh: cannot reach MCAS: refused");
    }
}
