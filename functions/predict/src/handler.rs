//! Thin edge: API Gateway v2 event → `Inbound` → shared pipeline → HTTP response.
use gatehouse::predict::{Inbound, Predictor};
use gatehouse::principal::{Caller, caller};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt, Response};

pub async fn handle(predictor: &Predictor, request: Request) -> Result<Response<Body>, Error> {
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
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let inbound = Inbound {
        request_id: &request_id,
        principal,
        content_type: header("content-type"),
        body: request.body().as_ref(),
        source_ip: ctx.and_then(|c| c.http.source_ip.as_deref()),
        user_agent: ctx.and_then(|c| c.http.user_agent.as_deref()),
    };
    // The route API Gateway matched: the function serves several (gatehouse::routes::ROUTES).
    let route_key = ctx.and_then(|c| c.route_key.as_deref()).unwrap_or_default();
    let response = predictor.serve(route_key, inbound).await;
    Ok(response.map(Body::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse::config::{Env, PredictConfig};

    fn fixture() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/predict-v2-request.json"
        ))
        .unwrap()
    }

    fn predictor() -> Predictor {
        gatehouse::setup::in_memory_predictor(PredictConfig::from_env(&Env(|_| None)).unwrap())
            .unwrap()
    }

    #[tokio::test]
    async fn api_gateway_v2_event_with_authorizer_context_gets_200() {
        let request = lambda_http::request::from_str(&fixture()).unwrap();
        let resp = handle(&predictor(), request).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
        assert_eq!(body["request_id"], "id-predict-fixture");
        assert!(
            body["output"]
                .as_str()
                .unwrap()
                .contains("quarterly report")
        );
    }

    #[tokio::test]
    async fn event_without_authorizer_context_fails_closed() {
        let mut v: serde_json::Value = serde_json::from_str(&fixture()).unwrap();
        v["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
        let request = lambda_http::request::from_str(&v.to_string()).unwrap();
        let resp = handle(&predictor(), request).await.unwrap();
        assert_eq!(resp.status(), 401);
    }
}
