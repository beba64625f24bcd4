//! The CloudFormation custom resource that runs one sync right after a deploy (and again when
//! the provider settings change): parse the request, answer with a PUT to its pre-signed
//! `ResponseURL` (AWS CloudFormation user guide, "Custom resources": request and response
//! objects).
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::{FetchError, Http, Report};
use crate::config::jwks_sync::is_loopback;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The fields of a custom-resource request we answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomResourceEvent {
    pub request_type: RequestType,
    pub response_url: Url,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
}

/// The physical id of the (single) sync resource.
pub const PHYSICAL_ID: &str = "gatehouse-jwks-sync";

/// CloudFormation's answer (camel case as the service expects).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub data: Value,
}

/// The response URL must be CloudFormation's pre-signed S3 URL (`https`, an `amazonaws.com`
/// host), or a loopback address for local tests: the function never PUTs anywhere else.
pub fn check_response_url(url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let aws = url.scheme() == "https"
        && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"));
    let local = url.scheme() == "http" && is_loopback(url);
    if aws || local {
        Ok(())
    } else {
        Err(format!("{url} is not a CloudFormation response URL"))
    }
}

impl CustomResourceEvent {
    /// `None` when the event is not a custom-resource request; `Some(Err)` when it claims to be
    /// one but is malformed.
    pub fn parse(v: &Value) -> Option<Result<Self, String>> {
        let request_type = v.get("RequestType")?;
        let response_url = v.get("ResponseURL")?;
        Some((|| {
            let s = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no {k}"))
            };
            let request_type = match request_type.as_str() {
                Some("Create") => RequestType::Create,
                Some("Update") => RequestType::Update,
                Some("Delete") => RequestType::Delete,
                _ => return Err("RequestType is not Create, Update or Delete".to_owned()),
            };
            let response_url = response_url
                .as_str()
                .and_then(|u| Url::parse(u).ok())
                .ok_or("ResponseURL is not a URL")?;
            check_response_url(&response_url)?;
            Ok(Self {
                request_type,
                response_url,
                stack_id: s("StackId")?,
                request_id: s("RequestId")?,
                logical_resource_id: s("LogicalResourceId")?,
                physical_resource_id: v
                    .get("PhysicalResourceId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        })())
    }

    /// SUCCESS with the report as `Data`; FAILED with the sync's reason only on Create, so a
    /// first deploy pointing at a wrong issuer stops with the reason and rolls back cleanly (its
    /// rollback is a Delete, which always succeeds). An Update always succeeds, the failure
    /// logged, counted and alarmed: failing it would make CloudFormation roll back with another
    /// Update that fails the same way and leave the stack in UPDATE_ROLLBACK_FAILED.
    pub fn response(&self, report: Option<&Report>) -> Response {
        let failed = self.request_type == RequestType::Create && report.is_some_and(Report::failed);
        let mut reason = report
            .filter(|r| r.failed())
            .map(|r| format!("jwks-sync {r}"));
        // CloudFormation caps the whole response at 4 KiB.
        if let Some(r) = reason.as_mut()
            && r.len() > 1000
        {
            let mut end = 1000;
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r.truncate(end);
        }
        Response {
            status: if failed { "FAILED" } else { "SUCCESS" },
            reason,
            physical_resource_id: self
                .physical_resource_id
                .clone()
                .unwrap_or_else(|| PHYSICAL_ID.to_owned()),
            stack_id: self.stack_id.clone(),
            request_id: self.request_id.clone(),
            logical_resource_id: self.logical_resource_id.clone(),
            data: report
                .and_then(|r| serde_json::to_value(r).ok())
                .unwrap_or_else(|| Value::Object(Default::default())),
        }
    }
}

/// PUTs the response to CloudFormation.
pub async fn send<H: Http + ?Sized>(
    http: &H,
    url: &Url,
    response: &Response,
) -> Result<(), FetchError> {
    let body = serde_json::to_string(response).map_err(|e| FetchError::Transport {
        url: url.to_string(),
        why: e.to_string(),
    })?;
    http.put(url, body).await
}
