//! Comments the importer puts in a draft, keyed by the JSON Pointer of the
//! spec value they are about: `# review:` where it guessed (naming what to
//! check), plain ones where it states a fact the reader needs.

use std::collections::BTreeMap;

/// One comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// A guess to check: rendered `# review: <text>`.
    pub review: bool,
    pub text: String,
}

impl Note {
    /// The comment's text as rendered after `# `.
    pub fn rendered(&self) -> String {
        if self.review {
            format!("review: {}", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// Comments by JSON Pointer into the draft spec.
#[derive(Clone, Debug, Default)]
pub struct Notes {
    by_pointer: BTreeMap<String, Vec<Note>>,
}

impl Notes {
    /// Adds a `# review:` comment above the value at `pointer`.
    pub fn review(&mut self, pointer: impl Into<String>, text: impl Into<String>) {
        self.push(pointer.into(), true, text.into());
    }

    /// Adds a plain comment above the value at `pointer`.
    pub fn note(&mut self, pointer: impl Into<String>, text: impl Into<String>) {
        self.push(pointer.into(), false, text.into());
    }

    fn push(&mut self, pointer: String, review: bool, text: String) {
        let notes = self.by_pointer.entry(pointer).or_default();
        let note = Note { review, text };
        if !notes.contains(&note) {
            notes.push(note);
        }
    }

    /// The comments on the value at `pointer` itself.
    pub fn at(&self, pointer: &str) -> &[Note] {
        self.by_pointer.get(pointer).map_or(&[], Vec::as_slice)
    }

    /// The comments on `pointer` and on every value inside it (for values
    /// rendered on one line, which cannot carry comments of their own).
    pub fn within<'a>(&'a self, pointer: &'a str) -> impl Iterator<Item = &'a Note> + 'a {
        self.by_pointer
            .range(pointer.to_string()..)
            .take_while(move |(p, _)| p.starts_with(pointer))
            .filter(move |(p, _)| p.len() == pointer.len() || p[pointer.len()..].starts_with('/'))
            .flat_map(|(_, notes)| notes)
    }

    /// Takes every comment of `other`, its pointers prefixed with `prefix`.
    pub fn absorb(&mut self, prefix: &str, other: Notes) {
        for (p, notes) in other.by_pointer {
            for n in notes {
                self.push(format!("{prefix}{p}"), n.review, n.text);
            }
        }
    }

    /// How many `# review:` comments there are.
    pub fn reviews(&self) -> usize {
        self.by_pointer
            .values()
            .flatten()
            .filter(|n| n.review)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_takes_descendants_only() {
        let mut n = Notes::default();
        n.review("/objects/1", "a");
        n.note("/objects/1/fields/0", "b");
        n.note("/objects/10", "c");
        let got: Vec<String> = n.within("/objects/1").map(Note::rendered).collect();
        assert_eq!(got, ["review: a", "b"]);
        assert_eq!(n.reviews(), 1);
    }
}
