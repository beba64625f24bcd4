//! The HTTP adapter: reqwest (rustls with the aws-lc-rs provider, as the AWS SDK uses; no
//! system proxy; HTTP/1.1), with the sync's limits on every request:
//! - a whole-request timeout (connect, redirects, body) and a connect timeout;
//! - redirects followed only to the host the request started on, only to `https` (or loopback
//!   `http`), at most 3; any other redirect fails the fetch;
//! - the body read in chunks and refused past `max_bytes` (whatever Content-Length claims);
//! - only 200 counts as an answer.
use std::time::Duration;

use url::Url;

use super::{FetchError, Http};
use crate::config::jwks_sync::{check_fetch_url, host_of};

/// A URL as it may appear in logs and errors: no query (CloudFormation's response URL carries
/// a pre-signed signature there), no credentials.
pub fn for_log(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

pub struct ReqwestHttp {
    client: reqwest::Client,
    max_bytes: usize,
}

const MAX_REDIRECTS: usize = 3;

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(host_of);
        let next = attempt.url();
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        if let Err(why) = check_fetch_url(next) {
            return attempt.error(why);
        }
        if first.as_deref() != Some(host_of(next).as_str()) {
            let to = host_of(next);
            return attempt.error(format!("to another host ({to})"));
        }
        attempt.follow()
    })
}

impl ReqwestHttp {
    pub fn new(timeout: Duration, max_bytes: usize) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .redirect(redirect_policy())
            .no_proxy()
            .user_agent(concat!("gatehouse-jwks-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { client, max_bytes })
    }
}

fn classify(full: &Url, e: &reqwest::Error) -> FetchError {
    let url = for_log(full);
    if e.is_timeout() {
        return FetchError::Timeout { url };
    }
    if e.is_redirect() {
        // The policy's message is the error's source.
        let why = std::error::Error::source(e)
            .map(ToString::to_string)
            .unwrap_or_else(|| "refused".into());
        return FetchError::Redirect { url, why };
    }
    let mut why = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        why.push_str(": ");
        why.push_str(&s.to_string());
        src = s.source();
    }
    // reqwest's own text names the URL with its query; keep the redacted one only.
    FetchError::Transport {
        why: why.replace(full.as_str(), &url),
        url,
    }
}

#[async_trait::async_trait]
impl Http for ReqwestHttp {
    async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let mut resp = self
            .client
            .get(url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(|e| classify(url, &e))?;
        let final_url = resp.url().clone();
        if resp.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status {
                url: for_log(&final_url),
                status: resp.status().as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: for_log(&final_url),
            limit: self.max_bytes,
        };
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&final_url, &e))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn put(&self, url: &Url, body: String) -> Result<(), FetchError> {
        // The pre-signed URL is signed without a content type: send an empty one (as AWS's own
        // cfn-response module does).
        let resp = self
            .client
            .put(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "")
            .body(body)
            .send()
            .await
            .map_err(|e| classify(url, &e))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: for_log(url),
                status: resp.status().as_u16(),
            });
        }
        Ok(())
    }
}
