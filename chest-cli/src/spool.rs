//! `chest spool inspect|drain`: look into a batched chest's spool file and replay it by hand.

use std::path::{Path, PathBuf};

use chest::batch::Spool;
use chest::chests::sqlite::SqliteChest;

/// What to do with a spool file.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SpoolCommand {
    /// Show what a spool holds: batches, records, bytes, oldest and newest record.
    Inspect {
        /// The spool file.
        #[arg(long)]
        spool: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write every spooled batch into a SQLite chest, oldest first, removing each once written.
    /// Stop the service that uses the spool first, or batches may be written twice.
    Drain {
        /// The spool file.
        #[arg(long)]
        spool: PathBuf,
        /// The SQLite database to write to (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// The table to write to.
        #[arg(long, default_value = "chest")]
        table: String,
    },
}

/// Runs a spool command, printing its result on stdout.
pub async fn run(command: SpoolCommand) -> Result<(), crate::CliError> {
    match command {
        SpoolCommand::Inspect { spool, json } => {
            let summary = open(&spool)?.inspect()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!("{summary}");
            }
        }
        SpoolCommand::Drain { spool, db, table } => {
            let mut spool = open(&spool)?;
            let chest = SqliteChest::builder(&db).table(table).build()?;
            let report = spool.drain_into(&chest).await?;
            println!(
                "drained {} records ({} batches) into {}",
                report.records,
                report.batches,
                db.display()
            );
            if report.undecodable > 0 {
                eprintln!(
                    "warning: {} records in undecodable batches were removed",
                    report.undecodable
                );
            }
        }
    }
    Ok(())
}

/// Opens an existing spool: a missing file is an error here, not a new spool.
fn open(path: &Path) -> Result<Spool, crate::CliError> {
    if !path.is_file() {
        return Err(format!("no spool file at {}", path.display()).into());
    }
    Ok(Spool::open(path)?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chest::batch::Batched;
    use chest::{Chest, ErrorKind, MemoryChest, Record};

    use super::*;

    #[tokio::test]
    async fn drains_a_spool_into_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool.db");
        let down = MemoryChest::new();
        down.fail_with(Some(ErrorKind::Retryable));
        let batched = Batched::builder(down)
            .spool(&spool)
            .retry_budget(Duration::ZERO)
            .build()
            .unwrap();
        batched
            .write(&[
                Record::new("r1", "n", 7, "GET", Some("/a")),
                Record::new("r1", "m", "x", "GET", Some("/a")),
            ])
            .await
            .unwrap();
        assert_eq!(
            batched.shutdown(Duration::from_secs(5)).await.spool_records,
            2
        );

        let inspect = SpoolCommand::Inspect {
            spool: spool.clone(),
            json: true,
        };
        run(inspect).await.unwrap();
        let db = dir.path().join("chest.db");
        let drain = SpoolCommand::Drain {
            spool: spool.clone(),
            db: db.clone(),
            table: "flask_chest".into(),
        };
        run(drain).await.unwrap();
        assert_eq!(Spool::open(&spool).unwrap().inspect().unwrap().records, 0);
        let conn = rusqlite::Connection::open(&db).unwrap();
        let rows: Vec<(String, String, String)> = conn
            .prepare("SELECT name, value, value_type FROM flask_chest ORDER BY unique_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("n".to_owned(), "7".to_owned(), "int".to_owned()),
                ("m".to_owned(), "x".to_owned(), "text".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_spool_is_an_error_not_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("nope.db");
        let error = run(SpoolCommand::Inspect {
            spool: spool.clone(),
            json: false,
        })
        .await
        .unwrap_err();
        assert!(error.to_string().contains("no spool file"), "{error}");
        assert!(!spool.exists());
    }
}
