//! The dashboard's JSON API, version 1 (`/api/v1/…`, documented in docs/dashboard-api.md): a
//! public interface, so fields are only ever added within a version.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chest::read::{Filter, SeriesQuery};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Dashboard;

/// The API's version, in every answer.
const VERSION: u32 = 1;

/// Buckets per plot (about) for the "all" range.
const BUCKETS: i64 = 60;

/// The most records `records` answers with.
const MAX_RECORDS: u64 = 1000;

pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/series", get(series))
        .route("/records", get(records))
        .route("/health", get(health))
        .with_state(dashboard)
}

/// A failed request: 400 for bad parameters, 500 when the chest cannot be read.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "version": VERSION, "error": self.1 });
        (self.0, Json(body)).into_response()
    }
}

impl From<chest::Error> for ApiError {
    fn from(e: chest::Error) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

#[derive(Deserialize)]
struct SeriesParams {
    /// `5m`, `1h`, `24h` or `all` (the default is `1h`).
    range: Option<String>,
    /// Only this variable.
    name: Option<String>,
}

/// A range's length and bucket width, in microseconds; `None` for `all`.
fn range_of(range: &str) -> Result<Option<(i64, i64)>, ApiError> {
    const S: i64 = 1_000_000;
    Ok(Some(match range {
        "5m" => (300 * S, 5 * S),
        "1h" => (3600 * S, 60 * S),
        "24h" => (86_400 * S, 1200 * S),
        "all" => return Ok(None),
        other => {
            let why = format!("range `{other}` is none of 5m, 1h, 24h, all");
            return Err(ApiError(StatusCode::BAD_REQUEST, why));
        }
    }))
}

fn now_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// `GET /api/v1/series?range=&name=`: per variable, route and method, records and numeric
/// percentiles per time bucket; buckets start at `from_micros`, every `bucket_micros`.
async fn series(
    State(d): State<Dashboard>,
    Query(p): Query<SeriesParams>,
) -> Result<Json<Value>, ApiError> {
    let range = p.range.unwrap_or_else(|| "1h".to_owned());
    let now = now_micros();
    let (from, bucket) = match range_of(&range)? {
        Some((length, bucket)) => ((now - length).div_euclid(bucket) * bucket, bucket),
        None => match d.reader.time_span().await? {
            // Whole seconds, so that a bucket's start is a round time.
            Some((first, last)) => {
                let bucket = ((last - first) / BUCKETS + 999_999) / 1_000_000 * 1_000_000;
                let bucket = bucket.max(1_000_000);
                (first.div_euclid(bucket) * bucket, bucket)
            }
            None => (now, 1_000_000),
        },
    };
    let mut query = SeriesQuery::new(bucket).range(Some(from), None);
    if let Some(name) = p.name {
        query = query.name(name);
    }
    let series = d.reader.series(&query).await?;
    Ok(Json(json!({
        "version": VERSION,
        "range": range,
        "now_micros": now,
        "from_micros": from,
        "to_micros": now.max(from),
        "bucket_micros": bucket,
        "series": series,
    })))
}

#[derive(Deserialize)]
struct RecordsParams {
    /// Only this request's records.
    request_id: Option<String>,
    /// At most this many (50 unless told; 1000 at most).
    limit: Option<u64>,
}

/// `GET /api/v1/records?request_id=&limit=`: the newest records (of one request).
async fn records(
    State(d): State<Dashboard>,
    Query(p): Query<RecordsParams>,
) -> Result<Json<Value>, ApiError> {
    let filter = Filter {
        request_id: p.request_id.filter(|id| !id.is_empty()),
        limit: Some(p.limit.unwrap_or(50).min(MAX_RECORDS)),
        newest_first: true,
        ..Filter::default()
    };
    let records = d.reader.query(&filter).await?;
    Ok(Json(json!({ "version": VERSION, "records": records })))
}

/// `GET /api/v1/health`: the pipeline's counters when the dashboard is attached to one.
async fn health(State(d): State<Dashboard>) -> Json<Value> {
    let pipelines = d.health.as_ref().map(|health| health());
    Json(json!({
        "version": VERSION,
        "attached": pipelines.is_some(),
        "pipelines": pipelines.unwrap_or_else(|| json!([])),
    }))
}
