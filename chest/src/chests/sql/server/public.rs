//! The public MySQL and PostgreSQL chest types, made by one macro over [`SqlxChest`](super::SqlxChest).

/// Makes a public chest type over [`SqlxChest<backend>`](SqlxChest) and its builder: what the
/// MySQL and PostgreSQL chests share. The chest's own docs (with examples) come first; `url` and
/// `table` document its `connect` and its builder's `table`.
macro_rules! sqlx_chest {
    (
        $(#[$doc:meta])*
        pub struct $chest:ident(SqlxChest<$backend:ty>);
        builder: $builder:ident,
        url: $url:literal,
        table: $table:literal,
        schemes: [$($scheme:literal),+] $(,)?
    ) => {
        /// The scheme table's row: URLs of these schemes open this chest (the `table` parameter
        /// is chest's, the others go to sqlx), and read its table back.
        pub(crate) const SCHEME: $crate::chests::scheme::Scheme = $crate::chests::scheme::Scheme {
            names: &[$($scheme),+],
            open: |url| {
                let builder = $builder {
                    settings: $crate::chests::sql::server::Settings::from_url(url)?,
                };
                Ok(Box::pin(async move {
                    let chest: std::sync::Arc<dyn $crate::Chest> =
                        std::sync::Arc::new(builder.build().await?);
                    Ok(chest)
                }))
            },
            read: Some(|url| {
                let settings = $crate::chests::sql::server::Settings::from_url(url)?;
                Ok(Box::pin(async move {
                    let reader: Box<dyn $crate::stored::ReadBack> = Box::new(
                        $crate::chests::sql::server::SqlxChest::<$backend>::open_existing(settings)
                            .await?,
                    );
                    Ok(reader)
                }))
            }),
        };

        $(#[$doc])*
        #[derive(Clone)]
        pub struct $chest {
            inner: std::sync::Arc<$crate::chests::sql::server::SqlxChest<$backend>>,
        }

        #[doc = concat!("Settings of a [`", stringify!($chest), "`].")]
        #[derive(Debug, Clone)]
        pub struct $builder {
            settings: $crate::chests::sql::server::Settings,
        }

        impl $chest {
            /// Connects with the default settings, and creates the table `chest` if it is missing.
            ///
            #[doc = $url]
            pub async fn connect(url: &str) -> Result<Self, $crate::Error> {
                Self::builder(url).build().await
            }

            /// Settings for the server at `url`: table `chest`, up to 8 connections, 10 s to
            /// connect.
            pub fn builder(url: &str) -> $builder {
                $builder {
                    settings: $crate::chests::sql::server::Settings::new(url),
                }
            }

            /// The table written to.
            pub fn table(&self) -> &str {
                self.inner.table()
            }

            /// Closes the pool: waits for the connections in use, then closes every connection.
            /// Writes after this fail (permanently).
            pub async fn close(&self) {
                self.inner.close().await;
            }
        }

        impl $builder {
            /// The table to write (default `chest`; `flask_chest` for Flask-Chest's).
            #[doc = $table]
            pub fn table(mut self, table: impl Into<String>) -> Self {
                self.settings.table = table.into();
                self
            }

            /// The most connections the pool opens (default 8).
            pub fn max_connections(mut self, max: u32) -> Self {
                self.settings.max_connections = max;
                self
            }

            /// How long a write waits for a connection, opening one included (default 10 s).
            pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.settings.connect_timeout = timeout;
                self
            }

            /// Connects, and creates the table and its index if missing (or checks an existing
            /// table's columns).
            pub async fn build(self) -> Result<$chest, $crate::Error> {
                let inner = $crate::chests::sql::server::SqlxChest::connect(self.settings).await?;
                Ok($chest {
                    inner: std::sync::Arc::new(inner),
                })
            }

            /// Checks the settings without connecting: the first write connects and prepares the
            /// table, and its errors are [`ChestError`](crate::ChestError)s (so a batched chest
            /// keeps the records while the server is away). Must be called inside a Tokio
            /// runtime.
            pub fn build_lazy(self) -> Result<$chest, $crate::Error> {
                let inner = $crate::chests::sql::server::SqlxChest::new(self.settings)?;
                Ok($chest {
                    inner: std::sync::Arc::new(inner),
                })
            }
        }

        impl $crate::Chest for $chest {
            fn name(&self) -> &str {
                self.inner.name()
            }

            fn write<'a>(
                &'a self,
                records: &'a [$crate::Record],
            ) -> $crate::BoxFuture<'a, Result<(), $crate::ChestError>> {
                Box::pin(async move { self.inner.write(records, None).await.map(|_| ()) })
            }

            /// Stores the batch's id in `<table>_batches` in the same transaction as its records
            /// (ids are kept for 24 hours); a batch whose id is there is not stored again.
            fn write_batch<'a>(
                &'a self,
                id: $crate::BatchId,
                records: &'a [$crate::Record],
            ) -> $crate::BoxFuture<'a, Result<$crate::Written, $crate::ChestError>> {
                Box::pin(self.inner.write(records, Some(id)))
            }
        }

        impl std::fmt::Debug for $chest {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($chest))
                    .field("name", &self.inner.name())
                    .field("table", &self.inner.table())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use sqlx_chest;
