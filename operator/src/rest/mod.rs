//! The operator's in-cluster REST API under /api/v1: read what the operator sees and decides, and
//! change intent (pause autoscaling, force a breaker) by writing the RiskPlatform itself.

mod actions;
mod auth;
mod error;
mod model;
mod openapi;
mod platforms;

use std::collections::HashMap;

use axum::extract::{FromRequestParts, OriginalUri, Path};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware;
use axum::routing::{get, post, put};
use axum::Router;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use riskplatform_crd::RiskPlatform;
use serde_json::{json, Value};
use utoipa::IntoParams;

pub use auth::RestAuth;
pub use openapi::ApiDoc;

use error::ApiError;
use model::{check_object_name, Component, Dependency, Platform};

/// Field manager of every write, so managedFields show which changes came through this API.
pub const FIELD_MANAGER: &str = "riskplatform-rest-api";

/// The REST API, to be merged into the admin router. Every route but /api/v1/openapi.json needs
/// the bearer token of `auth`.
pub fn router(client: Client, auth: RestAuth) -> Router {
    if !auth.is_configured() {
        tracing::warn!("no REST API token configured (--api-token-file); every /api request is refused");
    }
    let state = RestState { client, resource: ApiResource::erase::<RiskPlatform>(&()) };
    let platform = "/namespaces/{namespace}/platforms/{name}";
    let api = Router::new()
        .route("/platforms", get(platforms::list))
        .route(platform, get(platforms::get))
        .route(&format!("{platform}/decisions"), get(platforms::decisions))
        .route(&format!("{platform}/breakers"), get(platforms::breakers))
        .route(&format!("{platform}/autoscaling/{{component}}/pause"), post(actions::pause))
        .route(&format!("{platform}/autoscaling/{{component}}/resume"), post(actions::resume))
        .route(&format!("{platform}/breakers/{{dependency}}"), put(actions::set_breaker))
        // route_layer guards only the routes above, so the document below stays public.
        .route_layer(middleware::from_fn_with_state(auth, auth::require_token))
        .route("/openapi.json", get(openapi::document))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

async fn no_route(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NoRoute(format!("{method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} {}", uri.path()))
}

#[derive(Clone)]
struct RestState {
    client: Client,
    /// RiskPlatforms are read untyped so status fields written by other components pass through.
    resource: ApiResource,
}

impl RestState {
    fn all_platforms(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &self.resource)
    }

    fn platforms(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.resource)
    }

    async fn platform(&self, target: &PlatformRef) -> Result<Platform, ApiError> {
        let obj = self
            .platforms(&target.namespace)
            .get(&target.name)
            .await
            .map_err(|e| ApiError::for_platform(e, &target.namespace, &target.name))?;
        Platform::try_from(obj)
    }

    /// Writes `spec` as a JSON merge patch: only the fields it names change, like
    /// `kubectl rollout pause`, and no other field manager's ownership is taken away.
    async fn patch_spec(&self, target: &PlatformRef, spec: Value) -> Result<Platform, ApiError> {
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        let obj = self
            .platforms(&target.namespace)
            .patch(&target.name, &params, &Patch::Merge(json!({ "spec": spec })))
            .await
            .map_err(|e| ApiError::for_platform(e, &target.namespace, &target.name))?;
        Platform::try_from(obj)
    }
}

/// The platform a request is about, checked before it becomes part of a Kubernetes API path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PlatformRef {
    /// Namespace of the RiskPlatform.
    pub namespace: String,
    /// Name of the RiskPlatform.
    pub name: String,
}

/// The path parameters, with axum's plain-text rejection replaced by the API's error shape.
async fn path_params(parts: &mut Parts) -> Result<HashMap<String, String>, ApiError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .map(|Path(params)| params)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn param<'a>(params: &'a HashMap<String, String>, key: &str) -> &'a str {
    params.get(key).map_or("", String::as_str)
}

impl<S: Send + Sync> FromRequestParts<S> for PlatformRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = path_params(parts).await?;
        let (namespace, name) = (param(&params, "namespace"), param(&params, "name"));
        check_object_name("namespace", namespace)?;
        check_object_name("name", name)?;
        Ok(Self { namespace: namespace.to_owned(), name: name.to_owned() })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Component {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Component::parse(param(&path_params(parts).await?, "component"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Dependency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Dependency::parse(param(&path_params(parts).await?, "dependency"))
    }
}
