//! Cursor pagination: opaque cursors, validated page sizes, and the k-way merge that turns
//! per-shard pages into one globally ordered page.
//!
//! Every listing is ordered by id, newest first. Ids are time-ordered and globally unique, so the
//! last id of a page is a complete cursor even across shards: each shard is asked for rows below
//! it, and merging the shards' first `first + 1` rows gives exactly the next page.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;

/// The page size a list field gets when the client does not say.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: u64 = 100;

const CURSOR_PREFIX: &str = "c1:";

/// A validated `(first, after)` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub first: u64,
    /// Only rows with an id below this one.
    pub before_id: Option<i64>,
}

impl PageRequest {
    pub fn parse(first: Option<i32>, after: Option<&str>) -> Result<Self, ApiError> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if n >= 1 && n as u64 <= MAX_PAGE_SIZE => n as u64,
            Some(n) => {
                return Err(ApiError::bad_input(format!(
                    "`first` must be between 1 and {MAX_PAGE_SIZE}, got {n}"
                )));
            }
        };
        let before_id = after.map(decode_cursor).transpose()?;
        Ok(Self { first, before_id })
    }

    /// Rows to fetch per shard: one more than the page, to learn whether a next page exists.
    pub fn fetch_limit(&self) -> u64 {
        self.first + 1
    }
}

/// Opaque to clients; versioned so the format can change without breaking old cursors loudly.
pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

pub fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_input("malformed cursor: pass back an `endCursor` you were given");
    if cursor.len() > 64 {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let id = text.strip_prefix(CURSOR_PREFIX).ok_or_else(bad)?;
    match id.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(bad()),
    }
}

/// One page of rows in id-descending order, and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// Cuts rows fetched with [`PageRequest::fetch_limit`] down to the page.
    pub fn from_overfetch(mut rows: Vec<T>, first: u64) -> Self {
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Self {
            rows,
            has_next_page,
        }
    }
}

/// Merges pages that are each sorted by `key` descending into the first `first` rows overall.
/// A heap of one head per shard: O(first · log shards), reading no row past the page.
pub fn merge_desc<T>(pages: Vec<Vec<T>>, first: u64, key: impl Fn(&T) -> i64) -> Page<T> {
    let mut iters: Vec<std::vec::IntoIter<T>> = pages.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<T>> = iters.iter_mut().map(Iterator::next).collect();
    let mut heap: BinaryHeap<(i64, Reverse<usize>)> = heads
        .iter()
        .enumerate()
        .filter_map(|(i, head)| head.as_ref().map(|row| (key(row), Reverse(i))))
        .collect();
    let mut rows = Vec::with_capacity(first as usize);
    while let Some((_, Reverse(i))) = heap.pop() {
        let row = heads[i]
            .take()
            .expect("heap entries point at present heads");
        if rows.len() as u64 == first {
            return Page {
                rows,
                has_next_page: true,
            };
        }
        rows.push(row);
        if let Some(next) = iters[i].next() {
            heap.push((key(&next), Reverse(i)));
            heads[i] = Some(next);
        }
    }
    Page {
        rows,
        has_next_page: false,
    }
}

/// One statement for pages of several owners' rows at once (the posts of 50 authors, the
/// comments of 20 posts): a window function ranks each owner's rows by id, newest first, and
/// keeps `page.fetch_limit()` of each below the cursor. A loader groups its keys by shard and
/// page arguments and runs one of these per group.
pub fn ranked_pages(
    backend: sea_orm::DbBackend,
    table: &str,
    columns: &str,
    owner: &str,
    owners: &[i64],
    page: PageRequest,
) -> sea_orm::Statement {
    let mut values: Vec<sea_orm::Value> = owners.iter().map(|o| (*o).into()).collect();
    let in_list = crate::store::placeholders(backend, 1, owners.len());
    let mut next = owners.len() + 1;
    let below = match page.before_id {
        Some(id) => {
            values.push(id.into());
            let p = crate::store::placeholder(backend, next);
            next += 1;
            format!(" AND id < {p}")
        }
        None => String::new(),
    };
    values.push((page.fetch_limit() as i64).into());
    let limit = crate::store::placeholder(backend, next);
    let sql = format!(
        "SELECT {columns} FROM (\
           SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY {owner} ORDER BY id DESC) AS rn \
           FROM {table} WHERE {owner} IN ({in_list}){below}\
         ) ranked WHERE rn <= {limit} ORDER BY {owner}, id DESC"
    );
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(123456789);
        assert_eq!(decode_cursor(&c).unwrap(), 123456789);
        for bad in [
            "",
            "!!!",
            "YWJj",
            &URL_SAFE_NO_PAD.encode("c1:-4"),
            &"A".repeat(100),
        ] {
            assert!(
                matches!(decode_cursor(bad), Err(ApiError::BadInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(
            PageRequest::parse(None, None).unwrap().first,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(PageRequest::parse(Some(100), None).unwrap().first, 100);
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(101), None).is_err());
        assert!(PageRequest::parse(Some(-1), None).is_err());
    }

    #[test]
    fn merge_takes_the_global_top() {
        let pages = vec![vec![9, 4, 1], vec![8, 7, 2], vec![], vec![10, 3]];
        let page = merge_desc(pages.clone(), 4, |x| *x);
        assert_eq!(page.rows, vec![10, 9, 8, 7]);
        assert!(page.has_next_page);
        let page = merge_desc(pages, 8, |x| *x);
        assert_eq!(page.rows, vec![10, 9, 8, 7, 4, 3, 2, 1]);
        assert!(!page.has_next_page);
    }

    #[test]
    fn overfetch_detects_next_page() {
        let page = Page::from_overfetch(vec![5, 4, 3], 2);
        assert_eq!(page.rows, vec![5, 4]);
        assert!(page.has_next_page);
        assert!(!Page::from_overfetch(vec![5, 4], 2).has_next_page);
    }

    proptest::proptest! {
        /// Cursors and ids are client input: any text is refused or read, never a panic, and
        /// every cursor we hand out reads back to its id.
        #[test]
        fn cursors_and_ids_take_any_text(text in "\\PC{0,80}", id in 1i64..i64::MAX) {
            let _ = decode_cursor(&text);
            let _ = crate::id::parse_id(&text, 4);
            proptest::prop_assert_eq!(decode_cursor(&encode_cursor(id)).ok(), Some(id));
            if let Ok(parsed) = crate::id::parse_id(&text, 4) {
                proptest::prop_assert!(parsed > 0 && crate::id::shard_of(parsed) < 4);
            }
        }
    }
}
