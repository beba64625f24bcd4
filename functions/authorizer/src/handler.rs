//! Thin edge: event → shared decision → simple response, with one log line per decision.
use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use gatehouse::auth::JwksSource;
use gatehouse::authorizer::{Gate, auth_request, simple_response};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

pub async fn handle<S: JwksSource>(
    gate: &Gate<S>,
    event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>,
) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse<HashMap<String, Value>>, Error> {
    let req = auth_request(&event.payload);
    let decision = gate.decide(&req).await;
    let principal = decision.principal.as_ref();
    tracing::info!(
        request_id = req.request_id,
        lambda_request_id = %event.context.request_id,
        route_key = req.route_key,
        source_ip = req.source_ip.unwrap_or_default(),
        principal = principal.map(|p| p.sub.as_str()).unwrap_or_default(),
        token_id = principal.map(|p| p.token_id.as_str()).unwrap_or_default(),
        decision = if decision.allowed { "allow" } else { "deny" },
        reason = decision.reason,
        policy_ids = ?decision.policy_ids,
        "authorizer decision"
    );
    Ok(simple_response(&decision))
}
