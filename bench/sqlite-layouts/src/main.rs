//! What SQLite charges per row for chest's row under its current table (L0) and leaner layouts.
//!
//! ```text
//! layouts LAYOUT ROWS DB_PATH      # one run; prints one line, exits 1 if a count is wrong
//! layouts list                     # the layouts
//! ```
//!
//! ROWS is the number of value rows (records). All records are built on the main thread first;
//! the writer runs on its own thread (callgrind thread 2) and reports its own CPU time
//! (getrusage RUSAGE_THREAD) and wall time for the write loop only (open and DDL excluded).

mod layouts;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use layouts::{run_writer, verify, Layout, LAYOUTS};

/// A variable's value, as chest's `Value`.
#[derive(Clone, Debug)]
pub enum Value {
    Int(i64),
    Float(f64),
    Text(Arc<str>),
}

/// chest's `Record`.
#[derive(Clone, Debug)]
pub struct Record {
    pub request_id: Arc<str>,
    pub name: Arc<str>,
    pub value: Value,
    pub method: Arc<str>,
    pub route: Option<Arc<str>>,
    pub time: SystemTime,
}

/// `rows` records, `per_request` (1 or 3) per request: item (int), latency_ms (float), user (text).
pub fn make_records(rows: usize, per_request: usize) -> Vec<Record> {
    let method: Arc<str> = Arc::from("GET");
    let route: Arc<str> = Arc::from("/items/{id}");
    let names: [Arc<str>; 3] = [
        Arc::from("item"),
        Arc::from("latency_ms"),
        Arc::from("user"),
    ];
    let user: Arc<str> = Arc::from("alice@example.com");
    let start = SystemTime::now();
    let mut out = Vec::with_capacity(rows);
    let mut n = 0usize;
    while out.len() < rows {
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
        // One time per request, microseconds apart.
        let time = start + Duration::from_micros(n as u64 * 7);
        let values = [
            Value::Int(n as i64),
            Value::Float(n as f64 / 7.0),
            Value::Text(user.clone()),
        ];
        for (name, value) in names.iter().zip(values).take(per_request) {
            if out.len() == rows {
                break;
            }
            out.push(Record {
                request_id: id.clone(),
                name: name.clone(),
                value,
                method: method.clone(),
                route: Some(route.clone()),
                time,
            });
        }
        n += 1;
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("list") {
        for l in LAYOUTS {
            println!("{:<10} {}", l.name, l.about);
        }
        return;
    }
    let [layout, rows, path] = &args[..] else {
        eprintln!("usage: layouts LAYOUT ROWS DB_PATH | layouts list");
        std::process::exit(2);
    };
    let layout = *LAYOUTS
        .iter()
        .find(|l| l.name == layout)
        .unwrap_or_else(|| panic!("unknown layout {layout}"));
    let rows: usize = rows.parse().expect("ROWS");
    let path = std::path::PathBuf::from(path);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let records = make_records(rows, layout.per_request);
    let writer_path = path.clone();
    let stats = std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || run_writer(&layout, &writer_path, &records))
        .unwrap()
        .join()
        .unwrap();
    let requests = rows.div_ceil(layout.per_request);
    let ok = verify(&layout, &path, rows, requests);
    println!(
        "layout={} rows={} cpu_us_per_row={:.4} sys_us_per_row={:.4} wall_s={:.4} rows_per_s={:.0} count={}",
        layout.name,
        rows,
        stats.cpu.as_secs_f64() * 1e6 / rows as f64,
        stats.sys.as_secs_f64() * 1e6 / rows as f64,
        stats.wall.as_secs_f64(),
        rows as f64 / stats.wall.as_secs_f64(),
        if ok.is_ok() { "ok" } else { "WRONG" },
    );
    if let Err(e) = ok {
        eprintln!("verification failed: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout stores every row (a count not a multiple of 64, 3 or 5,000), and reads back the
    /// same information.
    #[test]
    fn every_layout_holds_every_row() {
        let dir = std::env::temp_dir().join(format!("layouts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for layout in LAYOUTS {
            let rows = 10_007;
            let path = dir.join(format!("{}.db", layout.name));
            let records = make_records(rows, layout.per_request);
            run_writer(layout, &path, &records);
            let requests = rows.div_ceil(layout.per_request);
            verify(layout, &path, rows, requests).unwrap();
            layouts::check_content(layout, &path, &records).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
