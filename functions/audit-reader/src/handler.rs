//! Thin edge: API Gateway v2 event → `ReadRequest` → shared reader → HTTP response.
use gatehouse::audit::reader::{ReadRequest, Reader};
use gatehouse::principal::principal_from_context;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt, Response};

pub async fn handle(reader: &Reader, request: Request) -> Result<Response<Body>, Error> {
    let ctx = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => Some(ctx),
        _ => None,
    };
    // No authorizer context means API Gateway did not authorize this call: fail closed.
    let principal = ctx
        .and_then(|c| c.authorizer.as_ref())
        .and_then(|a| principal_from_context(&a.fields));
    let request_id = ctx.and_then(|c| c.request_id.clone()).unwrap_or_else(|| {
        request
            .lambda_context_ref()
            .map(|l| l.request_id.clone())
            .unwrap_or_default()
    });
    // Every value of every parameter, so a repeated one is refused rather than silently picked.
    let query = request.query_string_parameters();
    let params: Vec<(String, String)> = query
        .iter()
        .flat_map(|(k, _)| {
            query
                .all(k)
                .unwrap_or_default()
                .into_iter()
                .map(move |v| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let response = reader
        .handle(ReadRequest {
            request_id: &request_id,
            principal,
            params,
            now: std::time::SystemTime::now(),
        })
        .await;
    Ok(response.map(Body::from))
}
