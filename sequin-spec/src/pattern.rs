//! Object patterns: the `*` and `?` wildcards of a connection's `objects:`
//! and `exclude_objects:` and of a spec's deny list and default
//! exclusions (`*__c`, `*History`), matched case-insensitively because API
//! names are (Salesforce's `account` and `Account` are one object).

/// Whether `pattern` has a wildcard (`*` or `?`); one without names exactly
/// one object.
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether `name` matches `pattern`: `*` stands for any run of characters
/// (none included), `?` for exactly one; the rest compares
/// case-insensitively.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let n: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    // Iterative glob with one backtrack point: linear in practice, no
    // recursion on patterns with many stars.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run_and_question_marks_one_character() {
        assert!(matches("*__c", "Invoice__c"));
        assert!(matches("*__c", "__c"));
        assert!(!matches("*__c", "Invoice__mdt"));
        assert!(matches("*History", "AccountHistory"));
        assert!(!matches("*History", "AccountHistoryX"));
        assert!(matches("Acc*nt", "Account"));
        assert!(matches("*", ""));
        assert!(matches("Case?", "Cases"));
        assert!(!matches("Case?", "Case"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("*a*b", "xxbxxa"));
    }

    #[test]
    fn names_compare_case_insensitively() {
        assert!(matches("account", "Account"));
        assert!(matches("INVOICE__C", "Invoice__c"));
        assert!(!matches("Account", "Accounts"));
    }

    #[test]
    fn only_star_and_question_mark_are_wildcards() {
        assert!(is_wildcard("*__c"));
        assert!(is_wildcard("Case?"));
        assert!(!is_wildcard("Account"));
        assert!(!is_wildcard("invoice__c"));
    }
}
