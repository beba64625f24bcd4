//! The HTTP adapter: hyper-util's client with hyper-rustls (rustls, aws-lc-rs, the system's root
//! certificates): the same stack the AWS SDK links, so jwks-sync's binary gains almost nothing
//! for it. (With reqwest on top, the x86-64 release bootstrap measured 10.14 MiB, over its
//! 10 MiB budget; with this stack 9.81 MiB.) HTTP/1.1, no proxy. Every request is held to the
//! sync's limits:
//! - one timeout over the whole fetch (connect, redirects, body), and a connect timeout;
//! - redirects (301, 302, 303, 307, 308) followed only to the host the fetch started on, only to
//!   `https` (or loopback `http`), at most 3; any other redirect fails the fetch;
//! - the body refused past `max_bytes` (by Content-Length first, then while reading, whatever
//!   Content-Length claims);
//! - only 200 counts as an answer.
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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

const MAX_REDIRECTS: usize = 3;
const AGENT: &str = concat!("gatehouse-jwks-sync/", env!("CARGO_PKG_VERSION"));

pub struct HyperHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
}

impl HyperHttp {
    pub fn new(timeout: Duration, max_bytes: usize) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(3))));
        let https = HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("loading the system's root certificates: {e}"))?
            // The scheme rule (https, or http to loopback) is checked before every request.
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
            max_bytes,
        })
    }

    fn request(
        &self,
        method: Method,
        url: &Url,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, FetchError> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .header(USER_AGENT, AGENT);
        if method == Method::GET {
            b = b.header(ACCEPT, "application/json, application/jwk-set+json");
        } else {
            // The pre-signed URL is signed without a content type: send an empty one (as AWS's
            // own cfn-response module does).
            b = b.header(CONTENT_TYPE, "");
        }
        b.body(Full::new(body)).map_err(|e| FetchError::Transport {
            url: for_log(url),
            why: e.to_string(),
        })
    }

    fn transport(url: &Url, e: &dyn std::error::Error) -> FetchError {
        let mut why = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            why.push_str(": ");
            why.push_str(&s.to_string());
            src = s.source();
        }
        FetchError::Transport {
            url: for_log(url),
            why,
        }
    }

    /// GET with redirects and the size cap (no timeout: the caller wraps the whole fetch).
    async fn fetch(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let mut current = url.clone();
        let origin = host_of(url);
        for hop in 0..=MAX_REDIRECTS {
            check_fetch_url(&current).map_err(|why| FetchError::Redirect {
                url: for_log(url),
                why,
            })?;
            let req = self.request(Method::GET, &current, Bytes::new())?;
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| Self::transport(&current, &e))?;
            let status = resp.status();
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                let refused = |why: String| FetchError::Redirect {
                    url: for_log(&current),
                    why,
                };
                if hop == MAX_REDIRECTS {
                    return Err(refused(format!("more than {MAX_REDIRECTS} redirects")));
                }
                let next = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| current.join(l).ok())
                    .ok_or_else(|| refused("no usable Location".into()))?;
                check_fetch_url(&next).map_err(&refused)?;
                if host_of(&next) != origin {
                    return Err(refused(format!("to another host ({})", host_of(&next))));
                }
                current = next;
                continue;
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status {
                    url: for_log(&current),
                    status: status.as_u16(),
                });
            }
            let too_large = || FetchError::TooLarge {
                url: for_log(&current),
                limit: self.max_bytes,
            };
            let declared = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.max_bytes as u64) {
                return Err(too_large());
            }
            let body = Limited::new(resp.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        too_large()
                    } else {
                        Self::transport(&current, e.as_ref())
                    }
                })?;
            return Ok(body.to_bytes().to_vec());
        }
        Err(FetchError::Redirect {
            url: for_log(url),
            why: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

#[async_trait::async_trait]
impl Http for HyperHttp {
    async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        tokio::time::timeout(self.timeout, self.fetch(url))
            .await
            .map_err(|_| FetchError::Timeout { url: for_log(url) })?
    }

    async fn put(&self, url: &Url, body: String) -> Result<(), FetchError> {
        let req = self.request(Method::PUT, url, Bytes::from(body))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| FetchError::Timeout { url: for_log(url) })?
            .map_err(|e| Self::transport(url, &e))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: for_log(url),
                status: resp.status().as_u16(),
            });
        }
        Ok(())
    }
}
