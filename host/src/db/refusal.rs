//! Telling a record the database refuses from a database that is not there, and writing a
//! batch so that the records it refuses are set aside while the rest is written.
//!
//! A batched write fails whole when one of its rows is refused (a value out of range, a
//! constraint, a row too large). Retrying it whole would fail forever and block every other
//! record behind the bad one; giving up on it whole would lose the good ones. So a refused
//! batch is split in halves until each refusal is pinned on one record: k bad records in a
//! batch of n cost about 2k·log₂(n) extra statements, and none when all is well.

use std::future::Future;

use sqlx::error::ErrorKind;

use crate::model::RepoName;

/// A record the database refused, set aside so the others could be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub name: RepoName,
    /// The database's own message (with its SQLSTATE or SQLite code).
    pub message: String,
}

/// Whether `error` is the database refusing the data it was given, rather than failing to be
/// reached or to run the statement: a retry of the same data fails the same way.
///
/// Postgres: SQLSTATE class 22 (data exception: NUL byte, value out of range, bad encoding),
/// 23 (integrity constraint) and 54 (program limit exceeded: row or index entry too large).
/// SQLite: a constraint, `SQLITE_TOOBIG`, `SQLITE_MISMATCH` or `SQLITE_RANGE`. An error
/// encoding a bound value is also the data's fault.
pub fn is_refusal(error: &sqlx::Error) -> bool {
    let database = match error {
        sqlx::Error::Encode(_) => return true,
        sqlx::Error::Database(database) => database,
        _ => return false,
    };
    if !matches!(database.kind(), ErrorKind::Other) {
        return true;
    }
    let Some(code) = database.code() else { return false };
    if database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
        return ["22", "23", "54"].iter().any(|class| code.starts_with(class));
    }
    // SQLite's extended result codes keep the primary code in the low byte.
    code.parse::<i32>().is_ok_and(|code| matches!(code & 0xff, 18..=20 | 25))
}

/// The database's message for a refusal, with its code.
pub fn refusal_message(error: &sqlx::Error) -> String {
    match error.as_database_error() {
        Some(database) => match database.code() {
            Some(code) => format!("{} (code {code})", database.message()),
            None => database.message().to_owned(),
        },
        None => error.to_string(),
    }
}

/// What a write of many records did.
#[derive(Debug)]
pub struct Isolated<'a, T> {
    /// The sum of what `write` returned for the parts that were written.
    pub rows: u64,
    /// The records the database refused, each with its error, in input order.
    pub refused: Vec<(&'a T, sqlx::Error)>,
}

/// Writes `items` `batch` at a time with `write`; when the database refuses a batch (see
/// [`is_refusal`]), writes its halves, down to single records, and sets aside each record it
/// refuses alone. Any other error stops the write and is returned: the caller retries all of
/// it later (rewriting what was written, so `write` must be idempotent).
pub async fn write_isolating<'a, T, F, Fut>(
    items: &'a [T],
    batch: usize,
    mut write: F,
) -> Result<Isolated<'a, T>, sqlx::Error>
where
    F: FnMut(&'a [T]) -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut done = Isolated { rows: 0, refused: Vec::new() };
    // Last in, first out: the first part is on top, so records go in input order.
    let mut parts: Vec<&'a [T]> = items.chunks(batch.max(1)).rev().collect();
    while let Some(part) = parts.pop() {
        match write(part).await {
            Ok(rows) => done.rows += rows,
            Err(error) if is_refusal(&error) => match part {
                [one] => done.refused.push((one, error)),
                _ => {
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.push(second);
                    parts.push(first);
                }
            },
            Err(error) => return Err(error),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pins_each_refusal_on_one_record_and_writes_the_rest() {
        let items: Vec<u32> = (0..37).collect();
        let bad = [3, 17, 18, 36];
        let mut written = Vec::new();
        let mut statements = 0;
        let done = write_isolating(&items, 10, |part: &[u32]| {
            statements += 1;
            let refused = part.iter().any(|i| bad.contains(i));
            if !refused {
                written.extend_from_slice(part);
            }
            async move {
                if refused {
                    Err(sqlx::Error::Encode("refused".into()))
                } else {
                    Ok(part.len() as u64)
                }
            }
        })
        .await
        .expect("only refusals");
        let refused: Vec<u32> = done.refused.iter().map(|(i, _)| **i).collect();
        assert_eq!(refused, bad);
        assert_eq!(done.rows, 33);
        let expected: Vec<u32> = items.iter().copied().filter(|i| !bad.contains(i)).collect();
        assert_eq!(written, expected, "every other record written once, in order");
        assert!(statements < 37, "bisection, not one statement per record: {statements}");
    }

    #[tokio::test]
    async fn stops_at_an_error_that_is_not_a_refusal() {
        let items = [1, 2, 3];
        let result = write_isolating(&items, 2, |_part: &[i32]| async { Err(sqlx::Error::PoolTimedOut) }).await;
        assert!(matches!(result, Err(sqlx::Error::PoolTimedOut)));
        assert!(!is_refusal(&sqlx::Error::PoolTimedOut));
    }
}
