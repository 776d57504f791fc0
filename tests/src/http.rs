//! Plain HTTP to loopback services (moto's control API), with hyper's client.

use crate::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// One request; returns the status and the body. Bounded by `timeout`.
pub async fn request(
    method: &str,
    url: &str,
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Bytes)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", content_type)
        .body(Full::new(Bytes::copy_from_slice(body)))?;
    let resp = tokio::time::timeout(timeout, client.request(req)).await??;
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(timeout, resp.into_body().collect()).await??.to_bytes();
    Ok((status, body))
}
