//! A shard's list of cloned repos, held as one text buffer and the end of each name in it.
//!
//! A shard lists up to a million names, and the loop holds each shard's last list while the
//! next one is read. As `RepoName`s each name would be an allocation of its own plus a 16-byte
//! handle; here it is its bytes plus 4, decoded from the answer without a string per name.

use std::fmt;

use super::RepoName;

/// An immutable list of names in gitserver's normal form, in the order the shard gave them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NameList {
    text: Box<str>,
    /// `ends[i]` is where name `i` ends in `text`; it starts where name `i - 1` ends.
    ends: Box<[u32]>,
}

impl NameList {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Name `idx`. Panics past the end, as indexing a slice does.
    pub fn get(&self, idx: usize) -> &str {
        let start = if idx == 0 { 0 } else { self.ends[idx - 1] as usize };
        &self.text[start..self.ends[idx] as usize]
    }

    /// The list whose name `i` is `text[ends[i - 1]..ends[i]]` (from 0 for the first), for a
    /// builder in this crate that fills the ends itself: they must rise to the text's end on
    /// character boundaries (checked in debug builds; [`NameList::get`] panics otherwise).
    pub(crate) fn from_parts(text: String, ends: Vec<u32>) -> NameList {
        debug_assert!(ends
            .iter()
            .try_fold(0, |start, &end| (start <= end && text.is_char_boundary(end as usize)).then_some(end))
            .is_some_and(|last| last as usize == text.len()));
        NameList { text: text.into_boxed_str(), ends: ends.into_boxed_slice() }
    }

    /// Bytes of all names together.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Bytes held: the text and the ends.
    pub fn heap_bytes(&self) -> usize {
        self.text.len() + self.ends.len() * size_of::<u32>()
    }

    /// The names, in list order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let name = &self.text[start..end as usize];
            start = end as usize;
            name
        })
    }

    /// Whether `name` is in the list (a linear scan: for the odd question, not per repo).
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|listed| listed == name)
    }

    /// This list with `more` names after its own, for the few a progress call adds.
    pub fn extended<'a>(self, more: impl IntoIterator<Item = &'a str>) -> NameList {
        let mut builder = NameListBuilder { text: self.text.into_string(), ends: self.ends.into_vec() };
        for name in more {
            builder.push(name);
        }
        builder.finish()
    }
}

impl fmt::Debug for NameList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<&'a str> for NameList {
    fn from_iter<I: IntoIterator<Item = &'a str>>(names: I) -> NameList {
        let mut builder = NameListBuilder::default();
        for name in names {
            builder.push(name);
        }
        builder.finish()
    }
}

impl<'a> FromIterator<&'a RepoName> for NameList {
    fn from_iter<I: IntoIterator<Item = &'a RepoName>>(names: I) -> NameList {
        names.into_iter().map(RepoName::as_str).collect()
    }
}

impl FromIterator<RepoName> for NameList {
    fn from_iter<I: IntoIterator<Item = RepoName>>(names: I) -> NameList {
        let mut builder = NameListBuilder::default();
        for name in names {
            builder.push(name.as_str());
        }
        builder.finish()
    }
}

impl From<Vec<RepoName>> for NameList {
    fn from(names: Vec<RepoName>) -> NameList {
        names.iter().collect()
    }
}

impl<const N: usize> From<[RepoName; N]> for NameList {
    fn from(names: [RepoName; N]) -> NameList {
        names.into_iter().collect()
    }
}

/// Builds a [`NameList`] one name at a time.
#[derive(Debug, Default)]
pub struct NameListBuilder {
    text: String,
    ends: Vec<u32>,
}

/// The list's text would pass 4 GiB, which its `u32` offsets cannot address (a shard's answer
/// is capped far below that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListTooLarge;

impl NameListBuilder {
    /// Room for `names` names of `bytes` bytes in all.
    pub fn with_capacity(names: usize, bytes: usize) -> NameListBuilder {
        NameListBuilder { text: String::with_capacity(bytes), ends: Vec::with_capacity(names) }
    }

    /// Room for `names` more names of `bytes` more bytes in all.
    pub fn reserve(&mut self, names: usize, bytes: usize) {
        self.text.reserve(bytes);
        self.ends.reserve(names);
    }

    /// Appends `name`, unless the text would pass what a `u32` offset addresses.
    pub fn try_push(&mut self, name: &str) -> Result<(), ListTooLarge> {
        let end = u32::try_from(self.text.len() + name.len()).map_err(|_| ListTooLarge)?;
        self.text.push_str(name);
        self.ends.push(end);
        Ok(())
    }

    /// Appends `name`. Panics past 4 GiB of text, which only the decoder could receive from
    /// outside, and it uses [`NameListBuilder::try_push`].
    pub fn push(&mut self, name: &str) {
        self.try_push(name).expect("a name list holds less than 4 GiB of text");
    }

    /// The name pushed last.
    pub fn last(&self) -> Option<&str> {
        let end = *self.ends.last()? as usize;
        let start = self.ends.len().checked_sub(2).map_or(0, |at| self.ends[at] as usize);
        Some(&self.text[start..end])
    }

    pub fn finish(self) -> NameList {
        NameList { text: self.text.into_boxed_str(), ends: self.ends.into_boxed_slice() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_back_in_order_and_extending_appends() {
        let list: NameList = ["github.com/a/b", "", "gitlab.com/ü/x"].into_iter().collect();
        assert_eq!(list.len(), 3);
        assert_eq!(list.iter().collect::<Vec<_>>(), ["github.com/a/b", "", "gitlab.com/ü/x"]);
        assert!(list.contains("") && list.contains("gitlab.com/ü/x") && !list.contains("github.com/a"));
        let list = list.extended(["x/y"]);
        assert_eq!(list.iter().collect::<Vec<_>>(), ["github.com/a/b", "", "gitlab.com/ü/x", "x/y"]);
        assert!(NameList::default().is_empty());
        assert_eq!(format!("{:?}", NameList::from(vec![RepoName::from_normalized("a/b")])), r#"["a/b"]"#);
    }
}
