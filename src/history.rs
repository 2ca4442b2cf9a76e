//! `history`: the recorded runs from the state database, read-only: the newest first, filtered
//! by status and start time, as a table or JSON; or one run whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::report::{RunRecord, count, write_table};
use crate::state::{RunFilter, State, StateError};

/// What `history` was asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// One run, whole.
    pub id: Option<i64>,
    pub limit: u32,
    pub filter: RunFilter,
    pub json: bool,
}

/// Why `history` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no run {id} is recorded in {}", path.display())]
    NoSuchRun { id: i64, path: PathBuf },
    #[error("cannot write the history: {0}")]
    Write(#[from] std::io::Error),
}

/// Answers `query` from the state at `state_path` (none there: no runs) onto `out`.
pub fn show(state_path: &Path, query: &Query, out: &mut impl Write) -> Result<(), HistoryError> {
    let state = State::open_read_only(state_path)?;
    if let Some(id) = query.id {
        let run = match &state {
            Some(st) => st.run(id)?,
            None => None,
        };
        let Some(run) = run else {
            return Err(HistoryError::NoSuchRun {
                id,
                path: state_path.to_owned(),
            });
        };
        if query.json {
            serde_json::to_writer_pretty(&mut *out, &run).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            write_run(out, &run)?;
        }
        return Ok(());
    }
    let runs = match &state {
        Some(st) => st.runs_filtered(&query.filter, query.limit)?,
        None => Vec::new(),
    };
    if query.json {
        serde_json::to_writer_pretty(&mut *out, &runs).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else if runs.is_empty() && !query.filter.is_empty() {
        writeln!(
            out,
            "No recorded run in {} matches{}.",
            state_path.display(),
            describe(&query.filter)
        )?;
    } else {
        write_table(out, &runs, state_path)?;
    }
    Ok(())
}

/// The filter in words: ` status failed or held, started since 2026-11-28 00:00:00 UTC`.
fn describe(f: &RunFilter) -> String {
    let mut s = String::new();
    if !f.statuses.is_empty() {
        let names: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        s.push_str(&format!(" status {}", names.join(" or ")));
    }
    if let Some(t) = f.since {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&format!(
            " started since {}",
            t.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    s
}

/// One run whole: every field of its record, all its errors and missing visitor IDs.
pub fn write_run(out: &mut impl Write, r: &RunRecord) -> std::io::Result<()> {
    let took = (r.finished_at - r.started_at).as_seconds_f64();
    writeln!(out, "run {}", r.id)?;
    writeln!(out, "  trigger             {}", r.trigger)?;
    writeln!(out, "  mode                {}", r.mode)?;
    writeln!(out, "  started_at          {}", rfc3339(r.started_at))?;
    writeln!(
        out,
        "  finished_at         {} (took {took:.1} s)",
        rfc3339(r.finished_at)
    )?;
    writeln!(out, "  status              {}", r.status)?;
    writeln!(out, "  status_code         {}", r.status_code)?;
    writeln!(out, "  message             {}", r.message)?;
    for (name, n) in r.counts.named() {
        writeln!(out, "  {name:<18}  {}", count(n))?;
    }
    writeln!(out, "  errors ({})", count(r.errors.len() as u64))?;
    for e in &r.errors {
        match &e.visitor_id {
            Some(id) => writeln!(out, "    {id}: {}", e.message)?,
            None => writeln!(out, "    {}", e.message)?,
        }
    }
    writeln!(
        out,
        "  missing_visitor_ids ({})",
        count(r.missing_visitor_ids.len() as u64)
    )?;
    for id in &r.missing_visitor_ids {
        writeln!(out, "    {id}")?;
    }
    Ok(())
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
