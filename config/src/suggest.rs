//! "Did you mean …?" suggestions by edit distance.
//!
//! A suggestion is offered only when it is close enough to be a likely typo: at most a
//! third of the word's length in edits (and at least one), so `prority_weight` finds
//! `priority_weight` but `colour` does not find `counters`.

/// Levenshtein distance between two strings, counted in chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is a plausible typo of it. Ties go to the
/// first candidate; an exact case-insensitive match always wins.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if c.to_lowercase() == lower {
            0
        } else {
            edit_distance(word, c)
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("prority_weight", "priority_weight"), 1);
    }

    #[test]
    fn suggests_only_near_words() {
        let keys = [
            "priority_weight",
            "normal_weight",
            "no_show_after_minutes",
            "groups",
        ];
        assert_eq!(closest("prority_weight", keys), Some("priority_weight"));
        assert_eq!(closest("group", keys), Some("groups"));
        assert_eq!(closest("colour", keys), None);
        assert_eq!(closest("JSON", ["pretty", "json"]), Some("json"));
    }
}
