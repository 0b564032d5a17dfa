//! Reading a MySQL or PostgreSQL chest's table back, and `chest export`'s checkpoint beside it.

use std::fmt::Write as _;

use futures_util::TryStreamExt;
use sqlx::{Arguments, AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::{Backend, SqlxChest};
use crate::chests::sql;
use crate::series::{Series, SeriesBuilder, SeriesQuery};
use crate::stored::{
    checkpoint_of, parse_utc_micros, Checkpoint, Filter, ReadBack, StoredRecord, StoredRow, Tally,
    VarSummary,
};
use crate::{BatchId, BoxError, BoxFuture, Error};

/// A row as a series read selects it: name, route, method, `recorded_at` as text, `value_num`
/// and a text row's value.
type SeriesRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<String>,
);

/// A row as a read selects it: `unique_id`, `request_id`, `name`, `value`, `value_type`, `method`,
/// `route` and `recorded_at` as text.
type ReadRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl<B: Backend> ReadBack for SqlxChest<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> (i64,): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> ReadRow: FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (String, Option<f64>): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> SeriesRow: FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (Option<String>,): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (i64, String): FromRow<'r, <B::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Type<B::Db>,
{
    fn query<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<StoredRecord>, Error>> {
        Box::pin(async move {
            let mut sql = format!(
                "SELECT unique_id, request_id, name, value, value_type, method, route, {} FROM {} \
                 WHERE 1=1",
                B::RECORDED_AT_TEXT,
                B::DIALECT.quote(&self.table)
            );
            let mut args = <B::Db as Database>::Arguments::default();
            // The first error of binding, if any, fails the query.
            let mut bound: Result<(), BoxError> = Ok(());
            let texts = [
                ("request_id", filter.request_id.as_deref()),
                ("name", filter.name.as_deref()),
            ];
            for (column, text) in texts {
                if let Some(text) = text {
                    bound = bound.and(args.add(text));
                    let n = args.len();
                    let _ = write!(
                        sql,
                        " AND {column} = {}{}",
                        B::EXACT_TEXT,
                        B::DIALECT.parameter(n)
                    );
                }
            }
            if let Some(after) = filter.after_id {
                bound = bound.and(args.add(after));
                let _ = write!(sql, " AND unique_id > {}", B::DIALECT.parameter(args.len()));
            }
            if let Some(until) = filter.until_id {
                bound = bound.and(args.add(until));
                let _ = write!(
                    sql,
                    " AND unique_id <= {}",
                    B::DIALECT.parameter(args.len())
                );
            }
            sql.push_str(if filter.newest_first {
                " ORDER BY unique_id DESC"
            } else {
                " ORDER BY unique_id"
            });
            if let Some(limit) = filter.limit {
                bound = bound.and(args.add(i64::try_from(limit).unwrap_or(i64::MAX)));
                let _ = write!(sql, " LIMIT {}", B::DIALECT.parameter(args.len()));
            }
            bound.map_err(|e| Error::backend(&*self.name, e))?;
            let read = sqlx::query_as_with(AssertSqlSafe(sql), args);
            let rows: Vec<ReadRow> = match read.fetch_all(&self.pool).await {
                Ok(rows) => rows,
                Err(e) => return Err(self.backend_error(e).await),
            };
            let records = rows.into_iter().map(|row| {
                let mut row = StoredRow {
                    unique_id: row.0,
                    request_id: row.1,
                    name: row.2,
                    value: row.3,
                    value_type: row.4,
                    method: row.5,
                    route: row.6,
                    recorded_at: row.7,
                };
                B::unescape(&mut row);
                StoredRecord::from(row)
            });
            Ok(records.collect())
        })
    }

    fn summaries<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<VarSummary>, Error>> {
        Box::pin(async move {
            let mut sql = format!(
                "SELECT name, value_num FROM {}",
                B::DIALECT.quote(&self.table)
            );
            if name.is_some() {
                let _ = write!(
                    sql,
                    " WHERE name = {}{}",
                    B::EXACT_TEXT,
                    B::DIALECT.parameter(1)
                );
            }
            let mut query = sqlx::query_as::<_, (String, Option<f64>)>(AssertSqlSafe(sql));
            if let Some(name) = name {
                query = query.bind(name);
            }
            let mut rows = query.fetch(&self.pool);
            let mut tally = Tally::default();
            loop {
                match rows.try_next().await {
                    Ok(Some((name, number))) => tally.add(name, number),
                    Ok(None) => return Ok(tally.summaries()),
                    Err(e) => return Err(self.backend_error(e).await),
                }
            }
        })
    }

    fn series<'a>(&'a self, query: &'a SeriesQuery) -> BoxFuture<'a, Result<Vec<Series>, Error>> {
        Box::pin(async move {
            let (sql, bounds) =
                sql::series_select(B::DIALECT, &self.table, query, B::RECORDED_AT_TEXT);
            let mut read = sqlx::query_as::<_, SeriesRow>(AssertSqlSafe(sql));
            for bound in &bounds {
                read = read.bind(bound.as_str());
            }
            let mut rows = read.fetch(&self.pool);
            let mut builder = SeriesBuilder::new(query.clone());
            loop {
                match rows.try_next().await {
                    Ok(Some((name, route, method, at, number, text))) => {
                        let mut row = StoredRow {
                            name,
                            route,
                            method,
                            value: text,
                            ..StoredRow::default()
                        };
                        B::unescape(&mut row);
                        let micros = at.as_deref().and_then(parse_utc_micros).unwrap_or(0);
                        builder.add(
                            &row.name,
                            row.route.as_deref(),
                            row.method.as_deref().unwrap_or(""),
                            micros,
                            number,
                            row.value.as_deref(),
                        );
                    }
                    Ok(None) => return Ok(builder.finish()),
                    Err(e) => return Err(self.backend_error(e).await),
                }
            }
        })
    }

    fn time_span(&self) -> BoxFuture<'_, Result<Option<(i64, i64)>, Error>> {
        Box::pin(async move {
            let mut ends = Vec::new();
            for sql in sql::time_span_selects(B::DIALECT, &self.table, B::RECORDED_AT_TEXT) {
                let at = sqlx::query_as::<_, (Option<String>,)>(AssertSqlSafe(sql))
                    .fetch_optional(&self.pool)
                    .await;
                match at {
                    Ok(at) => ends.push(
                        at.and_then(|(at,)| at)
                            .as_deref()
                            .and_then(parse_utc_micros),
                    ),
                    Err(e) => return Err(self.backend_error(e).await),
                }
            }
            Ok(ends[0].zip(ends[1]))
        })
    }

    fn count_after(&self, after_id: i64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let sql = B::DIALECT.count_after(&self.table);
            match sqlx::query_as::<_, (i64,)>(AssertSqlSafe(sql))
                .bind(after_id)
                .fetch_one(&self.pool)
                .await
            {
                Ok((n,)) => Ok(u64::try_from(n).unwrap_or(0)),
                Err(e) => Err(self.backend_error(e).await),
            }
        })
    }

    fn checkpoint<'a>(&'a self, consumer: &'a str) -> BoxFuture<'a, Result<Checkpoint, Error>> {
        Box::pin(async move {
            let read = async {
                for create in [
                    B::DIALECT.create_checkpoint_table(),
                    B::DIALECT.create_pending_table(),
                ] {
                    sqlx::query(AssertSqlSafe(create))
                        .execute(&self.pool)
                        .await?;
                }
                let last =
                    sqlx::query_as::<_, (i64,)>(AssertSqlSafe(B::DIALECT.select_checkpoint()))
                        .bind(self.table.as_str())
                        .bind(consumer)
                        .fetch_optional(&self.pool)
                        .await?;
                let pending =
                    sqlx::query_as::<_, (i64, String)>(AssertSqlSafe(B::DIALECT.select_pending()))
                        .bind(self.table.as_str())
                        .bind(consumer)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok::<_, sqlx::Error>((last.map(|(id,)| id), pending))
            };
            match read.await {
                Ok((last, pending)) => checkpoint_of(&self.name, last, pending),
                Err(e) => Err(self.backend_error(e).await),
            }
        })
    }

    fn begin<'a>(
        &'a self,
        consumer: &'a str,
        to: i64,
        id: BatchId,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let id = id.to_string();
            let upsert = sqlx::query(AssertSqlSafe(B::DIALECT.upsert_pending()))
                .bind(self.table.as_str())
                .bind(consumer)
                .bind(to)
                .bind(id.as_str());
            match upsert.execute(&self.pool).await {
                Ok(_) => Ok(()),
                Err(e) => Err(self.backend_error(e).await),
            }
        })
    }

    fn advance<'a>(
        &'a self,
        consumer: &'a str,
        to: i64,
        delete: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let result: Result<(), sqlx::Error> = async {
                let mut tx = self.pool.begin().await?;
                sqlx::query(AssertSqlSafe(B::DIALECT.delete_pending()))
                    .bind(self.table.as_str())
                    .bind(consumer)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(AssertSqlSafe(B::DIALECT.upsert_checkpoint()))
                    .bind(self.table.as_str())
                    .bind(consumer)
                    .bind(to)
                    .execute(&mut *tx)
                    .await?;
                if delete {
                    sqlx::query(AssertSqlSafe(B::DIALECT.delete_through(&self.table)))
                        .bind(to)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
            .await;
            match result {
                Ok(()) => Ok(()),
                Err(e) => Err(self.backend_error(e).await),
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.close())
    }
}
