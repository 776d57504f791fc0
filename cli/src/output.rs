//! Tables for people, JSON for scripts.

use crate::{Format, Report, Status};
use crossdeploy_ledger::DeploymentRecord;
use std::io::{self, Write};

/// Left-aligned columns, two spaces apart, a header line first.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { (*c).to_owned() } else { format!("{c:<w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn json(out: &mut dyn Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// `2026-12-02T06:51:17Z` of milliseconds since the epoch.
pub fn time(ms: u64) -> String {
    aws_smithy_types::DateTime::from_millis(ms as i64)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .map(|t| match t.split_once('.') {
            Some((whole, _)) => format!("{whole}Z"),
            None => t,
        })
        .unwrap_or_else(|_| ms.to_string())
}

/// `1m 05s` of a duration in milliseconds.
pub fn took(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A version, or the `family:revision` of a task definition ARN.
fn short(v: Option<&str>) -> String {
    match v {
        None | Some("") => "-".to_owned(),
        Some(v) if v.starts_with("arn:") => v.rsplit('/').next().unwrap_or(v).to_owned(),
        Some(v) => v.to_owned(),
    }
}

pub fn history(out: &mut dyn Write, format: Format, records: &[DeploymentRecord]) -> io::Result<()> {
    if format == Format::Json {
        return json(out, &records);
    }
    if records.is_empty() {
        return writeln!(out, "no deployments recorded");
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let pipeline = match (&r.pipeline.pipeline_name, &r.pipeline.execution_id) {
                (Some(p), Some(e)) => format!("{p} {e}"),
                (Some(p), None) => p.clone(),
                _ => format!("job {}", r.pipeline.job_id),
            };
            vec![
                time(r.started_at),
                r.target.as_str().to_owned(),
                r.status.as_str().to_owned(),
                short(r.previous.as_deref()),
                short(r.deployed.as_deref()),
                r.serving.map(|s| s.as_str().to_owned()).unwrap_or_else(|| "-".to_owned()),
                r.finished_at.map(|f| took(f.saturating_sub(r.started_at))).unwrap_or_else(|| "-".to_owned()),
                r.rollback.as_ref().map(|b| b.status.as_str().to_owned()).unwrap_or_else(|| "-".to_owned()),
                pipeline,
            ]
        })
        .collect();
    table(out, &["STARTED", "TARGET", "STATUS", "BEFORE", "DEPLOYED", "SERVING", "TOOK", "ROLLBACK", "PIPELINE"], &rows)
}

pub fn status(out: &mut dyn Write, format: Format, status: &Status) -> io::Result<()> {
    if format == Format::Json {
        return json(out, status);
    }
    writeln!(out, "Deployments in progress: {}", status.in_progress.len())?;
    if !status.in_progress.is_empty() {
        let rows: Vec<Vec<String>> = status
            .in_progress
            .iter()
            .map(|r| {
                vec![
                    time(r.started_at),
                    r.target.as_str().to_owned(),
                    r.deployment_id.clone(),
                    short(r.previous.as_deref()),
                    short(r.deployed.as_deref()),
                    r.serving.map(|s| s.as_str().to_owned()).unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        table(out, &["STARTED", "TARGET", "DEPLOYMENT", "BEFORE", "DEPLOYED", "SERVING"], &rows)?;
    }
    writeln!(out)?;
    writeln!(out, "Leases held: {}", status.leases.len())?;
    if !status.leases.is_empty() {
        let rows: Vec<Vec<String>> = status
            .leases
            .iter()
            .map(|l| {
                let by = match (&l.pipeline, &l.execution_id) {
                    (Some(p), Some(e)) => format!("pipeline {p} execution {e}"),
                    (Some(p), None) => format!("pipeline {p}"),
                    _ => l.job_id.as_ref().map(|j| format!("job {j}")).unwrap_or_else(|| "-".to_owned()),
                };
                vec![l.target.clone(), l.deployment_id.clone(), by, time(l.until.saturating_mul(1000))]
            })
            .collect();
        table(out, &["TARGET", "HELD BY DEPLOYMENT", "FOR", "UNTIL"], &rows)?;
    }
    writeln!(out)?;
    writeln!(out, "Waiting for their next continuation job: {}", status.waiting.len())?;
    if !status.waiting.is_empty() {
        let rows: Vec<Vec<String>> = status
            .waiting
            .iter()
            .map(|w| {
                vec![
                    w.target.clone(),
                    w.deployment_id.clone(),
                    w.serving.clone().unwrap_or_else(|| "-".to_owned()),
                    w.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(out, &["TARGET", "DEPLOYMENT", "SERVING", "WHERE IT STANDS"], &rows)?;
    }
    Ok(())
}

pub fn deployed(out: &mut dyn Write, format: Format, ended: &crate::deploy::Ended) -> io::Result<()> {
    if format == Format::Json {
        return json(out, &serde_json::json!({"DeploymentId": ended.deployment_id, "Answer": ended.answer}));
    }
    match &ended.answer {
        crossdeploy_pipeline_job::JobAnswer::Success(s) => {
            writeln!(out, "Succeeded: {}", s.summary)?;
            writeln!(out, "deployment {}", ended.deployment_id)?;
            for (k, v) in &s.output_variables {
                writeln!(out, "  {k} = {v}")?;
            }
            Ok(())
        }
        crossdeploy_pipeline_job::JobAnswer::Failure { failure_type, message, .. } => {
            writeln!(out, "{}: {message}", failure_type.as_str())?;
            writeln!(out, "deployment {}", ended.deployment_id)
        }
    }
}

pub fn rollback(out: &mut dyn Write, format: Format, report: &Report) -> io::Result<()> {
    if format == Format::Json {
        return json(out, report);
    }
    writeln!(out, "{}", report.trigger)?;
    if report.rollbacks.is_empty() {
        return writeln!(out, "nothing to roll back");
    }
    let rows: Vec<Vec<String>> = report
        .rollbacks
        .iter()
        .map(|r| vec![r.target.clone(), r.deployment_id.clone(), r.result.clone(), r.message.clone()])
        .collect();
    table(out, &["TARGET", "DEPLOYMENT", "RESULT", "MESSAGE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_as_people_write_them() {
        assert_eq!(time(1_764_658_277_000), "2025-12-02T06:51:17Z");
        assert_eq!((took(4_200), took(65_000), took(3_725_000)), ("4s".into(), "1m 05s".into(), "1h 02m".into()));
        assert_eq!(short(Some("arn:aws:ecs:us-east-1:222222222222:task-definition/web:7")), "web:7");
        assert_eq!((short(Some("12")), short(None)), ("12".into(), "-".into()));
    }

    #[test]
    fn a_table_aligns_its_columns() {
        let mut out = Vec::new();
        table(&mut out, &["A", "BB"], &[vec!["long".into(), "x".into()], vec!["s".into(), "y".into()]]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A     BB\nlong  x\ns     y\n");
    }
}
