//! Multi-row `VALUES` lists with numbered placeholders, so a batch of rows is written
//! in a few statements instead of one round trip per row.
//!
//! Why not `sqlx::QueryBuilder::push_values`: through the `Any` driver it writes `?`
//! placeholders whatever the backend, which PostgreSQL rejects (sqlx issue #3000); the
//! statements here are built with `$n`, which both SQLite and PostgreSQL take.

/// At most this many bound parameters per statement: far below SQLite's (32 766) and
/// PostgreSQL's (65 535) bounds, while still writing hundreds of rows at a time.
pub const MAX_BINDS: usize = 4096;

/// How many rows of `columns` parameters each go into one statement.
pub fn rows_per_statement(columns: usize) -> usize {
    (MAX_BINDS / columns.max(1)).max(1)
}

/// `($1, $2, …), ($n+1, …), …`: `rows` tuples of `columns` placeholders each, numbered
/// in row order, so the parameters are bound row by row, column by column.
pub fn placeholders(rows: usize, columns: usize) -> String {
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
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_row_by_row() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
        assert_eq!(placeholders(0, 3), "");
    }

    #[test]
    fn statements_stay_under_the_bind_limit() {
        assert!(rows_per_statement(14) * 14 <= MAX_BINDS);
        assert_eq!(rows_per_statement(0), MAX_BINDS);
        assert_eq!(rows_per_statement(MAX_BINDS * 2), 1);
    }
}
