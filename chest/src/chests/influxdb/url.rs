//! The InfluxDB chest's URLs: `influxdb://` and `influxdbs://` (v2 API), `influxdb1://` and
//! `influxdb1s://` (v1 API).

use std::sync::Arc;

use super::{InfluxDbChest, InfluxDbChestBuilder};
use crate::chests::scheme::{Opening, Scheme};
use crate::url::ChestUrl;
use crate::{Chest, Error};

/// The scheme table's row (see [`chest::open`](crate::open()) for the URLs' parameters).
pub(crate) const SCHEME: Scheme = Scheme {
    names: &["influxdb", "influxdbs", "influxdb1", "influxdb1s"],
    open: open_url,
    read: None,
};

fn open_url(url: &ChestUrl<'_>) -> Result<Opening<Arc<dyn Chest>>, Error> {
    let chest: Arc<dyn Chest> = Arc::new(builder(url)?.build()?);
    Ok(Box::pin(async move { Ok(chest) }))
}

impl InfluxDbChestBuilder {
    /// Settings from an `influxdb://HOST:PORT?org=O&bucket=B&token_env=VAR` (v2) or
    /// `influxdb1://[USER@]HOST:PORT/DB?rp=RP&password_env=VAR` (v1) URL, as
    /// [`chest::open`](crate::open()) reads it (`influxdbs://`, `influxdb1s://` for HTTPS).
    ///
    /// ```
    /// use chest::chests::influxdb::InfluxDbChestBuilder;
    ///
    /// let builder = InfluxDbChestBuilder::from_url("influxdb1://127.0.0.1:8086/metrics?rp=autogen")?;
    /// let err = InfluxDbChestBuilder::from_url("influxdb://h:8086?org=o&bucket=b&token=abc").unwrap_err();
    /// assert!(err.to_string().contains("token_env") && !err.to_string().contains("abc"));
    /// # Ok::<(), chest::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let parsed = ChestUrl::parse(url)?;
        if !SCHEME.names.contains(&parsed.scheme) {
            return Err(parsed.invalid("scheme", "expected `influxdb://` or `influxdb1://`".into()));
        }
        builder(&parsed)
    }
}

fn builder(url: &ChestUrl<'_>) -> Result<InfluxDbChestBuilder, Error> {
    url.refuse_secrets(&["token", "password"])?;
    let http = if url.scheme.ends_with('s') {
        "https"
    } else {
        "http"
    };
    let (user, host, path) = url.user_hosts_path()?;
    if host.is_empty() {
        return Err(url.invalid("host", "no host given".into()));
    }
    let base = format!("{http}://{host}");
    let mut builder = if url.scheme.starts_with("influxdb1") {
        let database = path.trim_end_matches('/');
        if database.is_empty() {
            return Err(url.invalid("path", "no database given: influxdb1://host:8086/DB".into()));
        }
        let mut b = InfluxDbChest::v1(base, database);
        if let Some(rp) = url.param("rp") {
            b = b.retention_policy(rp);
        }
        if let Some(password) = url.secret_from_env("password_env")? {
            b = b.username_password(user.unwrap_or(""), password);
        } else if user.is_some() {
            return Err(url.invalid("query", "a user needs `password_env=VAR`".into()));
        }
        b
    } else {
        if user.is_some() || !path.is_empty() {
            return Err(url.invalid(
                "path",
                "influxdb:// takes HOST:PORT and org/bucket parameters only".into(),
            ));
        }
        let required = |key: &'static str| {
            url.param(key)
                .ok_or_else(|| url.invalid("query", format!("`{key}` is required")))
        };
        let (org, bucket) = (required("org")?, required("bucket")?);
        let mut b = InfluxDbChest::v2(base, org, bucket);
        if let Some(token) = url.secret_from_env("token_env")? {
            b = b.token(token);
        }
        b
    };
    if let Some(as_tag) = url.flag("request_id_as_tag")? {
        builder = builder.request_id_as_tag(as_tag);
    }
    if let Some(gzip) = url.flag("gzip")? {
        builder = builder.gzip(gzip);
    }
    if let Some(verify) = url.flag("verify")? {
        builder = builder.verify(verify);
    }
    if let Some(timeout) = url.duration("timeout")? {
        builder = builder.timeout(timeout);
    }
    for (key, value) in url.prefixed("tag.") {
        builder = builder.custom_tag(key, value);
    }
    url.check_all_used()?;
    Ok(builder)
}
