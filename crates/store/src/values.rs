//! Multi-row `VALUES` lists, so a batch of rows is written in a few statements instead of
//! one round trip per row.
//!
//! Why not `sqlx::QueryBuilder::push_values`: through the `Any` driver it writes `?`
//! placeholders whatever the backend, which PostgreSQL rejects (sqlx issue #3000). Here
//! PostgreSQL gets `$n` and SQLite `?` (see [`placeholders`]).

use crate::Backend;

/// At most this many bound parameters per statement on PostgreSQL: far below its bound
/// (65 535), while still writing hundreds of rows at a time.
pub const MAX_BINDS: usize = 4096;

/// At most this many on SQLite. SQLite finds a numbered parameter (`$n`) by a linear scan
/// of the statement's parameter list, both when it prepares the statement and when sqlx
/// binds each value, so a statement's cost grows with the square of its parameters:
/// 18,000 of them made SQLite's `bind_parameter_name` a fifth of the whole loop's CPU.
/// A few hundred keep the scan short, and a statement costs SQLite no round trip.
pub const MAX_SQLITE_BINDS: usize = 256;

/// The most bound parameters one statement should carry on `backend`.
pub fn max_binds(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => MAX_SQLITE_BINDS,
        Backend::Postgres => MAX_BINDS,
    }
}

/// How many rows of `columns` parameters each go into one statement on `backend`.
pub fn rows_per_statement(backend: Backend, columns: usize) -> usize {
    (max_binds(backend) / columns.max(1)).max(1)
}

/// `rows` tuples of `columns` placeholders each, bound row by row, column by column:
/// `($1, $2, …), ($n+1, …), …` on PostgreSQL, `(?, ?, …), …` on SQLite.
///
/// SQLite looks a numbered parameter up by a linear scan of the statement's parameter
/// names each time sqlx binds one (`sqlite3_bind_parameter_name`: 4 % of the loop's CPU);
/// anonymous `?` are bound by position. So the statement must take its parameters in
/// exactly this order and have no others: sqlx numbers `?` from 1 whatever `$n` the
/// statement also has.
pub fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * columns + column + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// `$first, $first+1, …`: `count` numbered placeholders for an `IN (…)` list.
pub fn list(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_row_by_row() {
        let postgres = |rows, columns| placeholders(Backend::Postgres, rows, columns);
        assert_eq!(postgres(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(postgres(1, 1), "($1)");
        assert_eq!(postgres(0, 3), "");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(list(3, 2), "$2, $3, $4");
        assert_eq!(list(0, 1), "");
    }

    #[test]
    fn statements_stay_under_the_bind_limit() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            assert!(rows_per_statement(backend, 14) * 14 <= max_binds(backend));
            assert_eq!(rows_per_statement(backend, 0), max_binds(backend));
            assert_eq!(rows_per_statement(backend, MAX_BINDS * 2), 1);
        }
        assert!(rows_per_statement(Backend::Sqlite, 4) < rows_per_statement(Backend::Postgres, 4));
    }
}
