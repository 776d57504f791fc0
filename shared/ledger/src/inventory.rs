//! What the ledger holds, for the people on call (the `crossdeploy` command line): the
//! deployments newest first, filtered; the leases held; the deployments waiting for their next
//! continuation job. These read the whole table (a Scan, bounded by pages): an operator's tool,
//! never on a deployment's path.

use crate::{get_s, DeploymentRecord, LeaseHolder, Ledger, LedgerError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// The most pages of 1 MB one listing reads.
const MAX_SCAN_PAGES: usize = 50;

/// Which deployments a listing keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A target key (`lambda/<account>/<region>/<function>/<alias>`, `ecs/<account>/<region>/<cluster>/<service>`),
    /// or a prefix of one (`lambda/222222222222`).
    pub target: Option<String>,
    pub pipeline: Option<String>,
    /// With `pipeline`: one execution of it.
    pub execution_id: Option<String>,
}

impl Filter {
    fn keeps(&self, r: &DeploymentRecord) -> bool {
        self.target.as_deref().is_none_or(|t| r.target.as_str().starts_with(t))
            && self.pipeline.as_deref().is_none_or(|p| r.pipeline.pipeline_name.as_deref() == Some(p))
            && self.execution_id.as_deref().is_none_or(|e| r.pipeline.execution_id.as_deref() == Some(e))
    }
}

/// A lease as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    pub target: String,
    pub holder: LeaseHolder,
}

impl Ledger {
    /// Every item whose `pk` starts with `prefix` (and `sk` with `sk_prefix`), page by page.
    async fn scan(
        &self,
        prefix: &str,
        sk_prefix: Option<&str>,
        action: &'static str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, LedgerError> {
        let mut filter = "begins_with(pk, :p)".to_owned();
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()));
        if let Some(sk) = sk_prefix {
            filter.push_str(" AND begins_with(sk, :s)");
            scan = scan.expression_attribute_values(":s", AttributeValue::S(sk.to_owned()));
        }
        let scan = scan.filter_expression(filter);
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_SCAN_PAGES {
            let out = self
                .send(action, || scan.clone().set_exclusive_start_key(start.clone()).send())
                .await
                .map_err(|e| self.error(action, &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
        Err(LedgerError {
            action,
            table: self.table.clone(),
            error: crossdeploy_aws::ErrorInfo {
                code: Some("TooManyPages".into()),
                message: format!(
                    "more than {MAX_SCAN_PAGES} pages of 1 MB: narrow the listing to a target (history --target)"
                ),
            },
        })
    }

    /// The deployments `filter` keeps, newest first, at most `limit`.
    pub async fn history(&self, filter: &Filter, limit: usize) -> Result<Vec<DeploymentRecord>, LedgerError> {
        let mut records: Vec<DeploymentRecord> = match filter.target.as_deref().and_then(crate::TargetKey::parse) {
            // A whole target: its own partition, newest first.
            Some(target) => self.deployments(&target).await?,
            None => self
                .scan("TARGET#", Some("DEPLOY#"), "list deployments")
                .await?
                .iter()
                .filter_map(crate::deployments::record_of)
                .collect(),
        };
        records.retain(|r| filter.keeps(r));
        records.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.deployment_id.cmp(&a.deployment_id)));
        records.truncate(limit);
        Ok(records)
    }

    /// Every lease written and not yet expired by DynamoDB's TTL: those whose `until` has passed
    /// are free to take.
    pub async fn leases(&self) -> Result<Vec<HeldLease>, LedgerError> {
        Ok(self
            .scan("LEASE#", None, "list leases")
            .await?
            .iter()
            .filter_map(|item| {
                let target = get_s(item, "pk")?.strip_prefix("LEASE#")?.to_owned();
                Some(HeldLease { target, holder: crate::leases::holder_of(item) })
            })
            .collect())
    }

    /// The continuations written and not yet expired: the state each long deployment goes on
    /// from at its next job.
    pub async fn continuations(&self) -> Result<Vec<crate::Continuation>, LedgerError> {
        Ok(self
            .scan("CONT#", None, "list continuations")
            .await?
            .iter()
            .filter_map(|item| get_s(item, "data").and_then(|d| serde_json::from_str(d).ok()))
            .collect())
    }
}
