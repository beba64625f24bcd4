//! Small text helpers for the audit log and the model adapter (the screen crate has its own `cap`).

/// The longest prefix of `s` within `max` bytes, cut on a char boundary
/// (`str::floor_char_boundary`), and whether anything was cut.
pub fn cap(s: &str, max: usize) -> (&str, bool) {
    let head = s.get(..s.floor_char_boundary(max)).unwrap_or("");
    (head, head.len() < s.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_on_char_boundaries_only() {
        assert_eq!(super::cap("héllo", 2), ("h", true));
        assert_eq!(super::cap("héllo", 3), ("hé", true));
        assert_eq!(super::cap("héllo", 64), ("héllo", false));
        assert_eq!(super::cap("日本", 2), ("", true));
    }
}
