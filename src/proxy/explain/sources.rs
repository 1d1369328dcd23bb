//! The configuration lines an explanation quotes, read again from their
//! files (the model keeps where each rule and route was written, not its
//! text).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::Origin;

/// Configuration files read so far, by path, as lines.
#[derive(Default)]
pub struct Sources(HashMap<PathBuf, Vec<String>>);

impl Sources {
    /// The directive at `origin` as written (continuation lines joined,
    /// runs of blanks made one); empty when the file cannot be read.
    pub fn line(&mut self, origin: &Origin) -> String {
        let path = origin.file.as_ref();
        let lines = self.0.entry(path.clone()).or_insert_with(|| {
            std::fs::read_to_string(path)
                .map(|t| t.lines().map(str::to_string).collect())
                .unwrap_or_default()
        });
        let mut text = String::new();
        for line in lines.iter().skip(origin.line.saturating_sub(1)) {
            match line.trim_end().strip_suffix('\\') {
                Some(part) => {
                    text.push_str(part);
                    text.push(' ');
                }
                None => {
                    text.push_str(line);
                    break;
                }
            }
        }
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}
