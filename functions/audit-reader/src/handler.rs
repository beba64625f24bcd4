//! Thin edge: API Gateway v2 event → `ReadRequest` → shared reader → HTTP response.
use gatehouse::audit::reader::{ReadRequest, Reader};
use gatehouse::principal::{Caller, caller};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt, Response};

pub async fn handle(reader: &Reader, request: Request) -> Result<Response<Body>, Error> {
    let ctx = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => Some(ctx),
        _ => None,
    };
    // No authorizer context means no principal: the library refuses the call (fail closed).
    let invocation_id = request.lambda_context_ref().map(|l| l.request_id.as_str());
    let Caller {
        principal,
        request_id,
    } = caller(ctx, invocation_id);
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
