//! Operators discovered from traffic: an internal party that matches no configured
//! operator (DESIGN.md, "Call semantics"), so `/contacts` works with no configuration.

use serde::{Deserialize, Serialize};

/// One discovered operator, as kept in the `operators` tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredOperator {
    /// Stable id: the extension, as the call layer derives it.
    pub id: String,
    /// The best name seen so far (see [`merge`]).
    pub name: String,
    pub extension: String,
    /// Capture times, Unix seconds: the earliest and the latest sighting.
    pub first_seen: u64,
    pub last_seen: u64,
}

/// How much a name tells the importer's user: nothing, a number, or a person's name.
fn name_rank(name: &str, extension: &str) -> u8 {
    let name = name.trim();
    if name.is_empty() {
        0
    } else if name == extension
        || name
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#' | '-' | ' ' | '(' | ')'))
    {
        1
    } else {
        2
    }
}

/// Folds a new sighting into what is stored. The first name stays unless the new one
/// ranks higher (a display name beats a bare extension): names flapping between two
/// display names would make `/contacts` unstable for the importer. Times widen, in either
/// order, because replayed captures need not come in time order.
pub(crate) fn merge(
    stored: Option<DiscoveredOperator>,
    seen: DiscoveredOperator,
) -> DiscoveredOperator {
    let Some(mut op) = stored else {
        return seen;
    };
    if op.extension.is_empty() {
        op.extension = seen.extension;
    }
    if name_rank(&seen.name, &op.extension) > name_rank(&op.name, &op.extension) {
        op.name = seen.name;
    }
    op.first_seen = op.first_seen.min(seen.first_seen);
    op.last_seen = op.last_seen.max(seen.last_seen);
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(name: &str, at: u64) -> DiscoveredOperator {
        DiscoveredOperator {
            id: "101".into(),
            name: name.into(),
            extension: "101".into(),
            first_seen: at,
            last_seen: at,
        }
    }

    #[test]
    fn ranks_names() {
        assert_eq!(name_rank("", "101"), 0);
        assert_eq!(name_rank("  ", "101"), 0);
        assert_eq!(name_rank("101", "101"), 1);
        assert_eq!(name_rank("+1 (555) 123-0101", "101"), 1);
        assert_eq!(name_rank("Alice Smith", "101"), 2);
        assert_eq!(name_rank("Reception 1", "101"), 2);
    }

    #[test]
    fn keeps_first_display_name_and_widens_times() {
        let op = merge(None, seen("101", 50));
        let op = merge(Some(op), seen("Alice", 40));
        let op = merge(Some(op), seen("Bob", 60));
        let op = merge(Some(op), seen("101", 70));
        assert_eq!(op.name, "Alice");
        assert_eq!((op.first_seen, op.last_seen), (40, 70));
    }
}
