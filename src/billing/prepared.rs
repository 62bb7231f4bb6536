//! Statements prepared once per PostgreSQL connection, shared by the writer and the steps of a
//! batch it runs (aggregates, sequence tracking).

use std::collections::HashMap;

use tokio_postgres::{Statement, Transaction};

/// Statements prepared on one connection, by their SQL.
#[derive(Default)]
pub struct Prepared(HashMap<String, Statement>);

impl Prepared {
    /// `sql` prepared once per connection.
    pub async fn get(
        &mut self,
        tx: &Transaction<'_>,
        sql: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = tx.prepare(sql).await?;
        self.0.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}
